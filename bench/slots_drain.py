"""Benchmark: one worker with N cpus against N workers of 1 cpu (issue 10: the N-cpu worker must
drain at >= 0.9x the rate of the N), on real processes, alternating trials in one run; and
what each costs the server and the workers in CPU per job (issue 15, results reported together).

Each trial (bench/_cluster.true_drain): a fresh server and the worker(s), all asking for work
before J `/bin/true` jobs arrive in one `goq sub --file`; jobs/s timed from the first job's
start to the last job's end (the store's start_ns/end_ns); the server's and the workers' own
CPU (/proc utime+stime, not the jobs') from the submit to the last job finished, per job; and
how many runs the slotted worker reported in a RESULT with others (`batchedResultRunCount`).
Every trial's files stay until the run ends (a removal slows the next trial's file creation on
a journal-less ext4: docs/performance.md, round three).
With --baseline-python the same trials run with a second install too (e.g. a regular install of
an older commit), alternating with this one. Prints one JSON document; progress on stderr.

    .venv/bin/python bench/slots_drain.py [--jobs 5000] [--trials 3] [--cpus 2] [--tmpfs]
    .venv/bin/python bench/slots_drain.py --cpus 4 --only-slotted --baseline-python OLD/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import GoqInstall, true_drain  # noqa: E402

SLOTTED = "one_worker_n_cpus"
SINGLES = "n_workers_1_cpu"


def trial(install: GoqInstall, jobs: int, cpus: int, slotted: bool, where: str) -> dict:
    """One drain by one worker of `cpus` cpus (slotted) or by `cpus` workers of 1 cpu, on a
    fresh cluster made in `where` (left there: a removal slows the next drain's creates)."""
    root = Path(tempfile.mkdtemp(dir=where))
    row = true_drain(install, root, [cpus] if slotted else [1] * cpus, jobs)
    del row["jobs"], row["jobs_per_s_submit_to_all_finished"]
    return row


def _medians(rows: list[dict]) -> dict:
    keys = ("jobs_per_s", "server_cpu_us_per_job", "workers_cpu_us_per_job", "batched_result_runs")
    return {k: round(statistics.median(r[k] for r in rows), 1) for k in keys} if rows else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2, help="the slotted worker's cpus (N)")
    ap.add_argument("--only-slotted", action="store_true", help="no N one-cpu workers")
    ap.add_argument("--tmpfs", action="store_true", help="cluster and output on /dev/shm")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--baseline-python", metavar="PY", help="a second install, alternating")
    args = ap.parse_args()
    installs = {"after": GoqInstall.for_python(args.python)}
    if args.baseline_python:
        installs["before"] = GoqInstall.for_python(args.baseline_python)
    kinds = [True] if args.only_slotted else [True, False]
    rows: dict[str, dict[str, list[dict]]] = {
        name: {SLOTTED if s else SINGLES: [] for s in kinds} for name in installs
    }
    t0 = time.monotonic()
    kept = tempfile.TemporaryDirectory(dir="/dev/shm" if args.tmpfs else None)
    for i in range(args.trials):
        order = [(name, s) for s in kinds for name in installs]
        if i % 2:
            order.reverse()  # alternate which goes first
        for name, slotted in order:
            key = SLOTTED if slotted else SINGLES
            row = trial(installs[name], args.jobs, args.cpus, slotted, kept.name)
            rows[name][key].append(row)
            print(f"trial {i + 1}: {name} {key} {row}", file=sys.stderr, flush=True)
    kept.cleanup()
    doc: dict = {
        "jobs": args.jobs,
        "trials": args.trials,
        "cpus": args.cpus,
        "output_fs": "tmpfs" if args.tmpfs else "same as /tmp",
        "seconds": round(time.monotonic() - t0, 1),
    }
    for name, inst in installs.items():
        part: dict = {"python": inst.python, "install": inst.install, "trials": rows[name]}
        part["median"] = {key: _medians(r) for key, r in rows[name].items()}
        if not args.only_slotted:
            med = part["median"]
            part["ratio"] = round(med[SLOTTED]["jobs_per_s"] / med[SINGLES]["jobs_per_s"], 3)
            part["target_ratio"] = 0.9
        doc[name] = part
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
