"""The store contract (goq_core.interfaces.Store) for the sqlite and memory stores, and what only
the sqlite store promises: durability across kill -9, refusing missing or corrupt files,
migrating old files, quarantining damaged rows, and clear, retryable errors for the disk."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pluggy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import goq_core.stores.plugin as stores_plugin
from goq_core import hookspecs
from goq_core.errors import StoreError
from goq_core.interfaces import Store
from goq_core.messages import Job, JobState
from goq_core.plugins import Plugins
from goq_core.stores.memory import MemoryStoreFactory
from goq_core.stores.sqlite import (
    FILENAME,
    SCHEMA_VERSION,
    SqliteStore,
    decode_args,
    decode_resources,
    encode_args,
    encode_resources,
    open_sqlite_store,
)

ENV = ["HOME=/home/alice", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"]

Opener = Callable[..., Store]


@pytest.fixture(params=["sqlite", "memory"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the store under test at one path; call again to reopen it (as after a restart)."""
    home = str(tmp_path / ".goq")
    opened: list[Store] = []
    memory = MemoryStoreFactory()

    def opener(create: bool = True) -> Store:
        if request.param == "sqlite":
            store: Store = SqliteStore(home, create)
        else:
            store = memory(home, create)
        opened.append(store)
        return store

    yield opener
    for s in opened:
        s.close()


def waiting(jobid: int, **kw) -> Job:
    fields = {"cmd": "echo", "args": [str(jobid)], "env": list(ENV), "state": JobState.WAITING}
    fields.update(kw)
    return Job(jobid=jobid, **fields)


def full_job() -> Job:
    """A job with every field away from its default."""
    return Job(
        jobid=42,
        cmd="/usr/bin/python3",
        args=["-c", "print('héllo, wörld ✓')", "", "two words", "tab\there", "nl\nline"],
        shell=True,
        dir="/home/alice/project with spaces",
        env=["A=1", "B=x=y", "EMPTY=", "UNI=ü"],
        host="login1.example.org",
        user="alice",
        state=JobState.RUNNING,
        attempt=3,
        workerid="w-7f3a",
        workerhost="node17",
        pid=31337,
        exit_status=-9,
        submit_ns=1_700_000_000_123_456_789,
        start_ns=1_700_000_001_000_000_000,
        end_ns=1_700_000_002_000_000_000,
        out_bytes=2**40,
        note="output went to $GOQ_HOME/o/out.42 instead",
        cpus=8,
        mem=64 * 2**30,
        gpus=2,
        resources={"license": 1, "a=b": 2**63 - 1, "": 0, "sep\x1f": 3},
        priority=-7,
        gpu_ids="0,3",
        name="sweep ✓",
        after=[1, 2, 3, 7],
        after_any=[9, 5, 9],  # not ascending: kept as given
        array_id=40,
        array_index=2,
        array_max=5,
        retries=3,
        retry_delay_ms=1500,
        retried=1,
        time_limit_ms=60_000,
        out_base=4096,
        owner="alice@lab",
    )


# ------------------------------------------------------------------------------ both stores


def test_full_job_sets_every_field_away_from_its_default() -> None:
    job, default = full_job(), Job()
    assert [k for k, v in asdict(job).items() if v == asdict(default)[k]] == []


def test_saved_job_loads_back_with_every_field(open_store: Opener) -> None:
    job = full_job()
    open_store().save([job], {"nextJobId": 43})
    loaded = open_store().load()
    assert [asdict(j) for j in loaded.jobs] == [asdict(job)]
    assert loaded.jobs[0].state is JobState.RUNNING
    assert loaded.counters == {"nextJobId": 43}


@pytest.mark.parametrize(
    "args",
    [[], [""], ["", ""], ["a"], ["\x1f"], ["a\x1fb", "c"], ["[1, 2]"], ["[", "]"], ['"q"']],
)
def test_args_of_every_shape_round_trip(open_store: Opener, args: list[str]) -> None:
    store = open_store()
    store.save([waiting(1, args=args)], {})
    assert store.load().jobs[0].args == args
    assert store.get_job(1).args == args


def test_ended_jobs_are_not_loaded_but_get_job_finds_them(open_store: Opener) -> None:
    store = open_store()
    jobs = [waiting(i, state=s, exit_status=-i) for i, s in enumerate(JobState, start=1)]
    store.save(jobs, {})
    live = store.load().jobs
    assert [(j.jobid, j.state) for j in live] == [
        (1, JobState.NEW),
        (2, JobState.WAITING),
        (3, JobState.RUNNING),
        (7, JobState.BLOCKED),
        (8, JobState.HELD),
    ]
    assert store.get_job(4).state is JobState.FINISHED
    assert store.get_job(5).state is JobState.CANCELLED
    assert store.get_job(6).state is JobState.TIMEOUT
    assert asdict(store.get_job(4)) == asdict(jobs[3])
    assert store.outcomes(range(1, 10)) == {
        4: (JobState.FINISHED, -4),
        5: (JobState.CANCELLED, -5),
        6: (JobState.TIMEOUT, -6),
    }


def test_get_job_of_unknown_id_is_none(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(1)], {})
    assert store.get_job(2) is None
    assert store.get_job(10**20) is None and store.get_job(-(10**20)) is None


def test_saving_a_job_again_replaces_its_record(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(1), waiting(2)], {})
    running = replace(waiting(1), state=JobState.RUNNING, attempt=1, workerid="w1", pid=99)
    store.save([running], {})
    assert [asdict(j) for j in store.load().jobs] == [asdict(running), asdict(waiting(2))]
    done = replace(running, state=JobState.FINISHED, exit_status=0, end_ns=5)
    store.save([done], {})
    assert [j.jobid for j in store.load().jobs] == [2]
    assert asdict(store.get_job(1)) == asdict(done)


