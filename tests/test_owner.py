"""Each job's owner, the principal that submitted it (issue 13): stamped by the kernel whatever
the client said, kept by `goq jobs`'s query (the owner filter: `--mine`), answered by the
server runtime from the store's history, shown in the records and by `goq stat`, `jobs`, `show`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from goq_cli import main as cli_main
from goq_cli.report import format_jobs, format_show, format_status
from goq_core.config import Settings
from goq_core.jobquery import JobQuery, parse
from goq_core.kernel import QueryJobs
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.principals import Principal
from goq_core.records import JobRecord
from goq_core.roles.server import Server, ServerOptions
from goq_core.stores.memory import MemoryStore
from tests.test_cli_workflow import ScriptedClient, goq
from tests.test_kernel import Driver, replies_to
from tests.test_server_runtime import RecordingEnd

ALICE = Principal("submit", "alice")
BOB = Principal("submit", "bob@lab")


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    def install(answer) -> ScriptedClient:
        client = ScriptedClient(answer)
        monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
        return client

    return install


def submit_as(d: Driver, who: Principal, **fields) -> int:
    msg = Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w", env=["A=1"], **fields)])
    msg.nonce, msg.sendtime_ns = os.urandom(16), int(d.now * 1e9)
    out = d.kernel.handle(msg, "sub", d.now, who)
    (ack,) = replies_to(out, "sub")
    assert ack.kind == Kind.SUBMITTED, ack.text
    return ack.jobid


def live_of(d: Driver, query: JobQuery) -> list[tuple[int, str]]:
    out = d.send(Message(Kind.JOBS, text=query.to_text()), "c")
    (found,) = [a for a in out if isinstance(a, QueryJobs)]
    assert found.query == query
    return [(j.jobid, j.owner) for j in found.live]


def test_the_kernel_stamps_the_submitter_and_filters_live_jobs_by_owner() -> None:
    d = Driver()
    a1 = submit_as(d, ALICE, owner="bob@lab")  # a client's owner is not believed
    b1 = submit_as(d, BOB)
    a2 = submit_as(d, ALICE, name="n")
    admin = d.submit("y")  # the cluster's key: the admin named admin
    every = JobQuery()
    assert live_of(d, every) == [(admin, "admin"), (a2, "alice"), (b1, "bob@lab"), (a1, "alice")]
    assert live_of(d, JobQuery(owner="alice")) == [(a2, "alice"), (a1, "alice")]
    assert live_of(d, JobQuery(owner="bob@lab")) == [(b1, "bob@lab")]
    assert live_of(d, JobQuery(owner="alice", name="n")) == [(a2, "alice")]
    assert live_of(d, JobQuery(owner="nobody")) == []


def test_a_jobs_query_carries_its_owner() -> None:
    q = JobQuery(frozenset({"running", "failed"}), "n", 5, 9, 7, "alice")
    assert parse(q.to_text()) == q
    assert parse(JobQuery().to_text()).owner is None
    assert parse('{"states": ["waiting"]}').owner is None
    for bad in ('""', "7", '"' + "x" * 1025 + '"', "[]"):
        with pytest.raises(ValueError, match="owner must be text of 1 to 1024"):
            parse(f'{{"owner": {bad}}}')


def test_the_server_answers_a_jobs_query_of_one_owner_from_its_history(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=1)
    server = Server(settings, os.urandom(32), options=ServerOptions(store="memory"))
    server.end = RecordingEnd()
    server.store = MemoryStore()
    ended = [
        Job(jobid=i, cmd="x", state=JobState.FINISHED, end_ns=i, owner=owner)
        for i, owner in enumerate(["alice", "bob@lab", "alice", "admin"], start=1)
    ]
    server.store.save(ended, {})
    live = [Job(jobid=9, cmd="x", state=JobState.WAITING, owner="alice")]  # as the kernel found
    server._history(QueryJobs("c", b"n" * 16, JobQuery(owner="alice"), live))
    ((peer, frame),) = server.end.replies
    reply = server.wire.unpack(frame)
    assert reply.kind == Kind.JOB_LIST
    assert [(j.jobid, j.owner) for j in reply.jobs] == [(9, "alice"), (3, "alice"), (1, "alice")]


def test_records_and_reports_show_the_owner() -> None:
    job = Job(jobid=4, cmd="true", state=JobState.WAITING, owner="alice", submit_ns=1)
    assert JobRecord.from_job(job).owner == "alice"
    assert JobRecord.from_job(Job()).owner is None  # not recorded
    assert JobRecord.from_job(job).to_json()["owner"] == "alice"
    table = format_jobs([job, Job(jobid=3, cmd="true", owner="bob@lab")], now_ns=2)
    assert table.splitlines()[0].split()[:4] == ["ID", "NAME", "OWNER", "STATE"]
    assert table.splitlines()[1].split()[:3] == ["4", "-", "alice"]
    assert "  owner         alice" in format_show(job, [], None, now_ns=2)
    assert "  owner         -" in format_show(Job(jobid=5), [], None, now_ns=2)
    running = Job(jobid=3, cmd="run", state=JobState.RUNNING, workerid="w1", owner="bob@lab")
    status = Message(Kind.STATUS, counters={"runQlen": 1}, jobs=[running, job])
    lines = format_status(status, 10).splitlines()
    assert lines[2].endswith("by bob@lab  on w1  run")
    assert lines[4].endswith("by alice    attempt 0  true")  # one column, padded


def test_mine_asks_the_server_for_the_callers_jobs_and_filters_stat(script, capsys) -> None:
    """`goq jobs --mine` sends the caller's name as the query's owner; `goq stat --mine` keeps
    the caller's jobs of those the server listed (and all of its counters)."""
    listed = [
        Job(jobid=3, cmd="a", state=JobState.RUNNING, workerid="w1", owner="bob@lab"),
        Job(jobid=2, cmd="b", state=JobState.WAITING, owner="alice"),
        Job(jobid=1, cmd="c", state=JobState.WAITING, owner="bob@lab"),
    ]

    def answer(msg: Message) -> Message:
        if msg.kind == Kind.JOBS:
            return Message(Kind.JOB_LIST, jobs=[j for j in listed if j.owner == "alice"])
        return Message(Kind.STATUS, counters={"runQlen": 1, "waitingJobs": 2}, jobs=listed)

    client = script(answer)
    client.principal = ALICE
    code, out, _ = goq(capsys, "jobs", "--mine", "--json")
    assert code == 0 and parse(client.sent[-1].text).owner == "alice"
    assert [j["id"] for j in json.loads(out)["jobs"]] == [2]
    code, out, _ = goq(capsys, "jobs")
    assert code == 0 and parse(client.sent[-1].text).owner is None
    code, out, _ = goq(capsys, "stat", "--mine")
    assert code == 0 and "runQlen: 1" in out and "waitingJobs: 2" in out
    assert [line.split()[0] for line in out.splitlines() if "by " in line] == ["2"]
    code, out, _ = goq(capsys, "stat", "--json", "--mine")
    assert [j["id"] for j in json.loads(out)["jobs"]] == [2]
    code, out, _ = goq(capsys, "stat")
    assert [line.split()[0] for line in out.splitlines() if "by " in line] == ["3", "2", "1"]
