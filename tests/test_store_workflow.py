"""The stores and the workflow fields (schema v4 of the sqlite store): names, dependencies,
arrays, retries, time limits; the TIMEOUT, BLOCKED and HELD states; `outcomes`; and the
migration of a version 3 file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import goq_core.stores.sqlite as sqlite_store
from goq_core import idranges
from goq_core.errors import StoreError
from goq_core.interfaces import Store
from goq_core.messages import Job, JobState
from goq_core.stores.memory import MemoryStoreFactory
from goq_core.stores.sqlite import (
    FILENAME,
    SCHEMA_VERSION,
    SqliteStore,
    decode_ids,
    encode_args,
    encode_ids,
)
from tests.test_store import ENV, Opener, waiting


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


FLOW_DEFAULTS = {
    "name": "",
    "after": [],
    "after_any": [],
    "array_id": 0,
    "array_index": 0,
    "array_max": 0,
    "retries": 0,
    "retry_delay_ms": 0,
    "retried": 0,
    "time_limit_ms": 0,
    "out_base": 0,
}


def flow_of(job: Job) -> dict[str, object]:
    return {k: getattr(job, k) for k in FLOW_DEFAULTS}


def flow_jobs() -> list[Job]:
    """Jobs with every workflow field away from its default, in several shapes."""
    return [
        waiting(1),  # in no workflow
        waiting(
            2,
            state=JobState.BLOCKED,
            name="caf\udce9",  # a lone surrogate: the row is escaped
            after=list(range(10_001, 20_001)),  # 10,000 ids: "10001-20000"
            after_any=[3, 1, 3],  # not ascending, a repeat: kept as given
            array_id=2,
            array_index=7,
            array_max=4,
            retries=5,
            retry_delay_ms=30_000,
            retried=2,
            time_limit_ms=3_600_000,
            out_base=2**63 - 1,
        ),
        waiting(3, state=JobState.HELD, name="sweep ✓", after=[1, 2, 5, 9, 10, 11]),
        waiting(4, retried=1),  # one field only
        waiting(5, name="\x00", after_any=[2**63 - 1], time_limit_ms=-1),
        waiting(6, after=[0, -3]),  # ids no server makes: still kept exactly
        waiting(7, cmd="caf\udce9", name="plain"),  # escaped row, plain name
    ]


@pytest.mark.parametrize("odd", [True, False], ids=["with-lone-surrogates", "plain-text"])
def test_every_workflow_field_round_trips(open_store: Opener, odd: bool) -> None:
    jobs = flow_jobs()
    if not odd:  # no row escaped: the sqlite store's usual way of saving
        jobs = [replace(j, cmd="echo", name=j.name.replace("\udce9", "é")) for j in jobs]
    assert all(v != FLOW_DEFAULTS[k] for k, v in flow_of(jobs[1]).items())
    open_store().save(jobs, {"nextJobId": 8})
    store = open_store()
    assert [asdict(j) for j in store.load().jobs] == [asdict(j) for j in jobs]
    assert [asdict(store.get_job(j.jobid)) for j in jobs] == [asdict(j) for j in jobs]
    ended = [replace(j, jobid=j.jobid + 100, state=JobState.TIMEOUT) for j in jobs]
    store.save(ended, {})
    assert [asdict(store.get_job(j.jobid)) for j in ended] == [asdict(j) for j in ended]


def test_saving_again_resets_workflow_fields_to_their_defaults(open_store: Opener) -> None:
    store = open_store()
    job = flow_jobs()[1]
    store.save([job], {})
    plain = waiting(2)
    store.save([plain], {})
    assert asdict(open_store().load().jobs[0]) == asdict(plain)
    assert flow_of(open_store().get_job(2)) == FLOW_DEFAULTS


def test_a_job_saved_twice_in_one_batch_keeps_its_last_record(open_store: Opener) -> None:
    store = open_store()
    flowing, plain = replace(flow_jobs()[1], name="sweep"), waiting(2, note="plain")
    store.save([waiting(1), flowing, waiting(3), plain], {})  # rows of both kinds, in order
    store.save([waiting(4), plain, waiting(5, name="x"), flowing, waiting(6)], {})
    again = open_store()
    assert asdict(again.get_job(2)) == asdict(flowing)
    assert [j.jobid for j in again.load().jobs] == [1, 2, 3, 4, 5, 6]
    again.save([flowing, plain], {})
    assert asdict(open_store().get_job(2)) == asdict(plain)


def test_each_loaded_job_has_its_own_dependency_lists(open_store: Opener) -> None:
    store = open_store()
    jobs = [waiting(i, after=[1, 2], after_any=[3]) for i in (10, 11)]
    store.save(jobs, {})
    jobs[0].after.append(99)  # the caller's lists are not the record's
    loaded = open_store().load().jobs
    assert [j.after for j in loaded] == [[1, 2], [1, 2]]
    assert loaded[0].after is not loaded[1].after
    assert loaded[0].after_any is not loaded[1].after_any
    loaded[0].after.append(7)
    loaded[0].after_any.clear()
    again = open_store()
    assert [(j.after, j.after_any) for j in again.load().jobs] == [([1, 2], [3])] * 2
    got = again.get_job(10)
    got.after.append(5)
    assert again.get_job(10).after == [1, 2]


def test_timeout_is_ended_blocked_and_held_are_not(open_store: Opener) -> None:
    store = open_store()
    jobs = [
        waiting(1, state=JobState.TIMEOUT, exit_status=-9, time_limit_ms=1000),
        waiting(2, state=JobState.BLOCKED, after=[1]),
        waiting(3, state=JobState.HELD),
        waiting(4, state=JobState.FINISHED, exit_status=3),
    ]
    store.save(jobs, {})
    again = open_store()
    assert [(j.jobid, j.state) for j in again.load().jobs] == [
        (2, JobState.BLOCKED),
        (3, JobState.HELD),
    ]
    assert asdict(again.get_job(1)) == asdict(jobs[0])
    assert again.get_job(1).state is JobState.TIMEOUT
    assert again.outcomes([1, 2, 3, 4, 5]) == {
        1: (JobState.TIMEOUT, -9),
        4: (JobState.FINISHED, 3),
    }


def test_outcomes_of_100000_ids(open_store: Opener) -> None:
    store = open_store()
    ended = (JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT)
    states = [*ended, JobState.WAITING, JobState.RUNNING, JobState.BLOCKED, JobState.HELD]
    jobs = [
        Job(jobid=i, cmd="true", state=states[i % 7], exit_status=i % 256 - 128)
        for i in range(1, 100_001, 2)  # odd ids only: the even ones are not stored
    ]
    store.save(jobs, {})
    want = {j.jobid: (j.state, j.exit_status) for j in jobs if j.state in ended}
    ids = (i for i in range(1, 100_001))  # any iterable: here a generator
    got = open_store().outcomes(ids)
    assert got == want and len(got) > 20_000
    assert all(type(s) is JobState for s, _ in got.values())
    assert store.outcomes([]) == {}
    assert store.outcomes([0, -1, 2, 2**70, -(2**70)]) == {}
    some = list(want)[:3]
    assert store.outcomes(some + some) == {i: want[i] for i in some}


def test_sqlite_outcomes_leave_out_quarantined_and_damaged_records(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(i, state=JobState.FINISHED) for i in (1, 2, 3)], {})
    store.quarantine(2, "refused")
    store._db.execute("UPDATE jobs SET state = 9 WHERE jobid = 3")
    assert store.outcomes([1, 2, 3]) == {1: (JobState.FINISHED, 0)}
    store.close()


def test_memory_store_keeps_its_own_copy_of_dependency_lists() -> None:
    store = MemoryStoreFactory()("home", True)
    job = waiting(1, after=[1], after_any=[2])
    store.save([job], {})
    job.after.append(3)
    job.after_any.clear()
    loaded = store.load().jobs[0]
    assert (loaded.after, loaded.after_any) == ([1], [2])
    loaded.after.append(4)
    assert store.get_job(1).after == [1]


# ------------------------------------------------------------------------------ sqlite: layout


def test_sqlite_keeps_dependencies_as_id_ranges(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    shared = [1, 2, 4]  # one list object in several jobs (as an array's jobs may share one)
    jobs = [
        waiting(20_000, after=list(range(1, 10_001)), after_any=[*range(1, 10_001), 10_005]),
        waiting(20_001, after=[5, 1]),
        waiting(20_002),
        waiting(20_003, after=shared, after_any=shared),
        waiting(20_004, after=[9], after_any=shared),
    ]
    store.save(jobs, {})
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    rows = db.execute("SELECT jobid, after, after_any FROM jobs ORDER BY jobid").fetchall()
    db.close()
    assert rows == [
        (20_000, "1-10000", "1-10000,10005"),
        (20_001, "[5,1]", ""),
        (20_002, "", ""),
        (20_003, "1-2,4", "1-2,4"),
        (20_004, "9", "1-2,4"),
    ]


def test_encode_ids() -> None:
    assert encode_ids([]) == "" and decode_ids("") == []
    assert encode_ids([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert encode_ids([2**63 - 1]) == str(2**63 - 1)
    assert encode_ids([2, 1]) == "[2,1]" and encode_ids([1, 1]) == "[1,1]"
    assert encode_ids([0]) == "[0]" and encode_ids([2**64]) == f"[{2**64}]"
    assert encode_ids([1, 2**63]) == f"[1,{2**63}]" and encode_ids([True]) == "[1]"
    with pytest.raises(TypeError):
        encode_ids([1, 2.0])  # type: ignore[list-item]
    assert decode_ids("3,1-2") == [1, 2, 3]  # any id-range text, as goq_core.idranges reads it
    with pytest.raises(TypeError):
        encode_ids(["1"])  # type: ignore[list-item]
    for bad in ("x", "1-", "[1,", '["1"]', "[1.5]", "{}", "0", "2-1"):
        with pytest.raises(ValueError):
            decode_ids(bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**64), 2**64), max_size=30))
def test_encode_ids_is_lossless(ids: list[int]) -> None:
    assert decode_ids(encode_ids(ids)) == ids


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 2**63 - 1), max_size=30))
def test_ascending_ids_take_the_id_range_form(ids: set[int]) -> None:
    text = encode_ids(sorted(ids))
    assert text == idranges.format_ids(ids) and decode_ids(text) == sorted(ids)


def test_sqlite_fast_load_reads_workflow_fields_by_their_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the jobs whose workflow fields are not all at their defaults have them read
    (through the jobs_flow index), escaped ones included, and the fast loader does it alone."""
    jobs = [*flow_jobs(), waiting(8, state=JobState.TIMEOUT, name="done")]
    store = SqliteStore(str(tmp_path), create=True)
    store.save(jobs, {})
    store.close()
    store = SqliteStore(str(tmp_path), create=False)
    monkeypatch.setattr(store, "_load_careful", None)  # a call would fail
    assert [asdict(j) for j in store.load().jobs] == [asdict(j) for j in jobs[:7]]
    flows = store._live_flows(store._db)
    assert sorted(flows) == [2, 3, 4, 5, 6, 7]
    assert flows[7] == (7, "plain", "", "", 0, 0, 0, 0, 0, 0, 0, 0)
    assert flows[2][1:4] == ("caf\\udce9", "10001-20000", "[3,1,3]")  # as stored
    traced: list[str] = []
    store._db.set_trace_callback(traced.append)
    store._live_flows(store._db)
    store._db.set_trace_callback(None)
    (query,) = traced
    plan = store._db.execute("EXPLAIN QUERY PLAN " + query).fetchall()
    assert "COVERING INDEX jobs_flow" in str(plan)
    store.save([waiting(i, name="arr", array_id=9, array_index=i - 9) for i in (9, 10)], {})
    loaded = store.load().jobs
    assert loaded[-1].name == loaded[-2].name == "arr"
    assert loaded[-1].name is loaded[-2].name  # one str for the jobs of an array
    store.close()


