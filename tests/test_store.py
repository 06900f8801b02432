"""The store contract (goq_core.interfaces.Store) for the sqlite and memory stores, and what only
the sqlite store promises: durability across kill -9, refusing missing or corrupt files."""

from __future__ import annotations

import os
import random
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
    encode_args,
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
    )


# ------------------------------------------------------------------------------ both stores


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
    jobs = [waiting(i, state=s) for i, s in enumerate(JobState, start=1)]
    store.save(jobs, {})
    live = store.load().jobs
    assert [(j.jobid, j.state) for j in live] == [
        (1, JobState.NEW),
        (2, JobState.WAITING),
        (3, JobState.RUNNING),
    ]
    assert store.get_job(4).state is JobState.FINISHED
    assert store.get_job(5).state is JobState.CANCELLED
    assert asdict(store.get_job(4)) == asdict(jobs[3])


def test_get_job_of_unknown_id_is_none(open_store: Opener) -> None:
    store = open_store()
    store.save([waiting(1)], {})
    assert store.get_job(2) is None


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
