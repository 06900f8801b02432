"""Nothing lost: goq under faults, on real processes (tests/cluster.py), heartbeat 1 s.

kill -9 of the server mid-drain, kill -9 of a worker mid-job, a job that ends while the server is
down, a clean shutdown and restart, a lost or corrupt store. Each test checks the record (the
sqlite store, `goq stat`, output files) and prints what it measured (run with -s to see it).
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from goq_core.messages import JobState
from goq_core.stores.sqlite import FILENAME, SqliteStore
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow

HEARTBEAT = 1.0
DRAIN_JOBS = 2000


@pytest.fixture(params=["zmq"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path):
    c = Cluster(tmp_path, transport=request.param, heartbeat=HEARTBEAT)
    c.init()
    try:
        yield c
    finally:
        c.close()


def _store_dir(c: Cluster) -> Path:
    return c.home / ".goq"


def _states(c: Cluster) -> Counter[JobState]:
    """How many jobs the store holds in each state (read-only: the server may be running)."""
    uri = f"file:{_store_dir(c) / FILENAME}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    db.close()
    return Counter({JobState(s): n for s, n in rows})


def _stored_counters(c: Cluster) -> dict[str, int]:
    """The store's counters and live jobs, read through goq's own store (server stopped)."""
    store = SqliteStore(str(_store_dir(c)), create=False)
    try:
        state = store.load()
    finally:
        store.close()
    return dict(state.counters, liveJobs=len(state.jobs))


def _runs(path: Path) -> Counter[int]:
    """Job number -> how many times it ran (each run appends its number to `path`)."""
    return Counter(int(x) for x in path.read_text().split()) if path.exists() else Counter()


def _read_pid(path: Path, timeout: float = 15) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip(), timeout, f"pid in {path}")
    return int(path.read_text().split()[0])


def _report(what: str, **figures: object) -> None:
    print(f"\n[faults] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# ----------------------------------------------------------------------------- server kill -9


def test_server_sigkilled_mid_drain_loses_no_job_and_finishes_none_twice(cluster: Cluster) -> None:
    runs = cluster.workdir / "runs"
    jobs = cluster.workdir / "jobs.txt"
    # each job prints its number (checked in its output file) and notes that it ran
    jobs.write_text("".join(f"echo {n}; echo {n} >> {runs}\n" for n in range(1, DRAIN_JOBS + 1)))
    cluster.start_server()
    out = cluster.ok("sub", "--shell", "--file", str(jobs), timeout=60)
    assert out.startswith(f"submitted jobs 1..{DRAIN_JOBS} ")
    for i in range(2):
        cluster.start_worker(log=f"w{i}.log")
    # let a good part drain, then pull the plug on the server in the middle of it
    wait_for(lambda: len(_runs(runs)) >= DRAIN_JOBS // 4, 120, "a quarter of the jobs to run")
    cluster.server.send_signal(signal.SIGKILL)
    cluster.server.wait(5)
    killed_at = time.monotonic()
    finished_at_kill = _states(cluster)[JobState.FINISHED]
    assert finished_at_kill < DRAIN_JOBS, "the drain ended before the kill: nothing tested"
    cluster.start_server()
    back_at = time.monotonic()
    wait_for(lambda: _states(cluster)[JobState.FINISHED] == DRAIN_JOBS, 180, "every job to finish")
    recovered = time.monotonic() - killed_at
    counters = cluster.stat()
    cluster.ok("shutdown")
    cluster.server.wait(10)

    stored = _stored_counters(cluster)
    assert stored["finishedJobsCount"] == DRAIN_JOBS  # each job finished exactly once
    assert stored["nextJobId"] == DRAIN_JOBS + 1  # no id lost, none reused
    assert stored["liveJobs"] == 0
    assert _states(cluster) == Counter({JobState.FINISHED: DRAIN_JOBS})
    assert counters["finishedJobsCount"] == DRAIN_JOBS and counters["nextJobId"] == DRAIN_JOBS + 1
    bad = [n for n in range(1, DRAIN_JOBS + 1) if cluster.output(n) != f"{n}\n"]
    assert not bad, f"{len(bad)} wrong or missing outputs, e.g. job {bad[0]}"
    ran = _runs(runs)
    assert set(ran) == set(range(1, DRAIN_JOBS + 1))  # at least once each
    _report(
        "server kill -9 mid-drain",
        jobs=DRAIN_JOBS,
        finished_at_kill=finished_at_kill,
        lost=DRAIN_JOBS - len(ran),
        finished_twice=stored["finishedJobsCount"] - DRAIN_JOBS,
        ran_twice=sum(1 for n in ran.values() if n > 1),
        stale_results=counters.get("staleResultCount", 0),
        requeued=counters.get("requeuedJobsCount", 0),
        restart_s=round(back_at - killed_at, 2),
        kill_to_all_done_s=round(recovered, 2),
    )
