"""Issue 11, the command line and client side: `goq sub --after/--after-any/--array/--retries/
--retry-delay/--time/--name/--hold`, `goq hold`, `goq release`, `goq wait` and `goq kill` on
many jobs, and `goq stat` of blocked and held jobs.

No server is needed: bad input must be refused before anything connects (in-process with a
client that fails the test if it is made, and as `python -m goq_cli ...` against a GOQ_HOME
with no server), and the messages the commands send are captured by a Client whose `call`
answers from a script. End-to-end runs are in the workflow e2e tests.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from goq_cli import main as cli_main
from goq_cli.fastpath import try_fast_path
from goq_cli.report import format_limit, format_outcome, format_status
from goq_cli.workflow import (
    Progress,
    check_job_name,
    parse_duration_ms,
    parse_ids,
    succeeded,
    wait_exit_code,
)
from goq_core.limits import MAX_DEPENDENCIES, SUBMIT_CHUNK_BYTES
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.roles.client import Client, _holds, batches, split_ids_text, subtract

ADDRESS = "tcp://127.0.0.1:1776"
HUGE = "99999999999999999999"  # beyond int64


# ----------------------------------------------------------------------------- helpers


class ScriptedClient(Client):
    """A Client without a connection: each request is recorded and answered by `answer`
    (a function of the request, or a list of replies taken in turn)."""

    def __init__(self, answer: Callable[[Message], Message] | list[Message]) -> None:
        self.settings = SimpleNamespace(address=ADDRESS)
        self._conn = None
        self.sent: list[Message] = []
        self.answer = answer

    def call(self, msg: Message, hold_ms: int = 0) -> Message:
        self.sent.append(msg)
        if callable(self.answer):
            return self.answer(msg)
        return self.answer.pop(0)


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ScriptedClient]:
    """Make the CLI's client a ScriptedClient answering as given; returns it."""

    def install(answer) -> ScriptedClient:
        client = ScriptedClient(answer)
        monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
        return client

    return install


@pytest.fixture
def no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets as far as making a client."""

    def refuse(self):
        raise AssertionError("bad input reached the client")

    monkeypatch.setattr(cli_main._Ctx, "client", refuse)


def goq(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit status, stdout, stderr)."""
    try:
        cli_main.main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_line(capsys: pytest.CaptureFixture, *args: str) -> str:
    """The one error line of a command that must fail with exit status 1."""
    code, out, err = goq(capsys, *args)
    assert code == 1, (args, code, out, err)
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("goq: error: "), err
    return err.strip()


def submitted(first: int = 7) -> Callable[[Message], Message]:
    """Answer SUBMITs as a server would: consecutive ids from `first`."""

    def answer(msg: Message) -> Message:
        assert msg.kind == Kind.SUBMIT
        n = len(msg.jobs)
        if msg.text:
            a, _, rest = msg.text.partition("-")
            b, _, step = rest.partition(":")
            n = len(range(int(a), int(b) + 1, int(step)))
        return Message(Kind.SUBMITTED, jobid=first, count=n)

    return answer


def done(jobid: int, status: int = 0, **kw) -> Job:
    return Job(jobid=jobid, state=JobState.FINISHED, exit_status=status, **kw)


@pytest.fixture(autouse=True)
def _no_goq_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process commands must not read the developer's own GOQ_* settings."""
    for name in [n for n in os.environ if n.startswith("GOQ_")]:
        monkeypatch.delenv(name)
    yield


