"""Time limits on the worker host (JobRun): a job still running at its limit gets SIGTERM to its
whole process group, then SIGKILL after the grace (GOQ_KILL_GRACE) if anything of it is still
alive, and ends TIMEOUT with what its main process died of; a job within its limit ends
FINISHED; a run killed for another reason is never a TIMEOUT. The wait blocks on the job's
pidfd with a deadline, never polls busily. GOQ_KILL_GRACE is checked as every GOQ_* number is.

Every job here is a real process group, killed at teardown if a test left it running; every
wait is bounded. (The worker's side, RESULT and GOQ_ARRAY_INDEX, is in test_worker_slots.py.)
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from goq_core.config import Settings, load_settings
from goq_core.errors import ConfigError
from goq_core.messages import Job, JobState
from goq_core.roles import jobrun
from goq_core.roles.jobrun import JobRun

PATH = ["PATH=/usr/local/bin:/usr/bin:/bin"]
LIMIT_MS = 1000  # the time limit of the jobs that reach it
GRACE = 0.5  # seconds from SIGTERM to SIGKILL in these tests
SLACK = 1.0  # seconds: how late past limit + grace a job may still be alive


def live_members(pgid: int) -> list[int]:
    """Pids of the processes of group `pgid` that are not zombies (read from /proc)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(b")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != b"Z":
            pids.append(int(name))
    return pids


def eventually(cond, within: float) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        time.sleep(0.005)


@pytest.fixture
def run_job(tmp_path):
    """Start shell jobs with a time limit; every group still alive at the end is SIGKILLed."""
    home = tmp_path / "home"
    home.mkdir()
    started: list[JobRun] = []
    ids = iter(range(1, 1000))

    def run(script: str, limit_ms: int = LIMIT_MS, shell: bool = True) -> JobRun:
        cmd, args = (script, []) if shell else (script.split()[0], script.split()[1:])
        job = Job(
            jobid=next(ids),
            attempt=1,
            cmd=cmd,
            args=args,
            shell=shell,
            env=PATH,
            dir=str(home),
            time_limit_ms=limit_ms,
            state=JobState.RUNNING,
        )
        r = JobRun.start(job, str(home), str(tmp_path / "spool"))
        started.append(r)
        return r

    yield run
    for r in started:
        if r.pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.pgid, signal.SIGKILL)
            r.wait(2.0)


def waited(r: JobRun, grace: float = GRACE) -> float:
    """wait_limited(grace) in a thread, bounded; how long after the spawn it returned."""
    done: list[bool] = []
    t = threading.Thread(target=lambda: done.append(r.wait_limited(grace)), daemon=True)
    t.start()
    t.join(LIMIT_MS / 1000 + grace + SLACK + 5.0)
    assert done == [True], "wait_limited did not return"
    return time.monotonic() - r.started


# --- at the limit ----------------------------------------------------------------------------


def test_job_ignoring_sigterm_is_sigkilled_a_grace_after_its_limit_and_ends_timeout(run_job):
    r = run_job('trap "" TERM; sleep 30')
    assert r.deadline == pytest.approx(r.started + LIMIT_MS / 1000)
    eventually(lambda: len(live_members(r.pgid)) == 2, within=5.0)  # sh and its sleep
    took = waited(r)
    assert LIMIT_MS / 1000 + GRACE - 0.05 <= took <= LIMIT_MS / 1000 + GRACE + SLACK
    assert r.exit_status == -signal.SIGKILL and r.timed_out
    eventually(lambda: not live_members(r.pgid), within=1.0)  # its sleep too
    out = r.outcome()
    assert (out.state, out.exit_status) == (JobState.TIMEOUT, -signal.SIGKILL)


def test_job_that_exits_on_sigterm_ends_timeout_minus_15_at_its_limit(run_job):
    r = run_job("sleep 30", shell=False)
    took = waited(r)
    assert LIMIT_MS / 1000 - 0.05 <= took < LIMIT_MS / 1000 + GRACE  # no grace waited out
    assert r.exit_status == -signal.SIGTERM
    out = r.outcome()
    assert (out.state, out.exit_status, out.pid) == (JobState.TIMEOUT, -signal.SIGTERM, r.pid)
    assert not live_members(r.pgid)


def test_grandchildren_of_the_group_are_killed_too(run_job):
    """The main process dies on SIGTERM; a grandchild that ignores it is SIGKILLed after the
    grace, one that does not dies with the main process. Output up to then is kept."""
    r = run_job("(trap '' TERM; exec sleep 30) & sleep 30 & echo started; wait")
    eventually(lambda: len(live_members(r.pgid)) == 3, within=5.0)  # sh and two sleeps
    took = waited(r)
    assert LIMIT_MS / 1000 + GRACE - 0.05 <= took <= LIMIT_MS / 1000 + GRACE + SLACK
    assert r.exit_status == -signal.SIGTERM  # what its main process died of
    eventually(lambda: not live_members(r.pgid), within=1.0)  # SIGKILL lands in a moment
    out = r.outcome()
    assert out.state == JobState.TIMEOUT and out.out_bytes == len(b"started\n")
    assert b"".join(r.iter_output()) == b"started\n"


