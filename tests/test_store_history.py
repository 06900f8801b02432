"""The stores' history: ended jobs kept with their attempts (`save(..., attempts=)`,
`attempts`), listed (`history`), removed (`forget`, `prune`); the sqlite store's indexes for it,
their query plans, and the migration of older files to them."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import goq_core.stores.sqlite as sqlite_store
from goq_core.errors import StoreError
from goq_core.interfaces import HISTORY_LIMIT_MAX, HISTORY_STATES, Store
from goq_core.messages import Job, JobState
from goq_core.records import Attempt
from goq_core.stores.memory import MemoryStoreFactory
from goq_core.stores.sqlite import FILENAME, SqliteStore
from tests.test_store import Opener, full_job, make_v1_store, waiting
from tests.test_store_workflow import make_v3_store

EVERY = frozenset(HISTORY_STATES)
F, C, T = JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT
LIVE_STATES = [s for s in JobState if s not in (F, C, T)]
HISTORY_INDEXES = ("jobs_ended", "jobs_ended_at", "jobs_ended_name", "jobs_unsuccessful")


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


def ended(jobid: int, state: JobState = F, exit_status: int = 0, end_ns: int = 0, **kw) -> Job:
    return waiting(jobid, state=state, exit_status=exit_status, end_ns=end_ns or jobid * 10, **kw)


def ended_as(job: Job) -> str | None:
    if job.state is F:
        return "finished" if job.exit_status == 0 else "failed"
    return {C: "cancelled", T: "timeout"}.get(job.state)


def expected(
    jobs: list[Job],
    states: frozenset[str] = EVERY,
    name: str | None = None,
    since_ns: int = 0,
    before_jobid: int | None = None,
    limit: int = 50,
) -> list[int]:
    """The jobids `history` should give, computed the plain way."""
    picked = [
        j.jobid
        for j in jobs
        if ended_as(j) in states
        and (name is None or j.name == name)
        and (since_ns <= 0 or j.end_ns >= since_ns)
        and (before_jobid is None or j.jobid < before_jobid)
    ]
    return sorted(set(picked), reverse=True)[:limit]


def history(
    store: Store,
    states: frozenset[str] = EVERY,
    name: str | None = None,
    since_ns: int = 0,
    before_jobid: int | None = None,
    limit: int = 50,
) -> list[Job]:
    return store.history(
        states=states, name=name, since_ns=since_ns, before_jobid=before_jobid, limit=limit
    )


def mixed_jobs() -> list[Job]:
    """Live jobs of every live state among ended ones of every way of ending, named and not
    (one name with a lone surrogate, one not ASCII in an escaped row and in a plain one)."""
    jobs = []
    for i in range(1, 61):
        way = i % 6
        if way == 0:
            job = waiting(i, state=LIVE_STATES[i % len(LIVE_STATES)], end_ns=i * 10)
        elif way == 1:
            job = ended(i, F, 0)
        elif way == 2:
            job = ended(i, F, 1 + i % 3)
        elif way == 3:
            job = ended(i, C, -15)
        elif way == 4:
            job = ended(i, T, -9)
        else:
            job = ended(i, F, 0 if i % 4 else -11)
        job.name = ["", "sweep", "caf\udce9", "ünï", "sweep"][i % 5]
        if i % 7 == 0:
            job.cmd = "odd\udcff"  # an escaped row
        jobs.append(job)
    return jobs


# ------------------------------------------------------------------------------ attempts


def odd_attempts() -> list[Attempt]:
    return [
        Attempt(7, 2, "finished", "w-\udce9", "node\udcff", 123, 5, 9, -9, 204_800, 1_000, 20),
        Attempt(7, 1, "requeued", "w-1", "nöde", 0, 1, 4),
        Attempt(8, 1, "undelivered\x00", "", "", 0, 0, 0, 0, 2**63 - 1, 0, 0),
    ]


def test_attempts_round_trip_in_attempt_order_with_any_text(open_store: Opener) -> None:
    store = open_store()
    runs = odd_attempts()
    store.save([waiting(7), ended(8)], {}, attempts=runs)
    for again in (store, open_store(create=False)):
        assert [asdict(a) for a in again.attempts(7)] == [asdict(runs[1]), asdict(runs[0])]
        assert [asdict(a) for a in again.attempts(8)] == [asdict(runs[2])]
        assert again.attempts(9) == [] and again.attempts(2**70) == []


def test_an_attempt_is_upserted_by_jobid_and_attempt(open_store: Opener) -> None:
    store = open_store()
    first = Attempt(1, 1, "finished", "w\udce9", "h", pid=5)
    store.save([], {}, attempts=[first])
    store.save([], {}, attempts=[replace(first, workerid="plain", exit_status=3)])
    assert [(a.workerid, a.exit_status, a.pid) for a in store.attempts(1)] == [("plain", 3, 5)]
    store.save([], {}, attempts=[replace(first, attempt=2)])
    assert [a.attempt for a in store.attempts(1)] == [1, 2]


def test_the_store_keeps_its_own_copy_of_attempts(open_store: Opener) -> None:
    store = open_store()
    run = Attempt(1, 1, "finished", "w1")
    store.save([], {}, attempts=[run])
    run.workerid = "changed"
    got = store.attempts(1)
    assert got[0].workerid == "w1"
    got[0].workerid = "changed too"
    assert store.attempts(1)[0].workerid == "w1"


def test_sqlite_attempts_are_saved_with_the_jobs_or_not_at_all(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    bad = waiting(2, pid=2**70)  # no SQLite integer holds it
    with pytest.raises(StoreError):
        store.save([waiting(1), bad], {"nextJobId": 3}, attempts=[Attempt(1, 1, "finished")])
    assert store.attempts(1) == [] and store.get_job(1) is None
    with pytest.raises(StoreError):
        store.save([waiting(1)], {}, attempts=[Attempt(1, 1, "finished", pid=2**70)])
    assert store.get_job(1) is None
    store.close()


def test_sqlite_attempt_rows_are_plain_unless_they_must_be_escaped(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([], {}, attempts=odd_attempts())
    rows = store._db.execute(
        "SELECT jobid, attempt, workerid, workerhost, escaped FROM attempts"
    ).fetchall()
    assert rows == [
        (7, 1, "w-1", "nöde", 0),
        (7, 2, "w-\\udce9", "node\\udcff", 1),
        (8, 1, "", "", 0),
    ]
    store._db.execute("UPDATE attempts SET workerid = 'a\\x' WHERE jobid = 7 AND attempt = 2")
    with pytest.raises(StoreError, match="an attempt of job 7 is damaged: workerid"):
        store.attempts(7)
    store.close()


# ------------------------------------------------------------------------------ history


def test_history_is_the_ended_jobs_newest_first(open_store: Opener) -> None:
    store = open_store()
    jobs = mixed_jobs()
    store.save(jobs, {})
    got = history(store, limit=HISTORY_LIMIT_MAX)
    assert [j.jobid for j in got] == expected(jobs, limit=HISTORY_LIMIT_MAX)
    assert all(j.state in (F, C, T) for j in got) and len(got) == 50
    by_id = {j.jobid: j for j in jobs}
    for job in got:  # every field but the environment
        assert job.env == []
        assert asdict(job) == asdict(replace(by_id[job.jobid], env=[]))
    assert [j.jobid for j in history(store, limit=5)] == expected(jobs, limit=5)
    assert history(store, limit=0) == []


@pytest.mark.parametrize("window", [10_000, 0, 4], ids=["by-end-time", "walk", "either"])
def test_history_filters(open_store: Opener, monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    """Every filter, alone and together, whichever plan the sqlite store picks (a since
    query is read by end time when fewer than _WINDOW_MAX jobs ended since then)."""
    monkeypatch.setattr(sqlite_store, "_WINDOW_MAX", window)
    store = open_store()
    jobs = mixed_jobs()
    store.save(jobs, {})
    sets = [frozenset(c) for c in (["finished"], ["failed"], ["cancelled"], ["timeout"])]
    sets += [frozenset(("failed", "timeout")), frozenset(("finished", "cancelled")), EVERY]
    sets += [frozenset()]
    for states in sets:
        for name in (None, "", "sweep", "caf\udce9", "ünï", "none such"):
            for since_ns in (0, 1, 305, 601):
                for before in (None, 45, 1):
                    for limit in (1, 7, 50):
                        want = expected(jobs, states, name, since_ns, before, limit)
                        got = history(store, states, name, since_ns, before, limit)
                        assert [j.jobid for j in got] == want, (states, name, since_ns, before)


def test_history_pages_by_jobid(open_store: Opener) -> None:
    store = open_store()
    jobs = mixed_jobs()
    store.save(jobs, {})
    seen: list[int] = []
    before = None
    while True:
        page = history(store, frozenset(("finished", "failed")), before_jobid=before, limit=4)
        seen += [j.jobid for j in page]
        if len(page) < 4:
            break
        before = page[-1].jobid
    assert seen == expected(jobs, frozenset(("finished", "failed")), limit=100)


def test_history_refuses_unknown_states_and_too_big_a_limit(open_store: Opener) -> None:
    store = open_store()
    with pytest.raises(ValueError, match="unknown history states"):
        history(store, frozenset(("finished", "running")))
    with pytest.raises(ValueError, match="limit"):
        history(store, limit=HISTORY_LIMIT_MAX + 1)
    assert history(store, frozenset()) == []
    assert history(store, before_jobid=2**70) == history(store, before_jobid=-(2**70)) == []
    assert history(store, since_ns=2**70) == []


def test_history_gives_every_field_of_odd_jobs(open_store: Opener) -> None:
    """Jobs read the usual way and the careful one: resources, escaped text, dependencies."""
    store = open_store()
    full = replace(full_job(), state=T, end_ns=77)
    odd = replace(ended(43), cmd="caf\udce9", args=["a\x1fb"], name="n\udce9", after=[1, 2, 3])
    plain = replace(ended(44), args=[], after_any=[9, 5, 9], array_id=44, out_base=2**63 - 1)
    store.save([full, odd, plain], {})
    got = history(store)
    assert [asdict(j) for j in got] == [asdict(replace(j, env=[])) for j in (plain, odd, full)]
    assert got[0].env is not got[1].env


def test_sqlite_history_leaves_out_a_damaged_row(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save([ended(1), ended(2), ended(3)], {})
    store._db.execute("UPDATE jobs SET args = '{' WHERE jobid = 2")
    store._db.execute("UPDATE jobs SET cmd = CAST(x'ff' AS TEXT) WHERE jobid = 3")
    assert [j.jobid for j in history(store)] == [1]
    with pytest.raises(StoreError, match="job 2 is damaged: args"):
        store.get_job(2)
    store.close()


# ------------------------------------------------------------------------------ forget, prune


def test_forget_removes_ended_jobs_and_their_attempts_never_a_live_one(
    open_store: Opener,
) -> None:
    store = open_store()
    jobs = mixed_jobs()
    runs = [Attempt(j.jobid, 1, "finished") for j in jobs]
    store.save(jobs, {}, attempts=runs)
    live = [j.jobid for j in jobs if ended_as(j) is None]
    everything = [j.jobid for j in jobs]
    assert store.forget([2, 3, *live, 999, 2**70]) == 2
    assert store.get_job(2) is None and store.attempts(2) == [] and store.attempts(3) == []
    assert store.forget([2, 3]) == 0
    assert store.forget(before_ns=105) == 7  # jobs 1 to 10 ended before it, but 2, 3 and 6
    assert store.get_job(9) is None and store.get_job(11) is not None
    assert store.get_job(6) is not None  # live, though its end_ns is long past
    assert store.forget(everything, before_ns=2**70) == 50 - 2 - 7
    assert history(store) == []
    assert [j.jobid for j in store.load().jobs] == live
    assert all(store.attempts(i) for i in live)
    assert store.forget() == 0


def test_prune_removes_the_oldest_ended_jobs_first_at_most_limit(open_store: Opener) -> None:
    store = open_store()
    jobs = [ended(i, end_ns=(100 - i) * 10) for i in range(1, 21)]  # 20 ended first
    jobs += [waiting(i, end_ns=1) for i in range(21, 25)]  # live, end_ns long ago (a requeue)
    jobs += [ended(25, C, end_ns=5)]
    store.save(jobs, {}, attempts=[Attempt(i, 1, "finished") for i in range(1, 26)])
    assert store.prune(before_ns=900, limit=3) == 3  # 25 (5), 20 (800), 19 (810)
    assert [store.get_job(i) for i in (25, 20, 19)] == [None] * 3
    assert store.get_job(18) is not None and store.attempts(18) != []
    assert store.attempts(25) == store.attempts(20) == []
    assert store.prune(before_ns=900, limit=1000) == 8  # end_ns 820 ... 890: 18 down to 11
    assert store.prune(before_ns=900, limit=1000) == 0
    assert store.prune(before_ns=0, limit=1000) == store.prune(before_ns=2**70, limit=0) == 0
    assert store.prune(before_ns=2**70, limit=1000) == 10
    assert [j.jobid for j in store.load().jobs] == [21, 22, 23, 24]
    assert all(store.attempts(i) for i in (21, 22, 23, 24))


# ------------------------------------------------------------------------------ property


jobs_strategy = st.lists(
    st.builds(
        lambda state, exit_status, name, end_ns: (state, exit_status, name, end_ns),
        st.sampled_from(list(JobState)),
        st.sampled_from([0, 0, 1, -9]),
        st.sampled_from(["", "a", "b\udce9", "é"]),
        st.integers(0, 50),
    ),
    max_size=40,
)
query_strategy = st.tuples(
    st.frozensets(st.sampled_from(sorted(HISTORY_STATES))),
    st.sampled_from([None, "", "a", "b\udce9", "é"]),
    st.integers(-1, 52),
    st.one_of(st.none(), st.integers(0, 42)),
    st.integers(0, 12),
    st.sampled_from([0, 3, 10_000]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=jobs_strategy, queries=st.lists(query_strategy, min_size=1, max_size=8))
def test_sqlite_history_matches_the_plain_answer(rows: list, queries: list) -> None:
    jobs = [
        waiting(i, state=s, exit_status=x, name=n, end_ns=e, cmd="c\udce9" if i % 3 else "c")
        for i, (s, x, n, e) in enumerate(rows, start=1)
    ]
    with tempfile.TemporaryDirectory() as home:
        store = SqliteStore(home, create=True)
        store.save(jobs, {})
        try:
            for states, name, since_ns, before, limit, window in queries:
                sqlite_store._WINDOW_MAX = window
                got = history(store, states, name, since_ns, before, limit)
                assert [j.jobid for j in got] == expected(
                    jobs, states, name, since_ns, before, limit
                )
        finally:
            sqlite_store._WINDOW_MAX = 10_000
            store.close()


# ------------------------------------------------------------------------------ sqlite indexes


def traced_plans(store: SqliteStore, call) -> list[tuple[str, list[str]]]:
    """(query, its EXPLAIN QUERY PLAN details) of each SELECT or DELETE `call` runs."""
    traced: list[str] = []
    store._db.set_trace_callback(traced.append)
    try:
        call()
    finally:
        store._db.set_trace_callback(None)
    out = []
    for query in traced:
        if query.startswith(("SELECT", "DELETE")):
            plan = store._db.execute("EXPLAIN QUERY PLAN " + query).fetchall()
            out.append((query, [row[3] for row in plan]))
    return out


def assert_indexed(plans: list[tuple[str, list[str]]], *, sorted_ok: bool = False) -> None:
    """No step reads the jobs table without an index (nor sorts, unless `sorted_ok`)."""
    assert plans
    for query, details in plans:
        for detail in details:
            if detail.startswith(("SCAN ", "SEARCH ")) and "(subquery" not in detail:
                assert " INDEX " in detail or "PRIMARY KEY" in detail, (query, detail)
            elif detail == "USE TEMP B-TREE FOR ORDER BY":
                assert sorted_ok, (query, detail)
            else:
                assert detail.startswith(("SCAN (subquery", "CO-ROUTINE", "LIST")), (query, detail)


def uses(plan: tuple[str, list[str]], index: str, covering: bool = True) -> bool:
    """Whether this plan reads `index` (as a covering index, if `covering`)."""
    return any(
        index in detail.split() and ("COVERING INDEX" in detail or not covering)
        for detail in plan[1]
    )


def test_sqlite_history_queries_use_their_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save(mixed_jobs(), {}, attempts=[Attempt(5, 1, "finished")])
    for window, sorted_ok in ((0, False), (10_000, True)):  # walked; read by end time, sorted
        monkeypatch.setattr(sqlite_store, "_WINDOW_MAX", window)
        default = traced_plans(store, lambda: history(store, since_ns=300))
        assert_indexed(default, sorted_ok=sorted_ok)
        index = "jobs_ended" if window == 0 else "jobs_ended_at"
        assert uses(default[-2], index)  # the ids' query (the last one reads their rows)
    monkeypatch.setattr(sqlite_store, "_WINDOW_MAX", 10_000)
    for kwargs, index in (
        ({}, "jobs_ended"),
        ({"states": frozenset({"failed"})}, "jobs_unsuccessful"),
        ({"states": frozenset({"cancelled", "timeout"})}, "jobs_unsuccessful"),
        ({"name": "sweep"}, "jobs_ended_name"),
        ({"name": "ünï", "before_jobid": 40}, "jobs_ended_name"),
        ({"states": frozenset({"finished"}), "name": ""}, "jobs_ended"),
    ):
        plans = traced_plans(store, lambda kwargs=kwargs: history(store, **kwargs))
        assert_indexed(plans)
        covering = kwargs.get("name") != ""  # the jobs without a name: the rows tell
        assert all(uses(plan, index, covering) for plan in plans[:-1]), plans
    assert_indexed(traced_plans(store, lambda: store.attempts(5)))
    assert_indexed(traced_plans(store, lambda: store.get_job(5)))
    prune = traced_plans(store, lambda: store.prune(250, 5))
    assert_indexed(prune)
    assert uses(prune[0], "jobs_ended_at")
    assert_indexed(traced_plans(store, lambda: store.forget([1, 2], before_ns=300)))
    store.close()


def test_sqlite_history_indexes_hold_only_ended_jobs(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path), create=True)
    store.save(mixed_jobs(), {})
    db = store._db
    sql = dict(db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'index'"))
    for name in HISTORY_INDEXES:
        assert "WHERE state BETWEEN 3 AND 5" in sql[name]
        where = sql[name].split(" WHERE ")[1]
        query = f"SELECT count(*) FROM jobs INDEXED BY {name} WHERE {where}"
        (count,) = db.execute(query).fetchone()
        assert (count,) == db.execute(query.replace(f"INDEXED BY {name}", "NOT INDEXED")).fetchone()
        assert 0 < count <= 50  # of the 60 jobs, 50 have ended
    store.close()


def test_a_migrated_version_3_file_has_the_history_table_and_indexes(tmp_path: Path) -> None:
    make_v3_store(tmp_path)
    store = SqliteStore(str(tmp_path), create=False)
    assert store._trusted
    assert [j.jobid for j in history(store)] == [5, 4, 2]
    assert [j.jobid for j in history(store, frozenset({"failed"}))] == [2]
    store.save([], {}, attempts=[Attempt(2, 1, "finished", "w\udce9")])
    assert store.attempts(2)[0].workerid == "w\udce9"
    assert store.forget([1, 2, 3]) == 1 and store.prune(2**62, 10) == 2
    assert [j.jobid for j in store.load().jobs] == [1, 3, 6]
    store.close()
    fresh = SqliteStore(str(tmp_path / "fresh"), create=True)
    fresh.close()
    for path in (tmp_path / FILENAME, tmp_path / "fresh" / FILENAME):
        db = sqlite3.connect(path)
        schema = sorted(db.execute("SELECT type, name, sql FROM sqlite_schema"))
        db.close()
        if path == tmp_path / FILENAME:
            migrated = schema
        else:
            assert migrated == schema  # exactly what a new store has
    names = {name for _, name, _ in migrated}
    assert {"attempts", *HISTORY_INDEXES} <= names
    assert dict((n, s) for _, n, s in migrated)["attempts"] == sqlite_store._ATTEMPTS_DDL


def test_a_migrated_version_1_file_reaches_the_same_schema(tmp_path: Path) -> None:
    make_v1_store(tmp_path)
    store = SqliteStore(str(tmp_path), create=False)
    assert [j.jobid for j in history(store)] == [2]
    store.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
    db.close()
    assert {"attempts", *HISTORY_INDEXES} <= names


def test_sqlite_load_reads_no_history(tmp_path: Path) -> None:
    """`load` stays O(live jobs): it reads jobs only through the indexes of live ones."""
    store = SqliteStore(str(tmp_path), create=True)
    store.save(mixed_jobs(), {}, attempts=[Attempt(i, 1, "finished") for i in range(1, 61)])
    plans = traced_plans(store, store.load)
    for query, details in plans:
        for detail in details:
            if " jobs" in detail:
                assert any(
                    f"INDEX {n}" in detail for n in ("jobs_live", "jobs_asking", "jobs_flow")
                )
            assert "attempts" not in detail and "history" not in query
    store.close()