def test_counters_are_set_and_survive_close_and_reopen(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(1)], {"nextJobId": 2, "finishedJobsCount": 0})
    store.save([], {"nextJobId": 7, "requeuedJobsCount": 3})
    store.close()
    again = open_store(create=False)
    assert again.load().counters == {"nextJobId": 7, "finishedJobsCount": 0, "requeuedJobsCount": 3}
    assert [j.jobid for j in again.load().jobs] == [1]


def test_load_returns_jobs_in_jobid_order(open_store: Opener) -> None:
    store = open_store()
    ids = list(range(1, 301))
    random.Random(7).shuffle(ids)
    for start in range(0, 300, 50):
        store.save([waiting(i) for i in ids[start : start + 50]], {})
    assert [j.jobid for j in store.load().jobs] == list(range(1, 301))


def test_identical_envs_load_as_one_shared_list(open_store: Opener) -> None:
    store = open_store()
    other = ["PATH=/opt/bin"]
    store.save([waiting(i, env=list(ENV)) for i in range(1, 4)], {})  # equal, distinct lists
    store.save([waiting(4, env=list(ENV)), waiting(5, env=list(other)), waiting(6, env=[])], {})
    jobs = open_store().load().jobs
    assert all(j.env == ENV for j in jobs[:4])
    assert len({id(j.env) for j in jobs[:4]}) == 1
    assert jobs[4].env == other and jobs[4].env is not jobs[0].env
    assert jobs[5].env == []


def test_store_keeps_its_own_copy_of_saved_jobs(open_store: Opener) -> None:
    store = open_store()
    job = waiting(1)
    store.save([job], {})
    job.state = JobState.FINISHED
    job.args.append("later")
    job.env.append("LATER=1")
    loaded = store.load().jobs[0]
    assert loaded.state is JobState.WAITING
    assert loaded.args == ["1"] and loaded.env == ENV
    loaded.args.append("mutated")  # nor do changes to a loaded job reach the record
    assert store.get_job(1).args == ["1"]


def test_resource_requests_round_trip(open_store: Opener) -> None:
    """The v3 fields: defaults, extremes, and resource names of any text."""
    jobs = [
        waiting(1),
        waiting(2, cpus=2**31, mem=2**63 - 1, gpus=0, priority=-(2**63), gpu_ids=""),
        waiting(3, resources={"x": 0, "=": 1, "a==": 2, "[": 3, "\x00": 4}, gpu_ids="7"),
        waiting(4, resources={"\x1f": 1}, priority=2**63 - 1),  # the separator: JSON form
        waiting(5, resources={"caf\udce9": 1}, gpu_ids="\ud800"),  # lone surrogates: escaped
    ]
    open_store().save(jobs, {})
    store = open_store()
    assert [asdict(j) for j in store.load().jobs] == [asdict(j) for j in jobs]
    assert [asdict(store.get_job(j.jobid)) for j in jobs] == [asdict(j) for j in jobs]
    assert store.load().jobs[0].cpus == 1 and store.load().jobs[0].resources == {}