def test_sqlite_live_indexes_leave_out_every_ended_state(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    sql = dict(db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'index'"))
    db.close()
    for name in ("jobs_live", "jobs_asking", "jobs_flow"):
        assert "WHERE state NOT BETWEEN 3 AND 5" in sql[name]
    ended = [s for s in JobState if s.name in ("FINISHED", "CANCELLED", "TIMEOUT")]
    assert [int(s) for s in ended] == [3, 4, 5]


def test_sqlite_stored_row_of_unknown_state_is_quarantined(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(1), waiting(2, name="n", after=[1]), waiting(3)], {})
    store._db.execute("UPDATE jobs SET state = 9 WHERE jobid = 2")
    store.close()
    store = SqliteStore(str(tmp_path), create=False)
    state = store.load()
    assert [j.jobid for j in state.jobs] == [1, 3]
    assert state.quarantined == [(2, "state 9 is not a job state")]
    with pytest.raises(StoreError, match="job 2 is quarantined: state 9"):
        store.get_job(2)
    store.close()


# ------------------------------------------------------------------------------ from version 3

JOBS_V3 = """CREATE TABLE jobs (
    jobid       INTEGER PRIMARY KEY,
    state       INTEGER NOT NULL,
    cmd         TEXT NOT NULL,
    args        TEXT NOT NULL,
    shell       INTEGER NOT NULL,
    dir         TEXT NOT NULL,
    env_id      INTEGER REFERENCES env(id),
    host        TEXT NOT NULL,
    user        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    workerid    TEXT NOT NULL,
    workerhost  TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    exit_status INTEGER NOT NULL,
    submit_ns   INTEGER NOT NULL,
    start_ns    INTEGER NOT NULL,
    end_ns      INTEGER NOT NULL,
    out_bytes   INTEGER NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    escaped     INTEGER NOT NULL DEFAULT 0,
    cpus        INTEGER NOT NULL DEFAULT 1,
    mem         INTEGER NOT NULL DEFAULT 0,
    gpus        INTEGER NOT NULL DEFAULT 0,
    resources   TEXT NOT NULL DEFAULT '',
    priority    INTEGER NOT NULL DEFAULT 0,
    gpu_ids     TEXT NOT NULL DEFAULT ''
) STRICT"""
JOBS_ASKING_V3 = (
    "CREATE INDEX jobs_asking ON jobs(cpus, mem, gpus, resources, priority, gpu_ids, escaped,"
    " state) WHERE state NOT IN (3, 4) AND NOT (cpus = 1 AND mem = 0 AND gpus = 0"
    " AND resources = '' AND priority = 0 AND gpu_ids = '')"
)
SCHEMA_V3 = f"""
CREATE TABLE env (
    id   INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
{JOBS_V3};
CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE state NOT IN (3, 4);
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
{JOBS_ASKING_V3};
PRAGMA application_id = 1735356721;
PRAGMA user_version = 3;
"""


def test_the_version_3_schema_is_frozen() -> None:
    """The migration from v3 rebuilds what v3 had: its DDL must not follow the current one."""
    assert sqlite_store._JOBS_V3_DDL == JOBS_V3
    assert sqlite_store._JOBS_ASKING_V3 == JOBS_ASKING_V3
    assert "NOT IN (3, 4)" in sqlite_store._JOBS_LIVE_V2
    assert sqlite_store._JOBS_DDL != JOBS_V3 and SCHEMA_VERSION == 5


def make_v3_store(home: Path, loose: bool = False) -> None:
    """A store as goq with schema version 3 wrote it: live jobs (one escaped, one asking for
    resources, one at an unknown state), ended ones, one at state 5 (unknown to v3, TIMEOUT to
    v4; never loaded), a quarantined one, a nonce. `loose`: its jobs table edited by hand to
    drop STRICT, and a row with text where an integer belongs."""
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / FILENAME)
    schema = SCHEMA_V3
    if loose:
        schema = schema.replace(JOBS_V3, JOBS_V3.replace(") STRICT", ")"))
    db.executescript(schema)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO env (id, hash, body) VALUES (1, x'00', ?)", (json.dumps(ENV),))
    row = "INSERT INTO jobs VALUES (?, ?, ?, ?, 0, '/home/a', ?, 'h', 'u', 0, '', '', ?, ?, 5,"
    row += " 0, 0, 0, ?, ?, ?, 0, 0, ?, 0, '')"
    # jobid, state, cmd, args, env_id, pid, exit_status, note, escaped, cpus, resources
    db.execute(row, (1, 1, "echo", encode_args(["1", "x y"]), 1, 0, 0, "a note", 0, 1, ""))
    db.execute(row, (2, 3, "echo", encode_args(["2"]), None, 0, 7, "", 0, 1, ""))
    db.execute(row, (3, 2, "caf\\udce9", "", 1, 77, 0, "", 1, 1, ""))
    db.execute(row, (4, 4, "echo", "", 1, 0, -15, "", 0, 1, ""))
    db.execute(row, (5, 5, "echo", "", 1, 0, -9, "", 0, 1, ""))
    db.execute(row, (6, 1, "echo", "", 1, 0, 0, "", 0, 4, encode_args(["lic=2"])))
    db.execute(row, (7, 9, "echo", "", 1, 0, 0, "", 0, 1, ""))
    if loose:
        db.execute(row, (8, 1, "echo", "", 1, "not a pid", 0, "", 0, 1, ""))
    db.execute("INSERT INTO quarantine VALUES (1, 9, '{}', 'state 99 is not a job state', 1)")
    db.execute("INSERT INTO nonces VALUES (x'0102', 7)")
    db.execute("INSERT INTO counters VALUES ('nextJobId', 10)")
    db.commit()
    db.close()


