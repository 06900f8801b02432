"""The job lifecycle as a table: which event moves a job from which state to which.

Every state change in the kernel goes through `advance`; anything not in the table is a bug and
raises IllegalTransition. Check it against design.md §3 and §7 (Job states) in a minute.
"""

from __future__ import annotations

from goq_core.messages import Job, JobState

NEW, WAITING, RUNNING, FINISHED, CANCELLED = (
    JobState.NEW,
    JobState.WAITING,
    JobState.RUNNING,
    JobState.FINISHED,
    JobState.CANCELLED,
)
TIMEOUT, BLOCKED, HELD = JobState.TIMEOUT, JobState.BLOCKED, JobState.HELD

# {state: {event: next state}}
TRANSITIONS: dict[JobState, dict[str, JobState]] = {
    # a new job waits, or is blocked on its dependencies, or held; or is cancelled at once
    # when a dependency it needs has already failed
    NEW: {"submit": WAITING, "block": BLOCKED, "hold": HELD, "cancel": CANCELLED},
    WAITING: {"dispatch": RUNNING, "cancel": CANCELLED, "hold": HELD},
    BLOCKED: {"unblock": WAITING, "cancel": CANCELLED, "hold": HELD},
    HELD: {"release": WAITING, "block": BLOCKED, "cancel": CANCELLED},
    RUNNING: {
        "finish": FINISHED,
        "timeout": TIMEOUT,
        "cancel": CANCELLED,
        "requeue": WAITING,  # its worker died or vanished: not the job's fault
        "retry": WAITING,  # it failed and has retries left
    },
    FINISHED: {},
    CANCELLED: {},
    TIMEOUT: {},
}

ENDED = frozenset({FINISHED, CANCELLED, TIMEOUT})


class IllegalTransition(RuntimeError):
    """An event arrived for a job in a state that does not allow it (a kernel bug)."""


def advance(job: Job, event: str) -> None:
    """Move `job` along the table by `event`, or raise IllegalTransition."""
    try:
        job.state = TRANSITIONS[job.state][event]
    except KeyError:
        raise IllegalTransition(
            f"job {job.jobid}: {event!r} not allowed in state {job.state.name}"
        ) from None