def test_sqlite_fast_load_reads_requests_by_their_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the jobs that ask for more than the defaults have their requests read (through the
    jobs_asking index), escaped ones included, and the fast loader does it alone."""
    jobs = [
        waiting(1),
        waiting(2, cpus=4, resources={"lic": 2}),
        waiting(3, priority=-1),
        waiting(4, cmd="caf\udce9"),  # escaped, default request
        waiting(5, cmd="caf\udce9", resources={"\ud800": 1}, gpu_ids="\udc80", gpus=1),
        waiting(6, state=JobState.FINISHED, cpus=3),
    ]
    store = SqliteStore(str(tmp_path), create=True)
    store.save(jobs, {})
    store.close()
    store = SqliteStore(str(tmp_path), create=False)
    monkeypatch.setattr(store, "_load_careful", None)  # a call would fail
    assert [asdict(j) for j in store.load().jobs] == [asdict(j) for j in jobs[:5]]
    requests = store._live_requests(store._db)
    assert sorted(requests) == [2, 3, 5]
    assert requests[2] == (4, 0, 0, {"lic": 2}, 0, "")
    store.save([waiting(7, cpus=4, resources={"lic": 2}), waiting(8, cpus=4)], {})
    requests = store._live_requests(store._db)
    assert requests[7] is requests[2] and requests[8] != requests[2]  # one per distinct request
    loaded = store.load().jobs
    assert (
        loaded[1].resources == loaded[5].resources
        and loaded[1].resources is not loaded[5].resources
    )
    traced: list[str] = []
    store._db.set_trace_callback(traced.append)
    store._live_requests(store._db)
    store._db.set_trace_callback(None)
    (query,) = traced
    plan = store._db.execute("EXPLAIN QUERY PLAN " + query).fetchall()
    assert "COVERING INDEX jobs_asking" in str(plan)
    store.close()


def test_store_keeps_its_own_copy_of_resources(open_store: Opener) -> None:
    store = open_store()
    job = waiting(1, resources={"lic": 1})
    store.save([job], {})
    job.resources["later"] = 2
    loaded = store.load().jobs[0]
    assert loaded.resources == {"lic": 1}
    loaded.resources["mutated"] = 3
    assert store.get_job(1).resources == {"lic": 1}
    assert store.load().jobs[0].resources == {"lic": 1}


def test_get_job_gives_a_private_env_list(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(1), waiting(2)], {})
    store.get_job(1).env.append("X=1")
    assert store.get_job(2).env == ENV
    assert store.load().jobs[0].env == ENV


def test_a_big_batch_is_saved_whole(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(i) for i in range(1, 10_001)], {"nextJobId": 10_001})
    jobs = open_store().load().jobs
    assert len(jobs) == 10_000 and jobs[-1].jobid == 10_000 and jobs[-1].args == ["10000"]


def test_a_closed_store_refuses_calls(open_store: Opener) -> None:
    store = open_store()
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.load()
    with pytest.raises(StoreError, match="closed"):
        store.save([waiting(1)], {})


def test_plugin_registers_sqlite_and_memory(tmp_path: Path) -> None:
    pm = pluggy.PluginManager("goq")
    pm.add_hookspecs(hookspecs)
    pm.register(stores_plugin)
    plugins = Plugins(pm)
    assert plugins.names("store") == ["memory", "sqlite"]
    for name in ("sqlite", "memory"):
        store = plugins.store(name, str(tmp_path / name), create=True)
        store.save([waiting(1)], {"nextJobId": 2})
        store.close()
        again = plugins.store(name, str(tmp_path / name), create=False)
        assert [j.jobid for j in again.load().jobs] == [1], name
        assert again.name == name
        again.close()


# ------------------------------------------------------------------------------ sqlite only


def test_job_committed_by_save_survives_kill_9_of_the_saving_process(tmp_path: Path) -> None:
    home = tmp_path / ".goq"
    script = textwrap.dedent(
        """
        import os, sys
        from goq_core.messages import Job, JobState
        from goq_core.stores.sqlite import SqliteStore
        store = SqliteStore(sys.argv[1], create=True)
        env = ["A=1"]
        jobs = [Job(jobid=i, cmd="echo", args=[str(i)], env=env, state=JobState.WAITING)
                for i in range(1, 1001)]
        store.save(jobs, {"nextJobId": 1001})
        jobs[0].state = JobState.RUNNING
        store.save([jobs[0], Job(jobid=1001, cmd="last", state=JobState.WAITING)],
                   {"nextJobId": 1002})
        print("saved", flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(home)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr
    assert proc.stdout == "saved\n"
    assert os.path.getsize(home / (FILENAME + "-wal")) > 0  # recovery really comes from the WAL
    store = SqliteStore(str(home), create=False)
    try:
        state = store.load()
        assert [j.jobid for j in state.jobs] == list(range(1, 1002))
        assert state.jobs[0].state is JobState.RUNNING
        assert state.jobs[-1].cmd == "last"
        assert state.counters == {"nextJobId": 1002}
    finally:
        store.close()


def test_missing_directory_without_create_is_a_store_error(tmp_path: Path) -> None:
    home = tmp_path / "nowhere" / ".goq"
    with pytest.raises(StoreError, match=str(home / FILENAME)):
        SqliteStore(str(home), create=False)
    assert not home.exists()


def test_missing_file_without_create_is_a_store_error(tmp_path: Path) -> None:
    SqliteStore(str(tmp_path), create=True).close()
    os.remove(tmp_path / FILENAME)
    with pytest.raises(StoreError, match="no goq store at .*refusing to start on an empty queue"):
        SqliteStore(str(tmp_path), create=False)
    assert not (tmp_path / FILENAME).exists()


def test_create_makes_a_private_directory_and_file(tmp_path: Path) -> None:
    home = tmp_path / ".goq"
    store = SqliteStore(str(home), create=True)
    store.save([waiting(1)], {})
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    for name in (FILENAME, FILENAME + "-wal"):  # environments may hold secrets
        assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600, name
    store.close()


def test_file_of_random_bytes_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(random.Random(1).randbytes(64 * 1024))
    with pytest.raises(StoreError, match="corrupt"):
        SqliteStore(str(tmp_path), create=False)


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.95])
def test_truncated_file_is_a_store_error_at_open_or_load(tmp_path: Path, keep: float) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(i) for i in range(1, 5001)], {"nextJobId": 5001})
    store.close()
    path = tmp_path / FILENAME
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(StoreError, match="corrupt"):
        store = SqliteStore(str(tmp_path), create=False)
        try:
            store.load()
        finally:
            store.close()


def test_empty_file_without_create_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"")
    with pytest.raises(StoreError, match="empty"):
        SqliteStore(str(tmp_path), create=False)


def test_some_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a goq store"):
        SqliteStore(str(tmp_path), create=True)


def test_store_from_a_newer_goq_is_refused(tmp_path: Path) -> None:
    SqliteStore(str(tmp_path), create=True).close()
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer goq"):
        SqliteStore(str(tmp_path), create=False)


def test_environments_are_stored_once_each(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    for start in range(1, 1001, 100):
        store.save([waiting(i, env=list(ENV)) for i in range(start, start + 100)], {})
    store.save([waiting(2000, env=["ONLY=me"])], {})
    store.close()
    store = SqliteStore(str(tmp_path), create=False)  # a fresh process finds the same row
    store.save([waiting(3000, env=list(ENV))], {})
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("SELECT count(*) FROM env").fetchone()[0] == 2
    assert db.execute("SELECT count(DISTINCT env_id) FROM jobs").fetchone()[0] == 2
    db.close()


def test_failed_save_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(1)], {"nextJobId": 2})
    new_env = ["FRESH=1"]
    with pytest.raises(StoreError, match="save failed"):
        store.save([waiting(2, env=new_env), waiting(2**63)], {"nextJobId": 3})
    state = store.load()
    assert [j.jobid for j in state.jobs] == [1]
    assert state.counters == {"nextJobId": 2}
    store.save([waiting(2, env=list(new_env))], {"nextJobId": 3})  # the env row was rolled back
    assert store.get_job(2).env == new_env
    assert store.load().counters == {"nextJobId": 3}
    store.close()


def test_sync_mode_comes_from_goq_sqlite_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOQ_SQLITE_SYNC", "full")
    store = open_sqlite_store(str(tmp_path), create=True)
    assert store.synchronous == "FULL"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    monkeypatch.setenv("GOQ_SQLITE_SYNC", "sometimes")
    with pytest.raises(StoreError, match="NORMAL"):
        open_sqlite_store(str(tmp_path), create=False)


