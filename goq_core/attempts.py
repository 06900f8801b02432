"""The record of one attempt of a job, as the store's history keeps it, and the names of job
states as users see them. Pure (the kernel makes these records): no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from goq_core.messages import Job, JobState

# how an attempt ended
ATTEMPT_FINISHED = "finished"  # the job's process ended (exit_status says how)
ATTEMPT_TIMEOUT = "timeout"  # killed at its time limit
ATTEMPT_REQUEUED = "requeued"  # its worker died or vanished: the job ran again
ATTEMPT_CANCELLED = "cancelled"  # the job was cancelled while this attempt ran
ATTEMPT_UNDELIVERED = "undelivered"  # handed to a worker that was gone: never started
ATTEMPT_OUTCOMES = (
    ATTEMPT_FINISHED,
    ATTEMPT_TIMEOUT,
    ATTEMPT_REQUEUED,
    ATTEMPT_CANCELLED,
    ATTEMPT_UNDELIVERED,
)


@dataclass(slots=True)
class Attempt:
    """One run of a job, as the history keeps it once the run is over."""

    jobid: int
    attempt: int  # 1, 2, ... (the job's attempt counter; a requeue or a retry adds one)
    outcome: str  # one of ATTEMPT_OUTCOMES
    workerid: str = ""
    workerhost: str = ""
    pid: int = 0  # 0: not known (the worker had not reported it)
    start_ns: int = 0
    end_ns: int = 0
    exit_status: int = 0  # exit code, or -N for a signal N (outcome finished or timeout)
    max_rss_kib: int = 0  # peak resident memory of the job's processes (0: not measured)
    utime_us: int = 0  # user CPU time of the job's processes
    stime_us: int = 0  # system CPU time


STATES = ("waiting", "blocked", "held", "running", "finished", "failed", "cancelled", "timeout")
ENDED_STATES = frozenset({"finished", "failed", "cancelled", "timeout"})


def state_name(job: Job) -> str:
    """The job's state as users see it: a FINISHED job that did not exit 0 "failed"."""
    if job.state == JobState.FINISHED:
        return "finished" if job.exit_status == 0 else "failed"
    if job.state == JobState.NEW:
        return "waiting"
    return job.state.name.lower()
