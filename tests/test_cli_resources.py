"""Issue 10, the command line and client side: `goq sub` and `goq work` resource options become
Job fields and offers; bad input is one line and exit 1; `goq workers` prints a table or the
server's JSON; `goq drain` / `goq resume` take exactly one of NAME and --all; `goq stat` shows
what a job asks for and why it waits.

No server is needed: commands run in-process with a fake Client (or Worker) injected, and
argument errors run as `python -m goq_cli ...` against a GOQ_HOME that `goq init` made.
End-to-end runs with real workers are in the kernel's and worker's tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from goq_cli import main as cli_main
from goq_cli.fastpath import try_fast_path
from goq_cli.report import format_request, format_size, format_status, format_workers
from goq_core.errors import GoqError
from goq_core.limits import MAX_AMOUNT
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.roles.client import Client

TOO_BIG = str(1 << 31)

SAMPLE = {
    "workers": [
        {
            "name": "gpu-node-1",
            "host": "gpu-node-1.lab",
            "state": "busy",
            "offer": {"cpus": 4, "mem": 16 << 30, "gpus": ["0", "1"], "resources": {"license": 2}},
            "free": {"cpus": 3, "mem": 12 << 30, "gpus": ["1"], "resources": {"license": 1}},
            "jobs": [17, 18],
            "last_heard_sec_ago": 0.42,
        },
        {
            "name": "box2",
            "host": "box2",
            "state": "drained",
            "offer": {"cpus": 1, "mem": 0, "gpus": [], "resources": {}},
            "free": {"cpus": 1, "mem": 0, "gpus": [], "resources": {}},
            "jobs": [],
            "last_heard_sec_ago": 75.0,
        },
    ]
}


# ----------------------------------------------------------------------------- fakes


class FakeClient:
    """Stands in for goq_core.roles.client.Client: records what the CLI asks of it."""

    def __init__(self, doc: dict | None = None, reply: Message | None = None) -> None:
        self.settings = SimpleNamespace(address="tcp://127.0.0.1:1776")
        self.submitted: list[Job] = []
        self.doc = doc or SAMPLE
        self.reply = reply or Message(Kind.ACK)
        self.calls: list[tuple[str, str | None]] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit_many(self, jobs: list[Job]) -> list[tuple[int, int]]:
        self.submitted += jobs
        return [(1, len(jobs))]

    def workers_document(self) -> dict:
        return self.doc

    def drain(self, name: str | None) -> Message:
        self.calls.append(("drain", name))
        if name == "nosuch":
            raise GoqError("no worker named 'nosuch' is known to the server (see `goq workers`)")
        return self.reply

    def resume(self, name: str | None) -> Message:
        self.calls.append(("resume", name))
        return self.reply


class FakeWorker:
    """Stands in for goq_core.roles.worker.Worker: keeps what it was made with, runs nothing."""

    made: list[FakeWorker] = []

    def __init__(self, settings, key, plugins=None, oneshot=False, log=print, offer=None,
                 name=None, bind=False) -> None:  # fmt: skip
        self.offer, self.given_name, self.bind, self.oneshot = offer, name, bind, oneshot
        self.name = name or "host-abc"
        self.workerid = self.name
        self.jobs_done = 0
        FakeWorker.made.append(self)

    def install_signal_handlers(self) -> None:
        pass

    def run(self) -> str:
        return "done"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
    return client


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> type[FakeWorker]:
    import goq_core.roles.worker

    FakeWorker.made = []
    monkeypatch.setattr(goq_core.roles.worker, "Worker", FakeWorker)
    monkeypatch.setattr(
        cli_main._Ctx, "settings", lambda self: SimpleNamespace(address="tcp://10.0.0.1:1776")
    )
    monkeypatch.setattr(cli_main._Ctx, "key", lambda self, settings: b"k" * 32)
    return FakeWorker


def goq(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit status, stdout, stderr)."""
    try:
        cli_main.main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose GOQ_HOME has had `goq init` (no server runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOQ_")}
    env["GOQ_HOME"] = str(tmp_path_factory.mktemp("home"))
    env["GOQ_JSERV_IP"] = "127.0.0.1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", "init"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return env


def one_error_line(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", *args],
        env=env,
        cwd=env["GOQ_HOME"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, (args, done.returncode, done.stdout, err)
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("goq: error: "), err
    assert done.stdout == b""
    return err.strip()


# ----------------------------------------------------------------------------- goq sub


def test_sub_options_become_job_fields(fake: FakeClient, capsys) -> None:
    code, out, err = goq(
        capsys,
        "sub",
        "--cpus", "4", "--gpus", "2", "--mem", "2G",
        "--resource", "license=1", "--resource", "db=3", "--priority", "-5",
        "python", "train.py", "--cpus", "9",
    )  # fmt: skip
    assert code == 0, err
    assert out == "submitted job 1 to server at tcp://127.0.0.1:1776\n"
    [job] = fake.submitted
    assert (job.cmd, job.args) == ("python", ["train.py", "--cpus", "9"])
    assert (job.cpus, job.gpus, job.mem, job.priority) == (4, 2, 2 << 30, -5)
    assert job.resources == {"license": 1, "db": 3}


def test_sub_defaults_ask_one_cpu_and_nothing_else(fake: FakeClient, capsys) -> None:
    assert goq(capsys, "sub", "ls", "-l")[0] == 0
    [job] = fake.submitted
    assert (job.cpus, job.gpus, job.mem, job.resources, job.priority) == (1, 0, 0, {}, 0)
    assert job.args == ["-l"]


@pytest.mark.parametrize("priority", [str(-(1 << 31)), str((1 << 31) - 1)])
def test_sub_priority_bounds_are_taken(fake: FakeClient, capsys, priority: str) -> None:
    assert goq(capsys, "sub", "--priority", priority, "true")[0] == 0
    assert fake.submitted[0].priority == int(priority)


def test_sub_largest_amounts_are_taken(fake: FakeClient, capsys) -> None:
    big = str(MAX_AMOUNT)
    code, _, err = goq(
        capsys, "sub", "--cpus", big, "--gpus", big, "--resource", f"lic={big}", "true"
    )
    assert code == 0, err
    job = fake.submitted[0]
    assert (job.cpus, job.gpus, job.resources) == (MAX_AMOUNT, MAX_AMOUNT, {"lic": MAX_AMOUNT})


def test_sub_file_options_apply_to_every_line(fake: FakeClient, capsys, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("echo one | wc -c\n# a comment\necho two > f\n")
    code, out, err = goq(
        capsys, "sub", "--shell", "--gpus", "1", "--resource", "lic=2", "--file", str(jobs)
    )
    assert code == 0, err
    assert "(2 jobs)" in out
    one, two = fake.submitted
    assert one.shell and two.shell and two.cmd == "echo two > f"
    for job in (one, two):
        assert (job.cpus, job.gpus, job.resources) == (1, 1, {"lic": 2})
    assert one.resources is not two.resources


def test_request_bounds_match_the_offer_parser() -> None:
    from goq_core.roles import offer

    assert MAX_AMOUNT == offer.MAX_COUNT == (1 << 31) - 1


def test_fast_path_leaves_every_option_to_click() -> None:
    """The click-free `goq sub` handles only the plain forms: anything with an option is
    returned to click (False) before it connects to anything."""
    assert not try_fast_path(["sub", "--cpus", "2", "ls"])
    assert not try_fast_path(["sub", "--shell", "--gpus", "1", "nvidia-smi -L"])
    assert not try_fast_path(["--codec", "raw", "sub", "--priority", "3", "ls"])


# ----------------------------------------------------------------------------- bad input


BAD_SUB = [
    (["--cpus", "0"], "--cpus"),
    (["--cpus", "-3"], "--cpus"),
    (["--cpus", "two"], "--cpus"),
    (["--cpus", TOO_BIG], "--cpus"),
    (["--cpus", "9" * 40], "--cpus"),
    (["--gpus", "-1"], "--gpus"),
    (["--gpus", TOO_BIG], "--gpus"),
    (["--mem", "12Q"], "--mem"),
    (["--mem", "-1G"], "--mem"),
    (["--mem", str((1 << 62) + 1)], "--mem"),
    (["--resource", "x"], "--resource"),
    (["--resource", f"license={TOO_BIG}"], "--resource"),
    (["--resource", "license=0"], "--resource"),
    (["--resource", "gpus=1"], "--gpus"),
    (["--resource", "lic=1", "--resource", "lic=2"], "given twice"),
    (["--priority", TOO_BIG], "--priority"),
    (["--priority", str(-(1 << 31) - 1)], "--priority"),
    (["--priority", "high"], "--priority"),
    (["--gpu", "1"], "did you mean --gpus?"),
]


@pytest.mark.parametrize(("args", "says"), BAD_SUB, ids=lambda a: " ".join(a) if a else "")
def test_bad_sub_input_is_one_line(home: dict[str, str], args: list[str], says: str) -> None:
    assert says in one_error_line(home, "sub", *args, "true")


def test_bad_sub_options_with_file_are_one_line(home: dict[str, str]) -> None:
    assert "--mem" in one_error_line(home, "sub", "--mem", "12Q", "--file", "-")


BAD_WORK = [
    (["--cpus", "0"], "--cpus"),
    (["--cpus", TOO_BIG], "--cpus"),
    (["--cpus", "most"], "--cpus"),
    (["--gpus", "-1"], "--gpus"),
    (["--mem", "12Q"], "--mem"),
    (["--resource", "x"], "--resource"),
    (["--resource", f"license={TOO_BIG}"], "--resource"),
    (["--resource", "a=1", "--resource", "a=1"], "given twice"),
    (["--name", "two words"], "--name"),
    (["--name", ""], "--name"),
    (["sometimes"], "sometimes"),
]


@pytest.mark.parametrize(("args", "says"), BAD_WORK, ids=lambda a: " ".join(a) if a else "")
def test_bad_work_input_is_one_line(home: dict[str, str], args: list[str], says: str) -> None:
    assert says in one_error_line(home, "work", *args)


@pytest.mark.parametrize("verb", ["drain", "resume"])
@pytest.mark.parametrize(
    ("args", "says"), [([], "or --all"), (["w1", "--all"], "not both")], ids=["none", "both"]
)
def test_drain_resume_need_exactly_one_of_name_and_all(
    home: dict[str, str], verb: str, args: list[str], says: str
) -> None:
    assert says in one_error_line(home, verb, *args)


# ----------------------------------------------------------------------------- goq work


def test_work_builds_the_offer(fake_worker: type[FakeWorker], capsys) -> None:
    code, out, err = goq(
        capsys,
        "work", "oneshot", "--cpus", "4", "--gpus", "0,1", "--mem", "16G",
        "--resource", "license=2", "--name", "node7", "--bind",
    )  # fmt: skip
    assert code == 0, err
    [worker] = fake_worker.made
    offer = worker.offer
    assert (offer.cpus, offer.mem, offer.gpu_ids, offer.resources) == (
        4,
        16 << 30,
        "0,1",
        {"license": 2},
    )
    assert (worker.given_name, worker.bind, worker.oneshot) == ("node7", True, True)
    first = out.splitlines()[0]
    assert first == (
        "goq worker node7 offering cpus=4 (bound) mem=16G gpus=0,1 license=2, "
        "serving jobs from tcp://10.0.0.1:1776"
    )


def test_plain_work_offers_one_cpu(fake_worker: type[FakeWorker], capsys) -> None:
    code, out, err = goq(capsys, "work")
    assert code == 0, err
    [worker] = fake_worker.made
    offer = worker.offer
    assert (offer.cpus, offer.mem, offer.gpu_ids, offer.resources) == (1, 0, "", {})
    assert (worker.given_name, worker.bind, worker.oneshot) == (None, False, False)
    assert out.splitlines()[0].startswith("goq worker host-abc offering cpus=1, serving jobs")


def test_work_auto_detects(fake_worker: type[FakeWorker], capsys, monkeypatch) -> None:
    from goq_core.roles import offer

    monkeypatch.setattr(offer, "detect_cpus", lambda: 64)
    monkeypatch.setattr(offer, "detect_mem", lambda: 256 << 30)
    monkeypatch.setattr(offer, "parse_gpus", lambda text: ["0", "1", "2"] if text == "auto" else [])
    code, out, err = goq(capsys, "work", "--cpus", "auto", "--mem", "auto", "--gpus", "auto")
    assert code == 0, err
    offer_job = fake_worker.made[0].offer
    assert (offer_job.cpus, offer_job.mem, offer_job.gpu_ids) == (64, 256 << 30, "0,1,2")
    assert "offering cpus=64 mem=256G gpus=0,1,2," in out


# ----------------------------------------------------------------------------- goq workers


def test_workers_table() -> None:
    lines = format_workers(SAMPLE["workers"]).splitlines()
    assert lines[0].split() == [
        "NAME", "HOST", "STATE", "CPUS", "GPUS", "MEM", "RESOURCES", "JOBS", "HEARD",
    ]  # fmt: skip
    busy = lines[1].split()
    assert busy == [
        "gpu-node-1", "gpu-node-1.lab", "busy", "3/4", "1/2", "(1)", "12G/16G",
        "license=1/2", "17,18", "0.4s", "ago",
    ]  # fmt: skip
    drained = lines[2].split()
    assert drained == ["box2", "box2", "drained", "1/1", "-", "-", "-", "-", "1m15s", "ago"]
    # columns line up: every row starts its STATE column at the same place
    at = lines[0].index("STATE")
    assert lines[1][at:].startswith("busy") and lines[2][at:].startswith("drained")


def test_workers_table_when_there_are_none_and_when_fields_are_missing() -> None:
    assert "no workers" in format_workers([])
    assert format_workers([{"name": "w"}]).splitlines()[1].split()[:3] == ["w", "?", "?"]


def test_workers_command(fake: FakeClient, capsys) -> None:
    code, out, _ = goq(capsys, "workers")
    assert code == 0 and out.splitlines()[0].startswith("NAME")
    assert "gpu-node-1" in out
    code, out, _ = goq(capsys, "workers", "--json")
    assert code == 0 and json.loads(out) == {"schema": 1, "kind": "workers", **SAMPLE}


# ----------------------------------------------------------------------------- drain / resume


def test_drain_and_resume_print_what_the_server_says(fake: FakeClient, capsys) -> None:
    fake.reply = Message(Kind.ACK, text="worker w1 is draining: 2 jobs still running")
    assert goq(capsys, "drain", "w1") == (0, "worker w1 is draining: 2 jobs still running\n", "")
    fake.reply = Message(Kind.ACK, count=3)
    assert goq(capsys, "resume", "--all") == (0, "3 worker(s) resumed\n", "")
    assert fake.calls == [("drain", "w1"), ("resume", None)]


def test_drain_of_an_unknown_worker_is_one_line(fake: FakeClient, capsys) -> None:
    code, out, err = goq(capsys, "drain", "nosuch")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "no worker named 'nosuch'" in err


class StubClient(Client):
    """A Client whose requests get a set reply, without a connection."""

    def __init__(self, reply: Message) -> None:  # no settings, plugins or transport
        self.reply = reply
        self.sent: list[Message] = []

    def call(self, msg: Message, hold_ms: int = 0) -> Message:
        self.sent.append(msg)
        return self.reply


def test_client_drain_and_resume_messages() -> None:
    client = StubClient(Message(Kind.ACK, text="ok"))
    assert client.drain("w1").text == "ok"
    assert client.resume(None).text == "ok"
    drain, resume = client.sent
    assert (drain.kind, drain.text, drain.count) == (Kind.DRAIN, "w1", 0)
    assert (resume.kind, resume.text, resume.count) == (Kind.RESUME, "", 1)
    with pytest.raises(GoqError, match="no worker named 'w9'"):
        StubClient(Message(Kind.NOT_KNOWN)).drain("w9")
    with pytest.raises(GoqError, match="no worker name"):
        client.drain("")


def test_client_workers_parses_the_document() -> None:
    client = StubClient(Message(Kind.WORKER_LIST, text=json.dumps(SAMPLE)))
    assert client.workers() == SAMPLE["workers"]
    assert client.sent[0].kind == Kind.WORKERS
    for text in ("not json", "[]", '{"workers": 3}', '{"workers": [1]}'):
        with pytest.raises(GoqError, match="unreadable worker list"):
            StubClient(Message(Kind.WORKER_LIST, text=text)).workers()


# ----------------------------------------------------------------------------- goq stat


def test_stat_shows_requests_and_why_a_job_waits() -> None:
    running = Job(jobid=3, cmd="train", state=JobState.RUNNING, workerid="gpu-node-1")
    running.cpus, running.gpus, running.gpu_ids, running.priority = 4, 1, "3", 5
    plain = Job(jobid=4, cmd="true", state=JobState.WAITING)
    big = Job(jobid=5, cmd="big", state=JobState.WAITING, gpus=4, mem=2 << 30)
    big.note = "needs gpus=4; the largest worker offers 2"
    status = Message(
        Kind.STATUS, counters={"runQlen": 1, "waitingJobs": 2}, jobs=[running, plain, big]
    )
    lines = format_status(status, 10).splitlines()
    assert lines[3].endswith("on gpu-node-1  train  [cpus=4 gpus=1(3) prio=5]")
    assert lines[5].endswith("true")
    assert lines[6].endswith(
        "big  [gpus=4 mem=2G]  waits: needs gpus=4; the largest worker offers 2"
    )


def test_format_request() -> None:
    assert format_request(Job()) == ""
    job = Job(cpus=2, mem=1536 << 20, resources={"lic": 1, "db": 2}, priority=-1)
    assert format_request(job) == "cpus=2 mem=1.5G db=2 lic=1 prio=-1"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (1023, "1023"),
        (1024, "1K"),
        (512 << 20, "512M"),
        (16 << 30, "16G"),
        (16_000_000_000, "14.9G"),
        ((1 << 40) - 1, "1.0T"),
        (3 << 40, "3T"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


@pytest.fixture(autouse=True)
def _no_goq_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process commands must not read the developer's own GOQ_* settings."""
    for name in [n for n in os.environ if n.startswith("GOQ_")]:
        monkeypatch.delenv(name)
    yield
