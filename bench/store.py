"""Store speed: single-job save latency, batch save rate, and load time of many waiting jobs,
for the sqlite store (default) or the memory one, in a fresh temporary directory.

Prints JSON. Targets: one-job save ~100 us or less; >= 50,000 jobs/s upserted in batches of
10,000; load of 1,000,000 waiting jobs in a few seconds. `--requests` gives every job a resource
request (cpus, gpus, a named resource, a priority) instead of the defaults (one cpu, nothing
else), which the sqlite store reads separately; `--workflow` makes every job part of a named
array with a dependency, a retry count and a time limit (the workflow fields, which the sqlite
store also reads separately) instead of in no workflow. `batch_end_jobs_per_s`: the last batch
ending, each job with its attempt (what the history's indexes cost); `outcomes_s` is the time
to ask `outcomes` about 100,000 ids (that batch's 10,000 of them ended).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from goq_core.interfaces import Store
from goq_core.messages import Job, JobState
from goq_core.records import Attempt
from goq_core.stores.memory import MemoryStoreFactory
from goq_core.stores.sqlite import SqliteStore


def make_jobs(
    first: int, n: int, env: list[str], requests: bool = False, workflow: bool = False
) -> list[Job]:
    asks = {"cpus": 2, "gpus": 1, "resources": {"license": 1}, "priority": 5} if requests else {}
    after: list[int] = []
    if workflow:  # one array of n, waiting for a setup job (1) and the ten jobs before it
        asks.update(name="sweep", array_id=first, retries=2, time_limit_ms=3_600_000)
        after = [1, *range(max(2, first - 10), first)]
    return [
        Job(
            jobid=first + i,
            cmd="python",
            args=["run.py", f"--input=data/part-{first + i:07d}.csv"],
            dir="/home/alice/project",
            env=env,
            host="login1",
            user="alice",
            state=JobState.WAITING,
            submit_ns=time.time_ns(),
            after=list(after),
            array_index=i if workflow else 0,
            **asks,
        )
        for i in range(n)
    ]


def opener(kind: str, path: str, sync: str) -> Callable[[], Store]:
    if kind == "sqlite":
        return lambda: SqliteStore(path, create=True, synchronous=sync)
    factory = MemoryStoreFactory()  # one factory: a reopened memory store finds its records
    return lambda: factory(path, True)


def run(
    kind: str,
    sync: str,
    singles: int,
    batch: int,
    batches: int,
    load_n: int,
    requests: bool = False,
    workflow: bool = False,
) -> dict:
    env = [f"VAR{i}=value-{i}-" + "x" * 30 for i in range(40)]  # a typical shell's 40 vars
    out: dict[str, object] = {"store": kind, "synchronous": sync if kind == "sqlite" else None}
    out["requests"] = requests
    out["workflow"] = workflow
    with tempfile.TemporaryDirectory() as tmp:
        open_store = opener(kind, tmp, sync)
        store = open_store()
        counters = {"nextJobId": 1, "finishedJobsCount": 0}
        next_id = 1

        # single-job saves: a job submitted, then started, as the server does one at a time
        lat = []
        for job in make_jobs(next_id, singles, env, requests, workflow):
            counters["nextJobId"] = job.jobid + 1
            t0 = time.perf_counter()
            store.save([job], counters)
            lat.append(time.perf_counter() - t0)
        next_id += singles
        lat.sort()
        out["single_save_us_p50"] = round(statistics.median(lat) * 1e6, 1)
        out["single_save_us_p99"] = round(lat[int(len(lat) * 0.99)] * 1e6, 1)

        # batches of new jobs, then the same jobs updated (started) in batches
        rates = []
        for _ in range(batches):
            jobs = make_jobs(next_id, batch, env, requests, workflow)
            next_id += batch
            counters["nextJobId"] = next_id
            t0 = time.perf_counter()
            store.save(jobs, counters)
            rates.append(batch / (time.perf_counter() - t0))
        out["batch_size"] = batch
        out["batch_insert_jobs_per_s"] = round(statistics.median(rates))
        for j in jobs:
            j.state, j.workerid, j.attempt = JobState.RUNNING, "w1", 1
        t0 = time.perf_counter()
        store.save(jobs, counters)
        out["batch_update_jobs_per_s"] = round(batch / (time.perf_counter() - t0))

        # fill up to load_n waiting jobs, then time a load in a freshly opened store
        while next_id <= load_n:
            n = min(50_000, load_n - next_id + 1)
            jobs_n = make_jobs(next_id, n, env, requests, workflow)
            store.save(jobs_n, {"nextJobId": next_id + n})
            del jobs_n
            next_id += n
        store.close()
        store = open_store()
        gc.collect()
        t0 = time.perf_counter()
        state = store.load()
        out["load_jobs"] = len(state.jobs)
        out["load_s"] = round(time.perf_counter() - t0, 3)
        out["load_envs_shared"] = len({id(j.env) for j in state.jobs})
        del state
        if hasattr(store, "outcomes"):
            now = time.time_ns()
            for j in jobs:  # the last batch ends (into the history), each with its attempt
                j.state, j.exit_status, j.end_ns = JobState.FINISHED, 0, now
            runs = [Attempt(j.jobid, 1, "finished", "w1", "node1", 4242, now, now) for j in jobs]
            t0 = time.perf_counter()
            store.save(jobs, counters, attempts=runs)
            out["batch_end_jobs_per_s"] = round(batch / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            ended = store.outcomes(range(1, 100_001))
            out["outcomes_s"] = round(time.perf_counter() - t0, 3)
            out["outcomes_ended"] = len(ended)
        if kind == "sqlite":
            out["db_bytes"] = os.path.getsize(os.path.join(tmp, "goq.db"))
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    ap.add_argument("--sync", default="NORMAL", help="sqlite synchronous mode")
    ap.add_argument("--singles", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--load", type=int, default=100_000, help="waiting jobs to load")
    ap.add_argument("--requests", action="store_true", help="jobs ask for cpus, gpus...")
    ap.add_argument("--workflow", action="store_true", help="jobs in arrays, with dependencies")
    a = ap.parse_args()
    out = run(a.store, a.sync, a.singles, a.batch, a.batches, a.load, a.requests, a.workflow)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