def test_default_sync_mode_is_normal(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()


def test_resources_encoding_is_lossless_and_strict() -> None:
    for resources in ({}, {"a": 1}, {"a=b": 0, "": 2**63 - 1}, {"\x1f": 1, "x": 2}):
        assert decode_resources(encode_resources(resources)) == resources
    assert encode_resources({}) == "" and encode_resources({"gpu": 2}) == "\x1fgpu=2"
    for bad in ("x", "\x1fx", "\x1fa=1x", "\x1fa=-1", "\x1fa=", "\x1fa=1\x1fa=2",
                "\x1fa=\u0661", "\x1fa=99999999999999999999", "[1]", "{", "\x1fa=1.5"):  # fmt: skip
        with pytest.raises(ValueError):
            decode_resources(bad)
    with pytest.raises(OverflowError):
        encode_resources({"a": 2**63})


@pytest.mark.parametrize(
    "args", [[], [""], ["a", "b"], ["x\x1fy"], ["[not json"], ["\x1f", ""], ["é", "✓"]]
)
def test_args_encoding_is_lossless(args: list[str]) -> None:
    assert decode_args(encode_args(args)) == args


# ------------------------------------------------------------------------------ memory only


def test_memory_stores_share_records_only_within_a_factory_and_path(tmp_path: Path) -> None:
    factory = MemoryStoreFactory()
    factory("a", True).save([waiting(1)], {"nextJobId": 2})
    assert [j.jobid for j in factory("a", False).load().jobs] == [1]
    assert factory("b", False).load().jobs == []
    assert MemoryStoreFactory()("a", False).load().jobs == []


# ------------------------------------------------------------------------------ lossless text

# Python's surrogateescape form of non-UTF-8 bytes, any lone surrogate, NUL, and separators
ODD_TEXT = [
    "caf\udce9",
    "X=\udcff",
    "\ud800",
    "\udfff\ud800x",
    "a\x00b",
    "\x00",
    "\x1f\udc80",
    "é✓\udcc3\udca9",
    '"\\udce9"',
    "[",
]
TEXT_FIELDS = ["cmd", "args", "dir", "env", "host", "user", "workerid", "workerhost", "note"]
TEXT_FIELDS += ["resources", "gpu_ids", "name"]


def odd_job(text: str, fields: list[str] = TEXT_FIELDS, jobid: int = 42) -> Job:
    """full_job with `text` in each of these fields (args and env: in each entry)."""
    change: dict[str, object] = {f: text for f in fields if f not in ("args", "env", "resources")}
    if "resources" in fields:
        change["resources"] = {text: 1, "plain": 2, text + "=\x1f": 3}
    if "args" in fields:
        change["args"] = [text, "", text + "\x1f", "plain"]
    if "env" in fields:
        change["env"] = [f"A={text}", "B=1", text]
    return replace(full_job(), jobid=jobid, **change)


@pytest.mark.parametrize("text", ODD_TEXT)
def test_any_str_round_trips_in_every_text_field(open_store: Opener, text: str) -> None:
    job, plain = odd_job(text), waiting(43)
    open_store().save([plain, job], {"nextJobId": 44})  # one batch: plain and odd together
    store = open_store()
    assert [asdict(j) for j in store.load().jobs] == [asdict(job), asdict(plain)]
    assert asdict(store.get_job(42)) == asdict(job)
    assert asdict(store.get_job(43)) == asdict(plain)


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_a_lone_surrogate_in_one_field_round_trips(open_store: Opener, field: str) -> None:
    job = odd_job("caf\udce9", [field])
    store = open_store()
    store.save([job], {})
    done = replace(job, state=JobState.FINISHED, jobid=43)
    store.save([done], {})
    again = open_store()
    assert [asdict(j) for j in again.load().jobs] == [asdict(job)]
    assert asdict(again.get_job(43)) == asdict(done)


_odd_char = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr), st.just("\x1f"))
_odd_text = st.text(_odd_char, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(_odd_text, min_size=10, max_size=10),
    args=st.lists(_odd_text, max_size=4),
    env=st.lists(_odd_text, max_size=4),
)
def test_sqlite_keeps_any_str_exactly(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], args: list[str], env: list[str]
) -> None:
    home = tmp_path_factory.mktemp("any")
    cmd, dir_, host, user, workerid, workerhost, note, other, gpu_ids, name = texts
    job = replace(
        full_job(),
        cmd=cmd,
        args=args,
        dir=dir_,
        env=env,
        host=host,
        user=user,
        workerid=workerid,
        workerhost=workerhost,
        note=note,
        resources=dict.fromkeys(args, 3),
        gpu_ids=gpu_ids,
        name=name,
    )
    store = SqliteStore(str(home), create=True)
    try:
        store.save([job, waiting(43, cmd=other, env=list(env))], {})
    finally:
        store.close()
    store = SqliteStore(str(home), create=False)
    try:
        loaded = store.load().jobs
        assert asdict(loaded[0]) == asdict(job)
        assert loaded[1].cmd == other and loaded[1].env == env
        assert asdict(store.get_job(42)) == asdict(job)
    finally:
        store.close()


