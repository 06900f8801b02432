"""Each job's owner (the principal that submitted it) in the stores: saved and loaded, in the
history and filtered there (`history(..., owner=)`), read from the history's indexes alone by
the sqlite store, and "admin" for the jobs of a version 4 file, which only the cluster's key
(the admin named admin) could have submitted."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

import goq_core.stores.sqlite as sqlite_store
from goq_core.interfaces import Store
from goq_core.messages import Job, JobState
from goq_core.stores.memory import MemoryStoreFactory
from goq_core.stores.sqlite import FILENAME, SCHEMA_VERSION, SqliteStore
from tests.test_store import ENV, Opener, full_job, waiting
from tests.test_store_history import (
    EVERY,
    HISTORY_INDEXES,
    LIVE_STATES,
    assert_indexed,
    ended,
    traced_plans,
    uses,
)


@pytest.fixture(params=["sqlite", "memory"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the store under test at one path; call again to reopen it (as after a restart)."""
    home = str(tmp_path / ".goq")
    opened: list[Store] = []
    memory = MemoryStoreFactory()

    def opener(create: bool = True) -> Store:
        store = SqliteStore(home, create) if request.param == "sqlite" else memory(home, create)
        opened.append(store)
        return store

    yield opener
    for s in opened:
        s.close()


OWNERS = ["admin", "alice", "bob@lab", "caf\udce9", "ünï"]  # the last two: not principal names


def owned_jobs() -> list[Job]:
    """Live and ended jobs of several owners, named and not, some in escaped rows."""
    jobs = []
    for i in range(1, 61):
        if i % 6 == 0:
            job = waiting(i, state=LIVE_STATES[i % len(LIVE_STATES)])
        else:
            job = ended(i, [JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT][i % 3])
        job.owner = OWNERS[i % len(OWNERS)]
        job.name = "sweep" if i % 4 == 0 else ""
        if i % 7 == 0:
            job.cmd = "odd\udcff"  # an escaped row
        jobs.append(job)
    return jobs


def owners_history(store, owner: str | None, **kw) -> list[int]:
    args = {"states": EVERY, "name": None, "since_ns": 0, "before_jobid": None, "limit": 50}
    args.update(kw)
    return [j.jobid for j in store.history(owner=owner, **args)]


def test_owner_is_saved_and_loaded(open_store: Opener) -> None:
    store = open_store()
    jobs = [full_job(), replace(full_job(), jobid=43, owner="ünï", cmd="x\udce9")]
    store.save(jobs, {})
    store.close()
    store = open_store(create=False)
    assert [(j.jobid, j.owner) for j in store.load().jobs] == [(42, "alice@lab"), (43, "ünï")]
    assert store.get_job(43).owner == "ünï"
    done = replace(jobs[1], state=JobState.FINISHED)
    store.save([done], {})
    assert [asdict(j) for j in owners_history_jobs(store)] == [asdict(replace(done, env=[]))]


def owners_history_jobs(store) -> list[Job]:
    return store.history(states=EVERY, name=None, since_ns=0, before_jobid=None, limit=50)


@pytest.mark.parametrize("window", [0, 10_000])  # walked back; read by end time
def test_history_of_one_owner(
    open_store: Opener, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "_WINDOW_MAX", window)
    store = open_store()
    jobs = owned_jobs()
    store.save(jobs, {})
    ended_ = [
        j for j in jobs if j.state in (JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT)
    ]
    for owner in [*OWNERS, "nobody", ""]:
        for kw in (
            {},
            {"name": "sweep"},
            {"name": ""},
            {"states": frozenset({"cancelled"})},
            {"before_jobid": 30, "limit": 3},
            {"since_ns": 200},
        ):
            got = owners_history(store, owner, **kw)
            want = [
                j.jobid
                for j in reversed(ended_)
                if j.owner == owner
                and ("name" not in kw or j.name == kw["name"])
                and ("states" not in kw or j.state is JobState.CANCELLED)
                and j.jobid < kw.get("before_jobid", 1000)
                and j.end_ns >= kw.get("since_ns", 0)
            ][: kw.get("limit", 50)]
            assert got == want, (owner, kw)
    assert owners_history(store, None) == [j.jobid for j in reversed(ended_)]


