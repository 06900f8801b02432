"""Issue 9, the client side: non-UTF-8 argv, environments, directories and jobs files reach the
job exactly; the CLI never prints a traceback for bad input (huge ids and counts, NUL bytes,
binary files, text its terminal cannot encode); jobs get no descriptor of their worker but
0-2; large batches are split by count and by size.

The end-to-end tests use real processes on 127.0.0.1 (tests/cluster.py), every one stopped by
PID; their output is read as bytes, since what they print need not be UTF-8.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from goq_cli.entry import escape_unencodable
from goq_cli.fastpath import try_fast_path
from goq_cli.jobspec import decode_lines, jobs_from_lines, make_job
from goq_core.config import Settings
from goq_core.errors import FrameTooBig, GoqError
from goq_core.limits import (
    MAX_FRAME,
    MAX_JOBS_PER_SUBMIT,
    MAX_STAT_LIST,
    MAX_TEXT,
    SUBMIT_CHUNK_BYTES,
)
from goq_core.messages import Job, Kind, Message
from goq_core.roles.client import Client, batches
from tests.cluster import Cluster, initialised, wait_for

HUGE = "99999999999999999999"  # beyond int64
CAFE = os.fsdecode(b"caf\xe9")  # what sys.argv holds for the Latin-1 bytes caf\xe9
FF = os.fsdecode(b"\xff")


# ----------------------------------------------------------------------------- helpers


def run_goq(c: Cluster, *args: str, cwd: Path | bytes | None = None, env=None, input=b""):
    """`goq ARGS` with stdout and stderr as bytes (they need not be UTF-8)."""
    return subprocess.run(
        c.argv(args),
        cwd=cwd or c.workdir,
        env=env or c.env,
        capture_output=True,
        timeout=60,
        input=input,
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The single line a failed goq command printed (and it printed nothing else)."""
    err = done.stderr.decode("utf-8")  # goq's own lines are always valid UTF-8
    assert done.returncode == 1, (done.returncode, done.stdout, err)
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("goq: error: "), err
    return err.strip()


def output_bytes(c: Cluster, jobid: int, cwd: Path | bytes | None = None) -> bytes:
    where = os.fsencode(cwd or c.workdir)
    path = os.path.join(where, b"o", b"out.%05d" % jobid)
    wait_for(lambda: os.path.exists(path), 20, f"output of job {jobid}")
    wait_ok(c, jobid)
    with open(path, "rb") as fh:
        return fh.read()


def wait_ok(c: Cluster, jobid: int) -> str:
    done = run_goq(c, "wait", str(jobid))
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


@pytest.fixture(params=["raw", "capnp"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster (zmq) with its server and one worker up, for each codec."""
    with initialised(
        tmp_path, server=True, heartbeat=1.0, extra_env={"GOQ_CODEC": request.param}
    ) as c:
        c.start_worker()
        yield c


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster that is initialised but has no server (for errors found before any request)."""
    with initialised(tmp_path, heartbeat=1.0) as c:
        yield c


# ----------------------------------------------------------------------------- non-UTF-8, e2e

slow = pytest.mark.slow


@slow
def test_latin1_argument_reaches_the_job_byte_exact(running: Cluster) -> None:
    done = run_goq(running, "sub", "printf", "%s\\n", CAFE)
    assert done.returncode == 0, done.stderr
    jobid = int(done.stdout.split()[2])
    assert output_bytes(running, jobid) == b"caf\xe9\n"


@slow
def test_environment_value_with_byte_ff_reaches_the_job_byte_exact(running: Cluster) -> None:
    env = dict(running.env, GOQ_TEST_ODD=f"a{FF}b")
    done = run_goq(running, "sub", "/bin/sh", "-c", 'printf "%s" "$GOQ_TEST_ODD"', env=env)
    assert done.returncode == 0, done.stderr
    assert output_bytes(running, int(done.stdout.split()[2])) == b"a\xffb"


@slow
def test_job_submitted_from_a_non_utf8_directory_runs_there(running: Cluster) -> None:
    where = os.fsencode(running.workdir) + b"/d\xe9"
    os.mkdir(where)
    done = run_goq(running, "sub", "/bin/pwd", cwd=where)
    assert done.returncode == 0, done.stderr
    assert output_bytes(running, int(done.stdout.split()[2]), cwd=where) == where + b"\n"


@slow
def test_jobs_file_with_latin1_and_stat_of_its_jobs_print_without_crashing(
    running: Cluster,
) -> None:
    jobs = running.workdir / "latin1.txt"
    jobs.write_bytes(b"printf '%s\\n' caf\xe9\n# comment \xff\nprintf '%s\\n' \xff\xfe\n")
    running.stop(running.procs[-1])  # no worker: the jobs stay waiting for `goq stat`
    done = run_goq(running, "sub", "--file", str(jobs))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"submitted jobs 1..2 (2 jobs)")
    stat = run_goq(running, "stat")
    assert stat.returncode == 0, stat.stderr
    text = stat.stdout.decode("utf-8")  # escaped, hence valid UTF-8
    assert "caf\\xe9" in text and "\\xff\\xfe" in text, text
    running.start_worker()
    assert output_bytes(running, 1) == b"caf\xe9\n"
    assert output_bytes(running, 2) == b"\xff\xfe\n"
    assert "exit status 0" in wait_ok(running, 2)


# ----------------------------------------------------------------------------- descriptors, e2e


@slow
def test_job_gets_no_descriptor_of_its_worker(tmp_path: Path) -> None:
    """The worker's own descriptors, and any its parent left it, stay out of the job."""
    c = Cluster(tmp_path, heartbeat=1.0)
    c.init()
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_r, True)
    try:
        c.start_server()
        with open(c.root / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                c.argv(("work",)),
                cwd=c.workdir,
                env=c.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(leaked_r,),  # as a careless parent (a shell, a batch system) would
            )
        c.procs.append(worker)
        jobid = c.sub("ls", "/proc/self/fd")
        listed = sorted(int(fd) for fd in output_bytes(c, jobid).split())
        assert listed[:3] == [0, 1, 2] and len(listed) == 4, listed  # + ls's own listing fd
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
        c.close()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("command", ["kill", "wait", "stat"])
