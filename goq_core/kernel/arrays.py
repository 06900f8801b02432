"""Job arrays (design.md §7): one submission makes one job per index, with consecutive ids, and
at most `array_max` jobs of one array run at once.

Rules:
- An array's id is the id of its first job. Its jobs share the submitted job's command, request,
  dependencies and options, and differ only in id and index (the worker sets GOQ_ARRAY_INDEX).
- While an array has `array_max` jobs running, matching skips its waiting jobs (they form their
  own group in the wait queue, so nothing else waits behind them); when one of its runs stops,
  the array may run another.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from goq_core.arrayspec import ArraySpec
from goq_core.messages import Job

_NAMES = tuple(f.name for f in fields(Job))
_JOBID = _NAMES.index("jobid")
_ARRAY_ID = _NAMES.index("array_id")
_ARRAY_INDEX = _NAMES.index("array_index")


def expand(template: Job, spec: ArraySpec, first_id: int) -> list[Job]:
    """The jobs of the array: ids first_id, first_id+1, ...; the template's lists are shared
    (nothing changes them in place). Positional construction: 5x faster than replace()."""
    values = [getattr(template, name) for name in _NAMES]
    values[_ARRAY_ID] = first_id
    jobs = []
    append = jobs.append
    for jobid, index in enumerate(spec.indexes(), first_id):
        values[_JOBID] = jobid
        values[_ARRAY_INDEX] = index
        append(Job(*values))
    return jobs


@dataclass(slots=True)
class ArrayCaps:
    """How many jobs of each capped array run now."""

    running: dict[int, int] = field(default_factory=dict)  # array id -> jobs running

    def full(self, job: Job) -> bool:
        """Whether `job` may not start now: its array runs as many as it may."""
        return bool(job.array_max) and self.running.get(job.array_id, 0) >= job.array_max

    def started(self, job: Job) -> None:
        if job.array_max:
            self.running[job.array_id] = self.running.get(job.array_id, 0) + 1

    def stopped(self, job: Job) -> bool:
        """A run of `job` stopped; True if that makes room in an array that was full."""
        if not job.array_max:
            return False
        n = self.running.get(job.array_id, 0) - 1
        if n > 0:
            self.running[job.array_id] = n
        else:
            self.running.pop(job.array_id, None)
        return n + 1 >= job.array_max

    def describe(self, job: Job) -> str:
        n = self.running.get(job.array_id, 0)
        return f"array {job.array_id} runs {n} of at most {job.array_max} at once"
