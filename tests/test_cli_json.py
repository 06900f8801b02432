"""Issue 12, `--json`: every document the commands print is what docs/json.md says, field for
field: each documented field present and of its documented type, no undocumented field.

The page is parsed (one `field | type | meaning` table per document and per object); the
documents come from the commands, in-process with a Client whose `call` answers from a script
(every kind, with values both set and null), and from a real server (slow).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from goq_cli import main as cli_main
from goq_cli.fastpath import try_fast_path
from goq_core import __version__
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.records import SCHEMA, Attempt, attempt_to_dict
from tests.test_cli_workflow import ADDRESS, ScriptedClient, goq, one_line, submitted

DOC = Path(__file__).resolve().parent.parent / "docs" / "json.md"
_HEADING = re.compile(r"^### (Document|Object) `([a-z_]+)`\s*$")
_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|(.*?)(?<!\\)\|(.*)\|\s*$")
_SCALARS = {"integer", "number", "string", "boolean", "null"}


# ----------------------------------------------------------------------------- the page


def parse_page(text: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(documents, objects) of the page: name -> {field: type}, in the page's order."""
    documents: dict[str, dict[str, str]] = {}
    objects: dict[str, dict[str, str]] = {}
    table: dict[str, str] | None = None
    for line in text.splitlines():
        if m := _HEADING.match(line):
            where = documents if m[1] == "Document" else objects
            assert m[2] not in where, f"{m[1]} {m[2]} described twice"
            table = where[m[2]] = {}
        elif line.startswith("## "):
            table = None
        elif table is not None and (m := _ROW.match(line)):
            assert m[1] not in table, f"field {m[1]} described twice"
            table[m[1]] = m[2].strip().replace("\\|", "|")
            assert m[3].strip(), f"field {m[1]} has no meaning"
    return documents, objects


DOCUMENTS, OBJECTS = parse_page(DOC.read_text())


def type_ok(value: Any, kind: str) -> str | None:
    """Why `value` is not of the page's type `kind`; None when it is."""
    alternatives = [part.strip() for part in kind.split("|")]
    whys = []
    for alt in alternatives:
        why = _one_type(value, alt)
        if why is None:
            return None
        whys.append(why)
    return " and ".join(whys)


def _one_type(value: Any, kind: str) -> str | None:
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "null":
        ok = value is None
    elif kind.startswith("array of "):
        if not isinstance(value, list):
            return f"{value!r} is not an array"
        for i, item in enumerate(value):
            if (why := type_ok(item, kind[len("array of ") :])) is not None:
                return f"[{i}]: {why}"
        return None
    elif kind.startswith("object of "):
        if not isinstance(value, dict):
            return f"{value!r} is not an object"
        for name, item in value.items():
            if (why := type_ok(item, kind[len("object of ") :])) is not None:
                return f"[{name!r}]: {why}"
        return None
    elif kind in OBJECTS:
        return fields_ok(value, OBJECTS[kind], kind)
    else:
        raise AssertionError(f"docs/json.md uses an unknown type {kind!r}")
    return None if ok else f"{value!r} is not {kind}"


def fields_ok(value: Any, table: dict[str, str], what: str) -> str | None:
    if not isinstance(value, dict):
        return f"{what} {value!r} is not an object"
    missing = sorted(set(table) - set(value))
    extra = sorted(set(value) - set(table))
    if missing or extra:
        return f"{what}: missing {missing}, undocumented {extra}"
    for name, kind in table.items():
        if (why := type_ok(value[name], kind)) is not None:
            return f"{what}.{name}: {why}"
    return None


def check(doc: Any) -> dict:
    """Assert that `doc` is a document as the page describes it; returns it."""
    assert isinstance(doc, dict), doc
    kind = doc.get("kind")
    assert kind in DOCUMENTS, f"kind {kind!r} is not described in docs/json.md"
    why = fields_ok(doc, DOCUMENTS[kind], kind)
    assert why is None, why
    assert doc["schema"] == SCHEMA
    return doc


def parsed(out: str) -> dict:
    """The one document of a command's stdout (nothing else may be there)."""
    doc = json.loads(out)
    return check(doc)


# ----------------------------------------------------------------------------- the page itself


