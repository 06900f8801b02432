"""Benchmark: one worker with 2 cpus against two workers of 1 cpu (issue 10: the 2-cpu worker
must drain at >= 0.9x the rate of the two), on real processes, alternating trials in one run.

Each trial: a fresh server, N `/bin/true` jobs submitted in one `goq sub --file`, then the
worker(s) started; timed from the first job's start to the last job's end (the store's
start_ns/end_ns), so worker start-up is not counted. Prints one JSON document.

    .venv/bin/python bench/slots_drain.py [--jobs 5000] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import BenchCluster, GoqInstall, wait_for  # noqa: E402


def trial(install: GoqInstall, jobs: int, two_slots: bool) -> float:
    """Jobs per second drained by one 2-cpu worker (two_slots) or by two 1-cpu workers."""
    with tempfile.TemporaryDirectory() as tmp:
        c = BenchCluster(Path(tmp), install)
        try:
            c.init()
            c.start_server()
            (c.workdir / "jobs.txt").write_text("/bin/true\n" * jobs)
            c.ok("sub", "--file", "jobs.txt", timeout=300)
            if two_slots:
                c.spawn("work", "--cpus", "2", log="worker0.log")
            else:
                c.spawn("work", log="worker0.log")
                c.spawn("work", log="worker1.log")
            client = c.client()
            wait_for(
                lambda: client.stat(0).counters.get("finishedJobsCount", 0) >= jobs,
                600,
                "the drain to finish",
                every=0.05,
            )
            with sqlite3.connect(c.db_path()) as db:
                first, last = db.execute("SELECT min(start_ns), max(end_ns) FROM jobs").fetchone()
            db.close()
            return jobs / ((last - first) / 1e9)
        finally:
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    install = GoqInstall.for_python(args.python)
    rates: dict[str, list[float]] = {"one_worker_2_cpus": [], "two_workers_1_cpu": []}
    t0 = time.monotonic()
    for i in range(args.trials):
        for two_slots in (i % 2 == 0, i % 2 != 0):  # alternate which goes first
            key = "one_worker_2_cpus" if two_slots else "two_workers_1_cpu"
            rate = trial(install, args.jobs, two_slots)
            rates[key].append(round(rate, 1))
            print(f"trial {i + 1}: {key} {rate:.0f} jobs/s", file=sys.stderr)
    two = statistics.median(rates["one_worker_2_cpus"])
    ones = statistics.median(rates["two_workers_1_cpu"])
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "trials": args.trials,
                "install": install.install,
                "jobs_per_s": rates,
                "median_jobs_per_s": {"one_worker_2_cpus": two, "two_workers_1_cpu": ones},
                "ratio": round(two / ones, 3),
                "target_ratio": 0.9,
                "seconds": round(time.monotonic() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
