"""goq end to end: real `goq` processes talking over real sockets on 127.0.0.1, for each
transport. Every process is stopped by PID when its test ends (see tests/cluster.py)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, initialised, pgid_alive, wait_for

pytestmark = pytest.mark.slow

TRANSPORTS = ["zmq", "nng"]


@pytest.fixture(params=TRANSPORTS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path):
    with initialised(tmp_path, transport=request.param, heartbeat=1.0) as c:
        yield c


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """A cluster with its server up (no worker yet)."""
    cluster.start_server()
    return cluster


def _read_pid(path: Path, timeout: float = 15) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip(), timeout, f"pid in {path}")
    return int(path.read_text().split()[0])


# ----------------------------------------------------------------------------- the README


def test_readme_local_session(cluster: Cluster) -> None:
    cluster.start_server()
    before = cluster.stat()
    assert before["waitingJobs"] == 0 and before["jservPid"] == cluster.server.pid
    assert cluster.sub("echo", "hello", "world") == 1
    assert cluster.stat()["waitingJobs"] == 1
    cluster.start_worker()
    assert cluster.wait_output(1) == "hello world\n"
    counters = wait_for(
        lambda: (s := cluster.stat())["finishedJobsCount"] == 1 and s, 10, "job 1 finished"
    )
    assert counters["waitingJobs"] == 0 and counters["runQlen"] == 0
    assert "shutting down" in cluster.ok("shutdown")
    cluster.server.wait(10)
    assert cluster.server.returncode == 0


def test_job_output_and_exit_status_are_recorded(running: Cluster) -> None:
    running.start_worker()
    jobid = running.sub("sh", "-c", "echo out; echo err >&2; exit 3")
    done = running.goq("wait", str(jobid))
    assert done.returncode == 2  # it ran, and did not succeed
    assert f"job {jobid} finished: exit status 3" in done.stdout
    assert running.output(jobid) == "out\nerr\n"


def test_job_runs_argv_exactly_without_shell_parsing(running: Cluster) -> None:
    running.start_worker()
    jobid = running.sub("printf", "%s|", "a b", "$HOME", "*", "'q'")
    running.ok("wait", str(jobid))
    assert running.output(jobid) == "a b|$HOME|*|'q'|"


def test_sub_shell_runs_a_shell_line(running: Cluster) -> None:
    running.start_worker()
    jobid = running.sub("--shell", "echo one two | wc -w > counted; cat counted")
    running.ok("wait", str(jobid))
    assert running.output(jobid).strip() == "2"


def test_job_runs_in_submit_directory_with_submitter_environment(running: Cluster) -> None:
    running.start_worker()
    subdir = running.workdir / "deeper"
    subdir.mkdir()
    env = dict(running.env, GOQ_TEST_MARKER="marked")
    out = running.ok("sub", "sh", "-c", 'echo "$PWD $GOQ_TEST_MARKER"; cat', cwd=subdir, env=env)
    jobid = int(out.split()[2])
    running.ok("wait", str(jobid))
    assert running.output(jobid, cwd=subdir) == f"{subdir} marked\n"  # stdin was /dev/null


def test_batch_submission_from_a_file_submits_every_line(running: Cluster) -> None:
    jobs = running.workdir / "jobs.txt"
    jobs.write_text("# a comment\necho first\n\necho 'second job'\necho third\n")
    out = running.ok("sub", "--file", str(jobs))
    assert out.startswith("submitted jobs 1..3 (3 jobs)")
    running.start_worker()
    for jobid, text in ((1, "first\n"), (2, "second job\n"), (3, "third\n")):
        running.ok("wait", str(jobid))
        assert running.output(jobid) == text


def test_output_falls_back_to_goq_home_when_submit_dir_is_gone(running: Cluster) -> None:
    gone = running.workdir / "temporary"
    gone.mkdir()
    out = running.ok("sub", "pwd", cwd=gone)
    jobid = int(out.split()[2])
    shutil.rmtree(gone)
    running.start_worker()
    running.ok("wait", str(jobid))
    assert (running.home / "o" / f"out.{jobid:05d}").read_text() == f"{running.home}\n"


# ----------------------------------------------------------------------------- kill and wait


def test_kill_of_waiting_job_removes_it(running: Cluster) -> None:
    jobid = running.sub("echo", "never")
    assert "cancelled waiting job" in running.ok("kill", str(jobid))
    assert running.stat()["waitingJobs"] == 0
    done = running.goq("wait", str(jobid))
    assert done.returncode == 2 and f"job {jobid} was cancelled" in done.stdout


def test_kill_of_running_job_kills_its_whole_process_tree_within_a_second(
    running: Cluster,
) -> None:
    running.start_worker()
    pidfile = running.workdir / "pid"
    jobid = running.sub("sh", "-c", f"echo $$ > {pidfile}; sleep 100 & sleep 100")
    pgid = _read_pid(pidfile)  # the job is its own session: its shell's pid is the group id
    wait_for(lambda: pgid_alive(pgid), 5, "job processes")
    time.sleep(0.3)  # let the worker's heartbeat be held, as in normal running
    started = time.monotonic()
    assert "cancelled running job" in running.ok("kill", str(jobid))
    wait_for(lambda: not pgid_alive(pgid), 1.5, "the job's process group to die")
    assert time.monotonic() - started < 1.5
    done = running.goq("wait", str(jobid))
    assert done.returncode == 2 and f"job {jobid} was cancelled" in done.stdout


def test_wait_blocks_until_the_job_ends(running: Cluster) -> None:
    running.start_worker()
    jobid = running.sub("sleep", "1.5")
    started = time.monotonic()
    assert "exit status 0" in running.ok("wait", str(jobid))
    assert time.monotonic() - started >= 1.0


# ----------------------------------------------------------------------------- faults


def test_job_of_sigkilled_worker_is_killed_and_rerun_elsewhere(running: Cluster) -> None:
    pids = running.workdir / "pids"
    doomed = running.start_worker(log="doomed.log")
    jobid = running.sub("sh", "-c", f"echo $$ >> {pids}; sleep 2; echo done")
    first_pgid = _read_pid(pids)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(5)
    killed_at = time.monotonic()
    # the guardian takes the job's processes down with the worker
    wait_for(lambda: not pgid_alive(first_pgid), 1.0, "the dead worker's job to die")
    running.start_worker(log="rescuer.log")
    wait_for(lambda: len(pids.read_text().split()) == 2, 2 * 1.0 + 3, "the job to run again")
    rerun_after = time.monotonic() - killed_at
    assert "exit status 0" in running.ok("wait", str(jobid))
    assert running.output(jobid) == "done\n"
    counters = running.stat()
    assert counters["requeuedJobsCount"] == 1 and counters["finishedJobsCount"] == 1
    assert rerun_after <= 2 * 1.0 + 2.5  # 2 heartbeats, plus worker start-up here


def test_server_restart_is_rejoined_by_busy_and_idle_workers(running: Cluster) -> None:
    running.start_worker(log="w1.log")
    running.start_worker(log="w2.log")
    wait_for(lambda: running.stat()["waitingWorkers"] == 2, 10, "two idle workers")
    long_job = running.sub("sh", "-c", "sleep 2.5; echo survived")
    wait_for(lambda: running.stat()["runQlen"] == 1, 5, "the long job to start")
    running.ok("shutdown")
    running.server.wait(10)
    running.start_server()
    quick = running.sub("echo", "after restart")  # needs the idle worker to have rejoined
    assert "exit status 0" in running.ok("wait", str(quick), timeout=30)
    assert running.output(quick) == "after restart\n"
    assert "exit status 0" in running.ok("wait", str(long_job), timeout=30)
    assert running.output(long_job) == "survived\n"
    assert running.stat()["requeuedJobsCount"] == 0  # the busy worker kept and finished it


def test_immolateworkers_makes_every_worker_exit(running: Cluster) -> None:
    idle = running.start_worker(log="idle.log")
    busy = running.start_worker(log="busy.log")
    wait_for(lambda: running.stat()["waitingWorkers"] == 2, 10, "two idle workers")
    jobid = running.sub("sleep", "30")
    wait_for(lambda: running.stat()["runQlen"] == 1, 5, "the job to start")
    time.sleep(0.5)  # the busy worker's heartbeat is held now
    running.ok("immolateworkers")
    for proc in (idle, busy):
        proc.wait(10)
        assert proc.returncode == 0
    counters = running.stat()
    assert counters["waitingJobs"] == 1 and counters["runQlen"] == 0  # requeued, not lost
    running.ok("kill", str(jobid))


def test_oneshot_worker_runs_one_job_and_exits(running: Cluster) -> None:
    running.sub("echo", "one")
    running.sub("echo", "two")
    worker = running.start_worker("oneshot")
    worker.wait(20)
    assert worker.returncode == 0
    assert running.output(1) == "one\n"
    assert running.stat()["waitingJobs"] == 1


# ----------------------------------------------------------------------------- user errors


def _error_line(done) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_goq_home_unset_is_a_clear_error(cluster: Cluster) -> None:
    env = {k: v for k, v in cluster.env.items() if k != "GOQ_HOME"}
    assert "GOQ_HOME" in _error_line(cluster.goq("stat", env=env))


def test_missing_key_suggests_goq_init(cluster: Cluster) -> None:
    env = dict(cluster.env, GOQ_HOME=str(cluster.root / "elsewhere"))
    os.makedirs(env["GOQ_HOME"])
    assert "goq init" in _error_line(cluster.goq("sub", "true", env=env))


def test_init_twice_is_refused(cluster: Cluster) -> None:
    assert "start over" in _error_line(cluster.goq("init"))


def test_unreachable_server_is_a_clear_error_within_the_send_timeout(cluster: Cluster) -> None:
    started = time.monotonic()
    line = _error_line(cluster.goq("stat"))
    assert "no reply" in line and "goq serve" in line
    assert time.monotonic() - started < 5


def test_unknown_job_is_a_clear_error(running: Cluster) -> None:
    assert "not known" in _error_line(running.goq("kill", "99"))
    assert "not known" in _error_line(running.goq("wait", "99"))


def test_empty_sub_is_refused(running: Cluster) -> None:
    assert "no command" in _error_line(running.goq("sub"))
    assert "empty" in _error_line(running.goq("sub", ""))
    assert running.stat()["nextJobId"] == 1


def test_codec_mismatch_is_a_clear_error(running: Cluster) -> None:
    line = _error_line(running.goq("--codec", "capnp", "stat"))
    assert "codec" in line and "raw" in line


def test_transport_mismatch_is_a_clear_error_not_a_hang(running: Cluster) -> None:
    other = "nng" if running.env["GOQ_TRANSPORT"] == "zmq" else "zmq"
    started = time.monotonic()
    line = _error_line(running.goq("--transport", other, "stat"))
    assert "transport" in line
    assert time.monotonic() - started < 5


def test_wrong_key_is_a_clear_error(running: Cluster) -> None:
    stranger = running.root / "stranger"
    stranger.mkdir()
    env = dict(running.env, GOQ_HOME=str(stranger))
    assert running.goq("init", env=env).returncode == 0
    line = _error_line(running.goq("sub", "true", env=env))
    assert "key" in line
    assert running.stat()["droppedBadSigCount"] == 1


def test_large_batch_is_sent_in_chunks_and_gets_consecutive_ids(running: Cluster) -> None:
    jobs = running.workdir / "many.txt"
    jobs.write_text("".join(f"echo {i}\n" for i in range(12_000)))
    out = running.ok("sub", "--file", str(jobs), timeout=60)
    assert out.startswith("submitted jobs 1..12000 (12000 jobs)"), out
    counters = running.stat()
    assert counters["waitingJobs"] == 12_000 and counters["nextJobId"] == 12_001


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_large_output_arrives_whole_in_chunks_without_filling_server_memory(
    running: Cluster,
) -> None:
    size = 48 * 1024 * 1024  # 48 chunks of 1 MiB
    running.start_worker()
    before = _vm_kib(running.server.pid, "VmRSS")
    jobid = running.sub("sh", "-c", f"yes 0123456789abcdef | head -c {size}; echo; echo end")
    assert "exit status 0" in running.ok("wait", str(jobid), timeout=120)
    out = running.workdir / "o" / f"out.{jobid:05d}"
    assert out.stat().st_size == size + len("\nend\n")
    with open(out, "rb") as fh:
        assert fh.read(34) == b"0123456789abcdef\n0123456789abcdef\n"
        fh.seek(-5, os.SEEK_END)
        assert fh.read() == b"\nend\n"
    grown_mib = (_vm_kib(running.server.pid, "VmHWM") - before) / 1024
    assert grown_mib < 24, (
        f"server memory grew by {grown_mib:.0f} MiB for a {size >> 20} MiB output"
    )