def test_the_page_describes_every_kind_and_object() -> None:
    kinds = {"submitted", "status", "jobs", "job", "ended", "cancelled", "held", "released"}
    kinds |= {"forgotten", "workers", "version", "credential", "credentials", "revoked"}
    assert set(DOCUMENTS) == kinds
    assert set(OBJECTS) == {"job", "attempt", "worker", "capacity", "credential"}
    for name, table in DOCUMENTS.items():
        assert list(table)[:2] == ["schema", "kind"], name
        assert table["schema"] == "integer" and table["kind"] == "string"


def test_every_type_on_the_page_is_known() -> None:
    def walk(kind: str) -> None:
        for alt in kind.split("|"):
            alt = alt.strip()
            for prefix in ("array of ", "object of "):
                if alt.startswith(prefix):
                    walk(alt[len(prefix) :])
                    break
            else:
                assert alt in _SCALARS or alt in OBJECTS, f"unknown type {alt!r}"

    for table in [*DOCUMENTS.values(), *OBJECTS.values()]:
        for kind in table.values():
            walk(kind)


def test_the_job_object_is_the_records_fields() -> None:
    from dataclasses import fields

    from goq_core.records import AttemptRecord, JobRecord

    assert list(OBJECTS["job"]) == [f.name for f in fields(JobRecord)]
    assert list(OBJECTS["attempt"]) == [f.name for f in fields(AttemptRecord)]


def test_the_checker_catches_a_missing_an_extra_and_a_mistyped_field() -> None:
    good = {"schema": 1, "kind": "version", "version": "1"}
    check(good)
    for bad in (
        {"schema": 1, "kind": "version"},
        {**good, "extra": 1},
        {**good, "version": 1},
        {**good, "schema": True},
    ):
        with pytest.raises(AssertionError):
            check(bad)
    assert type_ok(None, "string|null") is None and type_ok(3, "string|null") is not None
    assert type_ok([[1, 2]], "array of array of integer") is None
    assert type_ok([[1, "2"]], "array of array of integer") is not None
    assert type_ok(1.5, "number") is None and type_ok(1.5, "integer") is not None


# ----------------------------------------------------------------------------- scripted server

NOW = 1_714_651_407_412_000_000  # 2024-05-02T12:03:27.412Z
S = 1_000_000_000


def rich_job(jobid: int = 7, **kw) -> Job:
    """A job with every field set (ended: timed out after a requeue)."""
    fields = dict(
        jobid=jobid,
        cmd="python",
        args=["train.py", "--epochs", "10"],
        dir="/home/u/exp",
        env=["HOME=/home/u", "PATH=/bin"],
        host="login1",
        user="u",
        state=JobState.TIMEOUT,
        attempt=2,
        workerid="gpu1",
        workerhost="gpu1.lab",
        pid=4242,
        exit_status=-15,
        submit_ns=NOW - 100 * S,
        start_ns=NOW - 60 * S,
        end_ns=NOW,
        out_bytes=2048,
        note="",
        cpus=4,
        mem=2 << 30,
        gpus=2,
        resources={"license": 1},
        priority=5,
        gpu_ids="0,1",
        name="train",
        after=[3, 4],
        after_any=[5],
        array_id=6,
        array_index=1,
        retries=3,
        retried=1,
        time_limit_ms=60_000,
        owner="alice",
    )
    fields.update(kw)
    return Job(**fields)


def bare_job(jobid: int = 8, state: JobState = JobState.WAITING, **kw) -> Job:
    """A job with nothing but the defaults (nulls where the records allow them)."""
    return Job(jobid=jobid, cmd="true", state=state, **kw)


ATTEMPTS = [
    Attempt(7, 1, "requeued", "gpu2", "gpu2.lab", 11, NOW - 90 * S, NOW - 80 * S),
    Attempt(7, 2, "timeout", "gpu1", "gpu1.lab", 4242, NOW - 60 * S, NOW, -15, 204800, 1_500_000),
    Attempt(7, 3, "undelivered"),
]

