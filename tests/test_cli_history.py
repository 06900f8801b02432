"""Issue 12, the command line of the history: `goq jobs`, `goq show`, `goq forget`, their
parsers and tables; in-process with a Client whose `call` answers from a script, and against a
real server (slow): history survives a restart, a requeued job shows both attempts, forget.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from goq_cli import main as cli_main
from goq_cli.report import format_jobs, format_show, short_duration, short_time
from goq_cli.workflow import ids_with_prefix, parse_job_id, parse_states
from goq_core.jobquery import DEFAULT_LIMIT, MAX_LIST
from goq_core.jobquery import parse as parse_query
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.records import Attempt, attempt_to_dict
from tests.test_cli_workflow import ScriptedClient, goq, one_line

S = 1_000_000_000
NOW = time.time_ns()
STATES = ("waiting", "blocked", "held", "running", "finished", "failed", "cancelled", "timeout")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    def install(answer) -> ScriptedClient:
        client = ScriptedClient(answer)
        monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
        return client

    return install


@pytest.fixture
def no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self):
        raise AssertionError("bad input reached the client")

    monkeypatch.setattr(cli_main._Ctx, "client", refuse)


def listed(*jobs: Job):
    return lambda msg: Message(Kind.JOB_LIST, jobs=list(jobs))


def query_of(client: ScriptedClient):
    [msg] = client.sent
    assert msg.kind == Kind.JOBS
    return parse_query(msg.text)


# ----------------------------------------------------------------------------- parsers


def test_parse_states() -> None:
    assert parse_states("running") == {"running"}
    assert parse_states("failed, Timeout") == {"failed", "timeout"}
    assert parse_states("all") == set(STATES)
    for bad in ("", "ok", "running,,x", "ended"):
        with pytest.raises(ValueError, match="state"):
            parse_states(bad)


def test_parse_job_id() -> None:
    assert parse_job_id("12") == 12 and parse_job_id(" 7 ") == 7
    for bad in ("", "0", "1-2", "1,2", "x", "-3", "99999999999999999999", "١٢"):
        with pytest.raises(ValueError):
            parse_job_id(bad)


def test_ids_with_prefix_is_bounded_whatever_the_ranges() -> None:
    ranges = [(1, 5), (8, 8), (10, 25), (100, 130)]
    assert ids_with_prefix(ranges, "", 7) == [1, 2, 3, 4, 5, 8, 10]
    assert ids_with_prefix(ranges, "12", 100) == [12, *range(120, 130)]
    assert ids_with_prefix(ranges, "1", 4) == [1, 10, 11, 12]
    assert ids_with_prefix(ranges, "9", 5) == [] and ids_with_prefix(ranges, "0", 5) == []
    assert ids_with_prefix(ranges, "x", 5) == [] and ids_with_prefix([], "1", 5) == []
    start = time.perf_counter()
    assert ids_with_prefix([(1, 10**15)], "99", 3) == [99, 990, 991]
    assert len(ids_with_prefix([(i, i) for i in range(1, 10**5, 2)], "7", 200)) == 200
    assert time.perf_counter() - start < 0.5


def test_short_durations_and_times() -> None:
    assert [short_duration(s) for s in (0, 1.23, 59.9, 184, 7500, 3 * 86400 + 4 * 3600)] == [
        "0.0s",
        "1.2s",
        "59.9s",
        "3m04s",
        "2h05m",
        "3d04h",
    ]
    assert short_time(0, NOW) == "-"
    assert short_time(NOW, NOW).count(":") == 2
    assert len(short_time(NOW - 3 * 365 * 86400 * S, NOW)) == len("2021-05-02")


# ----------------------------------------------------------------------------- goq jobs

JOBS = [
    Job(
        jobid=5,
        cmd="sleep",
        args=["100"],
        state=JobState.RUNNING,
        workerid="node7",
        submit_ns=NOW - 65 * S,
        start_ns=NOW - 60 * S,
        attempt=1,
        name="align",
        owner="alice",
    ),
    Job(
        jobid=4,
        cmd="echo a\nexit 3",
        shell=True,
        state=JobState.FINISHED,
        exit_status=3,
        workerid="node7",
        submit_ns=NOW - 20 * S,
        start_ns=NOW - 19 * S,
        end_ns=NOW - 2 * S,
        attempt=1,
    ),
    Job(jobid=3, cmd="x" * 100, state=JobState.TIMEOUT, exit_status=-15, attempt=1, end_ns=NOW),
    Job(jobid=2, cmd="y", state=JobState.CANCELLED, note="by goq kill", submit_ns=NOW - S),
    Job(jobid=1, cmd="z", state=JobState.FINISHED, exit_status=-9, attempt=1, end_ns=NOW),
]


def test_jobs_table() -> None:
    lines = format_jobs(JOBS, NOW).splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "OWNER",
        "STATE",
        "EXIT",
        "COMMAND",
        "WORKER",
        "SUBMITTED",
        "WAITED",
        "RAN",
    ]
    assert lines[1].split()[:6] == ["5", "align", "alice", "running", "-", "sleep"]
    assert lines[1].split()[-2:] == ["5.0s", "1m00s"]  # waited; ran so far
    assert lines[2].split()[:5] == ["4", "-", "-", "failed", "3"]
    assert "echo a\\nexit 3" in lines[2]  # one line per job, whatever the shell line
    assert lines[2].split()[-2:] == ["1.0s", "17.0s"]
    assert "sig 15" in lines[3] and "timeout" in lines[3] and "x" * 37 + "..." in lines[3]
    assert lines[4].split()[:5] == ["2", "-", "-", "cancelled", "-"]
    assert "failed" in lines[5] and "sig 9" in lines[5]
    assert len({len(line) for line in lines[:4]}) <= 2  # aligned columns


def test_jobs_default_query(scripted, capsys) -> None:
    client = scripted(listed(*JOBS))
    code, out, _ = goq(capsys, "jobs")
    assert code == 0 and out.splitlines()[1].split()[0] == "5"
    query = query_of(client)
    assert query.states == set(STATES) and query.name is None and query.before is None
    assert query.limit == DEFAULT_LIMIT
    assert abs(query.since_ns - (time.time_ns() - 86400 * S)) < 60 * S


def test_jobs_options(scripted, capsys) -> None:
    client = scripted(listed())
    code, out, _ = goq(
        capsys,
        "jobs",
        "--state",
        "failed,timeout",
        "--state",
        "held",
        "--name",
        "align",
        "--since",
        "7d",
        "--limit",
        "500",
        "--before",
        "100",
    )
    assert code == 0
    query = query_of(client)
    assert query.states == {"failed", "timeout", "held"} and query.name == "align"
    assert query.limit == 500 and query.before == 100
    assert abs(query.since_ns - (time.time_ns() - 7 * 86400 * S)) < 60 * S
    assert out.startswith("no jobs found") and out.count("\n") == 1
    assert "failed or timeout" in out or "held or failed or timeout" in out
    client = scripted(listed())
    assert goq(capsys, "jobs", "--since", "all", "--state", "all")[0] == 0
    assert query_of(client).since_ns == 0 and query_of(client).states == set(STATES)


@pytest.mark.parametrize(
    "args",
    [
        ("--state", "bogus"),
        ("--state", ""),
        ("--since", "soon"),
        ("--since", "0"),
        ("--limit", "0"),
        ("--limit", str(MAX_LIST + 1)),
        ("--name", ""),
        ("--before", "x"),
        ("extra",),
    ],
)
def test_jobs_refuses_bad_options(no_client, capsys, args) -> None:
    one_line(capsys, "jobs", *args)


# ----------------------------------------------------------------------------- goq show


def shown(job: Job, attempts: list[Attempt], path: str | None = "/w/o/out.00007"):
    extra = {"attempts": [attempt_to_dict(a) for a in attempts], "output_path": path}
    return lambda msg: Message(Kind.JOB_RECORD, jobs=[job], text=json.dumps(extra))


RICH = Job(
    jobid=7,
    cmd="python",
    args=["train.py", "a b"],
    dir="/home/u/exp",
    env=["HOME=/home/u", "SECRET=x"],
    host="login1",
    user="u",
    state=JobState.FINISHED,
    attempt=2,
    workerid="gpu1",
    workerhost="gpu1.lab",
    pid=4242,
    exit_status=0,
    submit_ns=NOW - 100 * S,
    start_ns=NOW - 60 * S,
    end_ns=NOW,
    out_bytes=1536,
    cpus=4,
    mem=2 << 30,
    gpus=2,
    resources={"license": 1},
    priority=5,
    gpu_ids="0,1",
    name="train",
    after=[3, 4, 5],
    after_any=[9],
    array_id=6,
    array_index=1,
    retries=3,
    retried=1,
    time_limit_ms=7_200_000,
)
TWO = [
    Attempt(7, 1, "requeued", "gpu2", "gpu2.lab", 11, NOW - 90 * S, NOW - 80 * S),
    Attempt(7, 2, "finished", "gpu1", "gpu1.lab", 4242, NOW - 60 * S, NOW, 0, 204800, 1_500_000),
]


def test_show_every_field(scripted, capsys) -> None:
    client = scripted(shown(RICH, TWO))
    code, out, _ = goq(capsys, "show", "7")
    assert code == 0 and client.sent[0].kind == Kind.SHOW and client.sent[0].jobid == 7
    fields = {}
    lines = out.splitlines()
    assert lines[0] == "job 7"
    for line in lines[1 : lines.index("attempts:")]:
        label, _, value = line.strip().partition("  ")
        fields[label] = value.strip()
    assert fields["name"] == "train" and fields["state"] == "finished: exit status 0"
    assert fields["command"] == "python train.py 'a b'"
    assert fields["directory"] == "/home/u/exp" and fields["submitted by"] == "u@login1"
    assert fields["asked"] == "cpus=4 gpus=2 mem=2G license=1"
    assert fields["given gpus"] == "0,1" and fields["priority"] == "5"
    assert fields["after"] == "3-5" and fields["after any"] == "9"
    assert fields["array"] == "6, index 1" and fields["retries"] == "1 of 3 used"
    assert fields["time limit"] == "2h" and fields["attempt"] == "2"
    assert fields["waited"] == "40s" and fields["ran"] == "1m00s"
    assert fields["output"] == "/w/o/out.00007 (1,536 bytes, 1.5K)"
    assert fields["environment"].startswith("2 variables") and "SECRET" not in out
    for label in ("submitted", "started", "ended"):
        assert fields[label][:2] == "20", fields
    table = lines[lines.index("attempts:") + 1 :]
    assert table[0].split()[:3] == ["ATTEMPT", "OUTCOME", "WORKER"]
    assert table[1].split()[:5] == ["1", "requeued", "gpu2", "gpu2.lab", "11"]
    assert table[2].split()[:5] == ["2", "finished", "gpu1", "gpu1.lab", "4242"]
    assert table[2].split()[-4:] == ["0", "200M", "1.50s", "0.00s"]
    code, out, _ = goq(capsys, "show", "--env", "7")
    assert "    SECRET=x" in out.splitlines()


def test_show_of_a_running_job_lists_the_run_in_progress() -> None:
    job = Job(
        jobid=3,
        cmd="sleep 9",
        shell=True,
        state=JobState.RUNNING,
        attempt=2,
        workerid="w1",
        workerhost="h1",
        pid=77,
        submit_ns=NOW - 10 * S,
        start_ns=NOW - 4 * S,
    )
    out = format_show(job, TWO[:1], None, now_ns=NOW)
    assert "shell line    sleep 9" in out and "running on w1" in out
    rows = out.splitlines()[out.splitlines().index("attempts:") + 2 :]
    assert rows[1].split()[:5] == ["2", "running", "w1", "h1", "77"]
    assert "4.000s so far" in out


def test_show_of_a_job_that_never_ran() -> None:
    job = Job(jobid=3, cmd="true", state=JobState.CANCELLED, note="dependency 2 failed")
    out = format_show(job, [], None, now_ns=NOW)
    assert "reason        dependency 2 failed" in out and out.endswith("attempts: none")
    assert "output        0 bytes" in out


def test_show_unknown_id_and_bad_ids(scripted, no_client, capsys) -> None:
    for bad in (("0",), ("x",), ("1-3",), (), ("1", "2")):
        one_line(capsys, "show", *bad)
    scripted(lambda msg: Message(Kind.NOT_KNOWN, text="job 99 is not known to this server"))
    assert one_line(capsys, "show", "99") == "goq: error: job 99 is not known to this server"


# ----------------------------------------------------------------------------- goq forget


def test_forget_ids(scripted, capsys) -> None:
    client = scripted(lambda msg: Message(Kind.ACK, count=2))
    code, out, _ = goq(capsys, "forget", "3", "5-6")
    assert code == 0 and out.startswith("forgot 2 ended job(s)")
    assert "1 of those named" in out
    assert [m.text for m in client.sent] == ["3,5-6"] and client.sent[0].offset == 0


def test_forget_before(scripted, capsys) -> None:
    client = scripted(lambda msg: Message(Kind.ACK, count=40))
    code, out, _ = goq(capsys, "forget", "--before", "30d")
    assert code == 0 and out == "forgot 40 ended job(s)\n"
    [msg] = client.sent
    assert msg.kind == Kind.FORGET and not msg.text
    assert abs(msg.offset - (time.time_ns() - 30 * 86400 * S)) < 60 * S


def test_forget_before_asks_for_yes_on_a_terminal(scripted, monkeypatch, capsys) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    assert "--yes" in one_line(capsys, "forget", "--before", "30d")
    scripted(lambda msg: Message(Kind.ACK, count=0))
    assert goq(capsys, "forget", "--before", "30d", "--yes")[0] == 0
    assert goq(capsys, "forget", "12")[0] == 0  # ids: no question


@pytest.mark.parametrize(
    "args", [(), ("1", "--before", "1d"), ("--before", "x"), ("0",), ("--before", "0")]
)
def test_forget_refuses(no_client, capsys, args) -> None:
    one_line(capsys, "forget", *args)


# ----------------------------------------------------------------------------- a real server


@pytest.mark.slow
def test_history_on_a_real_server(tmp_path: Path) -> None:
    """jobs, show and forget on real processes; the history survives a server restart; a job
    requeued after its worker died shows both attempts."""
    from tests.cluster import initialised, wait_for

    with initialised(tmp_path, server=True, heartbeat=0.3) as c:
        ok = c.sub("true")
        bad = c.sub("sh", "-c", "exit 4")
        marker = c.workdir / "started"
        slow = c.sub("sh", "-c", f"echo $$ > {marker}.tmp; mv {marker}.tmp {marker}; sleep 30")
        worker = c.start_worker(log="worker1.log")
        assert c.goq("wait", str(ok), str(bad)).returncode == 2
        wait_for(marker.exists, 20, "the slow job to start")
        pid = int(marker.read_text())
        c.stop(worker, signal.SIGKILL)  # its job is requeued once the server misses it
        with contextlib.suppress(ProcessLookupError):  # the job itself, left behind
            group = os.getpgid(pid)
            assert group != os.getpgrp()  # a job runs in a process group of its own
            os.killpg(group, signal.SIGKILL)
        out = c.ok("jobs")
        lines = out.splitlines()
        assert lines[0].split()[0] == "ID"
        rows = {int(line.split()[0]): line.split() for line in lines[1:]}
        assert rows[ok][2:5] == ["admin", "finished", "0"] and rows[bad][3:5] == ["failed", "4"]
        assert c.ok("jobs", "--state", "failed").count("\n") == 2

        c.stop(c.server)
        c.start_server()
        rows = {int(line.split()[0]): line for line in c.ok("jobs").splitlines()[1:]}
        assert "failed" in rows[bad] and "finished" in rows[ok]
        shown = c.ok("show", str(bad))
        assert "failed: exit status 4" in shown and "attempts:" in shown

        wait_for(lambda: "waiting" in c.ok("jobs", "--state", "waiting"), 20, "the job requeued")
        marker.unlink()
        c.start_worker(log="worker2.log")
        wait_for(marker.exists, 20, "the slow job to start again")
        attempts = json.loads(c.ok("show", "--json", str(slow)))["job"]["attempts"]
        assert [a["outcome"] for a in attempts][:1] == ["requeued"]
        shown = c.ok("show", str(slow))
        assert "requeued" in shown and "running" in shown
        c.ok("kill", str(slow))

        assert c.ok("forget", str(ok), str(bad)).startswith("forgot 2")
        assert c.goq("show", str(ok)).returncode == 1
        assert str(ok) not in [line.split()[0] for line in c.ok("jobs").splitlines()[1:]]
