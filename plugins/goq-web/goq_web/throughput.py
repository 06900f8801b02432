"""Jobs finished and failed per minute over the last hour, for the dashboard's plot.

Kept from small JOBS queries: the first asks for the last hour, each later one only for what
ended since the one before (with an overlap; jobs are counted once, by id).
"""

from __future__ import annotations

from collections.abc import Iterable

from goq_core.jobquery import MAX_LIST, JobQuery
from goq_core.messages import Job
from goq_core.records import state_name

MINUTES = 60
_MINUTE_NS = 60 * 1_000_000_000
WINDOW_NS = MINUTES * _MINUTE_NS
OVERLAP_NS = 30 * 1_000_000_000  # a job's record may be committed a little after it ended
ENDED = frozenset({"finished", "failed", "timeout"})  # cancelled jobs are not plotted


class Throughput:
    """The ended jobs of the last hour (id -> end time, failed?) and their counts per minute."""

    def __init__(self) -> None:
        self._ended: dict[int, tuple[int, bool]] = {}
        self._asked_ns = 0  # when the last query was made (0: never)

    def query(self, now_ns: int) -> JobQuery:
        """The JOBS query to send now: jobs that ended since the last one (minus the overlap)."""
        since = now_ns - WINDOW_NS
        if self._asked_ns:
            since = max(since, self._asked_ns - OVERLAP_NS)
        return JobQuery(ENDED, None, max(0, since), None, MAX_LIST)

    def add(self, jobs: Iterable[Job], now_ns: int) -> None:
        """Take the answer to query(now_ns)."""
        for job in jobs:
            self._ended[job.jobid] = (job.end_ns, state_name(job) != "finished")
        self._asked_ns = now_ns
        cutoff = now_ns - WINDOW_NS
        for jobid in [i for i, (end, _) in self._ended.items() if end < cutoff]:
            del self._ended[jobid]

    def per_minute(self, now_ns: int) -> list[tuple[int, int]]:
        """(finished, failed) in each of the last MINUTES minutes, oldest first; "failed"
        counts jobs that failed or timed out."""
        counts = [[0, 0] for _ in range(MINUTES)]
        for end, failed in self._ended.values():
            ago = (now_ns - end) // _MINUTE_NS
            if 0 <= ago < MINUTES:
                counts[MINUTES - 1 - ago][1 if failed else 0] += 1
        return [(a, b) for a, b in counts]
