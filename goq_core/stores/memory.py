"""The `memory` store: the store contract kept in process memory, for tests. Nothing reaches
disk; stores opened by one factory at the same path share their records until it is dropped.

It copies every job on the way in and out (its args, env, resources, after and after_any too),
as a real store does: callers mutate their Job objects after a save, and must not find those
changes in the record unless they save again.
Any str is kept as is (lone surrogates, NUL). It also keeps the replay guard's nonces, the
jobs moved aside by `quarantine` (nothing it holds can be damaged, so `load` quarantines none),
and the attempts of each job. Ended jobs stay until `forget` or `prune` removes them; `history`
looks at every job it holds (fine for tests, not for a million).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from goq_core.errors import StoreError
from goq_core.interfaces import HISTORY_LIMIT_MAX, HISTORY_STATES, StoredState
from goq_core.messages import Job, JobState
from goq_core.records import Attempt

_ENDED = frozenset((JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT))


def _ended_as(job: Job) -> str | None:
    """How `job` ended, as a name of HISTORY_STATES; None if it has not."""
    if job.state is JobState.FINISHED:
        return "finished" if job.exit_status == 0 else "failed"
    if job.state is JobState.CANCELLED:
        return "cancelled"
    if job.state is JobState.TIMEOUT:
        return "timeout"
    return None


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
    attempts: dict[int, dict[int, Attempt]] = field(default_factory=dict)  # jobid -> n -> record


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
        attempts: Sequence[Attempt] = (),
    ) -> None:
        records = self._open_records()
        copies = [_copy(j) for j in jobs]
        new_nonces = [(bytes(n), int(t)) for n, t in nonces]
        runs = [replace(a) for a in attempts]
        for job in copies:  # all copied first: a bad job leaves the record untouched
            records.jobs[job.jobid] = job
        for run in runs:
            records.attempts.setdefault(run.jobid, {})[run.attempt] = run
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

    def attempts(self, jobid: int) -> list[Attempt]:
        """The saved attempts of job `jobid`, in attempt order (copies); [] if none."""
        runs = self._open_records().attempts.get(jobid, {})
        return [replace(runs[n]) for n in sorted(runs)]

    def history(
        self,
        *,
        states: frozenset[str],
        name: str | None,
        since_ns: int,
        before_jobid: int | None,
        limit: int,
        owner: str | None = None,
    ) -> list[Job]:
        """Ended jobs, newest first, at most `limit`, as the Store protocol says (env empty)."""
        records = self._open_records()
        unknown = set(states) - HISTORY_STATES
        if unknown:
            raise ValueError(f"unknown history states {sorted(unknown)}")
        if limit > HISTORY_LIMIT_MAX:
            raise ValueError(f"history limit {limit} is over {HISTORY_LIMIT_MAX}")
        out: list[Job] = []
        for jobid in sorted(records.jobs, reverse=True):
            if len(out) >= limit:
                break
            job = records.jobs[jobid]
            if (
                _ended_as(job) in states
                and (name is None or job.name == name)
                and (owner is None or job.owner == owner)
                and (since_ns <= 0 or job.end_ns >= since_ns)
                and (before_jobid is None or jobid < before_jobid)
            ):
                out.append(_copy(job, []))
        return out

    def forget(self, jobids: Iterable[int] = (), before_ns: int = 0) -> int:
        """Remove the ended jobs among `jobids` and, when `before_ns` > 0, those that ended
        before it, with their attempts; never a job not ended. How many were removed."""
        records = self._open_records()
        gone = {i for i in jobids if i in records.jobs and records.jobs[i].state in _ENDED}
        if before_ns > 0:
            gone.update(
                i for i, j in records.jobs.items() if j.state in _ENDED and j.end_ns < before_ns
            )
        self._remove(records, gone)
        return len(gone)

    def prune(self, before_ns: int, limit: int) -> int:
        """Remove at most `limit` ended jobs that ended before `before_ns`, oldest first."""
        records = self._open_records()
        if before_ns <= 0 or limit <= 0:
            return 0
        old = sorted(
            (j.end_ns, i)
            for i, j in records.jobs.items()
            if j.state in _ENDED and j.end_ns < before_ns
        )
        gone = [i for _, i in old[:limit]]
        self._remove(records, gone)
        return len(gone)

    @staticmethod
    def _remove(records: _Records, jobids: Iterable[int]) -> None:
        for jobid in jobids:
            del records.jobs[jobid]
            records.attempts.pop(jobid, None)

    def close(self) -> None:
        self._records = None


class MemoryStoreFactory:
    """The plugin factory: `factory(path, create)` opens the records kept for `path`."""

    def __init__(self) -> None:
        self._by_path: dict[str, _Records] = {}

    def __call__(self, path: str, create: bool) -> MemoryStore:
        return MemoryStore(self._by_path.setdefault(path, _Records()))
