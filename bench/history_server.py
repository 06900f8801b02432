"""Benchmark of history through a real server (issue 12, item 9): the server's RSS and its answer
times with 1,000,000 ended jobs in history, against an empty server in the same run. Prints JSON.

Two servers, one after the other, each in a fresh GOQ_HOME on 127.0.0.1: one whose store
holds N ended jobs and 2,000 live ones (built by bench/history.py's `build`, written straight into
the store), and one with an empty store. Each answers the same requests from an in-process client
(the real transport, codec and cipher): `goq jobs` (default query: live jobs and the last 24 h,
50 rows), `goq jobs --state failed`, `goq show ID` of an old ended job, and `goq stat 0` as the
baseline round trip; medians of 30 runs, in ms of round trip (an upper bound of the server's
time). Then the servers' RSS. Targets: RSS within 100 MB of the empty server's; `jobs --limit
50` and `show` answered in <= 20 ms.

    .venv/bin/python bench/history_server.py [--ended 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import BenchCluster, GoqInstall, rss_kib  # noqa: E402
from history import build  # noqa: E402

from goq_core.jobquery import JobQuery  # noqa: E402
from goq_core.stores.sqlite import FILENAME  # noqa: E402

RUNS = 30


def median_ms(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def serve(install: GoqInstall, ended: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        c = BenchCluster(Path(tmp), install)
        try:
            c.init()
            now_ns = time.time_ns()
            figures: dict[str, float] = {}
            if ended:
                db = c.home / ".goq" / FILENAME
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                t0 = time.perf_counter()
                build(str(c.home / ".goq"), ended, 2000, now_ns)
                figures["build_s"] = round(time.perf_counter() - t0, 1)
            figures["start_s"] = round(c.start_server(timeout=600), 2)
            client = c.client()
            day = JobQuery(since_ns=now_ns - 86_400 * 10**9)
            failed = JobQuery(states=frozenset({"failed"}))
            old = max(1, ended // 3)
            figures["stat_ms"] = median_ms(lambda: client.stat(0))
            if ended:
                assert len(client.jobs(day)) == 50
                figures["jobs_default_ms"] = median_ms(lambda: client.jobs(day))
                figures["jobs_failed_ms"] = median_ms(lambda: client.jobs(failed))
                figures["show_ms"] = median_ms(lambda: client.show(old))
            assert c.server is not None
            figures["rss_mib"] = round(rss_kib(c.server.pid) / 1024, 1)
            return figures
        finally:
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ended", type=int, default=1_000_000)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    install = GoqInstall.for_python(args.python)
    t0 = time.monotonic()
    full = serve(install, args.ended)
    empty = serve(install, 0)
    print(
        json.dumps(
            {
                "ended_jobs": args.ended,
                "install": install.install,
                "with_history": full,
                "empty": empty,
                "rss_over_empty_mib": round(full["rss_mib"] - empty["rss_mib"], 1),
                "target_rss_over_empty_mib": 100,
                "target_answer_ms": 20,
                "cpus": os.cpu_count(),
                "seconds": round(time.monotonic() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
