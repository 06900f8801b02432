"""The `memory` store: the store contract kept in process memory, for tests. Nothing reaches
disk; stores opened by one factory at the same path share their records until it is dropped.

It copies every job on the way in and out (its args, env, resources, after and after_any too),
as a real store does: callers mutate their Job objects after a save, and must not find those
changes in the record unless they save again.
Any str is kept as is (lone surrogates, NUL). It also keeps the replay guard's nonces, and the
jobs moved aside by `quarantine` (nothing it holds can be damaged, so `load` quarantines none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from goq_core.errors import StoreError
from goq_core.interfaces import StoredState
from goq_core.messages import Job, JobState

_ENDED = frozenset((JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT))


def _copy(job: Job, env: list[str] | None = None) -> Job:
    """A copy of `job` with its own lists and dict (`env` instead of a copy of its own)."""
    return replace(
        job,
        args=list(job.args),
        env=list(job.env) if env is None else env,
        resources=dict(job.resources),
        after=list(job.after),
        after_any=list(job.after_any),
    )


@dataclass(slots=True)
class _Records:
    """What one path holds: jobs by id (copies), counters, nonces, and quarantined jobs."""

    jobs: dict[int, Job] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    nonces: dict[bytes, int] = field(default_factory=dict)  # nonce -> sendtime_ns
    quarantine: dict[int, tuple[Job, str]] = field(default_factory=dict)  # jobid -> job, reason


def _closed() -> StoreError:
    err = StoreError("memory store is closed")
    err.transient = False  # type: ignore[attr-defined]
    return err


class MemoryStore:
    """Jobs and counters in a dict. `create` is ignored: there is nothing on disk to lose."""

    name = "memory"

    def __init__(self, records: _Records | None = None) -> None:
        self._records: _Records | None = records if records is not None else _Records()

    def _open_records(self) -> _Records:
        if self._records is None:
            raise _closed()
        return self._records

    def load(self) -> StoredState:
        records = self._open_records()
        envs: dict[tuple[str, ...], list[str]] = {}  # equal environments share one list
        jobs = []
        for jobid in sorted(records.jobs):
            job = records.jobs[jobid]
            if job.state in _ENDED:
                continue
            key = tuple(job.env)
            env = envs.get(key)
            if env is None:
                env = envs[key] = list(key)
            jobs.append(_copy(job, env))
        return StoredState(
            jobs=jobs, counters=dict(records.counters), nonces=list(records.nonces.items())
        )

    def save(
        self,
        jobs: Sequence[Job],
        counters: dict[str, int],
        nonces: Sequence[tuple[bytes, int]] = (),
        forget_nonces_before_ns: int = 0,
    ) -> None:
        records = self._open_records()
        copies = [_copy(j) for j in jobs]
        new_nonces = [(bytes(n), int(t)) for n, t in nonces]
        for job in copies:  # all copied first: a bad job leaves the record untouched
            records.jobs[job.jobid] = job
        records.counters.update(counters)
        for nonce, sendtime_ns in new_nonces:
            records.nonces.setdefault(nonce, sendtime_ns)
        if forget_nonces_before_ns > 0:
            old = [n for n, t in records.nonces.items() if t < forget_nonces_before_ns]
            for nonce in old:
                del records.nonces[nonce]

    def get_job(self, jobid: int) -> Job | None:
        records = self._open_records()
        job = records.jobs.get(jobid)
        if job is None:
            if jobid in records.quarantine:
                err = StoreError(
                    f"memory store: job {jobid} is quarantined: {records.quarantine[jobid][1]}"
                )
                err.transient = False  # type: ignore[attr-defined]
                raise err
            return None
        return _copy(job)

    def outcomes(self, ids: Iterable[int]) -> dict[int, tuple[JobState, int]]:
        """(state, exit_status) of each of `ids` held and ended (FINISHED, CANCELLED,
        TIMEOUT); the others (unknown, not ended, quarantined) are left out."""
        records = self._open_records()
        out: dict[int, tuple[JobState, int]] = {}
        for jobid in ids:
            job = records.jobs.get(jobid)
            if job is not None and job.state in _ENDED:
                out[jobid] = (job.state, job.exit_status)
        return out

    def quarantine(self, jobid: int, reason: str) -> None:
        records = self._open_records()
        job = records.jobs.pop(jobid, None)
        if job is not None:
            records.quarantine[jobid] = (job, reason)

    def close(self) -> None:
        self._records = None


class MemoryStoreFactory:
    """The plugin factory: `factory(path, create)` opens the records kept for `path`."""

    def __init__(self) -> None:
        self._by_path: dict[str, _Records] = {}

    def __call__(self, path: str, create: bool) -> MemoryStore:
        return MemoryStore(self._by_path.setdefault(path, _Records()))
