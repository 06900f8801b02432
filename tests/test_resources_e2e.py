"""Resource-aware scheduling end to end (issue 10), on real processes: a worker with several
cpus runs several jobs at once, GPUs are handed out one run at a time (nvidia-smi faked by a
script on PATH), priorities, goq workers, drain and resume, and a server kill -9 keeps the
requests, priorities and assignments."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from goq_core.stores.sqlite import FILENAME
from tests.cluster import Cluster, initialised, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path):
    with initialised(tmp_path, server=True, heartbeat=1.0) as c:
        yield c


def _workers(c: Cluster) -> list[dict]:
    return json.loads(c.ok("workers", "--json"))["workers"]


def _wait_all(c: Cluster, ids: list[int], timeout: float = 30) -> None:
    for jobid in ids:
        c.ok("wait", str(jobid), timeout=timeout)


def test_a_four_cpu_worker_runs_four_one_second_jobs_in_about_a_second(cluster: Cluster) -> None:
    c = cluster
    c.spawn("work", "--cpus", "4", "--name", "quad", log="worker.log")
    wait_for(lambda: [w["name"] for w in _workers(c)] == ["quad"], 20, "the worker to ask")
    began = time.monotonic()
    ids = [c.sub("sleep", "1") for _ in range(4)]
    _wait_all(c, ids)
    took = time.monotonic() - began
    print(f"4 x sleep 1 on a 4-cpu worker: {took:.2f} s")
    assert took < 2.6  # one after another would take 4 s and more


def test_two_one_gpu_jobs_see_different_devices_and_a_cpu_job_sees_none(
    cluster: Cluster,
) -> None:
    c = cluster
    c.spawn("work", "--cpus", "4", "--gpus", "0,1", log="worker.log")
    wait_for(lambda: len(_workers(c)) == 1, 20, "the worker to ask")
    show = 'echo "[$CUDA_VISIBLE_DEVICES] [$GOQ_GPUS] $GOQ_CPUS"; sleep 1'
    a = c.sub("--gpus", "1", "--shell", show)
    b = c.sub("--gpus", "1", "--shell", show)
    cpu = c.sub("--shell", show)
    _wait_all(c, [a, b, cpu])
    seen = {c.output(a).strip(), c.output(b).strip()}
    assert seen == {"[0] [0] 1", "[1] [1] 1"}
    assert c.output(cpu).strip() == "[] [] 1"  # no GPU for a job that asked for none


def test_gpus_auto_uses_nvidia_smi_and_a_job_waits_saying_why(cluster: Cluster) -> None:
    c = cluster
    bin_dir = c.root / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, GPU-aaaa'\necho '1, GPU-bbbb'\n")
    fake.chmod(0o755)
    env = dict(c.env, PATH=f"{bin_dir}:{os.environ['PATH']}")
    c.spawn("work", "--gpus", "auto", "--cpus", "2", log="worker.log", env=env)
    wait_for(lambda: len(_workers(c)) == 1, 20, "the worker to ask")
    assert _workers(c)[0]["offer"]["gpus"] == ["0", "1"]
    big = c.sub("--gpus", "4", "true")
    out = c.ok("stat")
    assert "needs gpus=4; the largest worker offers 2" in out, out
    c.ok("kill", str(big))


def test_higher_priority_runs_first(cluster: Cluster) -> None:
    c = cluster
    blocker = c.sub("sleep", "1")
    low = c.sub("--shell", "date +%s.%N")
    high = c.sub("--priority", "9", "--shell", "date +%s.%N")
    c.start_worker()
    _wait_all(c, [blocker, low, high])
    assert float(c.output(high)) < float(c.output(low))


def test_drain_keeps_runs_going_gives_no_new_jobs_and_resume_undoes_it(cluster: Cluster) -> None:
    c = cluster
    c.spawn("work", "--cpus", "2", "--name", "node1", log="worker.log")
    wait_for(lambda: len(_workers(c)) == 1, 20, "the worker to ask")
    running = c.sub("sleep", "1")
    wait_for(lambda: _workers(c)[0]["jobs"] == [running], 10, "the job to start")
    assert "node1" in c.ok("drain", "node1")
    later = c.sub("true")
    assert _workers(c)[0]["state"] == "draining"
    c.ok("wait", str(running), timeout=20)
    wait_for(lambda: _workers(c)[0]["state"] == "drained", 10, "the worker to be drained")
    assert c.stat()["waitingJobs"] == 1  # `later` did not start
    c.ok("resume", "--all")
    c.ok("wait", str(later), timeout=20)


def test_requests_priorities_and_assignments_survive_kill_9_of_the_server(
    cluster: Cluster,
) -> None:
    c = cluster
    c.spawn("work", "--cpus", "2", "--gpus", "0,1", "--name", "g", log="worker.log")
    wait_for(lambda: len(_workers(c)) == 1, 20, "the worker to ask")
    run = c.sub("--gpus", "2", "--cpus", "2", "sleep", "3")
    wait_for(lambda: _workers(c)[0]["jobs"] == [run], 10, "the job to start")
    waiting = c.sub("--gpus", "1", "--priority", "3", "--resource", "lic=1", "true")
    c.ok("drain", "g")
    assert c.server is not None
    os.kill(c.server.pid, signal.SIGKILL)
    c.server.wait(10)
    with sqlite3.connect(c.home / ".goq" / FILENAME) as db:
        row = db.execute(
            "SELECT cpus, gpus, gpu_ids, state FROM jobs WHERE jobid = ?", (run,)
        ).fetchone()
        assert row == (2, 2, "0,1", 2)
        row = db.execute("SELECT priority, gpus FROM jobs WHERE jobid = ?", (waiting,)).fetchone()
        assert row == (3, 1)
    db.close()
    c.start_server()
    wait_for(lambda: len(_workers(c)) == 1, 20, "the worker to come back")
    w = _workers(c)[0]
    assert w["jobs"] == [run] and w["state"] == "draining"  # drain survived, run kept its GPUs
    assert w["free"]["gpus"] == []
    c.ok("wait", str(run), timeout=30)
    counters = c.stat()
    assert counters["requeuedJobsCount"] == 0 and counters["waitingJobs"] == 1


def test_a_busy_many_slot_worker_reports_runs_together_and_each_ends_once(
    cluster: Cluster,
) -> None:
    """Short jobs on a 4-cpu worker: the runs that end while a RESULT is on its way go out
    together (goq_core.messages); each job still ends once, with its own output and rusage."""
    c = cluster
    n = 400
    (c.root / "jobs.txt").write_text("".join(f"echo line{i}\n" for i in range(n)))
    c.spawn("work", "--cpus", "4", "--name", "quad", log="worker.log")
    wait_for(lambda: len(_workers(c)) == 1, 20, "the worker to ask")
    out = c.ok("sub", "--shell", "--file", str(c.root / "jobs.txt"), cwd=c.root)
    first = int(out.split()[2].split("..")[0])  # "submitted jobs 1..400"
    c.ok("wait", str(first + n - 1), timeout=120)
    wait_for(lambda: c.stat()["finishedJobsCount"] == n, 60, "every job to finish")
    for i in range(n):
        assert c.output(first + i, cwd=c.root) == f"line{i}\n"
    counters = c.stat()
    batched = counters["batchedResultRunCount"]
    print(f"{batched} of {n} runs reported in a RESULT with others")
    assert batched > 0  # 80 to 150 of the 400 in a quiet run on 2 cores
    assert counters["staleResultCount"] == 0 and counters["duplicateResultCount"] == 0
    assert counters["finishedJobsCount"] == n
    with sqlite3.connect(c.home / ".goq" / FILENAME) as db:
        rows = db.execute(
            "SELECT jobid, count(*), min(max_rss_kib), min(exit_status), max(exit_status) "
            "FROM attempts GROUP BY jobid"
        ).fetchall()
    db.close()
    assert len(rows) == n
    assert all(count == 1 and rss > 0 and lo == hi == 0 for _, count, rss, lo, hi in rows)
