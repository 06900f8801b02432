"""Everything the dashboard shows, asked of the goq server through one client connection and
shared by every HTTP client: each question is asked at most once per second, whoever asks.

Answers are the `--json` documents exactly as `goq stat/workers/jobs/show --json` print them
(goq_cli.jsonout), so /api/... and the pages show the same records as the CLI.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from goq_cli import jsonout
from goq_core.errors import GoqError
from goq_core.jobquery import JobQuery
from goq_core.roles.client import Client
from goq_web.throughput import Throughput

EVERY_S = 1.0  # a question is asked of the server at most this often
STAT_JOBS = 10  # jobs listed per state in the status document, as `goq stat --json`
MAX_CACHED = 128  # distinct questions remembered (filters, job pages)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server said (`doc`), or why it could not be asked (`error`), and when."""

    doc: Any
    error: str | None
    at: float  # time.time() of the question

    @property
    def ok(self) -> bool:
        return self.error is None


class Source:
    """The cached questions. `connect()` makes the goq client; it is remade after a failure."""

    def __init__(self, connect: Callable[[], Client], every_s: float = EVERY_S) -> None:
        self._connect = connect
        self._every = every_s
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[Hashable, tuple[float, Answer]] = OrderedDict()
        self._throughput = Throughput()
        self.asked = 0  # questions sent to the server so far

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _ask(self, key: Hashable, fetch: Callable[[Client], Any]) -> Answer:
        with self._lock:
            now = time.monotonic()
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._every:
                return hit[1]
            try:
                if self._client is None:
                    self._client = self._connect()
                self.asked += 1
                answer = Answer(fetch(self._client), None, time.time())
            except GoqError as exc:
                if self._client is not None:
                    self._client.close()
                    self._client = None
                answer = Answer(None, str(exc), time.time())
            self._cache[key] = (now, answer)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
            return answer

    def status(self) -> Answer:
        """`goq stat --json`: counters, and up to STAT_JOBS jobs of each live state."""
        return self._ask("status", lambda c: jsonout.status(c.stat(STAT_JOBS)))

    def workers(self) -> Answer:
        """`goq workers --json`."""
        return self._ask("workers", lambda c: jsonout.workers(c.workers_document()))

    def jobs(self, query: JobQuery) -> Answer:
        """`goq jobs --json` for this query."""
        return self._ask(("jobs", query), lambda c: jsonout.jobs(c.jobs(query)))

    def job(self, jobid: int) -> Answer:
        """`goq show --json ID`."""
        return self._ask(("job", jobid), lambda c: jsonout.job(*c.show(jobid)))

    def throughput(self) -> Answer:
        """Jobs (finished, failed) per minute over the last hour, oldest minute first."""

        def fetch(client: Client) -> list[tuple[int, int]]:
            now_ns = time.time_ns()
            self._throughput.add(client.jobs(self._throughput.query(now_ns)), now_ns)
            return self._throughput.per_minute(now_ns)

        return self._ask("throughput", fetch)
