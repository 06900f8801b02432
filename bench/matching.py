"""Benchmark: the kernel's dispatch decision with many waiting jobs of mixed shapes and many
workers of mixed offers (issue 10: median <= 50 µs, p99 <= 500 µs per dispatch).

Steady state: 1,000 workers (most with 4-32 cpus, some with 2-8 GPUs, some with memory and a
licence counter) are kept full; 10,000 jobs of a dozen shapes and two priorities wait. Each step
one run ends (RESULT), which frees capacity and makes the kernel pick what fits that worker
from the queue; a new job is submitted to keep the queue at its size. Timed: kernel.handle of
the RESULT (the end of the run plus the dispatch decision it triggers), per dispatched job.
Prints one JSON document.

    .venv/bin/python bench/matching.py [--workers 1000] [--waiting 10000] [--steps 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from goq_core.kernel import Kernel, KernelConfig, Reply
from goq_core.messages import Job, Kind, Message

SHAPES = [  # (cpus, gpus, mem GiB, licence, priority), mixed as a lab's queue might be
    (1, 0, 0, 0, 0),
    (1, 0, 0, 0, 0),
    (2, 0, 0, 0, 0),
    (4, 0, 0, 0, 0),
    (8, 0, 16, 0, 0),
    (1, 0, 2, 0, 1),
    (2, 1, 8, 0, 0),
    (4, 1, 16, 0, 0),
    (8, 2, 32, 0, 1),
    (16, 4, 64, 0, 0),
    (1, 0, 0, 1, 0),
    (32, 8, 0, 0, 0),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--waiting", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    k = Kernel(KernelConfig(heartbeat_sec=3600, max_hold_sec=3600, notify=False))
    now = [1_700_000_000.0]
    nonce = [0]

    def send(msg: Message, peer: str) -> list:
        nonce[0] += 1
        msg.nonce = nonce[0].to_bytes(16, "big")
        now[0] += 1e-6
        msg.sendtime_ns = int(now[0] * 1e9)
        return k.handle(msg, peer, now[0])

    def new_job() -> Job:
        cpus, gpus, mem, lic, prio = rng.choice(SHAPES)
        res = {"license": lic} if lic else {}
        return Job(cmd="x", dir="/w", cpus=cpus, gpus=gpus, mem=mem << 30, resources=res,
                   priority=prio)  # fmt: skip

    send(Message(Kind.SUBMIT, jobs=[new_job() for _ in range(args.waiting)]), "sub")
    runs: dict[str, dict[int, int]] = {}
    offers: dict[str, Job] = {}
    for i in range(args.workers):
        name = f"w{i}"
        if i % 5 == 0:  # a GPU node
            n = rng.choice((2, 4, 8))
            offer = Job(jobid=0, cpus=32, gpus=n, gpu_ids=",".join(map(str, range(n))),
                        mem=256 << 30, workerid=name)  # fmt: skip
        else:
            offer = Job(jobid=0, cpus=rng.choice((4, 8, 16, 32)), mem=64 << 30, workerid=name,
                        resources={"license": 2} if i % 7 == 0 else {})  # fmt: skip
        offers[name] = offer
        runs[name] = {}
        out = send(Message(Kind.REQUEST_WORK, workerid=name, host="h", wait_ms=3_600_000,
                           jobs=[offer]), name)  # fmt: skip
        _note_jobs(out, runs)
    send(Message(Kind.SUBMIT, jobs=[new_job() for _ in range(args.waiting - len(k.waiting))]), "s")

    per_dispatch: list[float] = []
    idle_decisions: list[float] = []
    dispatched = 0
    busy = [n for n in runs if runs[n]]
    for step in range(args.steps):
        name = rng.choice(busy)
        held = runs[name]
        if not held:
            continue
        # the worker holds a request for more work while it runs (as real workers do)
        ask = Message(Kind.REQUEST_WORK, workerid=name, host="h", wait_ms=3_600_000,
                      jobs=[offers[name], *[Job(jobid=j, attempt=a) for j, a in held.items()]])  # fmt: skip
        _note_jobs(send(ask, f"{name}-ask{step}"), runs)
        jobid, attempt = next(iter(held.items()))
        result = Message(Kind.RESULT, workerid=name, jobid=jobid, attempt=attempt,
                         jobs=[Job(jobid=jobid)])  # fmt: skip
        nonce[0] += 1
        result.nonce = nonce[0].to_bytes(16, "big")
        now[0] += 1e-6
        result.sendtime_ns = int(now[0] * 1e9)
        t0 = time.perf_counter()
        out = k.handle(result, f"{name}-res{step}", now[0])
        took = time.perf_counter() - t0
        del held[jobid]
        n = _note_jobs(out, runs)
        if n:
            per_dispatch.append(took / n)
            dispatched += n
        else:
            idle_decisions.append(took)
        missing = args.waiting - len(k.waiting)
        if missing > 0:
            send(Message(Kind.SUBMIT, jobs=[new_job() for _ in range(missing)]), "s")
    per_dispatch.sort()
    print(
        json.dumps(
            {
                "workers": args.workers,
                "waiting": len(k.waiting),
                "running": len(k.running),
                "shapes": len(SHAPES),
                "steps": args.steps,
                "dispatched": dispatched,
                "per_dispatch_us": {
                    "median": round(statistics.median(per_dispatch) * 1e6, 1),
                    "p99": round(per_dispatch[int(len(per_dispatch) * 0.99)] * 1e6, 1),
                    "max": round(per_dispatch[-1] * 1e6, 1),
                },
                "no_fit_decision_us_median": round(statistics.median(idle_decisions) * 1e6, 1)
                if idle_decisions
                else None,
                "targets_us": {"median": 50, "p99": 500},
            },
            indent=1,
        )
    )


def _note_jobs(out: list, runs: dict[str, dict[int, int]]) -> int:
    """Record the runs handed out in these actions; how many."""
    n = 0
    for a in out:
        if isinstance(a, Reply) and a.msg.kind == Kind.JOB:
            for job in a.msg.jobs:
                runs[job.workerid][job.jobid] = job.attempt
                n += 1
    return n


if __name__ == "__main__":
    main()