WORKERS = {
    "workers": [
        {
            "name": "gpu1",
            "host": "gpu1.lab",
            "state": "busy",
            "offer": {"cpus": 4, "mem": 1 << 34, "gpus": ["0", "1"], "resources": {"lic": 2}},
            "free": {"cpus": 1, "mem": 0, "gpus": [], "resources": {}},
            "jobs": [17],
            "last_heard_sec_ago": 0.4,
        }
    ]
}


def server(msg: Message) -> Message:
    """Answers as a server would, from the jobs above."""
    if msg.kind == Kind.SUBMIT:
        return submitted(7)(msg)
    if msg.kind == Kind.STAT:
        jobs = [
            rich_job(state=JobState.RUNNING, end_ns=0),
            bare_job(),
            bare_job(9, JobState.BLOCKED, note="waits: for jobs 7"),
            bare_job(10, JobState.HELD),
        ]
        return Message(Kind.STATUS, jobs=jobs, counters={"runQlen": 1, "waitingJobs": 1})
    if msg.kind == Kind.JOBS:
        jobs = [bare_job(11, JobState.CANCELLED, note="by goq kill"), rich_job(), bare_job()]
        return Message(Kind.JOB_LIST, jobs=jobs)
    if msg.kind == Kind.SHOW:
        if msg.jobid == 8:  # never ran
            return Message(Kind.JOB_RECORD, jobs=[bare_job()], text="{}")
        extra = {"attempts": [attempt_to_dict(a) for a in ATTEMPTS], "output_path": "/o/out.7"}
        return Message(Kind.JOB_RECORD, jobs=[rich_job()], text=json.dumps(extra))
    if msg.kind == Kind.WAIT:
        if msg.jobid:
            job = rich_job(msg.jobid, state=JobState.FINISHED, exit_status=0)
            return Message(Kind.FINISHED, jobid=msg.jobid, jobs=[job])
        return Message(Kind.FINISHED, jobs=[rich_job(7), bare_job(8, JobState.FINISHED)])
    if msg.kind in (Kind.CANCEL, Kind.HOLD, Kind.RELEASE, Kind.FORGET):
        return Message(Kind.ACK, count=2, text="done 2 job(s)")
    if msg.kind == Kind.SELECT:
        return Message(Kind.JOB_IDS, text="7-8", count=2)
    if msg.kind == Kind.WORKERS:
        return Message(Kind.WORKER_LIST, text=json.dumps(WORKERS))
    if msg.kind == Kind.REVOKE:  # bob revoked long ago; alice now, if asked
        revoked = {"bob": 1_700_000_000_000_000_000}
        if msg.text:
            revoked[msg.text] = 1_800_000_000_000_000_000
        return Message(Kind.ACK, text=json.dumps({"revoked": revoked}), count=len(revoked))
    raise AssertionError(f"unexpected request {msg.kind.name}")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ScriptedClient]:
    def install(answer=server) -> ScriptedClient:
        client = ScriptedClient(answer)
        monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
        return client

    return install


def json_of(capsys, *args: str, code: int = 0) -> dict:
    got, out, err = goq(capsys, *args)
    assert got == code, (args, got, out, err)
    return parsed(out)


def test_sub(scripted, capsys) -> None:
    scripted()
    doc = json_of(capsys, "sub", "--json", "echo", "hi")
    assert (doc["first"], doc["last"], doc["count"], doc["ranges"]) == (7, 7, 1, [[7, 7]])
    assert doc["array"] is None and doc["server"] == ADDRESS
    doc = json_of(capsys, "sub", "--json", "--array", "1-10:2%3", "echo")
    assert (doc["first"], doc["last"], doc["count"], doc["array"]) == (7, 11, 5, "1-10:2%3")


def test_sub_of_a_file_in_several_requests(scripted, capsys, tmp_path: Path) -> None:
    answers = iter([(1, 5000), (9000, 10)])
    scripted(lambda msg: Message(Kind.SUBMITTED, jobid=(a := next(answers))[0], count=a[1]))
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("echo x\n" * 5010)
    doc = json_of(capsys, "sub", "--json", "--file", str(jobs))
    assert doc["ranges"] == [[1, 5000], [9000, 9009]]
    assert (doc["first"], doc["last"], doc["count"]) == (1, 9009, 5010)


