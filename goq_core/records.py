"""What goq tells about jobs: the typed records that `--json`, the Python API and docs/json.md
share (one definition of each field), built from jobs and their attempts (goq_core.attempts).

Rules: times are ns since the epoch inside goq (0: not yet), RFC 3339 UTC strings outside;
durations are seconds (float) outside; every JSON document carries SCHEMA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

from goq_core.attempts import (  # noqa: F401 (re-exported: one place to import records from)
    ATTEMPT_CANCELLED,
    ATTEMPT_FINISHED,
    ATTEMPT_OUTCOMES,
    ATTEMPT_REQUEUED,
    ATTEMPT_TIMEOUT,
    ATTEMPT_UNDELIVERED,
    ENDED_STATES,
    STATES,
    Attempt,
    state_name,
)
from goq_core.messages import Job, JobState

SCHEMA = 1  # the version of every JSON document goq prints (docs/json.md)

# ----------------------------------------------------------------------------- typed records
# One field of these = one field of the JSON documents (docs/json.md). Each record has
# `to_json()`; `JobRecord.from_job` is the one place a Job becomes what users see.

LIVE_STATES = frozenset({"waiting", "blocked", "held", "running"})


def rfc3339(ns: int) -> str | None:
    """ns since the epoch as an RFC 3339 UTC string with microseconds (None for 0)."""
    if not ns:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1000:06d}Z"


def seconds_between(start_ns: int, end_ns: int) -> float | None:
    """A duration in seconds, or None when either end is not known."""
    if not start_ns or not end_ns:
        return None
    return round(max(0, end_ns - start_ns) / 1e9, 6)


@dataclass(slots=True)
class AttemptRecord:
    attempt: int
    outcome: str  # finished, timeout, requeued, cancelled, undelivered
    worker: str | None
    worker_host: str | None
    pid: int | None
    started: str | None
    ended: str | None
    ran: float | None  # seconds
    exit_status: int | None  # exit code when it exited (None if killed by a signal)
    signal: int | None  # the signal that ended it
    max_rss_kib: int | None
    user_cpu: float | None  # seconds
    system_cpu: float | None  # seconds

    @classmethod
    def from_attempt(cls, a: Attempt) -> AttemptRecord:
        measured = a.max_rss_kib or a.utime_us or a.stime_us
        ended = a.outcome in (ATTEMPT_FINISHED, ATTEMPT_TIMEOUT)
        return cls(
            attempt=a.attempt,
            outcome=a.outcome,
            worker=a.workerid or None,
            worker_host=a.workerhost or None,
            pid=a.pid or None,
            started=rfc3339(a.start_ns),
            ended=rfc3339(a.end_ns),
            ran=seconds_between(a.start_ns, a.end_ns),
            exit_status=a.exit_status if ended and a.exit_status >= 0 else None,
            signal=-a.exit_status if ended and a.exit_status < 0 else None,
            max_rss_kib=a.max_rss_kib if measured else None,
            user_cpu=a.utime_us / 1e6 if measured else None,
            system_cpu=a.stime_us / 1e6 if measured else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class JobRecord:
    id: int
    name: str | None
    state: str  # one of STATES
    reason: str | None  # why it was cancelled, why it waits or on what it is blocked
    exit_status: int | None  # when it ended by exiting (finished, failed)
    signal: int | None  # when a signal ended it
    command: list[str]  # argv; with shell true, one shell line
    shell: bool
    directory: str
    user: str | None
    owner: str | None  # the principal (credential name) that submitted it
    submit_host: str | None
    worker: str | None  # of its last attempt
    worker_host: str | None
    pid: int | None
    submitted: str | None
    started: str | None  # its last attempt's start
    ended: str | None
    waited: float | None  # seconds from submission to the last attempt's start
    ran: float | None  # seconds the last attempt ran
    cpus: int
    mem: int  # bytes
    gpus: int
    resources: dict[str, int]
    priority: int
    gpu_ids: list[str]  # the GPUs given to its last attempt
    after: list[int]
    after_any: list[int]
    array_id: int | None
    array_index: int | None
    retries: int
    retried: int
    time_limit: float | None  # seconds
    attempt: int  # attempts so far (requeues and retries count)
    output_bytes: int
    output_path: str | None  # where the server writes its output (show only)
    attempts: list[AttemptRecord] | None  # every attempt (show only; None in lists)

    @classmethod
    def from_job(
        cls,
        job: Job,
        attempts: list[Attempt] | None = None,
        output_path: str | None = None,
    ) -> JobRecord:
        state = state_name(job)
        exited = job.state in (JobState.FINISHED, JobState.TIMEOUT)
        command = [job.cmd] if job.shell else [job.cmd, *job.args]
        return cls(
            id=job.jobid,
            name=job.name or None,
            state=state,
            reason=job.note or None,
            exit_status=job.exit_status if exited and job.exit_status >= 0 else None,
            signal=-job.exit_status if exited and job.exit_status < 0 else None,
            command=command,
            shell=job.shell,
            directory=job.dir,
            user=job.user or None,
            owner=job.owner or None,
            submit_host=job.host or None,
            worker=job.workerid or None,
            worker_host=job.workerhost or None,
            pid=job.pid or None,
            submitted=rfc3339(job.submit_ns),
            started=rfc3339(job.start_ns) if job.attempt else None,
            ended=rfc3339(job.end_ns) if state in ENDED_STATES else None,
            waited=seconds_between(job.submit_ns, job.start_ns) if job.attempt else None,
            ran=seconds_between(job.start_ns, job.end_ns) if state in ENDED_STATES else None,
            cpus=job.cpus,
            mem=job.mem,
            gpus=job.gpus,
            resources=dict(job.resources),
            priority=job.priority,
            gpu_ids=job.gpu_ids.split(",") if job.gpu_ids else [],
            after=list(job.after),
            after_any=list(job.after_any),
            array_id=job.array_id or None,
            array_index=job.array_index if job.array_id else None,
            retries=job.retries,
            retried=job.retried,
            time_limit=job.time_limit_ms / 1000 if job.time_limit_ms else None,
            attempt=job.attempt,
            output_bytes=job.out_bytes,
            output_path=output_path,
            attempts=None
            if attempts is None
            else [AttemptRecord.from_attempt(a) for a in attempts],
        )

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.attempts is not None:
            doc["attempts"] = [a.to_json() for a in self.attempts]
        return doc


def document(kind: str, **body: Any) -> dict[str, Any]:
    """A JSON document as goq prints it: {"schema": SCHEMA, "kind": kind, ...body}."""
    return {"schema": SCHEMA, "kind": kind, **body}


def attempt_to_dict(a: Attempt) -> dict[str, Any]:
    """An Attempt as the server sends it (raw: ns and µs), for SHOW replies."""
    return {f.name: getattr(a, f.name) for f in fields(a)}


def attempt_from_dict(d: dict[str, Any]) -> Attempt:
    names = {f.name for f in fields(Attempt)}
    return Attempt(**{k: v for k, v in d.items() if k in names})