def test_sqlite_history_of_one_owner_reads_its_indexes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save(owned_jobs(), {})
    for window, index in ((0, "jobs_ended"), (10_000, "jobs_ended_at")):
        monkeypatch.setattr(sqlite_store, "_WINDOW_MAX", window)
        plans = traced_plans(store, lambda: owners_history(store, "alice", since_ns=300))
        assert_indexed(plans, sorted_ok=window > 0)
        assert uses(plans[-2], index)  # the ids' query (the last one reads their rows)
    monkeypatch.setattr(sqlite_store, "_WINDOW_MAX", 0)
    for kw, index in (
        ({"states": frozenset({"timeout"})}, "jobs_unsuccessful"),
        ({"name": "sweep"}, "jobs_ended_name"),
    ):
        plans = traced_plans(store, lambda kw=kw: owners_history(store, "bob@lab", **kw))
        assert_indexed(plans)
        assert all(uses(plan, index) for plan in plans[:-1]), plans
    store.close()


# ------------------------------------------------------------------------------ from version 4

JOBS_V4 = """CREATE TABLE jobs (
    jobid          INTEGER PRIMARY KEY,
    state          INTEGER NOT NULL,
    cmd            TEXT NOT NULL,
    args           TEXT NOT NULL,
    shell          INTEGER NOT NULL,
    dir            TEXT NOT NULL,
    env_id         INTEGER REFERENCES env(id),
    host           TEXT NOT NULL,
    user           TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    workerid       TEXT NOT NULL,
    workerhost     TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    exit_status    INTEGER NOT NULL,
    submit_ns      INTEGER NOT NULL,
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    out_bytes      INTEGER NOT NULL,
    note           TEXT NOT NULL DEFAULT '',
    escaped        INTEGER NOT NULL DEFAULT 0,
    cpus           INTEGER NOT NULL DEFAULT 1,
    mem            INTEGER NOT NULL DEFAULT 0,
    gpus           INTEGER NOT NULL DEFAULT 0,
    resources      TEXT NOT NULL DEFAULT '',
    priority       INTEGER NOT NULL DEFAULT 0,
    gpu_ids        TEXT NOT NULL DEFAULT '',
    name           TEXT NOT NULL DEFAULT '',
    after          TEXT NOT NULL DEFAULT '',
    after_any      TEXT NOT NULL DEFAULT '',
    array_id       INTEGER NOT NULL DEFAULT 0,
    array_index    INTEGER NOT NULL DEFAULT 0,
    array_max      INTEGER NOT NULL DEFAULT 0,
    retries        INTEGER NOT NULL DEFAULT 0,
    retry_delay_ms INTEGER NOT NULL DEFAULT 0,
    retried        INTEGER NOT NULL DEFAULT 0,
    time_limit_ms  INTEGER NOT NULL DEFAULT 0,
    out_base       INTEGER NOT NULL DEFAULT 0
) STRICT"""
HISTORY_INDEXES_V4 = (
    "CREATE INDEX jobs_ended ON jobs(jobid, state, exit_status, end_ns)"
    " WHERE state BETWEEN 3 AND 5",
    "CREATE INDEX jobs_ended_at ON jobs(end_ns, state, exit_status) WHERE state BETWEEN 3 AND 5",
    "CREATE INDEX jobs_ended_name ON jobs(name, jobid, escaped, state, exit_status, end_ns)"
    " WHERE state BETWEEN 3 AND 5 AND name <> ''",
    "CREATE INDEX jobs_unsuccessful ON jobs(state, jobid, exit_status, end_ns)"
    " WHERE state BETWEEN 3 AND 5 AND NOT (state = 3 AND exit_status = 0)",
)
SCHEMA_V4 = f"""
CREATE TABLE env (
    id   INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
{JOBS_V4};
CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE state NOT BETWEEN 3 AND 5;
CREATE TABLE quarantine (
    id     INTEGER PRIMARY KEY,
    jobid  INTEGER NOT NULL,
    row    TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ns  INTEGER NOT NULL
);
CREATE INDEX quarantine_jobid ON quarantine(jobid);
CREATE TABLE nonces (
    nonce       BLOB PRIMARY KEY,
    sendtime_ns INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_time ON nonces(sendtime_ns);
CREATE INDEX jobs_asking ON jobs(cpus, mem, gpus, resources, priority, gpu_ids, escaped, state) WHERE state NOT BETWEEN 3 AND 5 AND NOT (cpus = 1 AND mem = 0 AND gpus = 0 AND resources = '' AND priority = 0 AND gpu_ids = '');
CREATE INDEX jobs_flow ON jobs(name, after, after_any, array_id, array_index, array_max, retries, retry_delay_ms, retried, time_limit_ms, out_base, state) WHERE state NOT BETWEEN 3 AND 5 AND NOT (name = '' AND after = '' AND after_any = '' AND array_id = 0 AND array_index = 0 AND array_max = 0 AND retries = 0 AND retry_delay_ms = 0 AND retried = 0 AND time_limit_ms = 0 AND out_base = 0);
{";".join(HISTORY_INDEXES_V4)};
CREATE TABLE attempts (
    jobid       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    workerid    TEXT NOT NULL,
    workerhost  TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    start_ns    INTEGER NOT NULL,
    end_ns      INTEGER NOT NULL,
    exit_status INTEGER NOT NULL,
    max_rss_kib INTEGER NOT NULL,
    utime_us    INTEGER NOT NULL,
    stime_us    INTEGER NOT NULL,
    escaped     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (jobid, attempt)
) STRICT, WITHOUT ROWID;
PRAGMA application_id = 1735356721;
PRAGMA user_version = 4;
"""  # noqa: E501 (the indexes as version 4 wrote them, one line each)