def test_stat(scripted, capsys) -> None:
    scripted()
    doc = json_of(capsys, "stat", "--json")
    assert doc["counters"] == {"runQlen": 1, "waitingJobs": 1}
    states = [j["state"] for j in doc["jobs"]]
    assert states == ["running", "waiting", "blocked", "held"]
    running = doc["jobs"][0]
    assert running["ended"] is None and running["ran"] is None and running["waited"] == 40.0
    assert doc["jobs"][2]["reason"] == "waits: for jobs 7"
    assert all(j["attempts"] is None and j["output_path"] is None for j in doc["jobs"])


def test_jobs(scripted, capsys) -> None:
    client = scripted()
    doc = json_of(capsys, "jobs", "--json", "--state", "all", "--limit", "3")
    assert [j["id"] for j in doc["jobs"]] == [11, 7, 8]
    job = doc["jobs"][1]
    assert job["state"] == "timeout" and job["signal"] == 15 and job["exit_status"] is None
    assert job["submitted"] == "2024-05-02T12:01:47.412000Z" and job["ended"].endswith("Z")
    assert job["waited"] == 40.0 and job["ran"] == 60.0 and job["time_limit"] == 60.0
    assert job["command"] == ["python", "train.py", "--epochs", "10"]
    assert job["gpu_ids"] == ["0", "1"] and job["resources"] == {"license": 1}
    assert json.loads(client.sent[0].text)["limit"] == 3
    doc = json_of(capsys, "jobs", "--json")  # nothing found is still one document
    scripted(lambda msg: Message(Kind.JOB_LIST))
    assert json_of(capsys, "jobs", "--json")["jobs"] == []


def test_show(scripted, capsys) -> None:
    scripted()
    doc = json_of(capsys, "show", "--json", "7")
    job = doc["job"]
    assert doc["environment"] == ["HOME=/home/u", "PATH=/bin"]
    assert job["output_path"] == "/o/out.7" and job["output_bytes"] == 2048
    first, second, third = job["attempts"]
    assert first["outcome"] == "requeued" and first["exit_status"] is None
    assert first["max_rss_kib"] is None and first["ran"] == 10.0
    assert second["signal"] == 15 and second["max_rss_kib"] == 204800
    assert second["user_cpu"] == 1.5 and second["system_cpu"] == 0.0
    assert third["started"] is None and third["worker"] is None and third["pid"] is None
    doc = json_of(capsys, "show", "--json", "8")
    assert doc["job"]["attempts"] == [] and doc["job"]["output_path"] is None
    assert doc["job"]["started"] is None and doc["environment"] == []


def test_wait(scripted, capsys) -> None:
    scripted()
    doc = json_of(capsys, "wait", "--json", "12")
    assert [j["id"] for j in doc["jobs"]] == [12] and doc["all_succeeded"] is True
    doc = json_of(capsys, "wait", "--json", "7-8", code=2)
    assert [j["state"] for j in doc["jobs"]] == ["timeout", "finished"]
    assert doc["all_succeeded"] is False and doc["unrecorded"] == []
    doc = json_of(capsys, "wait", "--json", "--all", code=2)
    assert len(doc["jobs"]) == 2


def test_wait_for_a_job_whose_record_is_gone(scripted, capsys) -> None:
    def answer(msg: Message) -> Message:
        if msg.kind == Kind.WAIT:
            return Message(Kind.FINISHED, jobid=msg.jobid)  # ended; no record
        return Message(Kind.NOT_KNOWN, text="job 5 is not known")

    scripted(answer)
    doc = json_of(capsys, "wait", "--json", "5", code=2)
    assert doc["jobs"] == [] and doc["unrecorded"] == [5] and doc["all_succeeded"] is False


def test_wait_fills_a_missing_record_from_show(scripted, capsys) -> None:
    def answer(msg: Message) -> Message:
        if msg.kind == Kind.WAIT:
            return Message(Kind.FINISHED, jobid=msg.jobid)
        return server(msg)

    scripted(answer)
    doc = json_of(capsys, "wait", "--json", "7", code=2)
    assert [j["id"] for j in doc["jobs"]] == [7] and doc["unrecorded"] == []


