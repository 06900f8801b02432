"""Job lifecycles (submit -> dispatch -> finish) per second through the pure kernel alone
(time inside Kernel.handle; building the messages, the codec's job in real life, is excluded).

Prints JSON. Target (issue 2): >= 100,000 lifecycles/s, so the kernel is never the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from goq_core.kernel import Kernel, KernelConfig
from goq_core.messages import Job, Kind, Message


def run(n_jobs: int, n_workers: int, batch: int, notify: bool) -> dict[str, float]:
    kernel = Kernel(KernelConfig(heartbeat_sec=5.0, max_hold_sec=5.0, notify=notify))
    env = [f"VAR{i}=value{i}" for i in range(40)]
    now = time.time()
    sendtime = int(now * 1e9)
    seq = iter(range(1, 10 * n_jobs + 10 * n_workers))

    def msg(kind: Kind, **kw) -> Message:
        return Message(kind, nonce=next(seq).to_bytes(16, "big"), sendtime_ns=sendtime, **kw)

    workers = [f"w{i}" for i in range(n_workers)]
    current: dict[str, tuple[int, int]] = {}
    for w in workers:  # every worker asks for work first
        kernel.handle(msg(Kind.REQUEST_WORK, workerid=w, wait_ms=5000), w, now)

    def collect(actions: list, w: str) -> None:
        for a in actions:
            m = getattr(a, "msg", None)
            if m is not None and m.kind == Kind.JOB:
                current[a.peer] = (m.jobid, m.attempt)

    started = time.perf_counter()
    in_kernel = 0.0  # time spent inside kernel.handle only
    clock = time.perf_counter
    submitted = finished = 0
    outcome = Job(exit_status=0, pid=1, start_ns=1, end_ns=2)
    while finished < n_jobs:
        if submitted < n_jobs:
            k = min(batch, n_jobs - submitted)
            jobs = [
                Job(cmd="/bin/true", args=["x"], dir="/tmp", env=env if i == 0 else [])
                for i in range(k)
            ]
            submit = msg(Kind.SUBMIT, jobs=jobs)
            t = clock()
            actions = kernel.handle(submit, "sub", now)
            in_kernel += clock() - t
            collect(actions, "sub")
            submitted += k
        for w in workers:
            run_ = current.pop(w, None)
            if run_ is None:
                continue
            jobid, attempt = run_
            result = msg(
                Kind.RESULT,
                workerid=w,
                jobid=jobid,
                attempt=attempt,
                jobs=[outcome],
                data=b"",
                wait_ms=5000,
            )
            t = clock()
            actions = kernel.handle(result, w, now)
            in_kernel += clock() - t
            collect(actions, w)
            finished += 1
    elapsed = time.perf_counter() - started
    return {
        "jobs": n_jobs,
        "workers": n_workers,
        "submit_batch": batch,
        "notify_events": notify,
        "seconds": round(elapsed, 4),
        "lifecycles_per_sec": round(n_jobs / in_kernel),
        "kernel_us_per_lifecycle": round(in_kernel / n_jobs * 1e6, 2),
        "with_message_building_per_sec": round(n_jobs / elapsed),
        "finished": kernel.stat_counters()["finishedJobsCount"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    results = [run(args.jobs, args.workers, b, n) for b in (1, 100) for n in (False, True)]
    target = 100_000
    print(
        json.dumps(
            {
                "bench": "kernel",
                "python": os.sys.version.split()[0],
                "target_lifecycles_per_sec": target,
                "runs": results,
                "meets_target": all(r["lifecycles_per_sec"] >= target for r in results),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