def test_plain_rows_stay_plain_text_and_odd_ones_are_escaped(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save(
        [waiting(1), odd_job("\udce9", ["dir"], jobid=2), odd_job("\udce9", ["args"], 3)], {}
    )
    store.save([odd_job("\udce9", ["env"], jobid=4), odd_job("\udce9", ["env"], jobid=5)], {})
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    rows = db.execute("SELECT jobid, escaped, typeof(cmd), typeof(dir) FROM jobs ORDER BY jobid")
    assert rows.fetchall() == [(i, int(i in (2, 3)), "text", "text") for i in range(1, 6)]
    assert db.execute("SELECT dir FROM jobs WHERE jobid = 2").fetchone()[0] == "\\udce9"
    assert db.execute("SELECT count(DISTINCT env_id) FROM jobs WHERE jobid > 3").fetchone() == (1,)
    db.close()


# ------------------------------------------------------------------------------ schema v2: note

SCHEMA_V1 = """
CREATE TABLE env (id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE jobs (
    jobid INTEGER PRIMARY KEY, state INTEGER NOT NULL, cmd TEXT NOT NULL, args TEXT NOT NULL,
    shell INTEGER NOT NULL, dir TEXT NOT NULL, env_id INTEGER REFERENCES env(id),
    host TEXT NOT NULL, user TEXT NOT NULL, attempt INTEGER NOT NULL, workerid TEXT NOT NULL,
    workerhost TEXT NOT NULL, pid INTEGER NOT NULL, exit_status INTEGER NOT NULL,
    submit_ns INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    out_bytes INTEGER NOT NULL
);
CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE state NOT IN (3, 4);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
PRAGMA application_id = 1735356721;
PRAGMA user_version = 1;
"""


def make_v1_store(home: Path) -> None:
    """A store as goq with schema version 1 wrote it: two live jobs sharing an environment, an
    ended one, and one with text where v1 let it be but an integer belongs."""
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / FILENAME)
    db.executescript(SCHEMA_V1)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO env (id, hash, body) VALUES (1, x'00', ?)", (json.dumps(ENV),))
    row = "INSERT INTO jobs VALUES (?, ?, 'echo', ?, 0, '/home/a', ?, 'h', 'u', 0, '', '', ?, 0,"
    row += " 5, 0, 0, 0)"
    db.execute(row, (1, 1, encode_args(["1", "x y"]), 1, 0))
    db.execute(row, (2, 4, encode_args(["2"]), None, 0))
    db.execute(row, (3, 1, encode_args(["3"]), 1, "not a pid"))
    db.execute(row, (4, 2, "", 1, 0))
    db.execute("INSERT INTO counters VALUES ('nextJobId', 5), ('finishedJobsCount', 1)")
    db.commit()
    db.close()


def test_version_1_store_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    make_v1_store(tmp_path)
    store = SqliteStore(str(tmp_path), create=False)
    state = store.load()
    assert [(j.jobid, j.args, j.env, j.note) for j in state.jobs] == [
        (1, ["1", "x y"], ENV, ""),
        (4, [], ENV, ""),
    ]
    assert state.jobs[0].env is state.jobs[1].env
    assert state.counters == {"nextJobId": 5, "finishedJobsCount": 1}
    assert state.quarantined == [(3, "a version 1 row: pid holds TEXT, not an integer")]
    assert store.get_job(2).state is JobState.CANCELLED
    store.save([replace(state.jobs[0], note="moved")], {"nextJobId": 5}, [(b"n", 1)])
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
    assert {"jobs", "jobs_live", "quarantine", "nonces", "nonces_time"} <= names
    assert "jobs_v1" not in names
    (raw,) = db.execute("SELECT row FROM quarantine WHERE jobid = 3").fetchone()
    assert json.loads(raw)["pid"] == "not a pid"
    db.close()
    again = SqliteStore(str(tmp_path), create=False)
    state = again.load()
    assert [(j.jobid, j.note) for j in state.jobs] == [(1, "moved"), (4, "")]
    assert state.quarantined == [] and state.nonces == [(b"n", 1)]
    assert again._trusted  # the migrated table is exactly the v4 one: the fast loader runs
    assert [(j.cpus, j.mem, j.gpus, j.resources, j.priority, j.gpu_ids) for j in state.jobs] == [
        (1, 0, 0, {}, 0, "")
    ] * 2
    again.close()


# ------------------------------------------------------------------------------ schema v3

JOBS_V2 = """CREATE TABLE jobs (
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
    escaped     INTEGER NOT NULL DEFAULT 0
) STRICT"""
SCHEMA_V2 = f"""
CREATE TABLE env (id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
{JOBS_V2};
CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE state NOT IN (3, 4);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY, jobid INTEGER NOT NULL, row TEXT NOT NULL, reason TEXT NOT NULL,
    at_ns INTEGER NOT NULL
);
CREATE INDEX quarantine_jobid ON quarantine(jobid);
CREATE TABLE nonces (
    nonce       BLOB PRIMARY KEY,
    sendtime_ns INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_time ON nonces(sendtime_ns);
PRAGMA application_id = 1735356721;
PRAGMA user_version = 2;
"""


def make_v2_store(home: Path, loose: bool = False) -> None:
    """A store as goq with schema version 2 wrote it: two live jobs sharing an environment (one
    escaped, with a note), an ended one, a quarantined one, and a nonce. `loose`: its jobs table
    edited by hand to drop STRICT, and a row with text where an integer belongs."""
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / FILENAME)
    schema = SCHEMA_V2
    if loose:
        schema = schema.replace(JOBS_V2, JOBS_V2.replace(") STRICT", ")"))
    db.executescript(schema)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("INSERT INTO env (id, hash, body) VALUES (1, x'00', ?)", (json.dumps(ENV),))
    row = "INSERT INTO jobs VALUES (?, ?, ?, ?, 0, '/home/a', ?, 'h', 'u', 0, '', '', ?, 0, 5,"
    row += " 0, 0, 0, ?, ?)"
    db.execute(row, (1, 1, "echo", encode_args(["1", "x y"]), 1, 0, "a note", 0))
    db.execute(row, (2, 3, "echo", encode_args(["2"]), None, 0, "", 0))
    db.execute(row, (3, 2, "caf\\udce9", "", 1, 77, "", 1))
    if loose:
        db.execute(row, (4, 1, "echo", "", 1, "not a pid", "", 0))
    db.execute("INSERT INTO quarantine VALUES (1, 9, '{}', 'state 99 is not a job state', 1)")
    db.execute("INSERT INTO nonces VALUES (x'0102', 7)")
    db.execute("INSERT INTO counters VALUES ('nextJobId', 10)")
    db.commit()
    db.close()