def test_wait_with_nothing_to_wait_for(scripted, capsys) -> None:
    scripted(lambda msg: Message(Kind.NOT_KNOWN))
    doc = json_of(capsys, "wait", "--json", "--all")
    assert doc["jobs"] == [] and doc["all_succeeded"] is True


def test_kill_hold_release_forget(scripted, capsys) -> None:
    scripted()
    for args, kind in (
        (("kill", "7-8"), "cancelled"),
        (("kill", "--name", "x"), "cancelled"),
        (("hold", "7"), "held"),
        (("release", "7"), "released"),
        (("forget", "7"), "forgotten"),
        (("forget", "--before", "30d", "--yes"), "forgotten"),
    ):
        doc = json_of(capsys, *args, "--json")
        assert doc["kind"] == kind and doc["count"] == 2, args
    scripted(
        lambda msg: Message(Kind.ACK, jobid=msg.jobid, count=1, text="cancelled running job 7")
    )
    assert json_of(capsys, "kill", "--json", "7")["count"] == 1
    scripted(lambda msg: Message(Kind.ACK, jobid=msg.jobid, text="job 7 has already ended"))
    doc = json_of(capsys, "kill", "--json", "7")
    assert doc["count"] == 0 and doc["message"] == "job 7 has already ended"
    scripted(lambda msg: Message(Kind.JOB_IDS, text=""))
    assert json_of(capsys, "kill", "--json", "--all", "--yes")["count"] == 0


def test_workers_and_version(scripted, capsys) -> None:
    scripted()
    doc = json_of(capsys, "workers", "--json")
    assert doc["workers"] == WORKERS["workers"]
    assert json_of(capsys, "version", "--json")["version"] == __version__


EVERY_KIND = [  # a command line for each kind of document, and its exit status
    (("sub", "--json", "true"), 0),
    (("stat", "--json"), 0),
    (("jobs", "--json"), 0),
    (("show", "--json", "7"), 0),
    (("wait", "--json", "7-8"), 2),
    (("kill", "--json", "7-8"), 0),
    (("hold", "--json", "7"), 0),
    (("release", "--json", "7"), 0),
    (("forget", "--json", "7"), 0),
    (("workers", "--json"), 0),
    (("version", "--json"), 0),
    (("cred", "issue", "--json", "--role", "work", "--name", "node1"), 0),
    (("cred", "list", "--json"), 0),
    (("cred", "revoke", "--json", "alice"), 0),
]


