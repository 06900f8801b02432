"""The order of waiting jobs: highest priority first, then oldest; a requeued job goes to the
head of its priority. Jobs are grouped by (priority, shape, array) so that matching looks at one
head per group, not at every waiting job, and can skip an array at its cap as a whole.

Rules:
- Within a group, jobs keep their order (FIFO); a requeued job is put first in its group and
  ranks before every job of its priority that was not requeued.
- The rank of a group is the rank of its head: (-priority, order key of the head), where the
  order key is the job id, or a negative number for requeued jobs (later requeues first).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator

from goq_core.kernel.matching import Shape, shape
from goq_core.messages import Job

GroupKey = tuple[int, Shape, int]  # priority, shape, array id (0: not in a capped array)


class WaitQueue:
    """Waiting jobs by priority and shape. Behaves like a read-only mapping jobid -> Job in
    queue order, plus the moves the kernel needs."""

    __slots__ = ("_groups", "_where", "_front", "_next_front")

    def __init__(self) -> None:
        self._groups: dict[GroupKey, OrderedDict[int, Job]] = {}
        self._where: dict[int, GroupKey] = {}
        self._front: dict[int, int] = {}  # requeued jobs: jobid -> negative order key
        self._next_front = -1

    # ------------------------------------------------------------------ mapping-like reads

    def __len__(self) -> int:
        return len(self._where)

    def __bool__(self) -> bool:
        return bool(self._where)

    def __contains__(self, jobid: object) -> bool:
        return jobid in self._where

    def __getitem__(self, jobid: int) -> Job:
        return self._groups[self._where[jobid]][jobid]

    def get(self, jobid: int, default: Job | None = None) -> Job | None:
        key = self._where.get(jobid)
        return default if key is None else self._groups[key][jobid]

    def __iter__(self) -> Iterator[int]:
        return (job.jobid for job in self.values())

    def keys(self) -> Iterator[int]:
        return iter(self)

    def values(self) -> Iterator[Job]:
        """Every waiting job, in the order they would run."""
        order = self._order
        streams = [
            ((-key[0], order(job.jobid), job) for job in group.values())
            for key, group in self._groups.items()
        ]
        return (job for _, _, job in heapq.merge(*streams, key=lambda t: (t[0], t[1])))

    # ------------------------------------------------------------------ moves

    def push(self, job: Job) -> None:
        """Add a job at the tail of its priority."""
        key = (job.priority, shape(job), job.array_id if job.array_max else 0)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = group = OrderedDict()
        group[job.jobid] = job
        self._where[job.jobid] = key

    def extend(self, jobs: list[Job]) -> None:
        """Add jobs that share one priority, shape and array (an array's jobs) at the tail."""
        if not jobs:
            return
        self.push(jobs[0])
        key = self._where[jobs[0].jobid]
        group = self._groups[key]
        where = self._where
        for job in jobs[1:]:
            group[job.jobid] = job
            where[job.jobid] = key

    def push_front(self, job: Job) -> None:
        """Put a job back at the head of its priority (a requeue)."""
        self.push(job)
        self._groups[self._where[job.jobid]].move_to_end(job.jobid, last=False)
        self._front[job.jobid] = self._next_front
        self._next_front -= 1

    def pop(self, jobid: int, default: Job | None = None) -> Job | None:
        """Remove a job wherever it is; `default` if it is not waiting."""
        key = self._where.pop(jobid, None)
        if key is None:
            return default
        group = self._groups[key]
        job = group.pop(jobid)
        if not group:
            del self._groups[key]
        self._front.pop(jobid, None)
        return job

    # ------------------------------------------------------------------ for matching

    def heads(self) -> list[tuple[tuple[int, int], Shape, Job]]:
        """The head of each group with its rank and shape, best rank first."""
        order = self._order
        found = []
        for (priority, need, _), group in self._groups.items():
            head = next(iter(group.values()))
            found.append(((-priority, order(head.jobid)), need, head))
        found.sort(key=lambda t: t[0])
        return found

    def _order(self, jobid: int) -> int:
        return self._front.get(jobid, jobid)
