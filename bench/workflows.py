"""Benchmark of the workflow hot spots (issue 11): submitting a 100,000-job array, and the
server time spent releasing a 10,000-job fan-out when its dependency succeeds. Prints JSON.

1. Array submission, on real processes: a server (sqlite store, default transport, codec and
   cipher), then `goq sub --array 1-N /bin/true` timed from the command's start to its exit;
   alternating with the same N jobs as `goq sub --file` (one job per line, the batch path) as
   the baseline of the same run. Target: >= 20,000 jobs/s for the array.
2. Fan-out release, in process, as the server's loop does it: a kernel and a sqlite store in a
   temporary directory; job A and an array of N jobs `--after A` submitted and committed; then
   A's RESULT handed to the kernel and the actions' records committed, timed (kernel and
   commit apart). The baseline: committing N plain records of the same size. Target: <= 100 ms.

    .venv/bin/python bench/workflows.py [--array 100000] [--fanout 10000] [--trials 3]
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

from _cluster import BenchCluster, GoqInstall  # noqa: E402

from goq_core.kernel import Kernel, KernelConfig, Save  # noqa: E402
from goq_core.messages import Job, Kind, Message  # noqa: E402
from goq_core.stores.sqlite import SqliteStore  # noqa: E402


def submit_trial(install: GoqInstall, n: int, as_array: bool) -> float:
    """Jobs per second of one `goq sub` of n jobs, as an array or as a --file batch."""
    with tempfile.TemporaryDirectory() as tmp:
        c = BenchCluster(Path(tmp), install)
        try:
            c.init()
            c.start_server()
            if as_array:
                args = ["sub", "--array", f"1-{n}", "/bin/true"]
            else:
                (c.workdir / "jobs.txt").write_text("/bin/true\n" * n)
                args = ["sub", "--file", "jobs.txt"]
            t0 = time.perf_counter()
            c.ok(*args, timeout=600)
            seconds = time.perf_counter() - t0
            counters = c.client().stat(0).counters
            assert counters["waitingJobs"] == n, counters
            return n / seconds
        finally:
            c.close()


def fanout_trial(n: int) -> dict[str, float]:
    """Milliseconds to release n blocked jobs (kernel, commit) and to commit n plain records."""
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(tmp, create=True)
        try:
            kernel = Kernel(KernelConfig(notify=False))
            nonce = iter(range(1, 1 << 30))

            def handle(msg: Message) -> list:
                msg.nonce = next(nonce).to_bytes(16, "big")
                msg.sendtime_ns = int(now * 1e9)
                out = kernel.handle(msg, "peer", now)
                return out

            def commit(out: list) -> None:
                saves = {a.job.jobid: a.job for a in out if isinstance(a, Save)}
                store.save(list(saves.values()), kernel.durable_counters())

            template = Job(cmd="/bin/true", dir=tmp, env=["PATH=/usr/bin:/bin"])
            commit(handle(Message(Kind.SUBMIT, jobs=[template])))
            fan = Job(cmd="/bin/true", dir=tmp, env=["PATH=/usr/bin:/bin"], after=[1])
            commit(handle(Message(Kind.SUBMIT, jobs=[fan], text=f"1-{n}:1")))
            out = handle(Message(Kind.REQUEST_WORK, workerid="w", host="h", wait_ms=1000))
            commit(out)
            (job,) = [a.msg for a in out if getattr(a, "msg", None) and a.msg.kind == Kind.JOB]
            run = job.jobs[0]
            result = Message(
                Kind.RESULT,
                workerid="w",
                jobid=run.jobid,
                attempt=run.attempt,
                jobs=[Job(jobid=run.jobid, exit_status=0)],
            )
            t0 = time.perf_counter()
            out = handle(result)
            t1 = time.perf_counter()
            commit(out)
            t2 = time.perf_counter()
            assert len(kernel.waiting) == n, len(kernel.waiting)
            plain = [
                Job(jobid=10 * n + i, cmd="/bin/true", dir=tmp, env=template.env) for i in range(n)
            ]
            t3 = time.perf_counter()
            store.save(plain, kernel.durable_counters())
            t4 = time.perf_counter()
        finally:
            store.close()
    return {
        "kernel_ms": (t1 - t0) * 1000,
        "commit_ms": (t2 - t1) * 1000,
        "total_ms": (t2 - t0) * 1000,
        "baseline_commit_plain_ms": (t4 - t3) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", type=int, default=100_000)
    ap.add_argument("--fanout", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    install = GoqInstall.for_python(args.python)
    t0 = time.monotonic()
    rates: dict[str, list[float]] = {"array": [], "file_batch": []}
    for i in range(args.trials):
        for as_array in (i % 2 == 0, i % 2 != 0):
            key = "array" if as_array else "file_batch"
            rate = submit_trial(install, args.array, as_array)
            rates[key].append(round(rate))
            print(f"trial {i + 1}: {key} {rate:.0f} jobs/s", file=sys.stderr)
    fan = [fanout_trial(args.fanout) for _ in range(args.trials)]
    median = {k: round(statistics.median(t[k] for t in fan), 1) for k in fan[0]}
    array = statistics.median(rates["array"])
    batch = statistics.median(rates["file_batch"])
    print(
        json.dumps(
            {
                "install": install.install,
                "array_jobs": args.array,
                "submit_jobs_per_s": rates,
                "median_submit_jobs_per_s": {"array": array, "file_batch": batch},
                "array_vs_file_batch": round(array / batch, 2),
                "target_array_jobs_per_s": 20_000,
                "fanout_jobs": args.fanout,
                "fanout_release_ms": [{k: round(v, 1) for k, v in t.items()} for t in fan],
                "median_fanout_release_ms": median,
                "target_fanout_release_ms": 100,
                "seconds": round(time.monotonic() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
