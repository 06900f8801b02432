"""Running a job on a worker host (exact argv, cwd, env, /dev/null stdin, one output file, exit
status, kill of the whole tree) and the guardian that kills a dead worker's jobs.

"Gone" below means no live process in the group. Zombies do not count: where init does not reap
orphans (as in some containers, this one included) they linger, and kill(-pgid, 0) still
succeeds for them although nothing runs.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from goq_core.messages import Job
from goq_core.roles import jobrun
from goq_core.roles.guardian import Guardian
from goq_core.roles.jobrun import JobRun

PATH = ["PATH=/usr/local/bin:/usr/bin:/bin"]


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


def eventually(cond: Callable[[], bool], within: float) -> float:
    """Poll `cond` until it is true; returns how long that took. Fails after `within` seconds."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > within:
            pytest.fail(f"condition not met within {within} s")
        time.sleep(0.005)
    return time.monotonic() - t0


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


@pytest.fixture
def home(tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    return str(d)


@pytest.fixture
def run_job(home, tmp_path):
    """Start jobs with JobRun.start; every group still alive at the end is SIGKILLed."""
    started: list[JobRun] = []
    ids = iter(range(1, 1000))

    def run(cmd: str, *args: str, shell: bool = False, env=None, dir: str = "") -> JobRun:
        job = Job(
            jobid=next(ids),
            attempt=1,
            cmd=cmd,
            args=list(args),
            shell=shell,
            env=PATH if env is None else env,
            dir=dir,
        )
        r = JobRun.start(job, home, str(tmp_path / "spool"))
        started.append(r)
        return r

    yield run
    for r in started:
        if r.pgid:
            kill_group(r.pgid)
            r.wait(2.0)


def output(r: JobRun) -> str:
    return b"".join(r.iter_output()).decode()


def finished(r: JobRun) -> int:
    status = r.wait(5.0)
    assert status is not None, "job did not finish within 5 s"
    return status


# --- how a job runs --------------------------------------------------------------------------


def test_argv_is_passed_exactly_without_shell_parsing(run_job):
    args = ["a b", 'it\'s "quoted"', "$HOME", "*", "", "; rm -rf x"]
    r = run_job("printf", "[%s]\\n", *args)
    assert finished(r) == 0
    assert output(r) == "".join(f"[{a}]\n" for a in args)


def test_shell_job_runs_a_pipe_with_bin_sh(run_job):
    r = run_job("printf 'b\\na\\n' | sort | tr a-z A-Z", shell=True)
    assert finished(r) == 0
    assert output(r) == "A\nB\n"


def test_job_runs_in_its_submit_directory(run_job, tmp_path):
    sub = tmp_path / "submit dir"
    sub.mkdir()
    r = run_job("pwd", dir=str(sub))
    finished(r)
    assert output(r) == f"{sub}\n"


def test_missing_submit_directory_falls_back_to_home(run_job, home, tmp_path):
    r = run_job("pwd", dir=str(tmp_path / "not on this host"))
    assert finished(r) == 0
    assert output(r) == f"{home}\n"


def test_environment_is_exactly_the_jobs(run_job):
    r = run_job("/usr/bin/env", env=["A=1", "B=x=y", "no equals sign", "=nameless"])
    assert finished(r) == 0
    assert output(r) == "A=1\nB=x=y\n"


def test_command_is_found_on_the_jobs_path(run_job, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "mytool"
    tool.write_text("#!/bin/sh\necho mine\n")
    tool.chmod(0o755)
    r = run_job("mytool", env=[f"PATH={bindir}:/usr/bin:/bin"])
    assert finished(r) == 0
    assert output(r) == "mine\n"


def test_stdin_is_dev_null(run_job):
    r = run_job("readlink /proc/$$/fd/0; cat; echo cat=$?", shell=True)
    assert finished(r) == 0
    assert output(r) == "/dev/null\ncat=0\n"


def test_stdout_and_stderr_interleave_in_one_file(run_job):
    r = run_job("echo 1; echo 2 >&2; echo 3; echo 4 >&2", shell=True)
    finished(r)
    assert output(r) == "1\n2\n3\n4\n"
    assert os.path.basename(r.output_path) == f"{r.job.jobid}.1.out"


def test_job_leads_its_own_session_and_process_group(run_job):
    r = run_job("sleep", "100")
    assert r.pgid == r.pid == os.getpgid(r.pid) == os.getsid(r.pid)
    assert r.pgid != os.getpgid(0)


def test_exit_status_is_the_exit_code(run_job):
    assert finished(run_job("exit 3", shell=True)) == 3
    assert finished(run_job("true")) == 0


def test_death_by_signal_is_minus_the_signal(run_job):
    r = run_job("kill -USR1 $$; sleep 5", shell=True)
    assert finished(r) == -signal.SIGUSR1


def test_command_not_found_ends_with_127_and_says_why(run_job):
    r = run_job("no-such-command-goq", "x")
    assert r.poll() == 127 and r.wait(0) == 127
    assert r.pid == 0 and r.end_ns >= r.start_ns > 0
    assert "cannot run 'no-such-command-goq'" in output(r)
    assert "No such file or directory" in output(r)


def test_command_not_executable_ends_with_126(run_job, tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("not a program\n")
    r = run_job(str(f))
    assert r.wait(0) == 126
    assert "Permission denied" in output(r)


def test_shell_reports_its_own_not_found(run_job):
    assert finished(run_job("no-such-command-goq", shell=True)) == 127


def test_wait_returns_none_while_the_job_runs(run_job):
    r = run_job("sleep", "100")
    t0 = time.monotonic()
    assert r.wait(0.05) is None
    assert r.poll() is None
    assert 0.04 <= time.monotonic() - t0 < 1.0


def test_fileno_polls_readable_when_the_job_ends(run_job):
    r = run_job("sleep", "0.05")
    fd = r.fileno()
    assert fd >= 0
    ready, _, _ = select.select([fd], [], [], 5.0)
    assert ready == [fd]
    assert r.poll() == 0 and r.fileno() == -1


def test_outcome_records_pid_times_status_and_output_size(run_job):
    r = run_job("printf", "12345")
    finished(r)
    job = r.outcome()
    assert (job.pid, job.exit_status, job.out_bytes) == (r.pid, 0, 5)
    assert (job.jobid, job.attempt) == (r.job.jobid, r.job.attempt)
    assert 0 < job.start_ns <= job.end_ns
    assert r.job.pid == 0  # the job given to start() is left alone
    assert job.cmd == "" and job.args == [] and job.env == []  # the server has what it ran


# --- output ----------------------------------------------------------------------------------


def test_output_is_read_in_bounded_chunks_from_any_offset(run_job):
    r = run_job("head -c 2500000 /dev/urandom", shell=True)
    finished(r)
    chunks = list(r.iter_output(chunk_size=1 << 20))
    assert [len(c) for c in chunks] == [1 << 20, 1 << 20, 2500000 - 2 * (1 << 20)]
    whole = b"".join(chunks)
    assert r.output_size() == len(whole)
    assert b"".join(r.iter_output(chunk_size=1000, offset=2_000_000)) == whole[2_000_000:]
    assert r.read_output(10, 20) == whole[10:30]
    r.discard_output()
    assert not os.path.exists(r.output_path)


def test_output_stays_in_the_spool_after_the_job_ends(run_job):
    r = run_job("echo", "kept")
    finished(r)
    assert output(r) == "kept\n" and output(r) == "kept\n"


# --- kill ------------------------------------------------------------------------------------


def test_kill_leaves_no_process_of_the_group_within_a_second(run_job):
    r = run_job("/bin/sh", "-c", "sleep 100 & sleep 100")
    eventually(lambda: len(live_members(r.pgid)) == 3, within=5.0)  # sh and two sleeps
    t0 = time.monotonic()
    status = r.kill()
    eventually(lambda: not live_members(r.pgid), within=1.0)
    assert time.monotonic() - t0 < 1.0
    assert status == -signal.SIGTERM == r.exit_status
    assert r.end_ns > 0


def test_job_ignoring_sigterm_is_sigkilled_after_the_grace(run_job):
    r = run_job("trap '' TERM; sleep 100 & sleep 100", shell=True)
    eventually(lambda: len(live_members(r.pgid)) == 3, within=5.0)
    t0 = time.monotonic()
    status = r.kill(grace=0.2)
    took = time.monotonic() - t0
    assert status == -signal.SIGKILL
    assert 0.2 <= took < 1.0
    assert not live_members(r.pgid)


def test_kill_clears_processes_a_finished_job_left_behind(run_job):
    r = run_job("sleep 100 & echo started", shell=True)
    assert finished(r) == 0
    eventually(lambda: len(live_members(r.pgid)) == 1, within=5.0)  # the orphaned sleep
    assert r.kill() == 0  # the job's status stays its own
    assert not live_members(r.pgid)


def test_kill_of_a_finished_job_returns_its_status(run_job):
    r = run_job("exit 4", shell=True)
    assert finished(r) == 4
    assert r.kill() == 4


def test_kill_of_a_job_that_never_started_returns_its_status(run_job):
    r = run_job("no-such-command-goq")
    assert r.kill() == 127


# --- guardian --------------------------------------------------------------------------------

FAKE_WORKER = """
import sys, time
from goq_core.messages import Job
from goq_core.roles import jobrun
from goq_core.roles.guardian import Guardian
from goq_core.roles.jobrun import JobRun

guardian = Guardian().start()
job = Job(jobid=1, attempt=1, cmd="/bin/sh", args=["-c", "sleep 100 & sleep 100"],
          env=["PATH=/usr/bin:/bin"])
run = JobRun.start(job, sys.argv[1], sys.argv[2])
guardian.watch(run.pgid)
print(guardian.pid, run.pgid, flush=True)
time.sleep(100)
"""


def test_guardian_kills_the_job_group_of_a_sigkilled_worker(home, tmp_path):
    worker = subprocess.Popen(
        [sys.executable, "-c", FAKE_WORKER, home, str(tmp_path / "spool")],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    guardian_pid = pgid = 0
    try:
        ready, _, _ = select.select([worker.stdout], [], [], 10.0)
        assert ready, "fake worker did not start its job within 10 s"
        guardian_pid, pgid = map(int, worker.stdout.readline().split())
        eventually(lambda: len(live_members(pgid)) == 3, within=5.0)

        worker.kill()  # SIGKILL: no chance to clean up
        worker.wait(5.0)
        took = eventually(lambda: not live_members(pgid), within=1.0)
        assert took < 1.0
    finally:
        kill_pid(worker.pid)
        worker.wait(5.0)
        worker.stdout.close()
        if pgid:
            kill_group(pgid)
        if guardian_pid:
            kill_pid(guardian_pid)


@pytest.fixture
def guardian():
    g = Guardian().start()
    try:
        yield g
    finally:
        if g.pid:
            kill_pid(g.pid)
        g.close()


def test_closing_the_guardian_kills_watched_groups_only(guardian, run_job):
    watched, ended = run_job("sleep", "100"), run_job("sleep", "100")
    guardian.watch(watched.pgid)
    guardian.watch(ended.pgid)
    guardian.unwatch(ended.pgid)
    guardian.watch(0)  # a job that never started has pgid 0: nothing to guard
    guardian.close()
    assert finished(watched) == -signal.SIGKILL
    assert ended.poll() is None


def test_guardian_lives_in_its_own_session_and_ignores_ctrl_c_and_sigterm(guardian, run_job):
    assert os.getsid(guardian.pid) == guardian.pid != os.getsid(0)
    r = run_job("sleep", "100")
    guardian.watch(r.pgid)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(guardian.pid, sig)
    time.sleep(0.1)
    assert r.poll() is None  # the guardian did not die and take the job with it
    guardian.close()
    assert finished(r) == -signal.SIGKILL


def test_a_killed_guardian_is_replaced_and_still_guards(guardian, run_job):
    first = guardian.pid
    a = run_job("sleep", "100")
    guardian.watch(a.pgid)
    os.kill(first, signal.SIGKILL)
    eventually(lambda: _state(first) in ("Z", ""), within=5.0)  # dead: its pipe end is closed
    b = run_job("sleep", "100")
    guardian.watch(b.pgid)  # finds the pipe broken and starts another guardian
    assert guardian.pid not in (0, first)
    guardian.close()
    assert finished(a) == -signal.SIGKILL and finished(b) == -signal.SIGKILL


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return ""
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


def test_job_gets_sigpipe_at_its_default_though_python_ignores_it(run_job):
    run = run_job("yes x | head -c 6", shell=True)
    assert run.wait(10) == 0
    with open(run.output_path, "rb") as fh:
        assert fh.read() == b"x\nx\nx\n"  # `yes` died of SIGPIPE quietly, no "Broken pipe" line


# --- what a job inherits (issue 9) -------------------------------------------------------------

LIST_FDS = "import os; print(*sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"


@pytest.mark.parametrize("how", ["close_range", "/proc scan"])
def test_job_inherits_no_descriptor_of_the_worker_but_0_1_2(run_job, monkeypatch, how):
    """A worker's inheritable descriptors (a socket, a pipe, whatever its own parent left it)
    must not reach jobs: only stdin, stdout and stderr do (with close_range, and without)."""
    if how != "close_range":
        monkeypatch.setattr(jobrun, "_close_range", False)
    r_end, w_end = os.pipe()
    extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
    try:
        for fd in (r_end, w_end, *extra):
            os.set_inheritable(fd, True)
        r = run_job(sys.executable, "-c", LIST_FDS)
        assert finished(r) == 0
        listed = [int(fd) for fd in output(r).split()]
        # 0, 1, 2 and the one listdir opened to read /proc/self/fd
        assert listed[:3] == [0, 1, 2] and len(listed) == 4, listed
    finally:
        for fd in (r_end, w_end, *extra):
            os.close(fd)


def test_undecodable_bytes_in_argv_env_and_directory_reach_the_job_exactly(run_job, tmp_path):
    """Linux argv, environments and paths are bytes; goq carries them as surrogateescape str
    and the job gets the original bytes."""
    where = os.fsencode(tmp_path) + b"/d\xe9"
    os.mkdir(where)
    arg, value = os.fsdecode(b"caf\xe9"), os.fsdecode(b"\xff\xfe")
    code = (
        "import os, sys; out = sys.stdout.buffer; "
        "out.write(os.fsencode(sys.argv[1]) + b'|' + os.environb[b'ODD'] + b'|' + os.getcwdb())"
    )
    r = run_job(
        sys.executable, "-c", code, arg, env=[*PATH, f"ODD={value}"], dir=os.fsdecode(where)
    )
    assert finished(r) == 0
    assert b"".join(r.iter_output()) == b"caf\xe9|\xff\xfe|" + where


# --- several slots (issue 10) ------------------------------------------------------------------


def test_env_extra_is_added_to_the_jobs_environment_and_wins(home, tmp_path):
    job = Job(jobid=1, attempt=1, cmd="/usr/bin/env", env=["A=1", "CUDA_VISIBLE_DEVICES=0,1"])
    extra = {"GOQ_CPUS": "2", "CUDA_VISIBLE_DEVICES": ""}
    r = JobRun.start(job, home, str(tmp_path / "spool"), env_extra=extra)
    assert finished(r) == 0
    assert output(r) == "A=1\nCUDA_VISIBLE_DEVICES=\nGOQ_CPUS=2\n"
    assert job.env == ["A=1", "CUDA_VISIBLE_DEVICES=0,1"]  # the job itself is left alone


def test_jobs_started_from_many_threads_at_once_each_run_in_their_own_directory(home, tmp_path):
    """Spawning moves the process's directory for an instant: spawns from several threads
    must take turns, or a job would start in another job's directory."""
    import threading

    dirs = []
    for i in range(8):
        d = tmp_path / f"d{i}"
        d.mkdir()
        dirs.append(d)
    runs: list[JobRun] = []
    lock = threading.Lock()

    def start(i: int) -> None:
        for n in range(5):
            job = Job(jobid=100 * i + n, attempt=1, cmd="pwd", env=PATH, dir=str(dirs[i]))
            r = JobRun.start(job, home, str(tmp_path / "spool"))
            with lock:
                runs.append(r)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(runs) == 40
    for r in runs:
        assert finished(r) == 0
        assert output(r) == f"{dirs[r.job.jobid // 100]}\n"
    assert os.getcwd() != str(dirs[0])


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs 2 cores",
)
def test_affinity_pins_the_job_from_its_start_and_not_the_caller(run_job, home, tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    job = Job(jobid=7, attempt=1, cmd=sys.executable, args=["-c", code], env=PATH)
    r = JobRun.start(job, home, str(tmp_path / "spool"), affinity=[allowed[-1]])
    assert finished(r) == 0
    assert output(r) == f"[{allowed[-1]}]\n"
    assert sorted(os.sched_getaffinity(0)) == allowed  # this thread's mask is put back
    # the shell's children inherit it too (no window before the pin)
    job = Job(jobid=8, attempt=1, cmd="grep Cpus_allowed_list /proc/self/status", shell=True)
    job.env = PATH
    r = JobRun.start(job, home, str(tmp_path / "spool"), affinity={allowed[0]})
    assert finished(r) == 0
    assert output(r).split(":")[1].strip() == str(allowed[0])