def test_version_2_store_is_migrated_with_default_requests(tmp_path: Path) -> None:
    make_v2_store(tmp_path)
    store = SqliteStore(str(tmp_path), create=False)
    assert store._trusted  # the rebuilt table is exactly the v4 one: the fast loader runs
    state = store.load()
    assert [(j.jobid, j.cmd, j.args, j.env, j.note, j.pid) for j in state.jobs] == [
        (1, "echo", ["1", "x y"], ENV, "a note", 0),
        (3, "caf\udce9", [], ENV, "", 77),
    ]
    assert state.jobs[0].env is state.jobs[1].env
    for job in [*state.jobs, store.get_job(2)]:  # a job of one cpu, nothing else
        requests = (job.cpus, job.mem, job.gpus, job.resources, job.priority, job.gpu_ids)
        assert requests == (1, 0, 0, {}, 0, "")
    assert store.get_job(2).state is JobState.FINISHED
    assert state.quarantined == [] and state.nonces == [(b"\x01\x02", 7)]
    assert state.counters == {"nextJobId": 10}
    with pytest.raises(StoreError, match="job 9 is quarantined: state 99"):
        store.get_job(9)
    asked = replace(state.jobs[0], cpus=4, gpus=1, resources={"lic": 1}, priority=5, gpu_ids="0")
    store.save([asked], {})
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
    assert {"jobs", "jobs_live", "jobs_asking", "jobs_flow", "quarantine"} <= names
    assert "quarantine_jobid" in names
    assert {"nonces", "nonces_time"} <= names and "jobs_v2" not in names
    db.close()
    again = SqliteStore(str(tmp_path), create=False)
    assert [asdict(j) for j in again.load().jobs] == [asdict(asked), asdict(state.jobs[1])]
    again.close()


def test_version_2_row_of_the_wrong_type_is_quarantined_by_the_migration(tmp_path: Path) -> None:
    make_v2_store(tmp_path, loose=True)
    store = SqliteStore(str(tmp_path), create=False)
    state = store.load()
    assert [j.jobid for j in state.jobs] == [1, 3]
    assert state.quarantined == [(4, "a version 2 row: pid holds TEXT, not an integer")]
    with pytest.raises(StoreError, match="job 4 is quarantined: a version 2 row: pid"):
        store.get_job(4)
    assert store._trusted
    store.close()


# ------------------------------------------------------------------------------ quarantine