def test_id_or_count_beyond_int64_is_one_line_and_exit_1(idle: Cluster, command: str) -> None:
    line = one_error_line(run_goq(idle, command, HUGE))
    assert HUGE in line and "range" in line


@pytest.mark.parametrize("args", [["kill", "0"], ["wait", "-5"], ["stat", "²"], ["kill", "x"]])
def test_other_bad_ids_and_counts_are_one_line_and_exit_1(idle: Cluster, args) -> None:
    one_error_line(run_goq(idle, *args))


@pytest.mark.parametrize(
    "args",
    [["stat", HUGE], ["stat", str(MAX_STAT_LIST + 1)], ["stat", "²"], ["stat", "-1"]],
)
def test_fast_path_leaves_unusual_counts_to_the_click_cli(args) -> None:
    assert try_fast_path(args) is False  # returns before connecting to anything


@slow
def test_stat_count_above_the_list_cap_is_capped_with_a_note(running: Cluster) -> None:
    done = run_goq(running, "stat", "1000000")
    assert done.returncode == 0, done.stderr
    assert b"note: listing at most 1000" in done.stderr
    assert b"nextJobId: 1" in done.stdout


def test_jobs_file_with_a_nul_byte_is_one_line_naming_the_line(idle: Cluster) -> None:
    jobs = idle.workdir / "nul.txt"
    jobs.write_bytes(b"echo fine\n\necho 'a\x00b'\n")
    line = one_error_line(run_goq(idle, "sub", "--file", str(jobs)))
    assert "line 3" in line and "NUL" in line


def test_binary_jobs_file_from_stdin_is_one_line(idle: Cluster) -> None:
    with open("/bin/true", "rb") as fh:
        binary = fh.read(4096)
    line = one_error_line(run_goq(idle, "sub", "--file", "-", input=binary))
    assert "NUL" in line and "line 1" in line


def test_jobs_file_lines_decode_losslessly() -> None:
    lines = decode_lines(b"echo caf\xe9\r\nprintf %s \xff\xfe\rtrue\n")
    assert lines == [f"echo {CAFE}", "printf %s " + os.fsdecode(b"\xff\xfe"), "true"]
    jobs = jobs_from_lines(lines, shell=False)
    assert [os.fsencode(a) for a in jobs[0].args] == [b"caf\xe9"]
    assert jobs[1].args[1].encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_a_nul_in_a_command_or_argument_is_refused_before_sending() -> None:
    with pytest.raises(GoqError, match="line 2: a NUL byte"):
        jobs_from_lines(["true", "echo a\x00b"], shell=True)
    with pytest.raises(GoqError, match="NUL character in argument 2"):
        make_job(["echo", "ok", "a\x00b"], shell=False)
    with pytest.raises(GoqError, match="NUL character in the command"):
        make_job(["ec\x00ho"], shell=True)


def test_an_empty_command_in_a_jobs_file_is_refused() -> None:
    with pytest.raises(GoqError, match="line 1: an empty command"):
        jobs_from_lines(["'' x"], shell=False)


def test_printing_escapes_undecodable_bytes_and_other_surrogates() -> None:
    text = f"{CAFE} \ud800 é"
    assert text.encode("utf-8", "goq.escape") == b"caf\\xe9 \\ud800 \xc3\xa9"
    assert text.encode("ascii", "goq.escape") == b"caf\\xe9 \\ud800 \\xe9"
    with pytest.raises(UnicodeDecodeError):
        escape_unencodable(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))


