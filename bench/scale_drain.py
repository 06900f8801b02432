"""Benchmark for a many-core machine (issue 15's 16-core check), prepared to run in one call:
`/bin/true` jobs drained by worker layouts of W workers x C cpus each, one fresh cluster per
layout, against the rate at which this machine spawns `/bin/true` from as many Python loops as it
has cores, measured in the same run.

For each layout: a fresh `goq serve` (127.0.0.1, a free port), W `goq work --cpus C` processes,
every one asking for work before J jobs arrive in one `goq sub --file`; then jobs/s from the first
job's start to the last one's end (the store's start_ns/end_ns), the server's and the workers'
own CPU per job (/proc, not the jobs'), and the runs the workers reported in a RESULT with
others (`batchedResultRunCount`). Layouts run in the order given until --budget-s is spent (a
layout that would start past it is skipped and says so). JSON on stdout, progress on stderr.

    python bench/scale_drain.py                      # 1,2,4,8,15,30 one-cpu workers; 2x8; 4x4
    python bench/scale_drain.py --layouts 1x1,30x1,4x4 --jobs 8000 --tmpfs --budget-s 270

The issue's figures to compare with (16 cores, 1-cpu workers, before batching): 692, 1,318,
2,335, 2,867, 3,437 jobs/s for 1, 2, 4, 8, 15 workers; 4,348 for 30; spawn 20,600/s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import GoqInstall, machine, true_drain  # noqa: E402

DEFAULT_LAYOUTS = "1x1,2x1,4x1,8x1,15x1,30x1,2x8,4x4"


def log(text: str) -> None:
    print(f"[scale_drain {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_layouts(text: str) -> list[tuple[int, int]]:
    """ "WxC,..." -> [(workers, cpus each), ...]; ValueError for anything else."""
    layouts = []
    for part in text.split(","):
        workers, x, cpus = part.strip().partition("x")
        if not (x and workers.isdigit() and cpus.isdigit()) or int(workers) < 1 or int(cpus) < 1:
            raise ValueError(f"layout {part!r}: WORKERSxCPUS, e.g. 15x1 or 4x4")
        layouts.append((int(workers), int(cpus)))
    return layouts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", default=DEFAULT_LAYOUTS, help="WORKERSxCPUS,... in order")
    ap.add_argument("--jobs", type=int, default=4000, help="jobs per layout of < 30 cpus")
    ap.add_argument("--jobs-big", type=int, default=8000, help="jobs per layout of >= 30 cpus")
    ap.add_argument("--spawn-per-loop", type=int, default=1000, help="0: no spawn baseline")
    ap.add_argument("--budget-s", type=float, default=270.0, help="start no layout after this")
    ap.add_argument("--tmpfs", action="store_true", help="clusters and output on /dev/shm")
    ap.add_argument("--python", default=sys.executable, help="the goq install to run")
    args = ap.parse_args(argv)
    try:
        layouts = parse_layouts(args.layouts)
    except ValueError as exc:
        ap.error(str(exc))
    install = GoqInstall.for_python(args.python)
    began = time.monotonic()
    doc: dict = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "goq": {"python": install.python, "install": install.install},
            "output_fs": "tmpfs" if args.tmpfs else "same as /tmp",
        },
        "layouts": [],
        "skipped": [],
    }
    cores = os.cpu_count() or 1
    if args.spawn_per_loop:
        import suite

        rate = suite.spawn_rate("plain", cores, args.spawn_per_loop)
        doc["spawn_true_per_s"] = {"loops": cores, "rate": round(rate, 1)}
        log(f"spawn baseline: {rate:.0f} /bin/true per s from {cores} loops")
    # Every layout's files stay until the run ends: on a journal-less ext4, creating a file
    # skips each inode deleted in the last minutes, one by one, so a layout that followed the
    # deletion of the last one's files would pay for it (docs/performance.md, round three).
    kept = tempfile.TemporaryDirectory(prefix="goq-scale-", dir="/dev/shm" if args.tmpfs else None)
    for workers, cpus in layouts:
        if time.monotonic() - began > args.budget_s:
            doc["skipped"].append(f"{workers}x{cpus}")
            log(f"{workers}x{cpus}: skipped, past the budget of {args.budget_s:g} s")
            continue
        jobs = args.jobs_big if workers * cpus >= 30 else args.jobs
        root = Path(tempfile.mkdtemp(dir=kept.name))
        row = {"workers": workers, "cpus_each": cpus}
        row.update(true_drain(install, root, [cpus] * workers, jobs))
        doc["layouts"].append(row)
        log(
            f"{workers}x{cpus}: {row['jobs_per_s']} jobs/s; server "
            f"{row['server_cpu_us_per_job']} µs/job, workers {row['workers_cpu_us_per_job']}; "
            f"{row['batched_result_runs']} runs batched"
        )
    kept.cleanup()
    doc["meta"]["elapsed_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
