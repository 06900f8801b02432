"""History speed of the sqlite store: a store holding 1,000,000 ended jobs (ended over 30 days,
1 % failed, some cancelled and timed out, 100 distinct names, 3 attempts for 1 % of them) and
2,000 live ones, in a fresh temporary directory; then the time of each query `goq jobs` and
`goq show` make (median of 20 runs, ms), of `prune` in steps of 1,000, and of `load` (s).

Prints one JSON document. Targets: every history query, attempts and get_job <= 20 ms;
prune(before, 1000) a few ms; load stays O(live jobs) (the history is not read). The ended jobs
are written straight into the jobs table (executemany, 100,000 rows a transaction), as the
store itself would write them (same columns and encodings); `build_s` says how long it took.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from goq_core.interfaces import HISTORY_STATES
from goq_core.messages import Job, JobState
from goq_core.records import Attempt
from goq_core.stores.sqlite import FILENAME, SqliteStore, encode_args

DAY_NS = 86_400 * 10**9
NAMES = [f"sweep-{i:03d}" for i in range(100)]
CHUNK = 100_000
_COLUMNS = (
    "jobid, cmd, args, shell, dir, env_id, host, user, state, attempt, workerid, workerhost,"
    " pid, exit_status, submit_ns, start_ns, end_ns, out_bytes, name"
)
_INSERT = f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 19)})"
_INSERT_ATTEMPT = (
    "INSERT INTO attempts (jobid, attempt, outcome, workerid, workerhost, pid, start_ns, end_ns,"
    " exit_status, max_rss_kib, utime_us, stime_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def ended_state(rng: random.Random) -> tuple[int, int]:
    """(state, exit_status): 1 % failed, 0.5 % cancelled, 0.1 % timed out, the rest exit 0."""
    r = rng.random()
    if r < 0.01:
        return int(JobState.FINISHED), rng.choice((1, 2, 137, -9))
    if r < 0.015:
        return int(JobState.CANCELLED), -15
    if r < 0.016:
        return int(JobState.TIMEOUT), -9
    return int(JobState.FINISHED), 0


def build(home: str, n_ended: int, n_live: int, now_ns: int) -> dict[str, Any]:
    """The store at `home`: `n_ended` ended jobs (jobids 1..n_ended, ending over the 30 days
    before `now_ns`, in jobid order give or take ten minutes) and `n_live` live ones after
    them. Returns what it made (the jobids the queries use)."""
    rng = random.Random(12)
    env = [f"VAR{i}=value-{i}-" + "x" * 30 for i in range(40)]
    store = SqliteStore(home, create=True)
    live = [
        Job(
            jobid=n_ended + 1 + i,
            cmd="python",
            args=["run.py", f"--part={i}"],
            dir="/home/alice/project",
            env=env,
            host="login1",
            user="alice",
            state=JobState.RUNNING if i < 100 else JobState.WAITING,
            submit_ns=now_ns - 60 * 10**9,
            name=NAMES[i % len(NAMES)],
        )
        for i in range(n_live)
    ]
    store.save(live, {"nextJobId": n_ended + n_live + 1})
    store.close()
    db = sqlite3.connect(os.path.join(home, FILENAME), isolation_level=None)
    (env_id,) = db.execute("SELECT id FROM env").fetchone()
    span = 30 * DAY_NS
    start_of = now_ns - span
    with_attempts: list[int] = []
    for first in range(1, n_ended + 1, CHUNK):
        rows = []
        runs = []
        for jobid in range(first, min(first + CHUNK, n_ended + 1)):
            state, exit_status = ended_state(rng)
            end_ns = start_of + span * jobid // n_ended - rng.randrange(600 * 10**9)
            start_ns = end_ns - rng.randrange(1, 3600) * 10**9
            rows.append(
                (
                    jobid,
                    "python",
                    encode_args(["run.py", f"--input=data/part-{jobid:07d}.csv"]),
                    0,
                    "/home/alice/project",
                    env_id,
                    "login1",
                    "alice",
                    state,
                    1,
                    f"w{jobid % 64}",
                    f"node{jobid % 64:02d}",
                    10_000 + jobid % 50_000,
                    exit_status,
                    start_ns - 5 * 10**9,
                    start_ns,
                    end_ns,
                    1234,
                    NAMES[rng.randrange(len(NAMES))],
                )
            )
            if rng.random() < 0.01:  # requeued twice: three attempts
                with_attempts.append(jobid)
                for n in (1, 2, 3):
                    outcome = "finished" if n == 3 else "requeued"
                    runs.append(
                        (jobid, n, outcome, f"w{n}", f"node{n:02d}", 100 + n, start_ns, end_ns)
                        + (exit_status if n == 3 else 0, 200_000, 1_500_000, 20_000)
                    )
        db.execute("BEGIN")
        db.executemany(_INSERT, rows)
        db.executemany(_INSERT_ATTEMPT, runs)
        db.execute("COMMIT")
    db.close()
    return {"with_attempts": with_attempts}


def timed(fn: Callable[[], object], runs: int = 20) -> tuple[float, float, object]:
    """(median ms, max ms, the last result) of `runs` calls."""
    times = []
    out: object = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3), round(max(times), 3), out


def run(n_ended: int, n_live: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"ended_jobs": n_ended, "live_jobs": n_live, "runs": runs}
    now_ns = time.time_ns()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as home:
        t0 = time.perf_counter()
        made = build(home, n_ended, n_live, now_ns)
        out["build_s"] = round(time.perf_counter() - t0, 1)
        out["db_mib"] = round(os.path.getsize(os.path.join(home, FILENAME)) / 2**20, 1)
        store = SqliteStore(home, create=False)
        gc.collect()
        t0 = time.perf_counter()
        state = store.load()
        out["load_s"] = round(time.perf_counter() - t0, 3)
        out["load_jobs"] = len(state.jobs)
        del state
        every = frozenset(HISTORY_STATES)

        def history(**kw: Any) -> Callable[[], list[Job]]:
            args: dict[str, Any] = {
                "states": every,
                "name": None,
                "since_ns": 0,
                "before_jobid": None,
                "limit": 50,
            }
            args.update(kw)
            return lambda: store.history(**args)

        queries: dict[str, Callable[[], object]] = {
            # what `goq jobs` asks by default: what ended in the last 24 h, 50 rows
            "history_default": history(since_ns=now_ns - DAY_NS),
            "history_failed": history(states=frozenset({"failed"})),
            "history_name": history(name=NAMES[42]),
            # more: the next page, short windows (read by end time), a week of failures, a
            # cancelled-only list, a window with nothing in it, the largest page
            "history_default_page_2": history(since_ns=now_ns - DAY_NS, before_jobid=n_ended - 40),
            "history_last_10_min": history(since_ns=now_ns - 600 * 10**9),
            # about 9,700 and 11,100 jobs ended since: the most read by end time and sorted,
            # and the least walked back (store.history's _WINDOW_MAX is 10,000)
            "history_last_7_hours": history(since_ns=now_ns - 7 * 3600 * 10**9),
            "history_last_8_hours": history(since_ns=now_ns - 8 * 3600 * 10**9),
            "history_failed_7_days": history(
                states=frozenset({"failed"}), since_ns=now_ns - 7 * DAY_NS
            ),
            "history_cancelled": history(states=frozenset({"cancelled"})),
            "history_name_finished_24h": history(
                name=NAMES[7], states=frozenset({"finished"}), since_ns=now_ns - DAY_NS
            ),
            "history_nothing_since": history(since_ns=now_ns + DAY_NS),
        }
        counts: dict[str, int] = {}
        for key, fn in queries.items():
            median, worst, got = timed(fn, runs)
            out[f"{key}_ms"] = median
            out[f"{key}_max_ms"] = worst
            counts[key] = len(got)  # type: ignore[arg-type]
        median, _, got = timed(history(limit=10_000), 5)
        out["history_limit_10000_ms"] = median
        counts["history_limit_10000"] = len(got)  # type: ignore[arg-type]
        out["rows"] = counts
        ids = made["with_attempts"]
        picks = [rng.choice(ids) for _ in range(runs)]
        it = iter(picks)
        median, worst, got = timed(lambda: store.attempts(next(it)), runs)
        out["attempts_ms"], out["attempts_max_ms"] = median, worst
        assert len(got) == 3  # type: ignore[arg-type]
        it = iter(rng.randrange(1, n_ended + 1) for _ in range(runs))
        out["get_job_ms"], out["get_job_max_ms"], _ = timed(lambda: store.get_job(next(it)), runs)
        # pruning the oldest, 1,000 at a time, as the server does between requests
        before = now_ns - 29 * DAY_NS
        pruned: list[int] = []
        out["prune_1000_ms"], out["prune_1000_max_ms"], _ = timed(
            lambda: pruned.append(store.prune(before, 1000)), runs
        )
        out["pruned"] = sum(pruned)
        # what saving ended jobs costs now: a batch of 10,000 live jobs ending, with attempts
        live = store.load().jobs
        for j in live:
            j.state, j.end_ns, j.exit_status = JobState.FINISHED, time.time_ns(), 0
        attempts = [Attempt(j.jobid, 1, "finished", "w1", "node01", 5, 1, j.end_ns) for j in live]
        t0 = time.perf_counter()
        store.save(live, {}, attempts=attempts)
        out["save_ended_jobs_per_s"] = round(len(live) / (time.perf_counter() - t0))
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ended", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    print(json.dumps(run(a.ended, a.live, a.runs), indent=1))


if __name__ == "__main__":
    main()
