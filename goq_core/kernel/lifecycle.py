"""The job lifecycle as a table: which event moves a job from which state to which.

Every state change in the kernel goes through `advance`; anything not in the table is a bug and
raises IllegalTransition. Check it against design.md §3 in a minute.
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

# {state: {event: next state}}
TRANSITIONS: dict[JobState, dict[str, JobState]] = {
    NEW: {"submit": WAITING},
    WAITING: {"dispatch": RUNNING, "cancel": CANCELLED},
    RUNNING: {"finish": FINISHED, "cancel": CANCELLED, "requeue": WAITING},
    FINISHED: {},
    CANCELLED: {},
}

ENDED = frozenset({FINISHED, CANCELLED})


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