@pytest.fixture
def goq_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GOQ_HOME with a root secret (for `goq cred issue`), the current directory beside it."""
    from goq_core.keys import create_key

    create_key(str(tmp_path))
    monkeypatch.setenv("GOQ_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_credentials(scripted, capsys, goq_home: Path) -> None:
    scripted()
    doc = json_of(capsys, "cred", "issue", "--json", "--role", "submit", "--name", "alice",
                  "--expires", "30d")  # fmt: skip
    assert doc["file"] == "alice.cred" and (goq_home / "alice.cred").exists()
    assert doc["credential"]["role"] == "submit" and doc["credential"]["expires"] is not None
    json_of(capsys, "cred", "issue", "--json", "--role", "work", "--name", "bob")
    listed = json_of(capsys, "cred", "list", "--json")
    assert listed["revocations_known"] is True
    states = {c["name"]: (c["state"], c["revoked_at"]) for c in listed["credentials"]}
    assert states["alice"] == ("valid", None)
    assert states["bob"][0] == "valid"  # issued after bob's revocation of 2023
    doc = json_of(capsys, "cred", "revoke", "--json", "alice")
    assert doc["name"] == "alice" and doc["revoked_at"] == "2027-01-15T08:00:00.000000Z"
    assert set(doc["revoked"]) == {"alice", "bob"}


def test_a_name_keeps_one_role(scripted, capsys, goq_home: Path) -> None:
    json_of(capsys, "cred", "issue", "--json", "--role", "work", "--name", "node1")
    assert "already has a work credential" in one_line(
        capsys, "cred", "issue", "--role", "submit", "--name", "node1", "--out", "x.cred"
    )
    assert "root secret's" in one_line(
        capsys, "cred", "issue", "--role", "submit", "--name", "admin"
    )
    assert not (goq_home / "x.cred").exists() and not (goq_home / "admin.cred").exists()
    json_of(capsys, "cred", "issue", "--json", "--role", "work", "--name", "node1", "--out", "y")


def test_every_documented_kind_is_produced(scripted, capsys, goq_home: Path) -> None:
    scripted()
    kinds = [json_of(capsys, *args, code=code)["kind"] for args, code in EVERY_KIND]
    assert sorted(kinds) == sorted(DOCUMENTS)


# ----------------------------------------------------------------------------- errors, fast path


def test_errors_are_one_line_on_stderr_and_no_document(scripted, capsys) -> None:
    scripted(lambda msg: Message(Kind.NOT_KNOWN, text="job 99 is not known to this server"))
    assert "not known" in one_line(capsys, "show", "--json", "99")
    assert "not known" in one_line(capsys, "wait", "--json", "99")
    assert "not known" in one_line(capsys, "kill", "--json", "99")
    assert "--json" in one_line(capsys, "stat", "--jsn")  # did you mean


def test_the_fast_path_leaves_json_to_click() -> None:
    for args in (
        ["sub", "--json", "echo", "hi"],
        ["stat", "--json"],
        ["stat", "5", "--json"],
        ["stat", "--json", "5"],
        ["--codec", "raw", "stat", "--json"],
        ["sub", "--shell", "--json", "echo hi"],
    ):
        assert try_fast_path(args) is False, args


def test_json_over_a_python_m_goq_cli_without_server(tmp_path: Path) -> None:
    """The console entry (fast path first): --json errors are one line too."""
    env = {"PATH": "/usr/bin:/bin", "GOQ_HOME": str(tmp_path)}
    for args in (["stat", "--json"], ["sub", "--json", "true"], ["jobs", "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "goq_cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1 and done.stdout == "", (args, done)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("goq: error: ")
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", "version", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and parsed(done.stdout)["version"] == __version__


# ----------------------------------------------------------------------------- a real server


@pytest.mark.slow
def test_documents_from_a_real_server(tmp_path: Path) -> None:
    from tests.cluster import initialised

    with initialised(tmp_path, server=True) as c:

        def doc(*args: str, code: int = 0) -> dict:
            done = c.goq(args[0], "--json", *args[1:])  # options before sub's command
            assert done.returncode == code, (args, done.stdout, done.stderr)
            return parsed(done.stdout)

        held = doc("sub", "--hold", "--name", "later", "true")["first"]
        sub = doc("sub", "--array", "1-3", "--cpus", "1", "sh", "-c", "exit $GOQ_ARRAY_INDEX")
        first, last = sub["first"], sub["last"]
        assert (last - first, sub["array"]) == (2, "1-3")
        status = doc("stat")
        assert status["counters"]["waitingJobs"] == 3 and status["counters"]["heldJobs"] == 1
        assert {j["state"] for j in status["jobs"]} == {"waiting", "held"}
        assert not doc("workers")["workers"]
        c.start_worker()
        ended = doc("wait", f"{first}-{last}", code=2)
        assert [j["exit_status"] for j in ended["jobs"]] == [1, 2, 3]
        assert not ended["all_succeeded"]
        assert doc("workers")["workers"][0]["state"] in ("idle", "busy")
        listed = doc("jobs", "--state", "failed,held")
        assert [j["id"] for j in listed["jobs"]] == [last, last - 1, first, held]
        shown = doc("show", str(first))
        assert shown["job"]["state"] == "failed" and len(shown["job"]["attempts"]) == 1
        attempt = shown["job"]["attempts"][0]
        assert attempt["outcome"] == "finished" and attempt["exit_status"] == 1
        assert attempt["pid"] and attempt["worker"] and shown["environment"]
        assert doc("release", str(held))["count"] == 1
        assert doc("wait", str(held))["all_succeeded"]
        assert doc("hold", str(held))["count"] == 0
        assert doc("kill", str(held))["count"] == 0
        assert doc("forget", f"{first}-{last}")["count"] == 3
        assert doc("forget", "--before", "1s")["count"] in (0, 1)
        assert doc("version")["version"] == __version__