# ----------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90_000),
        ("10m", 600_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1.5h", 5_400_000),
        ("1:30:00", 5_400_000),
        ("30:00", 1_800_000),
        ("0:05", 5_000),
        ("45", 45_000),
        ("2.5", 2_500),
        (" 10M ", 600_000),
        ("0.001", 1),
        ("365d", 365 * 86_400_000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    "text",
    ["1x", "", "abc", "-5", "0", "0s", "0:00", "1:75", "1:2:3:4", "inf", "nan", "1e3", "366d",
     "5 m", "１０s", "0.0001"],
)  # fmt: skip
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration_ms(text)
    assert "\n" not in str(exc.value) and repr(text) in str(exc.value)


def test_a_retry_delay_may_be_zero() -> None:
    assert parse_duration_ms("0", allow_zero=True) == 0
    assert parse_duration_ms("0s", allow_zero=True) == 0
    with pytest.raises(ValueError):
        parse_duration_ms("-1", allow_zero=True)


def test_job_ids() -> None:
    assert parse_ids("12") == [(12, 12)]
    assert parse_ids("12,15") == [(12, 12), (15, 15)]
    assert parse_ids("100-199") == [(100, 199)]
    assert parse_ids("8, 1-5,3,6") == [(1, 6), (8, 8)]
    for bad in ("", ",", "abc", "0", "5-1", "1-", "-3", "1,,2", HUGE, "١"):
        with pytest.raises(ValueError):
            parse_ids(bad)


def test_job_names() -> None:
    assert check_job_name("align sample 1") == "align sample 1"
    assert check_job_name("x" * 200) == "x" * 200
    for bad in ("", "x" * 201, "a\nb", "a\x00b", "tab\there"):
        with pytest.raises(ValueError):
            check_job_name(bad)


# ----------------------------------------------------------------------------- bad input

BAD_SUB = [
    (["--after", "abc"], "--after"),
    (["--after", "0"], "--after"),
    (["--after", ""], "--after"),
    (["--after", "5-1"], "--after"),
    (["--after", HUGE], "out of range"),
    (["--after-any", "x"], "--after-any"),
    (["--array", "5-1"], "--array"),
    (["--array", "1-0"], "--array"),
    (["--array", "abc"], "--array"),
    (["--array", "1-10%0"], "--array"),
    (["--array", "1-10:0"], "--array"),
    (["--time", "1x"], "--time"),
    (["--time", "0"], "--time"),
    (["--time", "-5"], "--time"),
    (["--time", "1:75"], "--time"),
    (["--retries", "-1"], "--retries"),
    (["--retries", "1001"], "--retries"),
    (["--retries", "x"], "--retries"),
    (["--retry-delay", "5"], "needs --retries"),
    (["--retries", "2", "--retry-delay", "-1"], "--retry-delay"),
    (["--retries", "2", "--retry-delay", "soon"], "--retry-delay"),
    (["--name", ""], "--name"),
    (["--name", "x" * 201], "--name"),
    (["--name", "two\nlines"], "--name"),
    (["--name", "nul\x00"], "--name"),
    (["--after", f"1-{MAX_DEPENDENCIES + 1}"], "at most"),
]


@pytest.mark.parametrize(("args", "says"), BAD_SUB, ids=lambda a: " ".join(a)[:40] if a else "")
def test_bad_sub_input_is_one_line_before_connecting(
    capsys, no_client, args: list[str], says: str
) -> None:
    assert says in one_line(capsys, "sub", *args, "true")


def test_array_with_a_jobs_file_is_refused(capsys, no_client, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("echo one\n")
    line = one_line(capsys, "sub", "--array", "1-10", "--file", str(jobs))
    assert "--array" in line and "--file" in line


BAD_OTHERS = [
    (["hold"], "ID"),
    (["hold", "x"], "'x'"),
    (["hold", "0"], "out of range"),
    (["release", "1-"], "'1-'"),
    (["release", "3-2"], "ends before it starts"),
    (["wait"], "exactly one"),
    (["wait", "1", "--all"], "exactly one"),
    (["wait", "--name", "a", "--all"], "exactly one"),
    (["wait", "--name", ""], "--name"),
    (["wait", "1", "zz"], "'zz'"),
    (["kill"], "exactly one"),
    (["kill", "--all", "--name", "x"], "exactly one"),
    (["kill", "1,0"], "out of range"),
    (["kill", "1", HUGE], HUGE),
]


@pytest.mark.parametrize(("args", "says"), BAD_OTHERS, ids=lambda a: " ".join(a) if a else "")
def test_bad_ids_and_targets_are_one_line_before_connecting(
    capsys, no_client, args: list[str], says: str
) -> None:
    assert says in one_line(capsys, *args)


def test_kill_all_on_a_terminal_needs_yes(capsys, no_client, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    assert "--yes" in one_line(capsys, "kill", "--all")


@pytest.fixture(scope="module")
def bare_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment with a GOQ_HOME where no server runs (nor was one ever set up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOQ_")}
    env["GOQ_HOME"] = str(tmp_path_factory.mktemp("home"))
    env["GOQ_JSERV_IP"] = "127.0.0.1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sub", "--after", "abc", "true"], "--after"),
        (["sub", "--after", "0", "true"], "--after"),
        (["sub", "--array", "5-1", "true"], "--array"),
        (["sub", "--array", "1-0", "true"], "--array"),
        (["sub", "--time", "1x", "true"], "--time"),
        (["sub", "--retries", "-1", "true"], "--retries"),
        (["hold", "abc"], "'abc'"),
        (["wait", "--all", "3"], "exactly one"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else a,
)
def test_bad_input_from_the_real_command_line(bare_home, args: list[str], says: str) -> None:
    """As a user meets it: `python -m goq_cli ...` (the console script's entry), exit 1,
    one line on stderr that names the problem, nothing on stdout, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", *args],
        env=bare_home,
        cwd=bare_home["GOQ_HOME"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, (args, done.returncode, done.stdout, err)
    assert "Traceback" not in err and done.stdout == b""
    assert err.count("\n") == 1 and err.startswith("goq: error: "), err
    assert says in err


def test_fast_path_leaves_workflow_options_to_click() -> None:
    for option in (["--after", "3"], ["--array", "1-5"], ["--hold"], ["--name", "x"],
                   ["--time", "1m"], ["--retries", "2"]):  # fmt: skip
        assert try_fast_path(["sub", *option, "true"]) is False
        assert try_fast_path(["sub", "--shell", *option, "true"]) is False
    for command in (["hold", "1"], ["release", "1"], ["wait", "1", "2"], ["kill", "--all"]):
        assert try_fast_path(command) is False


# ----------------------------------------------------------------------------- goq sub


def test_array_is_one_submit_of_one_template(capsys, script) -> None:
    client = script(submitted(first=7))
    code, out, err = goq(
        capsys,
        "sub", "--array", "1-1000%50", "--after", "3,5", "--cpus", "2", "--name", "sweep",
        "--shell", "./run.sh $GOQ_ARRAY_INDEX",
    )  # fmt: skip
    assert code == 0, err
    assert out == f"submitted jobs 7..1006 (array 1-1000%50) to server at {ADDRESS}\n"
    [msg] = client.sent
    assert (msg.kind, msg.text, len(msg.jobs)) == (Kind.SUBMIT, "1-1000:1", 1)
    [template] = msg.jobs
    assert (template.cmd, template.shell) == ("./run.sh $GOQ_ARRAY_INDEX", True)
    assert (template.array_max, template.after, template.cpus, template.name) == (
        50,
        [3, 5],
        2,
        "sweep",
    )
    assert (template.array_id, template.array_index) == (0, 0)  # the server sets them


def test_array_output_without_a_cap(capsys, script) -> None:
    client = script(submitted(first=1))
    code, out, _ = goq(capsys, "sub", "--array", "0-99:10", "echo", "hi")
    assert code == 0
    assert out == f"submitted jobs 1..10 (array 0-99:10) to server at {ADDRESS}\n"
    assert client.sent[0].text == "0-99:10" and client.sent[0].jobs[0].array_max == 0


def test_array_of_100000_is_one_request(capsys, script) -> None:
    client = script(submitted(first=1))
    code, out, err = goq(capsys, "sub", "--array", "1-100000", "true")
    assert code == 0, err
    assert out.startswith("submitted jobs 1..100000 (array 1-100000)")
    assert len(client.sent) == 1 and len(client.sent[0].jobs) == 1


def test_workflow_options_become_job_fields(capsys, script) -> None:
    client = script(submitted(first=40))
    code, out, err = goq(
        capsys,
        "sub", "--after", "100-102", "--after", "7", "--after-any", "9,8",
        "--retries", "3", "--retry-delay", "1.5", "--time", "1:30:00", "--name", "merge",
        "--hold", "--priority", "2", "./merge.sh", "--time", "x",
    )  # fmt: skip
    assert code == 0, err
    assert out == f"submitted job 40 to server at {ADDRESS}\n"
    [msg] = client.sent
    assert (msg.kind, msg.text) == (Kind.SUBMIT, "")
    [job] = msg.jobs
    assert (job.cmd, job.args) == ("./merge.sh", ["--time", "x"])
    assert (job.after, job.after_any) == ([7, 100, 101, 102], [8, 9])
    assert (job.retries, job.retry_delay_ms, job.time_limit_ms) == (3, 1500, 5_400_000)
    assert (job.name, job.state, job.priority) == ("merge", JobState.HELD, 2)


def test_defaults_set_no_workflow_field(capsys, script) -> None:
    client = script(submitted())
    assert goq(capsys, "sub", "true")[0] == 0
    job = client.sent[0].jobs[0]
    assert (job.after, job.after_any, job.retries, job.retry_delay_ms) == ([], [], 0, 0)
    assert (job.time_limit_ms, job.name, job.state, job.array_max) == (0, "", JobState.NEW, 0)


def test_jobs_file_lines_all_get_the_workflow_options(capsys, script, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("echo one\necho two\n")
    client = script(submitted(first=3))
    code, out, err = goq(
        capsys, "sub", "--after", "1", "--time", "10m", "--hold", "--file", str(jobs)
    )
    assert code == 0, err
    assert out.startswith("submitted jobs 3..4 (2 jobs)")
    one, two = client.sent[0].jobs
    for job in (one, two):
        assert (job.after, job.time_limit_ms, job.state) == ([1], 600_000, JobState.HELD)


def test_the_servers_refusal_of_an_unknown_dependency_is_one_line(capsys, script) -> None:
    from goq_core.errors import RemoteError

    def refuse(msg: Message) -> Message:
        raise RemoteError("the server refused the request: --after: job 99 is not known")

    script(refuse)
    line = one_line(capsys, "sub", "--after", "99", "true")
    assert "job 99 is not known" in line


def test_batches_count_dependency_ids() -> None:
    """A job's dependency ids cost request bytes: 100,000 of them fill a third of a chunk."""
    heavy = [Job(cmd="true", after=list(range(1, 100_001))) for _ in range(10)]
    spans = batches(heavy, 5000, SUBMIT_CHUNK_BYTES)
    assert len(spans) >= 3 and spans[-1][1] == 10


# ----------------------------------------------------------------------------- hold, release


@pytest.mark.parametrize(("verb", "kind"), [("hold", Kind.HOLD), ("release", Kind.RELEASE)])
def test_hold_and_release_send_id_ranges(capsys, script, verb: str, kind: Kind) -> None:
    client = script([Message(Kind.ACK, count=4, text=f"4 jobs {verb}; job 9 is running")])
    code, out, err = goq(capsys, verb, "3-5", "9", "4")
    assert code == 0, err
    assert out == f"4 jobs {verb}; job 9 is running\n"
    [msg] = client.sent
    assert (msg.kind, msg.jobid, msg.text) == (kind, 0, "3-5,9")


def test_hold_says_how_many_when_the_server_says_nothing(capsys, script) -> None:
    script([Message(Kind.ACK, count=2)])
    assert goq(capsys, "release", "1,2") == (0, "2 job(s) released\n", "")


def test_hold_of_unknown_jobs_is_one_line(capsys, script) -> None:
    script([Message(Kind.NOT_KNOWN, text="job 77 is not known to the server")])
    assert "job 77 is not known" in one_line(capsys, "hold", "77")


# ----------------------------------------------------------------------------- kill


def test_kill_of_one_job_keeps_the_single_form(capsys, script) -> None:
    client = script([Message(Kind.ACK, text="cancelled waiting job 12")])
    assert goq(capsys, "kill", "12") == (0, "cancelled waiting job 12\n", "")
    [msg] = client.sent
    assert (msg.kind, msg.jobid, msg.text) == (Kind.CANCEL, 12, "")


def test_kill_of_many_sends_ranges(capsys, script) -> None:
    client = script([Message(Kind.ACK, count=3)])
    assert goq(capsys, "kill", "12", "13-14") == (0, "3 job(s) cancelled\n", "")
    [msg] = client.sent
    assert (msg.kind, msg.jobid, msg.text) == (Kind.CANCEL, 0, "12-14")


def test_kill_by_name_selects_then_cancels(capsys, script) -> None:
    client = script(
        [Message(Kind.JOB_IDS, text="4,6-8", count=4), Message(Kind.ACK, count=4, text="ok")]
    )
    assert goq(capsys, "kill", "--name", "align") == (0, "ok\n", "")
    select, cancel = client.sent
    assert (select.kind, select.text, select.count) == (Kind.SELECT, "align", 0)
    assert (cancel.kind, cancel.jobid, cancel.text) == (Kind.CANCEL, 0, "4,6-8")


def test_kill_all_off_a_terminal_needs_no_yes(capsys, script, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    client = script(
        [Message(Kind.JOB_IDS, text="1-3", count=3), Message(Kind.ACK, count=3, text="")]
    )
    assert goq(capsys, "kill", "--all")[:2] == (0, "3 job(s) cancelled\n")
    select, cancel = client.sent
    assert (select.kind, select.text, select.count) == (Kind.SELECT, "", 1)
    assert cancel.text == "1-3"


def test_kill_all_yes_on_a_terminal_with_nothing_to_cancel(capsys, script, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    client = script([Message(Kind.JOB_IDS, text="", count=0)])
    code, out, _ = goq(capsys, "kill", "--all", "--yes")
    assert code == 0 and "no job to cancel" in out
    assert len(client.sent) == 1


def test_kill_of_an_unused_name_is_one_line(capsys, script) -> None:
    script([Message(Kind.JOB_IDS, text="", count=0)])
    assert "no job named 'nosuch'" in one_line(capsys, "kill", "--name", "nosuch")


def test_a_very_scattered_set_goes_in_several_requests() -> None:
    client = ScriptedClient(lambda msg: Message(Kind.ACK, count=idcount(msg.text), text="x"))
    ranges = [(i, i) for i in range(1, 400_000, 2)]  # 200,000 ids, ~1.4 MB of text
    reply = client.cancel_many(ranges)
    assert len(client.sent) >= 3 and reply.count == 200_000
    assert all(len(m.text) <= 512 * 1024 for m in client.sent)


def idcount(text: str) -> int:
    from goq_core import idranges

    return idranges.count(idranges.parse(text))


# ----------------------------------------------------------------------------- wait


def test_wait_exit_codes() -> None:
    ok, failed = done(1), done(2, 3)
    killed = done(3, -9)
    cancelled = Job(jobid=4, state=JobState.CANCELLED, note="dependency 2 failed")
    timeout = Job(jobid=5, state=JobState.TIMEOUT)
    assert wait_exit_code([]) == 0
    assert wait_exit_code([ok, done(6)]) == 0
    for bad in (failed, killed, cancelled, timeout, None):
        assert wait_exit_code([ok, bad]) == 2
        assert not succeeded(bad)
    assert succeeded(ok)


def test_wait_many_prints_each_as_it_ends_and_exits_2_on_a_failure(capsys, script) -> None:
    client = script(
        [
            Message(Kind.NOTHING_YET),
            Message(Kind.FINISHED, jobs=[done(3, workerhost="n1", pid=42)], text="4"),
            Message(Kind.FINISHED, jobs=[done(4, 1)]),  # job 4 alone: its stored record
            Message(
                Kind.FINISHED,
                jobs=[Job(jobid=5, state=JobState.CANCELLED, note="dependency 4 failed")],
            ),
        ]
    )
    code, out, err = goq(capsys, "wait", "3-5")
    assert (code, err) == (2, "")
    assert out.splitlines() == [
        "job 3 finished: exit status 0, on n1 (pid 42)",
        "job 4 finished: exit status 1 (failed)",
        "job 5 was cancelled: dependency 4 failed",
    ]
    shapes = [(m.kind, m.jobid, m.text, m.wait_ms > 0) for m in client.sent]
    assert shapes == [
        (Kind.WAIT, 0, "3-5", True),
        (Kind.WAIT, 0, "3-5", True),
        (Kind.WAIT, 4, "", True),
        (Kind.WAIT, 0, "5", True),
    ]


def test_wait_many_exits_0_when_all_succeeded(capsys, script) -> None:
    script([Message(Kind.FINISHED, jobs=[done(1), done(2)])])
    code, out, _ = goq(capsys, "wait", "1", "2")
    assert code == 0 and len(out.splitlines()) == 2


def test_wait_of_an_unknown_id_is_one_line_and_exit_1(capsys, script) -> None:
    script([Message(Kind.NOT_KNOWN, text="job 99 is not known to the server")])
    assert "job 99 is not known" in one_line(capsys, "wait", "1", "99")


def test_wait_by_name_and_all_select_first(capsys, script) -> None:
    client = script(
        [
            Message(Kind.JOB_IDS, text="8-9", count=2),
            Message(Kind.FINISHED, jobs=[done(8), done(9)]),
        ]
    )
    assert goq(capsys, "wait", "--name", "align")[0] == 0
    assert (client.sent[0].kind, client.sent[0].text) == (Kind.SELECT, "align")
    assert (client.sent[1].kind, client.sent[1].text) == (Kind.WAIT, "8-9")
    client = script([Message(Kind.JOB_IDS, text="", count=0)])
    code, out, err = goq(capsys, "wait", "--all")
    assert (code, out) == (0, "") and "no job to wait for" in err
    assert (client.sent[0].text, client.sent[0].count) == ("", 1)


def test_wait_by_an_unused_name_is_one_line(capsys, script) -> None:
    script([Message(Kind.JOB_IDS, text="", count=0)])
    assert "no job named 'x'" in one_line(capsys, "wait", "--name", "x")


def test_wait_for_one_job_keeps_the_original_form(capsys, script) -> None:
    """`goq wait 12` sends the single-id WAIT; like every wait, it exits 2 when the job did
    not succeed (the original goq exited 0 whatever the outcome)."""
    client = script([Message(Kind.FINISHED, jobs=[done(12, 3)])])
    code, out, _ = goq(capsys, "wait", "12")
    assert (code, out) == (2, "job 12 finished: exit status 3 (failed)\n")
    assert (client.sent[0].jobid, client.sent[0].text) == (12, "")


def test_a_finished_reply_naming_nothing_waited_for_is_an_error(capsys, script) -> None:
    script([Message(Kind.FINISHED, jobs=[done(50)])])
    assert "names none of the jobs" in one_line(capsys, "wait", "1", "2")


def test_progress_line_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(3, stream, enabled=True)
    progress.show(0)
    progress.clear()
    progress.show(1)
    progress.show(3)
    progress.clear()
    assert stream.getvalue() == (
        "\r0 of 3 done" + "\r" + " " * 11 + "\r" + "\r1 of 3 done" + "\r3 of 3 done"
        "\r" + " " * 11 + "\r"
    )


def test_no_progress_line_on_a_pipe_or_for_one_job() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Progress(5, io.StringIO()).enabled is False
    assert Progress(1, Tty()).enabled is False
    assert Progress(2, Tty()).enabled is True
    quiet = io.StringIO()
    Progress(5, quiet).show(1)
    assert quiet.getvalue() == ""


def test_progress_is_drawn_on_a_terminal_stderr(capsys, script, monkeypatch) -> None:
    class TtyErr(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = TtyErr()
    monkeypatch.setattr(sys, "stderr", err)
    script([Message(Kind.FINISHED, jobs=[done(1)]), Message(Kind.FINISHED, jobs=[done(2)])])
    try:
        cli_main.main(["wait", "1-2"])
    except SystemExit as exc:
        assert exc.code == 0
    drawn = err.getvalue()
    assert "0 of 2 done" in drawn and "1 of 2 done" in drawn and "2 of 2 done" in drawn
    assert drawn.endswith("\r")  # cleared at the end
    assert capsys.readouterr().out.count("\n") == 2


# ----------------------------------------------------------------------------- id sets


def test_subtract_and_holds() -> None:
    assert subtract([(1, 10)], [1, 5, 10]) == [(2, 4), (6, 9)]
    assert subtract([(1, 3), (7, 9)], [2, 4, 8, 9]) == [(1, 1), (3, 3), (7, 7)]
    assert subtract([(5, 5)], [5]) == []
    assert subtract([(1, 100_000)], list(range(1, 100_001, 2)))[:2] == [(2, 2), (4, 4)]
    ranges = [(1, 3), (7, 9)]
    assert [i for i in range(0, 12) if _holds(ranges, i)] == [1, 2, 3, 7, 8, 9]


def test_split_ids_text() -> None:
    assert list(split_ids_text([(1, 3), (5, 5)])) == ["1-3,5"]
    parts = list(split_ids_text([(i, i) for i in range(1, 20, 2)], max_chars=8))
    assert all(len(p) <= 8 for p in parts)
    assert ",".join(parts) == ",".join(str(i) for i in range(1, 20, 2))


# ----------------------------------------------------------------------------- reports


def test_outcome_lines() -> None:
    full = done(5, 0, workerhost="node7", pid=4242, start_ns=1, end_ns=1_204_000_001)
    assert (
        format_outcome(5, full) == "job 5 finished: exit status 0, ran 1.204s on node7 (pid 4242)"
    )
    assert format_outcome(6, done(6, 3)) == "job 6 finished: exit status 3 (failed)"
    assert format_outcome(6, done(6, -9)) == "job 6 finished: killed by signal 9 (failed)"
    assert format_outcome(6, done(6, 1, retried=2)) == (
        "job 6 finished: exit status 1 (failed), after 2 retries"
    )
    cancelled = Job(state=JobState.CANCELLED, note="dependency 6 failed")
    assert format_outcome(7, cancelled) == "job 7 was cancelled: dependency 6 failed"
    assert format_outcome(7, Job(state=JobState.CANCELLED)) == "job 7 was cancelled"
    timeout = Job(state=JobState.TIMEOUT, time_limit_ms=60_000, workerhost="n1", pid=9)
    assert format_outcome(8, timeout) == "job 8 timed out (limit 1m), on n1 (pid 9)"
    assert format_outcome(9, None) == "job 9 has ended"


def test_format_limit() -> None:
    assert [format_limit(ms) for ms in (1000, 90_000, 5_400_000, 93_600_000, 1500)] == [
        "1s", "1m30s", "1h30m", "1d2h", "1.5s",
    ]  # fmt: skip


def test_stat_shows_blocked_and_held_jobs_and_names() -> None:
    run = Job(jobid=3, cmd="align", state=JobState.RUNNING, workerid="w1", name="align")
    wait = Job(jobid=4, cmd="true", state=JobState.WAITING)
    blocked = Job(jobid=5, cmd="merge", state=JobState.BLOCKED, name="merge step")
    blocked.note = "after 3, 4: waits for 3"
    held = Job(jobid=6, cmd="later", state=JobState.HELD, cpus=2, array_id=6, array_index=0)
    status = Message(
        Kind.STATUS,
        counters={"runQlen": 1, "waitingJobs": 1, "blockedJobs": 1, "heldJobs": 7, "nextJobId": 7},
        jobs=[run, wait, blocked, held],
    )
    lines = format_status(status, 10).splitlines()
    assert lines[:5] == [
        "runQlen: 1", "waitingJobs: 1", "blockedJobs: 1", "heldJobs: 7", "nextJobId: 7",
    ]  # fmt: skip
    assert lines[6].endswith("on w1  name=align  align")
    assert lines[8].endswith("attempt 0  true")
    assert lines[9] == "-- blocked jobs (first 1 of 1):"
    assert lines[10].endswith("name='merge step'  merge  waits: after 3, 4: waits for 3")
    assert lines[11] == "-- held jobs (first 1 of 7):"
    assert lines[12].endswith("index=0  later  [cpus=2]")


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("sub", ["--after 12,15", "--after-any 12", "--array 1-1000%50", "--retries 3",
                 "--retry-delay 60", "--time 90s", "1:30:00", "--name align", "--hold"]),
        ("wait", ["Exit status", "0  every job succeeded", "2  some job did not",
                  "1  an error", "goq wait 12 15 100-199", "--name", "--all"]),
        ("kill", ["goq kill 12 15 100-199", "goq kill --name align", "--all --yes"]),
        ("hold", ["goq hold 100-199"]),
        ("release", ["goq release 12", "--hold"]),
    ],
)  # fmt: skip
def test_help_gives_examples(capsys, command: str, says: list[str]) -> None:
    code, out, _ = goq(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())  # as wrapped on any terminal width
    for words in says:
        assert " ".join(words.split()) in text, (command, words)
