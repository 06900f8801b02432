"""The `sqlite` store: goq's durable record of jobs and counters in one SQLite file (WAL mode),
using only the standard library's sqlite3.

Durability: every `save` is one transaction and returns once it is committed. With the default
``synchronous=NORMAL`` a commit survives the goq process being killed (kill -9, OOM, crash): the
write-ahead log is in the operating system's hands before `save` returns. A power loss or kernel
panic can lose the last commits made since the log was last synced to disk; pass
``synchronous="FULL"`` (``GOQ_SQLITE_SYNC=FULL``) to sync the log at every commit instead, at
the price of one fsync per save.

Layout (schema version in ``PRAGMA user_version``):
- ``jobs``: one row per job, keyed by jobid, every `Job` field; args in a compact text form
  (see `encode_args`: unit-separated, JSON only for args that hold a separator); the
  environment as a reference into ``env`` (NULL for an empty one). A partial index lists only
  the jobs not yet ended, in jobid order, so `load` never walks the finished history.
- ``env``: each distinct environment once, keyed by a hash of its entries: the thousands of
  jobs submitted from one shell share one row, and `load` hands them one shared list.
- ``counters``: name -> integer (nextJobId, finishedJobsCount...).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from goq_core.errors import StoreError
from goq_core.interfaces import StoredState
from goq_core.messages import Job, JobState

FILENAME = "goq.db"
SCHEMA_VERSION = 1
APPLICATION_ID = 0x676F7131  # "goq1": marks the file as goq's, not some other SQLite file
SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

_ENDED = (int(JobState.FINISHED), int(JobState.CANCELLED))
_STATES = {int(s): s for s in JobState}
_ENV_CACHE_MAX = 4096  # distinct environments remembered between saves (then forgotten)
_IN_CHUNK = 500  # ids per "WHERE id IN (...)" query, well under SQLite's variable limit

_SCHEMA_V1 = f"""
CREATE TABLE env (
    id   INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE jobs (
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
    out_bytes   INTEGER NOT NULL
);
CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE state NOT IN {_ENDED};
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

# Migrations from version N to N + 1 (none yet): a future goq adds {1: migrate_1_to_2, ...}.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}

_COLUMNS = (
    "jobid, cmd, args, shell, dir, env_id, host, user, state, attempt, workerid, workerhost,"
    " pid, exit_status, submit_ns, start_ns, end_ns, out_bytes"
)
_UPDATES = ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS.replace(" ", "").split(",")[1:])
_UPSERT_JOB = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 18)})"
    f" ON CONFLICT(jobid) DO UPDATE SET {_UPDATES}"
)
_UPSERT_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT(name) DO UPDATE SET value=excluded.value"
)
_LIVE = f"state NOT IN {_ENDED}"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads
_US = "\x1f"  # ASCII unit separator


def encode_args(args: list[str]) -> str:
    """Args as text: "" for none; else the unit separator before each arg (so [""] and []
    differ); JSON (which starts with "[") in the rare case an arg holds a separator itself.
    Splitting is five times faster than JSON when loading a million jobs."""
    if not args:
        return ""
    text = _US.join(args)
    if text.count(_US) != len(args) - 1:
        return _dumps(args)
    return _US + text