def test_the_version_4_schema_is_frozen() -> None:
    """The migration from v3 rebuilds what v4 had: its DDL must not follow the current one."""
    assert sqlite_store._JOBS_V4_DDL == JOBS_V4
    assert sqlite_store._HISTORY_INDEXES_V4 == HISTORY_INDEXES_V4
    assert sqlite_store._JOBS_DDL != JOBS_V4 and SCHEMA_VERSION == 5


def make_v4_store(home: Path) -> None:
    """A store as goq with schema version 4 wrote it: a waiting job in a workflow, a running
    one in an escaped row, a finished one with an attempt, a nonce."""
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / FILENAME)
    db.executescript(SCHEMA_V4)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO env (id, hash, body) VALUES (1, x'00', ?)", (json.dumps(ENV),))
    row = (
        "INSERT INTO jobs (jobid, state, cmd, args, shell, dir, env_id, host, user, attempt,"
        " workerid, workerhost, pid, exit_status, submit_ns, start_ns, end_ns, out_bytes, escaped,"
        " name, retries) VALUES (?, ?, ?, '', 0, '/home/a', 1, 'h', 'u', ?, '', '', 0, ?, 5, 6,"
        " ?, 0, ?, ?, ?)"
    )
    # jobid, state, cmd, attempt, exit_status, end_ns, escaped, name, retries
    db.execute(row, (1, 1, "echo", 0, 0, 0, 0, "sweep", 2))
    db.execute(row, (2, 2, "caf\\udce9", 1, 0, 0, 1, "", 0))
    db.execute(row, (3, 3, "true", 1, 0, 70, 0, "sweep", 0))
    db.execute(
        "INSERT INTO attempts VALUES (3, 1, 'finished', 'w1', 'node1', 42, 6, 70, 0, 1, 2, 3, 0)"
    )
    db.execute("INSERT INTO nonces VALUES (x'0102', 7)")
    db.execute("INSERT INTO counters VALUES ('nextJobId', 4)")
    db.commit()
    db.close()


def test_version_4_store_is_migrated_with_admin_as_every_jobs_owner(tmp_path: Path) -> None:
    make_v4_store(tmp_path)
    store = SqliteStore(str(tmp_path), create=False)
    assert store._trusted  # the rebuilt table is exactly the v5 one: the fast loader runs
    state = store.load()
    assert [(j.jobid, j.state, j.cmd, j.name, j.retries, j.owner) for j in state.jobs] == [
        (1, JobState.WAITING, "echo", "sweep", 2, "admin"),
        (2, JobState.RUNNING, "caf\udce9", "", 0, "admin"),
    ]
    assert state.quarantined == [] and state.nonces == [(b"\x01\x02", 7)]
    assert store.get_job(3).owner == "admin" and store.attempts(3)[0].workerhost == "node1"
    assert owners_history(store, "admin") == [3] == owners_history(store, "admin", name="sweep")
    assert owners_history(store, "alice") == []
    store.save([replace(state.jobs[0], jobid=4, owner="alice")], {})
    store.close()

    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    sql = dict(db.execute("SELECT name, sql FROM sqlite_schema"))
    assert sql["jobs"] == sqlite_store._JOBS_DDL and "jobs_v4" not in sql
    for name in HISTORY_INDEXES:
        assert "owner" in sql[name]
    db.close()
    fresh = SqliteStore(str(tmp_path / "fresh"), create=True)
    fresh.close()
    schemas = []
    for path in (tmp_path / FILENAME, tmp_path / "fresh" / FILENAME):
        db = sqlite3.connect(path)
        schemas.append(sorted(db.execute("SELECT type, name, sql FROM sqlite_schema")))
        db.close()
    assert schemas[0] == schemas[1]  # exactly what a new store has
    again = SqliteStore(str(tmp_path), create=False)
    assert [(j.jobid, j.owner) for j in again.load().jobs] == [
        (1, "admin"),
        (2, "admin"),
        (4, "alice"),
    ]
    again.close()