def test_version_3_store_is_migrated_with_default_workflow_fields(tmp_path: Path) -> None:
    make_v3_store(tmp_path)
    store = SqliteStore(str(tmp_path), create=False)
    assert store._trusted  # the rebuilt table is exactly the v4 one: the fast loader runs
    state = store.load()
    assert [(j.jobid, j.state, j.cmd, j.args, j.env, j.note, j.pid) for j in state.jobs] == [
        (1, JobState.WAITING, "echo", ["1", "x y"], ENV, "a note", 0),
        (3, JobState.RUNNING, "caf\udce9", [], ENV, "", 77),
        (6, JobState.WAITING, "echo", [], ENV, "", 0),
    ]
    assert (state.jobs[2].cpus, state.jobs[2].resources) == (4, {"lic": 2})
    assert state.quarantined == [(7, "state 9 is not a job state")]
    assert state.nonces == [(b"\x01\x02", 7)] and state.counters == {"nextJobId": 10}
    every = [*state.jobs, *(store.get_job(i) for i in (2, 4, 5))]
    assert [flow_of(j) for j in every] == [FLOW_DEFAULTS] * 6
    assert store.get_job(5).state is JobState.TIMEOUT
    assert store.outcomes(range(1, 10)) == {
        2: (JobState.FINISHED, 7),
        4: (JobState.CANCELLED, -15),
        5: (JobState.TIMEOUT, -9),
    }
    with pytest.raises(StoreError, match="job 9 is quarantined: state 99"):
        store.get_job(9)
    with pytest.raises(StoreError, match="job 7 is quarantined: state 9"):
        store.get_job(7)
    flowing = replace(state.jobs[0], name="n", after=[2], retries=1, state=JobState.BLOCKED)
    store.save([flowing], {})
    store.close()

    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    sql = dict(db.execute("SELECT name, sql FROM sqlite_schema"))
    assert sql["jobs"] == sqlite_store._JOBS_DDL and "jobs_v3" not in sql
    for name in ("jobs_live", "jobs_asking", "jobs_flow"):  # rebuilt for the v4 ended states
        assert "state NOT BETWEEN 3 AND 5" in sql[name] and "NOT IN" not in sql[name]
    assert {"quarantine", "quarantine_jobid", "nonces", "nonces_time"} <= set(sql)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (6,)
    db.close()
    again = SqliteStore(str(tmp_path), create=False)
    assert [asdict(j) for j in again.load().jobs] == [asdict(flowing), *map(asdict, state.jobs[1:])]
    again.close()


def test_version_3_row_of_the_wrong_type_is_quarantined_by_the_migration(tmp_path: Path) -> None:
    make_v3_store(tmp_path, loose=True)
    store = SqliteStore(str(tmp_path), create=False)
    state = store.load()
    assert [j.jobid for j in state.jobs] == [1, 3, 6]
    assert state.quarantined == [
        (8, "a version 3 row: pid holds TEXT, not an integer"),
        (7, "state 9 is not a job state"),
    ]
    with pytest.raises(StoreError, match="job 8 is quarantined: a version 3 row: pid"):
        store.get_job(8)
    assert store._trusted
    store.close()