def decode_args(text: str) -> list[str]:
    if not text:
        return []
    if text[0] == _US:
        return text[1:].split(_US)
    return _loads(text)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a million Jobs are made (none of them is garbage):
    the collector would otherwise walk them over and over, nearly doubling the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class SqliteStore:
    """Jobs and counters in ``<path>/goq.db``. One server uses it at a time (the server holds
    its lock); calls are serialised by an internal lock, so any thread may call."""

    name = "sqlite"

    def __init__(self, path: str, create: bool, synchronous: str = "NORMAL") -> None:
        sync = synchronous.upper()
        if sync not in SYNC_MODES:
            raise StoreError(
                f"unknown SQLite sync mode {synchronous!r}; use one of {', '.join(SYNC_MODES)}"
            )
        self.path = os.path.join(path, FILENAME)
        self.synchronous = sync
        self._lock = threading.Lock()
        self._env_ids: dict[tuple[str, ...], int] = {}  # committed envs: entries -> env.id
        self._counters: dict[str, int] = {}  # counter values as last committed
        self._db: sqlite3.Connection | None = self._open(path, create)

    # ------------------------------------------------------------------------------ opening

    def _open(self, dirpath: str, create: bool) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            if not create:
                raise StoreError(
                    f"no goq store at {self.path}; refusing to start on an empty queue"
                    " (restore the file, or run `goq init` in a fresh GOQ_HOME)"
                )
            try:
                os.makedirs(dirpath, mode=0o700, exist_ok=True)
                # made here, private, so that SQLite's -wal and -shm files inherit mode 0600
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as e:
                raise StoreError(f"cannot create goq store {self.path}: {e.strerror}") from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open goq store {self.path}: {e}") from None
        try:
            self._prepare(db, create)
        except BaseException:
            db.close()
            raise
        return db

    def _prepare(self, db: sqlite3.Connection, create: bool) -> None:
        with self._errors("open"):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            has_tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] > 0
            if (version > 0 and app_id != APPLICATION_ID) or (has_tables and version == 0):
                raise StoreError(f"{self.path} is an SQLite file but not a goq store")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"goq store {self.path} has schema version {version}, written by a newer"
                    f" goq; this goq knows versions up to {SCHEMA_VERSION}: upgrade goq"
                )
            if version == 0 and not create:  # before any PRAGMA that writes to the file
                raise StoreError(
                    f"goq store {self.path} is empty (no schema); refusing to start on an empty"
                    " queue (restore the file, or run `goq init` in a fresh GOQ_HOME)"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA cache_size=-32768")  # KiB: 32 MiB of page cache
            db.execute("PRAGMA temp_store=MEMORY")
            if version == 0:
                db.execute("BEGIN IMMEDIATE")  # two creators at once: the second sees v1
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in filter(str.strip, _SCHEMA_V1.split(";")):
                        db.execute(statement)
                db.execute("COMMIT")
                version = SCHEMA_VERSION
            while version < SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                _MIGRATIONS[version](db)
                version += 1
                db.execute(f"PRAGMA user_version={version}")
                db.execute("COMMIT")
            self._counters = dict(db.execute("SELECT name, value FROM counters"))

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn every SQLite failure into a StoreError naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            text = str(e)
            if "not a database" in text or "malformed" in text:
                text = f"{text}: the file is corrupt or not an SQLite database"
            raise StoreError(f"goq store {self.path}: {doing} failed: {text}") from None
        except (sqlite3.Error, OverflowError) as e:
            raise StoreError(f"goq store {self.path}: {doing} failed: {e}") from None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"goq store {self.path} is closed")
        return self._db

    # ------------------------------------------------------------------------------ the contract

    def load(self) -> StoredState:
        """Every job not yet ended, in jobid order, jobs with equal environments sharing one
        list; and the counters."""
        with self._lock, self._errors("load"), _gc_paused():
            db = self._conn()
            envs = self._live_envs(db)
            strings: dict[str, str] = {}
            same = strings.setdefault  # one str object per distinct value: less memory
            states = _STATES
            jobs = []
            append = jobs.append
            query = f"SELECT {_COLUMNS} FROM jobs WHERE {_LIVE} ORDER BY jobid"
            for (
                jobid,
                cmd,
                args,
                shell,
                dir_,
                env_id,
                host,
                user,
                state,
                attempt,
                workerid,
                workerhost,
                pid,
                exit_status,
                submit_ns,
                start_ns,
                end_ns,
                out_bytes,
            ) in db.execute(query):
                if not args:
                    arglist: list[str] = []
                elif args[0] == _US:
                    arglist = args[1:].split(_US)
                else:
                    arglist = _loads(args)
                append(
                    Job(
                        jobid,
                        same(cmd, cmd),
                        arglist,
                        shell != 0,
                        same(dir_, dir_),
                        envs[env_id],
                        same(host, host),
                        same(user, user),
                        states[state],
                        attempt,
                        workerid,  # "" (one shared object) for a waiting job
                        workerhost,
                        pid,
                        exit_status,
                        submit_ns,
                        start_ns,
                        end_ns,
                        out_bytes,
                    )
                )
            counters = dict(db.execute("SELECT name, value FROM counters"))
            self._counters = dict(counters)
        return StoredState(jobs=jobs, counters=counters)

    def _live_envs(self, db: sqlite3.Connection) -> dict[int | None, list[str]]:
        """env.id -> its entries, for every environment a live job uses (None: empty)."""
        envs: dict[int | None, list[str]] = {None: []}
        ids = [r[0] for r in db.execute(f"SELECT DISTINCT env_id FROM jobs WHERE {_LIVE}")]
        ids = [i for i in ids if i is not None]
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for env_id, body in db.execute(
                f"SELECT id, body FROM env WHERE id IN ({marks})", chunk
            ):
                envs[env_id] = _loads(body)
        missing = [i for i in ids if i not in envs]
        if missing:
            raise StoreError(
                f"goq store {self.path} is corrupt: jobs refer to missing environments"
                f" {missing[:5]}"
            )
        return envs

    def save(self, jobs: Sequence[Job], counters: dict[str, int]) -> None:
        """Upsert `jobs` by jobid and set `counters`, in one transaction; returns once committed."""
        with self._lock, self._errors("save"):
            db = self._conn()
            known = self._env_ids
            new_envs: dict[tuple[str, ...], int] = {}
            by_list: dict[int, int | None] = {}  # id(env list) -> env.id, valid during this call
            rows = []
            append = rows.append
            changed = [(k, v) for k, v in counters.items() if self._counters.get(k) != v]
            db.execute("BEGIN IMMEDIATE")
            try:
                for j in jobs:
                    env = j.env
                    try:
                        env_id = by_list[id(env)]
                    except KeyError:
                        env_id = self._env_id(db, env, known, new_envs)
                        by_list[id(env)] = env_id
                    append(
                        (
                            j.jobid,
                            j.cmd,
                            encode_args(j.args),
                            1 if j.shell else 0,
                            j.dir,
                            env_id,
                            j.host,
                            j.user,
                            int(j.state),
                            j.attempt,
                            j.workerid,
                            j.workerhost,
                            j.pid,
                            j.exit_status,
                            j.submit_ns,
                            j.start_ns,
                            j.end_ns,
                            j.out_bytes,
                        )
                    )
                db.executemany(_UPSERT_JOB, rows)
                if changed:
                    db.executemany(_UPSERT_COUNTER, changed)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if new_envs:
                if len(known) + len(new_envs) > _ENV_CACHE_MAX:
                    known.clear()
                known.update(new_envs)
            self._counters.update(changed)

    def _env_id(
        self,
        db: sqlite3.Connection,
        env: list[str],
        known: dict[tuple[str, ...], int],
        new_envs: dict[tuple[str, ...], int],
    ) -> int | None:
        """The env.id of these entries, adding a row if they are new (inside the transaction)."""
        if not env:
            return None
        key = tuple(env)
        env_id = known.get(key)
        if env_id is None:
            env_id = new_envs.get(key)
        if env_id is None:
            body = _dumps(env)
            digest = hashlib.blake2b(body.encode(), digest_size=16).digest()
            db.execute(
                "INSERT INTO env (hash, body) VALUES (?, ?) ON CONFLICT DO NOTHING", (digest, body)
            )
            env_id, stored = db.execute(
                "SELECT id, body FROM env WHERE hash = ?", (digest,)
            ).fetchone()
            if stored != body:  # a 128-bit hash collision, or a tampered row: never mix envs
                raise StoreError(f"goq store {self.path}: environment {env_id} does not match")
            new_envs[key] = env_id
        return env_id

    def get_job(self, jobid: int) -> Job | None:
        """The stored record of one job, ended or not (its own copy of every list)."""
        with self._lock, self._errors("get_job"):
            db = self._conn()
            row = db.execute(
                f"SELECT {_COLUMNS.replace('env_id', 'env.body')} FROM jobs"
                " LEFT JOIN env ON env.id = jobs.env_id WHERE jobid = ?",
                (jobid,),
            ).fetchone()
        if row is None:
            return None
        r = list(row)
        r[2] = decode_args(r[2])
        r[3] = r[3] != 0
        r[5] = _loads(r[5]) if r[5] is not None else []
        r[8] = _STATES[r[8]]
        return Job(*r)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None


def open_sqlite_store(path: str, create: bool) -> SqliteStore:
    """The plugin factory: sync mode from GOQ_SQLITE_SYNC (NORMAL unless set)."""
    return SqliteStore(path, create, synchronous=os.environ.get("GOQ_SQLITE_SYNC", "NORMAL"))