_LOOSE = "loose"  # the schema edited by hand to drop STRICT and NOT NULL (then anything goes)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("UPDATE jobs SET state = 99 WHERE jobid = 2", "state 99 is not a job state"),
        ("UPDATE jobs SET args = '[1, 2]' WHERE jobid = 2", "args are not a list of strings"),
        ("UPDATE jobs SET args = 'not json{' WHERE jobid = 2", "args are not a list of strings"),
        ("UPDATE jobs SET env_id = 999 WHERE jobid = 2", "environment 999 is missing"),
        ("UPDATE env SET body = 'nope' WHERE id = 2", "environment 2 is not a JSON list"),
        ("UPDATE env SET body = '[\"A=1\", 2]' WHERE id = 2", "environment 2 is not a JSON list"),
        ("UPDATE env SET body = CAST(x'ff' AS TEXT) WHERE id = 2", "environment 2 is not a JSON"),
        ("UPDATE jobs SET escaped = 7 WHERE jobid = 2", "escaped is 7, not 0 or 1"),
        (
            "UPDATE jobs SET escaped = 1, cmd = 'bad\\x' WHERE jobid = 2",
            "cmd of an escaped row is not in unicode_escape form",
        ),
        ("UPDATE jobs SET escaped = 1, dir = 'é' WHERE jobid = 2", "dir of an escaped row"),
        ("UPDATE jobs SET cmd = CAST(x'ff' AS TEXT) WHERE jobid = 2", "cmd is not valid UTF-8"),
        (_LOOSE + "UPDATE jobs SET pid = 'abc' WHERE jobid = 2", "pid holds TEXT, not an integer"),
        (_LOOSE + "UPDATE jobs SET cmd = NULL WHERE jobid = 2", "cmd holds NULL, not text"),
        (_LOOSE + "UPDATE jobs SET state = 'x' WHERE jobid = 2", "state holds TEXT, not an int"),
        (_LOOSE + "UPDATE jobs SET attempt = 1.5 WHERE jobid = 2", "attempt holds REAL"),
        (_LOOSE + "UPDATE jobs SET dir = x'00ff' WHERE jobid = 2", "dir holds BLOB, not text"),
        ("UPDATE jobs SET cpus = 0 WHERE jobid = 2", "cpus is 0, not 1 or more"),
        ("UPDATE jobs SET cpus = -4 WHERE jobid = 2", "cpus is -4, not 1 or more"),
        ("UPDATE jobs SET mem = -1 WHERE jobid = 2", "mem is -1, not 0 or more"),
        ("UPDATE jobs SET gpus = -2 WHERE jobid = 2", "gpus is -2, not 0 or more"),
        ("UPDATE jobs SET resources = 'x' WHERE jobid = 2", "resources do not decode: resources"),
        (
            "UPDATE jobs SET resources = char(31) || 'a=1x' WHERE jobid = 2",
            "resources do not decode: resource 'a=1x' is not NAME=N",
        ),
        (
            "UPDATE jobs SET resources = char(31) || 'a=1' || char(31) || 'a=2' WHERE jobid = 2",
            "resources do not decode: resources repeat a name",
        ),
        (
            "UPDATE jobs SET resources = char(31) || 'a=-1' WHERE jobid = 2",
            "resources do not decode: resource 'a=-1'",
        ),
        ("UPDATE jobs SET resources = '[1]' WHERE jobid = 2", "resources do not decode"),
        ("UPDATE jobs SET resources = '{' WHERE jobid = 2", "resources do not decode"),
        (
            "UPDATE jobs SET escaped = 1, resources = 'a\\x' WHERE jobid = 2",
            "resources of an escaped row is not in unicode_escape form",
        ),
        ("UPDATE jobs SET gpu_ids = CAST(x'ff' AS TEXT) WHERE jobid = 2", "gpu_ids is not valid"),
        (_LOOSE + "UPDATE jobs SET priority = 'hi' WHERE jobid = 2", "priority holds TEXT"),
        (_LOOSE + "UPDATE jobs SET cpus = NULL WHERE jobid = 2", "cpus holds NULL, not an int"),
        (_LOOSE + "UPDATE jobs SET gpu_ids = x'30' WHERE jobid = 2", "gpu_ids holds BLOB"),
        ("UPDATE jobs SET state = 9 WHERE jobid = 2", "state 9 is not a job state"),
        ("UPDATE jobs SET state = -1 WHERE jobid = 2", "state -1 is not a job state"),
        ("UPDATE jobs SET after = 'x' WHERE jobid = 2", "after does not decode: 'x' is not"),
        ("UPDATE jobs SET after = '3-1' WHERE jobid = 2", "after does not decode: '3-1'"),
        ("UPDATE jobs SET after_any = '0' WHERE jobid = 2", "after_any does not decode: job id 0"),
        (
            "UPDATE jobs SET after_any = '[1, \"2\"]' WHERE jobid = 2",
            "after_any does not decode: not a list of job ids",
        ),
        ("UPDATE jobs SET after = '[1' WHERE jobid = 2", "after does not decode"),
        (
            "UPDATE jobs SET escaped = 1, name = 'a\\x' WHERE jobid = 2",
            "name of an escaped row is not in unicode_escape form",
        ),
        ("UPDATE jobs SET name = CAST(x'ff' AS TEXT) WHERE jobid = 2", "name is not valid UTF-8"),
        (_LOOSE + "UPDATE jobs SET retries = 'x' WHERE jobid = 2", "retries holds TEXT"),
        (_LOOSE + "UPDATE jobs SET out_base = 0.5 WHERE jobid = 2", "out_base holds REAL"),
        (_LOOSE + "UPDATE jobs SET after = x'31' WHERE jobid = 2", "after holds BLOB, not text"),
    ],
)
def test_damaged_row_is_quarantined_not_fatal(tmp_path: Path, damage: str, reason: str) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(1), waiting(2, env=["ONLY=2"]), waiting(3)], {"nextJobId": 4})
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    if damage.startswith(_LOOSE):
        damage = damage.removeprefix(_LOOSE)
        (ddl,) = db.execute("SELECT sql FROM sqlite_schema WHERE name = 'jobs'").fetchone()
        loose = ddl.replace(" NOT NULL", "").replace(") STRICT", ")")
        db.execute("PRAGMA writable_schema = ON")
        db.execute("UPDATE sqlite_schema SET sql = ? WHERE name = 'jobs'", (loose,))
        db.commit()
        db.close()
        db = sqlite3.connect(tmp_path / FILENAME)
    db.execute(damage)
    db.commit()
    db.close()

    store = SqliteStore(str(tmp_path), create=False)
    with pytest.raises(StoreError, match=f"job 2 is damaged: {re.escape(reason)}") as err:
        store.get_job(2)
    assert "\n" not in str(err.value) and str(tmp_path / FILENAME) in str(err.value)
    state = store.load()
    assert [(j.jobid, j.args, j.env) for j in state.jobs] == [(1, ["1"], ENV), (3, ["3"], ENV)]
    assert state.jobs[0].env is state.jobs[1].env
    assert [q[0] for q in state.quarantined] == [2]
    assert state.quarantined[0][1].startswith(reason)
    assert state.counters == {"nextJobId": 4}
    with pytest.raises(StoreError, match=f"job 2 is quarantined: {re.escape(reason)}"):
        store.get_job(2)
    assert store.get_job(1).args == ["1"]
    store.close()

    again = SqliteStore(str(tmp_path), create=False)
    state = again.load()
    assert [j.jobid for j in state.jobs] == [1, 3] and state.quarantined == []
    again.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    rows = db.execute("SELECT jobid, row, reason, at_ns FROM quarantine").fetchall()
    db.close()
    assert len(rows) == 1 and rows[0][0] == 2 and rows[0][2].startswith(reason)
    assert json.loads(rows[0][1])["jobid"] == 2 and rows[0][3] > 0


def test_damaged_ended_record_is_a_store_error_for_get_job(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(1, state=JobState.FINISHED)], {})
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("UPDATE jobs SET args = '{' WHERE jobid = 1")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="job 1 is damaged: args"):
        store.get_job(1)
    assert store.load().jobs == []  # ended: not loaded, so not quarantined either
    store.close()


def test_quarantine_that_cannot_be_committed_is_reported_and_retried(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(1), waiting(2)], {})
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("UPDATE jobs SET state = 77 WHERE jobid = 2")
    db.commit()
    db.close()
    store._db.execute("PRAGMA query_only = ON")  # as a read-only file would
    state = store.load()
    assert [j.jobid for j in state.jobs] == [1] and [q[0] for q in state.quarantined] == [2]
    store._db.execute("PRAGMA query_only = OFF")
    assert [q[0] for q in store.load().quarantined] == [2]  # moved now
    assert store.load().quarantined == []
    store.close()


