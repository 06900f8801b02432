"""Workflows end to end on real processes (issue 11): dependencies, arrays, retries, time limits,
hold and release, waiting on and killing many jobs, and a kill -9 of the server mid-chain."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from goq_core.messages import JobState
from tests.cluster import Cluster, initialised, pgid_alive, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path):
    with initialised(tmp_path, server=True, heartbeat=1.0) as c:
        yield c


def _array(c: Cluster, *argv: str) -> range:
    out = c.ok("sub", *argv)
    m = re.fullmatch(r"submitted jobs (\d+)\.\.(\d+) \(array [^)]+\) to server at \S+\n", out)
    assert m, out
    return range(int(m[1]), int(m[2]) + 1)


def _rows(c: Cluster, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(c.home / ".goq" / "goq.db")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _state(c: Cluster, jobid: int) -> JobState:
    ((state,),) = _rows(c, "SELECT state FROM jobs WHERE jobid = ?", jobid)
    return JobState(state)


@pytest.mark.parametrize("codec", ["raw", "capnp"])
def test_chain_with_a_failure_in_the_middle_cancels_the_rest_and_wait_exits_2(
    tmp_path: Path, codec: str
) -> None:
    with initialised(tmp_path, server=True, extra_env={"GOQ_CODEC": codec}) as c:
        c.start_worker()
        a = c.sub("--name", "align", "true")
        b = c.sub("--after", str(a), "sh", "-c", "exit 3")
        d = c.sub("--after", str(b), "true")
        e = c.sub("--after", str(d), "true")
        done = c.goq("wait", str(a), str(b), str(d), str(e), timeout=30)
        assert done.returncode == 2, done.stderr
        lines = done.stdout.splitlines()
        assert f"job {a} finished: exit status 0" in done.stdout
        assert f"job {b} finished: exit status 3 (failed)" in done.stdout
        assert f"job {d} was cancelled: dependency {b} failed" in lines
        assert f"job {e} was cancelled: dependency {d} was cancelled" in lines
        ok = c.goq("wait", str(a))
        assert ok.returncode == 0


def test_after_any_runs_after_a_failure_and_stat_shows_what_blocks(cluster: Cluster) -> None:
    c = cluster
    first = c.sub("sh", "-c", "exit 1")
    cleanup = c.sub("--after-any", str(first), "--name", "cleanup", "true")
    stat = c.ok("stat")
    assert re.search(rf"\b{cleanup}\b.*cleanup", stat) and f"waits: for job {first}" in stat, stat
    assert c.stat()["blockedJobs"] == 1
    c.start_worker()
    done = c.goq("wait", str(cleanup), timeout=30)
    assert done.returncode == 0 and "exit status 0" in done.stdout


def test_an_unknown_dependency_is_refused_with_one_line(cluster: Cluster) -> None:
    done = cluster.goq("sub", "--after", "1,99", "true")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "job 1 is not known" in done.stderr
    assert cluster.stat()["nextJobId"] == 1


def test_array_with_a_cap_sets_the_index_and_never_runs_more_than_the_cap(
    cluster: Cluster,
) -> None:
    c = cluster
    c.spawn("work", "--cpus", "4", log="worker.log")
    ids = _array(c, "--array", "10-15%2", "--shell", 'echo "index=$GOQ_ARRAY_INDEX"; sleep 0.4')
    assert len(ids) == 6
    assert c.goq("wait", f"{ids[0]}-{ids[-1]}", timeout=60).returncode == 0
    for k, jobid in enumerate(ids):
        assert c.output(jobid) == f"index={10 + k}\n"
    runs = _rows(c, "SELECT start_ns, end_ns FROM jobs WHERE array_id = ?", ids[0])
    assert len(runs) == 6
    for start, _ in runs:  # at each start, at most 2 runs of the array are under way
        assert sum(1 for s, e in runs if s <= start < e) <= 2


def test_a_100000_job_array_goes_in_one_call_and_kill_all_cancels_it(cluster: Cluster) -> None:
    c = cluster
    began = time.monotonic()
    ids = _array(c, "--array", "1-100000", "true")
    took = time.monotonic() - began
    print(f"100,000-job array submitted in {took:.2f} s ({len(ids) / took:,.0f} jobs/s)")
    assert len(ids) == 100_000 and ids[0] == 1
    assert c.stat()["waitingJobs"] == 100_000
    done = c.goq("kill", "--all", timeout=60)  # stdin is not a terminal: no --yes needed
    assert done.returncode == 0, done.stderr
    assert "100000" in done.stdout.replace(",", "")
    assert c.stat()["waitingJobs"] == 0


def test_retries_run_again_and_the_output_holds_every_attempt(cluster: Cluster) -> None:
    c = cluster
    c.start_worker()
    jobid = c.sub("--retries", "2", "sh", "-c", "echo try; exit 1")
    done = c.goq("wait", str(jobid), timeout=30)
    assert done.returncode == 2 and "after 2 retries" in done.stdout
    text = c.output(jobid)
    assert text == "".join(f"--- goq: attempt {k} of 3 ---\ntry\n" for k in (1, 2, 3))


def test_a_retry_after_its_delay_can_succeed(cluster: Cluster) -> None:
    c = cluster
    c.start_worker()
    script = "if [ -e flag ]; then echo second; else touch flag; echo first; exit 4; fi"
    began = time.monotonic()
    jobid = c.sub("--retries", "3", "--retry-delay", "1", "--shell", script)
    done = c.goq("wait", str(jobid), timeout=30)
    assert done.returncode == 0, done.stdout
    assert time.monotonic() - began >= 1.0  # the delay was kept
    assert c.output(jobid) == (
        "--- goq: attempt 1 of 4 ---\nfirst\n--- goq: attempt 2 of 4 ---\nsecond\n"
    )


def test_a_time_limited_job_that_ignores_sigterm_is_gone_within_grace_plus_1s(
    cluster: Cluster,
) -> None:
    c = cluster
    env = dict(c.env, GOQ_KILL_GRACE="1")
    c.spawn("work", log="worker.log", env=env)
    pidfile = c.workdir / "pid"
    script = f"echo $$ > {pidfile}; trap '' TERM; sleep 30 & wait; sleep 30"
    jobid = c.sub("--time", "1s", "sh", "-c", script)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the job to start")
    pgid = int(pidfile.read_text())
    started = time.monotonic()
    wait_for(lambda: not pgid_alive(pgid), 1 + 1 + 1.5, "the job's group to be killed")
    gone = time.monotonic() - started
    assert gone <= 1 + 1 + 1.0, gone  # limit 1 s, grace 1 s, then at most 1 s
    done = c.goq("wait", str(jobid), timeout=20)
    assert done.returncode == 2 and f"job {jobid} timed out (limit 1s)" in done.stdout
    assert _state(c, jobid) == JobState.TIMEOUT


def test_hold_release_and_hold_of_a_running_job(cluster: Cluster) -> None:
    c = cluster
    held = c.sub("--hold", "true")
    waiting = c.sub("sleep", "5")
    assert "held 1 job" in c.ok("hold", str(waiting))
    c.start_worker()
    time.sleep(1.0)
    counters = c.stat()
    assert counters["heldJobs"] == 2 and counters["runQlen"] == 0
    assert "released 1 job" in c.ok("release", str(waiting))
    wait_for(lambda: c.stat()["runQlen"] == 1, 10, "the released job to run")
    out = c.ok("hold", str(waiting))
    assert "running, so not held" in out
    c.ok("kill", str(waiting))
    c.ok("release", str(held))
    assert c.goq("wait", str(held), timeout=20).returncode == 0


def test_wait_and_kill_by_name(cluster: Cluster) -> None:
    c = cluster
    c.spawn("work", "--cpus", "2", log="worker.log")
    quick = _array(c, "--name", "quick", "--array", "1-3", "sh", "-c", "sleep 0.2")
    slow = [c.sub("--name", "slow", "sleep", "30") for _ in range(2)]
    done = c.goq("wait", "--name", "quick", timeout=30)
    assert done.returncode == 0
    assert sorted(int(line.split()[1]) for line in done.stdout.splitlines()) == list(quick)
    killed = c.goq("kill", "--name", "slow")
    assert killed.returncode == 0, killed.stderr
    done = c.goq("wait", *map(str, slow), timeout=20)
    assert done.returncode == 2
    assert done.stdout.count("was cancelled") == 2


def test_a_kill_9_of_the_server_mid_chain_forgets_nothing_and_runs_nothing_early(
    cluster: Cluster,
) -> None:
    c = cluster
    c.spawn("work", "--cpus", "2", log="worker.log")
    flag = c.workdir / "b-running"
    a = c.sub("true")
    b = c.sub("--after", str(a), "sh", "-c", f"touch {flag}; sleep 2")
    d = c.sub("--after", str(b), "--retries", "1", "sh", "-c", "echo d; exit 1")
    e = c.sub("--after-any", str(d), "true")
    held = c.sub("--hold", "true")
    capped = _array(c, "--array", "1-4%1", "sleep", "0.3")
    wait_for(flag.exists, 20, "b to start")
    assert c.server is not None
    os.kill(c.server.pid, signal.SIGKILL)
    c.server.wait(10)
    assert _state(c, a) == JobState.FINISHED
    assert _state(c, d) == JobState.BLOCKED and _state(c, held) == JobState.HELD
    c.start_server()
    done = c.goq("wait", str(b), str(d), str(e), *map(str, capped), timeout=60)
    assert done.returncode == 2  # d failed twice: its retry survived the restart
    assert f"job {d} finished: exit status 1 (failed)" in done.stdout
    assert "after 1 retry" in done.stdout
    assert c.output(d).count("--- goq: attempt") == 2
    rows = dict(_rows(c, "SELECT jobid, start_ns FROM jobs WHERE jobid IN (?, ?)", b, d))
    ((b_end,),) = _rows(c, "SELECT end_ns FROM jobs WHERE jobid = ?", b)
    assert rows[d] >= b_end  # d did not start before b ended
    assert _state(c, held) == JobState.HELD  # still held after the restart
    assert _state(c, e) == JobState.FINISHED
    starts = sorted(_rows(c, "SELECT start_ns, end_ns FROM jobs WHERE array_id = ?", capped[0]))
    assert all(s2 >= e1 for (_, e1), (s2, _) in zip(starts, starts[1:], strict=False))