def test_a_grace_of_zero_sigkills_at_the_limit(run_job):
    r = run_job('trap "" TERM; sleep 30')
    took = waited(r, grace=0.0)
    assert LIMIT_MS / 1000 - 0.05 <= took < LIMIT_MS / 1000 + 0.5
    assert r.exit_status == -signal.SIGKILL and r.outcome().state == JobState.TIMEOUT
    eventually(lambda: not live_members(r.pgid), within=1.0)


def test_the_wait_blocks_until_the_deadline_rather_than_polling(run_job, monkeypatch):
    calls: list[float] = []
    real_select = select.select

    def counting(*args):
        calls.append(args[3])
        return real_select(*args)

    monkeypatch.setattr(jobrun.select, "select", counting)
    r = run_job('trap "" TERM; sleep 30')
    waited(r)
    assert r.exit_status == -signal.SIGKILL
    assert len(calls) <= 6, calls  # to the limit, to the SIGKILL, the end: a few wakes


# --- not at the limit ------------------------------------------------------------------------


def test_job_within_its_limit_finishes_normally(run_job):
    r = run_job("sleep 0.2; echo ok", limit_ms=5000)
    took = waited(r)
    assert took < 2.0
    assert r.exit_status == 0 and not r.timed_out
    out = r.outcome()
    assert (out.state, out.exit_status) == (JobState.FINISHED, 0)
    assert b"".join(r.iter_output()) == b"ok\n"


def test_job_without_a_limit_has_no_deadline(run_job):
    r = run_job("sleep 0.1", limit_ms=0)
    assert r.deadline is None and r.enforce_limit(GRACE) is None
    waited(r)
    assert r.exit_status == 0 and r.outcome().state == JobState.FINISHED


def test_a_run_killed_before_its_limit_is_not_a_timeout(run_job):
    """A KILL from the server or a stopping worker: the waiter is woken and told to stop."""
    r = run_job("sleep 30", limit_ms=5000)
    rfd, wfd = os.pipe()
    stop = threading.Event()

    def cancel() -> None:
        time.sleep(0.2)
        stop.set()
        os.write(wfd, b"x")

    threading.Thread(target=cancel, daemon=True).start()
    try:
        t0 = time.monotonic()
        assert r.wait_limited(GRACE, rfd, stop.is_set) is False
        assert time.monotonic() - t0 < 2.0
    finally:
        os.close(rfd)
        os.close(wfd)
    assert r.kill() == -signal.SIGTERM
    assert not r.timed_out and r.outcome().state == JobState.FINISHED


def test_a_command_that_cannot_run_has_no_deadline(run_job):
    r = run_job("no-such-command-goq", shell=False)
    assert r.deadline is None and r.wait_limited(GRACE) is True
    assert r.outcome().state == JobState.FINISHED and r.exit_status == 127


# --- GOQ_KILL_GRACE --------------------------------------------------------------------------


def env_for(home: str, **more: str) -> dict[str, str]:
    return {"GOQ_HOME": home, "GOQ_JSERV_IP": "10.1.2.3", **more}


def test_kill_grace_defaults_to_10_s_and_takes_fractions_and_zero(tmp_path):
    home = str(tmp_path)
    assert load_settings(env_for(home)).kill_grace_sec == 10.0 == Settings(home).kill_grace_sec
    for raw, value in (("0.5", 0.5), ("0", 0.0), ("3600", 3600.0), (" 2 ", 2.0)):
        assert load_settings(env_for(home, GOQ_KILL_GRACE=raw)).kill_grace_sec == value


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf", "3601", "1s", "1e9"])
def test_bad_kill_grace_is_one_line_naming_variable_value_and_range(tmp_path, value):
    with pytest.raises(ConfigError) as e:
        load_settings(env_for(str(tmp_path), GOQ_KILL_GRACE=value))
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"GOQ_KILL_GRACE={value!r} (from the environment)")
    assert "from 0 to 3600" in text


def test_goq_work_with_a_bad_kill_grace_is_one_line_and_exit_1(tmp_path):
    env = dict(os.environ, **env_for(str(tmp_path), GOQ_KILL_GRACE="ten"))
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", "work"],
        env=env,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "GOQ_KILL_GRACE='ten'" in err and "from 0 to 3600" in err