# ----------------------------------------------------------------------------- batch splitting


class FakeServer:
    """A client connection that answers SUBMITs as a server would (consecutive ids), refuses
    frames over MAX_FRAME as the transports do, and records the size of each request."""

    def __init__(self, client: Client) -> None:
        self.wire = client.wire
        self.next_id = 1
        self.sizes: list[int] = []
        self.counts: list[int] = []

    def request(self, frame: bytes, timeout: float) -> bytes:
        if len(frame) > MAX_FRAME:
            raise FrameTooBig(f"request of {len(frame)} bytes exceeds {MAX_FRAME}")
        msg = self.wire.unpack(frame)
        assert msg.kind == Kind.SUBMIT
        self.sizes.append(len(frame))
        self.counts.append(len(msg.jobs))
        reply = Message(Kind.SUBMITTED, reply_to=msg.nonce, jobid=self.next_id)
        reply.count = len(msg.jobs)
        self.next_id += len(msg.jobs)
        return self.wire.pack(reply)

    def close(self) -> None:
        pass


@pytest.fixture(params=["raw", "capnp"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Client, FakeServer]]:
    settings = Settings(home=str(tmp_path), codec=request.param)
    c = Client(settings, os.urandom(32))
    fake = FakeServer(c)
    c._conn = fake
    yield c, fake


def many(n: int, arg_bytes: int) -> list[Job]:
    return jobs_from_lines([f"echo {i:06d}{'x' * arg_bytes}" for i in range(n)], shell=False)


def test_batch_of_long_jobs_is_split_by_size_with_consecutive_ids(client) -> None:
    c, fake = client
    ranges = c.submit_many(many(2000, 3000))  # 6 MB of arguments
    assert ranges == [(1, 2000)]
    assert len(fake.sizes) >= 2 and sum(fake.counts) == 2000
    assert max(fake.sizes) <= SUBMIT_CHUNK_BYTES + 64 * 1024, fake.sizes


def test_batch_larger_than_a_frame_is_sent_whole(client) -> None:
    c, fake = client
    assert c.submit_many(many(3000, 3000)) == [(1, 3000)]  # 9 MB: one frame could not carry it
    assert max(fake.sizes) <= MAX_FRAME


def test_batch_is_split_by_count(client) -> None:
    c, fake = client
    assert c.submit_many(many(MAX_JOBS_PER_SUBMIT + 5, 0), chunk=10**9) == [
        (1, MAX_JOBS_PER_SUBMIT + 5)
    ]
    assert max(fake.counts) <= MAX_JOBS_PER_SUBMIT


def test_non_ascii_strings_count_by_their_encoded_size() -> None:
    jobs = jobs_from_lines([f"echo {'日' * 1000}" for _ in range(3000)], shell=False)
    spans = batches(jobs, 5000, SUBMIT_CHUNK_BYTES)  # 9 MB in UTF-8 (3000 characters' worth)
    assert len(spans) >= 3 and spans[-1][1] == 3000


def test_a_job_too_large_for_any_request_is_refused_before_anything_is_sent(client) -> None:
    c, fake = client
    jobs = many(3, 10)
    jobs[1].args = ["y" * (MAX_TEXT // 2)] * 20  # 10 MiB of arguments, each under MAX_TEXT
    with pytest.raises(
        GoqError, match=rf"job 2 of 3 is about [\d,]+ bytes.*limit of {MAX_FRAME:,}"
    ):
        c.submit_many(jobs)
    assert fake.sizes == []  # nothing of the batch was submitted


def test_a_string_longer_than_the_server_takes_is_refused_clearly(client) -> None:
    c, fake = client
    job = make_job(["echo", "z" * (MAX_TEXT + 1)], shell=False)
    with pytest.raises(GoqError, match="the job has an argument of 1,048,577 characters"):
        c.submit_many([job])
    assert fake.sizes == []


def test_an_int_beyond_int64_is_a_goq_error_not_a_traceback(client) -> None:
    c, _ = client
    with pytest.raises(GoqError, match="cannot send this request"):
        c.cancel(10**20)


@slow
def test_jobs_file_of_long_lines_is_split_and_gets_consecutive_ids(running: Cluster) -> None:
    jobs = running.workdir / "long.txt"
    jobs.write_text("".join(f"true {i:06d}{'x' * 3000}\n" for i in range(3000)))  # 9 MB
    done = run_goq(running, "sub", "--file", str(jobs))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"submitted jobs 1..3000 (3000 jobs)"), done.stdout
    assert running.stat()["nextJobId"] == 3001
