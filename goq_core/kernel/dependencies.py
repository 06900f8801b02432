"""Dependencies between jobs (design.md §7): which jobs wait for which, and what the end of a
job means for the jobs that wait for it.

Rules:
- `after` names jobs that must all succeed (FINISHED with exit status 0); `after_any` jobs that
  must all have ended, however they ended. A job named in both must succeed. Dependencies
  always have older ids than the job (ids point backwards), so there are no cycles.
- A job is blocked while any of its dependencies has not ended. When one ends, an `after`
  dependency that did not succeed dooms the job: it is cancelled with the reason ("dependency
  12 failed", "... was cancelled", "... timed out"), and so on down the chain; any other end
  leaves one dependency fewer to wait for, and a job with none left is ready.
- A dependency that had already ended when the job came counts at once, by the same rule; one
  that was never a job is refused at submission (validation happens in the kernel's submit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from goq_core.messages import Job, JobState

SUCCEEDED, FAILED, WAS_CANCELLED, TIMED_OUT, GONE = 1, 2, 3, 4, 5  # how a job ended
_WHY = {
    FAILED: "failed",
    WAS_CANCELLED: "was cancelled",
    TIMED_OUT: "timed out",
    GONE: "is no longer in the store",
}


def outcome_of(state: JobState, exit_status: int) -> int:
    """How an ended job ended (SUCCEEDED, FAILED, WAS_CANCELLED or TIMED_OUT)."""
    if state == JobState.FINISHED:
        return SUCCEEDED if exit_status == 0 else FAILED
    if state == JobState.TIMEOUT:
        return TIMED_OUT
    return WAS_CANCELLED


def doom(dep: int, outcome: int) -> str:
    """The reason given to a job cancelled because its dependency `dep` ended so."""
    return f"dependency {dep} {_WHY[outcome]}"


def needs(job: Job) -> dict[int, bool]:
    """The job's dependencies: id -> must it succeed (after) or only end (after_any)."""
    deps = dict.fromkeys(job.after_any, False)
    deps.update(dict.fromkeys(job.after, True))
    return deps


@dataclass(slots=True)
class Dependencies:
    """Who waits for whom. Jobs enter with `register` and leave when they are ready or doomed
    (`ended` says which) or cancelled (`forget`)."""

    pending: dict[int, int] = field(default_factory=dict)  # jobid -> dependencies not ended
    dependents: dict[int, list[tuple[int, bool]]] = field(default_factory=dict)
    # dependency -> [(jobid, must succeed)] of the jobs waiting for it

    def register(self, job: Job, ended: Callable[[int], int | None]) -> str | None:
        """Count what `job` waits for; `ended(dep)` is how dep ended, or None while it has not.
        Returns the reason it is doomed already (an `after` dependency that did not succeed),
        else None; a job with nothing left to wait for is not kept."""
        left = 0
        waiting_on: list[tuple[int, bool]] = []
        for dep, strict in needs(job).items():
            how = ended(dep)
            if how is None:
                waiting_on.append((dep, strict))
                left += 1
            elif strict and how != SUCCEEDED:
                return doom(dep, how)
        if left:
            jobid = job.jobid
            self.pending[jobid] = left
            dependents = self.dependents
            for dep, strict in waiting_on:
                waiters = dependents.get(dep)
                if waiters is None:
                    dependents[dep] = [(jobid, strict)]
                else:
                    waiters.append((jobid, strict))
        return None

    def blocked(self, jobid: int) -> bool:
        return jobid in self.pending

    def ended(self, jobid: int, how: int) -> tuple[list[int], list[tuple[int, str]]]:
        """Job `jobid` ended so: the jobs it made ready, and the jobs it doomed with why."""
        ready: list[int] = []
        doomed: list[tuple[int, str]] = []
        waiters = self.dependents.pop(jobid, None)
        if not waiters:
            return ready, doomed
        pending = self.pending
        why = doom(jobid, how) if how != SUCCEEDED else ""
        for waiter, strict in waiters:
            left = pending.get(waiter)
            if left is None:  # doomed or cancelled meanwhile
                continue
            if strict and why:
                del pending[waiter]
                doomed.append((waiter, why))
            elif left == 1:
                del pending[waiter]
                ready.append(waiter)
            else:
                pending[waiter] = left - 1
        return ready, doomed

    def forget(self, jobid: int) -> None:
        """The job ended without its dependencies (cancelled): stop counting for it. Its
        entries in `dependents` go when those dependencies end (they are skipped then)."""
        self.pending.pop(jobid, None)

    def waits_for(self, job: Job, live: Callable[[int], bool]) -> list[int]:
        """The dependencies of `job` that have not ended yet, in id order."""
        if job.jobid not in self.pending:
            return []
        return sorted(dep for dep in needs(job) if live(dep))


def outside(jobs: Iterable[Job]) -> set[int]:
    """The dependencies of these jobs that are not among them (the store must say how those
    ended when the server restarts)."""
    have: set[int] = set()
    wanted: set[int] = set()
    for job in jobs:
        have.add(job.jobid)
        if job.after or job.after_any:
            wanted.update(job.after)
            wanted.update(job.after_any)
    return wanted - have