def test_quarantine_moves_a_job_the_server_refuses(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(1), waiting(2, dir="/tmp/\x00evil")], {"nextJobId": 3})
    store.quarantine(2, "its directory holds a NUL byte")
    store.quarantine(99, "no such job: nothing happens")
    assert [j.jobid for j in store.load().jobs] == [1]
    with pytest.raises(StoreError, match="job 2 is quarantined: its directory holds a NUL"):
        store.get_job(2)
    assert store.get_job(99) is None
    again = open_store(create=False)
    assert [j.jobid for j in again.load().jobs] == [1]


# ------------------------------------------------------------------------------ nonces


def test_nonces_are_saved_with_jobs_and_forgotten_by_age(open_store: Opener) -> None:
    store = open_store()
    store.save([], {}, [(b"n1", 100), (b"n2", 200)])
    store.save([waiting(1)], {"nextJobId": 2}, [(b"n3", 300), (b"n1", 999)])  # n1 kept as is
    again = open_store(create=False)
    state = again.load()
    assert sorted(state.nonces) == [(b"n1", 100), (b"n2", 200), (b"n3", 300)]
    assert [j.jobid for j in state.jobs] == [1]
    again.save([], {}, [(b"n4", 400), (b"old", 1)], forget_nonces_before_ns=250)
    assert sorted(open_store().load().nonces) == [(b"n3", 300), (b"n4", 400)]
    again.save([waiting(2)], {"nextJobId": 3})  # two arguments: as before
    assert sorted(open_store().load().nonces) == [(b"n3", 300), (b"n4", 400)]


def test_failed_save_keeps_no_nonces_and_forgets_none(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([], {}, [(b"a", 10)])
    with pytest.raises(StoreError) as err:
        store.save([waiting(2**63)], {}, [(b"b", 20)], forget_nonces_before_ns=50)
    assert err.value.transient is False
    assert store.load().nonces == [(b"a", 10)]
    plan = store._db.execute("EXPLAIN QUERY PLAN DELETE FROM nonces WHERE sendtime_ns < 5")
    assert "nonces_time" in str(plan.fetchall())
    store.close()


# ------------------------------------------------------------------------------ disk trouble


def _one_line(err: StoreError, path: Path) -> str:
    text = str(err)
    assert "\n" not in text and str(path) in text, text
    return text


def test_full_database_is_transient_and_the_same_save_succeeds_later(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([waiting(1)], {"nextJobId": 2})
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # as a full disk would
    batch = [waiting(i, cmd="x" * 500) for i in range(2, 2002)]
    with pytest.raises(StoreError) as err:
        store.save(batch, {"nextJobId": 2002}, [(b"n", 1)])
    assert "database or disk is full" in _one_line(err.value, tmp_path / FILENAME)
    assert err.value.transient is True
    state = store.load()  # still usable; nothing of the failed save is there
    assert [j.jobid for j in state.jobs] == [1] and state.counters == {"nextJobId": 2}
    assert state.nonces == []
    store._db.execute("PRAGMA max_page_count = 1073741823")
    store.save(batch, {"nextJobId": 2002}, [(b"n", 1)])
    store.close()
    again = SqliteStore(str(tmp_path), create=False)
    state = again.load()
    assert [j.jobid for j in state.jobs] == list(range(1, 2002))
    assert state.counters == {"nextJobId": 2002} and state.nonces == [(b"n", 1)]
    again.close()


def test_read_only_database_at_save_is_transient(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store._db.execute("PRAGMA query_only = ON")  # what SQLite says of a read-only file
    with pytest.raises(StoreError, match="readonly database") as err:
        store.save([waiting(1)], {"nextJobId": 2})
    _one_line(err.value, tmp_path / FILENAME)
    assert err.value.transient is True
    store._db.execute("PRAGMA query_only = OFF")
    store.save([waiting(1)], {"nextJobId": 2})
    assert [j.jobid for j in store.load().jobs] == [1]
    store.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (root only; skipped where it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mnt)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _remount(mnt: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True)


def test_full_file_system_is_transient_and_saves_resume_when_space_returns(
    small_fs: Path,
) -> None:
    home = small_fs / ".goq"
    store = SqliteStore(str(home), create=True)
    saved, next_id = [], 1
    with pytest.raises(StoreError) as err:
        for _ in range(100):
            batch = [waiting(i, cmd="y" * 300) for i in range(next_id, next_id + 300)]
            store.save(batch, {"nextJobId": next_id + 300})
            saved += batch
            next_id += 300
    assert "database or disk is full" in _one_line(err.value, home / FILENAME)
    assert err.value.transient is True
    assert len(store.load().jobs) == len(saved) > 0
    with pytest.raises(StoreError):  # still full: the same save fails the same way
        store.save(batch, {"nextJobId": next_id + 300})
    _remount(small_fs, "size=16m")
    store.save(batch, {"nextJobId": next_id + 300})
    store.close()
    again = SqliteStore(str(home), create=False)
    assert [j.jobid for j in again.load().jobs] == list(range(1, next_id + 300))
    again.close()


def test_read_only_file_system_at_open_is_one_store_error_line(small_fs: Path) -> None:
    home = small_fs / ".goq"
    store = SqliteStore(str(home), create=True)
    store.save([waiting(1)], {"nextJobId": 2})
    store.close()
    _remount(small_fs, "ro")
    with pytest.raises(StoreError, match="read-only") as err:
        SqliteStore(str(home), create=False)
    _one_line(err.value, home / FILENAME)
    with pytest.raises(StoreError, match="Read-only file system") as err:
        SqliteStore(str(small_fs / "fresh"), create=True)


def test_unwritable_directory_at_open_is_one_store_error_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod (see the read-only tmpfs test)")
    home = tmp_path / ".goq"
    SqliteStore(str(home), create=True).close()
    home.chmod(0o500)
    try:
        with pytest.raises(StoreError) as err:
            store = SqliteStore(str(home), create=False)
            store.save([waiting(1)], {})
        _one_line(err.value, home / FILENAME)
    finally:
        home.chmod(0o700)
