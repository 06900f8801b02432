"""The `sqlite` store: goq's durable record of jobs and counters in one SQLite file (WAL mode),
using only the standard library's sqlite3.

Durability: every `save` is one transaction and returns once it is committed. With the default
``synchronous=NORMAL`` a commit survives the goq process being killed (kill -9, OOM, crash): the
write-ahead log is in the operating system's hands before `save` returns. A power loss or kernel
panic can lose the last commits made since the log was last synced to disk; pass
``synchronous="FULL"`` (``GOQ_SQLITE_SYNC=FULL``) to sync the log at every commit instead, at
the price of one fsync per save.

Layout, schema version 5 (in ``PRAGMA user_version``; a version 1, 2, 3 or 4 file is migrated
when opened, one version at a time, its jobs table rebuilt each time by the tables and indexes
that version had, frozen here as they were; a row that does not fit goes to quarantine; version
4 gained the history's indexes and the attempts table before it was released, so no file has a
version 4 without them):
- ``jobs`` (STRICT): one row per job, keyed by jobid, every `Job` field (``note`` new in v2;
  ``cpus``, ``mem``, ``gpus``, ``resources``, ``priority``, ``gpu_ids`` new in v3, with the
  defaults 1, 0, 0, '', 0, '' for rows migrated from v2; the workflow fields ``name``,
  ``after``, ``after_any``, ``array_id``, ``array_index``, ``array_max``, ``retries``,
  ``retry_delay_ms``, ``retried``, ``time_limit_ms``, ``out_base`` new in v4, '' and 0 for rows
  migrated from v3; ``owner``, the principal that submitted the job, new in v5, ``admin`` for
  rows migrated from v4, when only the cluster's key, which acts as admin, could submit); args in a compact text form (see `encode_args`: unit-separated, JSON only
  for args that hold a separator); resources likewise, as the args ``NAME=N`` (see
  `encode_resources`: '' for none; a name may hold any character, ``=`` included); after and
  after_any in the id-range form of goq_core.idranges (see `encode_ids`: "1-10000,10005", so a
  job that waits for 10,000 consecutive jobs costs a few bytes; JSON for a list that is not
  ascending); the environment as a reference into ``env`` (NULL for an empty one).
  STRICT makes SQLite refuse a value of the wrong type, so `load` need not check types.
  Ended jobs are those FINISHED, CANCELLED or TIMEOUT (states 3, 4, 5); BLOCKED and HELD are
  not. Three partial indexes cover only the jobs not yet ended, so `load` never walks the
  finished history: ``jobs_live`` (jobid order); ``jobs_asking``, which holds the six request
  columns of the jobs whose request is not the default (one cpu, nothing else, priority 0); and
  ``jobs_flow``, which holds the eleven workflow columns of the jobs that have any of them away
  from its default. `load` reads those columns there (requests once per distinct request), not
  in its main query: most jobs ask for nothing and are in no workflow, and reading six more
  columns per row would cost 12% of the load time (all seventeen, over a quarter). Their WHERE
  is ``state NOT BETWEEN 3 AND 5`` (see `_LIVE`). `outcomes` reads state and exit_status by
  jobid, 500 ids per query.
- Text is lossless for any Python str (lone surrogates from surrogateescape'd argv, env and
  paths, surrogate pairs, embedded NUL). Text that UTF-8 can hold is stored as is. When one of
  a job's text fields cannot be (a lone surrogate), the row has ``escaped = 1`` and its twelve
  text fields (cmd, args as encoded, dir, host, user, workerid, workerhost, note, resources as
  encoded, gpu_ids, name, owner) are each stored in Python's ``unicode_escape`` form, which is
  ASCII (``caf\\udce9``) and decodes to exactly the same str (JSON's ``\\u`` escapes would not: they
  merge surrogate pairs). Plain rows (``escaped = 0``) cost nothing extra to save or load.
- ``env``: each distinct environment once, keyed by a hash of its body: the thousands of jobs
  submitted from one shell share one row, and `load` hands them one shared list. The body is
  the JSON list of entries, or, when UTF-8 cannot hold that, ``u`` followed by the JSON's
  ``unicode_escape`` form.
- ``counters``: name -> integer (nextJobId, finishedJobsCount...).
- ``quarantine``: rows of ``jobs`` that cannot be turned into a Job (an unknown state, bad args
  or environment, resources or after lists that do not decode, cpus below 1, mem or gpus below
  0, a value of the wrong type or not UTF-8: written by hand or by a damaged disk), or that the
  server refused (`quarantine`): jobid, the raw row as JSON (text as str, blobs as
  ``{"blob": hex}``), the reason, and when (ns). `load` moves them there and reports them
  instead of failing; `get_job` of such a job raises StoreError with the reason, and
  `outcomes` leaves it out.
- ``nonces`` (STRICT, WITHOUT ROWID): the replay guard's memory, nonce -> send time (ns),
  indexed by send time so that forgetting old ones is cheap; written by `save`.
- History (v4). An ended job keeps its row in ``jobs`` until `forget` or `prune` removes it
  (with its attempts). Four partial indexes hold the ended jobs only (``WHERE state BETWEEN 3
  AND 5``: no live job is in them, `load` never reads them, and a job's row enters them once,
  when it ends), each with the columns `history` filters on, so that a query reads ids from
  one index alone and then only the rows it returns: ``jobs_ended`` (jobid, state,
  exit_status, end_ns, owner), newest first; ``jobs_ended_at`` (end_ns, state, exit_status,
  owner), by end time, for prune, forget and a short recent window; ``jobs_ended_name`` (name,
  jobid, escaped, state, exit_status, end_ns, owner) of the named ones; ``jobs_unsuccessful``
  (state, jobid, exit_status, end_ns, owner) of those that failed, were cancelled or timed out
  (rare); owner last in each since v5, so that the history of one owner reads them alone too
  (scanning past the others' jobs in the index, never their rows). `history`
  forces its plan (INDEXED BY): SQLite's planner, left alone, may walk the whole history.
  With a million ended jobs each query takes about a millisecond (bench/history.py).
  Environments stay when the jobs using them are removed (each is one row, shared by every
  job submitted with it; finding the unused ones would take an index over every job's env).
- ``attempts`` (STRICT, WITHOUT ROWID, keyed by jobid and attempt): one row per run of a job
  (`goq_core.records.Attempt`), upserted by `save`. Text (outcome, workerid, workerhost) is
  plain unless one of them cannot be UTF-8; then ``escaped = 1`` and all three are in
  ``unicode_escape`` form, as in ``jobs``.

Errors: every failure is a StoreError of one line naming the file. Those raised by `save` (and
the other calls) carry ``transient``: True for what can pass (disk full, read-only file or
directory, I/O error, database busy or locked), so the server may keep running and retry; the
store stays usable after any failed save.
"""

from __future__ import annotations

import gc
import hashlib
import json
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from goq_core import idranges
from goq_core.errors import StoreError
from goq_core.interfaces import HISTORY_LIMIT_MAX, HISTORY_STATES, StoredState
from goq_core.messages import Job, JobState
from goq_core.records import Attempt

FILENAME = "goq.db"
SCHEMA_VERSION = 5
APPLICATION_ID = 0x676F7131  # "goq1": marks the file as goq's, not some other SQLite file
SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

_ENDED = (int(JobState.FINISHED), int(JobState.CANCELLED), int(JobState.TIMEOUT))
_ENDED_STATES = frozenset(JobState(s) for s in _ENDED)
if max(_ENDED) - min(_ENDED) != len(_ENDED) - 1:  # what _LIVE below relies on
    raise AssertionError("the ended job states are no longer consecutive")
# A row of a job not yet ended: the WHERE of the partial indexes, and of the queries that read
# them (SQLite uses a partial index only for a query that has its WHERE terms as they are).
# Not "state NOT IN (3, 4, 5)": SQLite evaluates an IN of more than two values through a
# temporary table, built again for each row that an INSERT or UPDATE gives to the index, which
# made batch saves twice as slow.
_LIVE = f"state NOT BETWEEN {_ENDED[0]} AND {_ENDED[-1]}"
_STATES = {int(s): s for s in JobState}
_ENV_CACHE_MAX = 4096  # distinct environments remembered between saves (then forgotten)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what an SQLite INTEGER holds
_IN_CHUNK = 500  # ids per "WHERE id IN (...)" query, well under SQLite's variable limit

# SQLite's primary result codes for conditions that can pass: retry later, same store
_TRANSIENT_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)
_READONLY_DBMOVED = sqlite3.SQLITE_READONLY | (4 << 8)  # the file was deleted or moved: stays

_JOBS_V2_DDL = """CREATE TABLE jobs (
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
# The tables and indexes of older versions, frozen as those versions made them: a migration
# builds exactly what its version had, whatever the current schema is.
_JOBS_V3_DDL = """CREATE TABLE jobs (
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
# (v2 and v3)
_JOBS_LIVE_V2 = "CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE state NOT IN (3, 4)"
_JOBS_ASKING_V3 = (
    "CREATE INDEX jobs_asking ON jobs(cpus, mem, gpus, resources, priority, gpu_ids, escaped,"
    " state) WHERE state NOT IN (3, 4) AND NOT (cpus = 1 AND mem = 0 AND gpus = 0"
    " AND resources = '' AND priority = 0 AND gpu_ids = '')"
)
# (v4: the jobs table; its indexes jobs_live, jobs_asking and jobs_flow are those of v5, its
# history indexes are _HISTORY_INDEXES_V4 below)
_JOBS_V4_DDL = """CREATE TABLE jobs (
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
# Version 5, the current one (when version 6 comes, freeze these as the _V5 ones above)
_JOBS_DDL = """CREATE TABLE jobs (
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
    out_base       INTEGER NOT NULL DEFAULT 0,
    owner          TEXT NOT NULL DEFAULT ''
) STRICT"""
_JOBS_LIVE = f"CREATE INDEX jobs_live ON jobs(jobid, env_id) WHERE {_LIVE}"
# a job whose request is not the default (one cpu, nothing else, priority 0): see _live_requests
_ASKS = (
    "NOT (cpus = 1 AND mem = 0 AND gpus = 0 AND resources = '' AND priority = 0 AND gpu_ids = '')"
)
_REQUEST_COLUMNS = "cpus, mem, gpus, resources, priority, gpu_ids, escaped"
_JOBS_ASKING = (  # covers what _live_requests reads (state too), in its GROUP BY order
    f"CREATE INDEX jobs_asking ON jobs({_REQUEST_COLUMNS}, state) WHERE {_LIVE} AND {_ASKS}"
)
_Request = tuple[int, int, int, dict[str, int], int, str]
# the workflow columns (v4), and a job that has any of them away from its default: see
# _live_flows
_FLOW_TEXTS = ("name", "after", "after_any")
_FLOW_INTS = (
    *("array_id", "array_index", "array_max", "retries", "retry_delay_ms", "retried"),
    *("time_limit_ms", "out_base"),
)
_FLOW_COLUMNS = ", ".join(_FLOW_TEXTS + _FLOW_INTS)
_FLOWS = (
    "NOT ("
    + " AND ".join([f"{c} = ''" for c in _FLOW_TEXTS] + [f"{c} = 0" for c in _FLOW_INTS])
    + ")"
)
_JOBS_FLOW = (  # covers what _live_flows reads (state too)
    f"CREATE INDEX jobs_flow ON jobs({_FLOW_COLUMNS}, state) WHERE {_LIVE} AND {_FLOWS}"
)
# jobid, name, after, after_any (as stored), then the eight ints, in _FLOW_INTS order
_Flow = tuple[int, str, str, str, int, int, int, int, int, int, int, int]
# History (v4): an ended job stays in jobs until `forget` or `prune` removes it. These partial
# indexes hold only ended jobs (none of them is touched while a job is live, nor read by `load`)
# and answer `history`, `forget` and `prune` from their own columns: see `history`. v5 added
# the owner to each, last, so that a history of one owner reads them alone too.
_ENDED_SQL = f"state BETWEEN {_ENDED[0]} AND {_ENDED[-1]}"  # an ended job
_FAILED_SQL = f"NOT (state = {int(JobState.FINISHED)} AND exit_status = 0)"  # (if ended) failed
_HISTORY_INDEXES_V4 = (  # frozen as version 4 made them
    "CREATE INDEX jobs_ended ON jobs(jobid, state, exit_status, end_ns)"
    " WHERE state BETWEEN 3 AND 5",
    "CREATE INDEX jobs_ended_at ON jobs(end_ns, state, exit_status) WHERE state BETWEEN 3 AND 5",
    "CREATE INDEX jobs_ended_name ON jobs(name, jobid, escaped, state, exit_status, end_ns)"
    " WHERE state BETWEEN 3 AND 5 AND name <> ''",
    "CREATE INDEX jobs_unsuccessful ON jobs(state, jobid, exit_status, end_ns)"
    " WHERE state BETWEEN 3 AND 5 AND NOT (state = 3 AND exit_status = 0)",
)
_JOBS_ENDED = (  # newest first: the default history, and any that takes finished jobs
    f"CREATE INDEX jobs_ended ON jobs(jobid, state, exit_status, end_ns, owner) WHERE {_ENDED_SQL}"
)
_JOBS_ENDED_AT = (  # by end time: prune and forget, and the history of a short recent window
    f"CREATE INDEX jobs_ended_at ON jobs(end_ns, state, exit_status, owner) WHERE {_ENDED_SQL}"
)
_JOBS_ENDED_NAME = (  # the history of one name (as stored: escaped, in an escaped row)
    "CREATE INDEX jobs_ended_name ON jobs(name, jobid, escaped, state, exit_status, end_ns,"
    f" owner) WHERE {_ENDED_SQL} AND name <> ''"
)
_JOBS_UNSUCCESSFUL = (  # failed, cancelled or timed out (rare): by state, newest first
    "CREATE INDEX jobs_unsuccessful ON jobs(state, jobid, exit_status, end_ns, owner)"
    f" WHERE {_ENDED_SQL} AND {_FAILED_SQL}"
)
_HISTORY_INDEXES = (_JOBS_ENDED, _JOBS_ENDED_AT, _JOBS_ENDED_NAME, _JOBS_UNSUCCESSFUL)
_ATTEMPTS_DDL = """CREATE TABLE attempts (
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
) STRICT, WITHOUT ROWID"""
_ATTEMPT_NAMES = (  # an Attempt's fields, in its order (its texts: outcome, workerid, workerhost)
    *("jobid", "attempt", "outcome", "workerid", "workerhost", "pid", "start_ns", "end_ns"),
    *("exit_status", "max_rss_kib", "utime_us", "stime_us"),
)
_ATTEMPT_TEXTS = frozenset(("outcome", "workerid", "workerhost"))
_attempt_of = operator.attrgetter(*_ATTEMPT_NAMES)
_UPSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(_ATTEMPT_NAMES)}, escaped)"
    f" VALUES ({', '.join('?' * (len(_ATTEMPT_NAMES) + 1))}) ON CONFLICT(jobid, attempt)"
    " DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in (*_ATTEMPT_NAMES[2:], "escaped"))
)
# history: the jobs of each name of HISTORY_STATES; the unsuccessful ones by their state
_CLASS_SQL = {
    "finished": f"(state = {int(JobState.FINISHED)} AND exit_status = 0)",
    "failed": f"(state = {int(JobState.FINISHED)} AND exit_status <> 0)",
    "cancelled": f"state = {int(JobState.CANCELLED)}",
    "timeout": f"state = {int(JobState.TIMEOUT)}",
}
_UNSUCCESSFUL_STATE = {
    "failed": int(JobState.FINISHED),
    "cancelled": int(JobState.CANCELLED),
    "timeout": int(JobState.TIMEOUT),
}
# A history since a time: when fewer ended jobs than this ended since then, they are read by
# end time (jobs_ended_at) and sorted; else the newest are walked back until enough match.
_WINDOW_MAX = 10_000
_NONCES_DDL = """CREATE TABLE nonces (
    nonce       BLOB PRIMARY KEY,
    sendtime_ns INTEGER NOT NULL
) STRICT, WITHOUT ROWID"""
_V2_TABLES = (  # what version 2 adds to, or changes in, version 1
    _JOBS_V2_DDL,
    _JOBS_LIVE_V2,
    """CREATE TABLE quarantine (
    id     INTEGER PRIMARY KEY,
    jobid  INTEGER NOT NULL,
    row    TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ns  INTEGER NOT NULL
)""",
    "CREATE INDEX quarantine_jobid ON quarantine(jobid)",
    _NONCES_DDL,
    "CREATE INDEX nonces_time ON nonces(sendtime_ns)",
)
_SCHEMA = (
    """CREATE TABLE env (
    id   INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body TEXT NOT NULL
)""",
    """CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID""",
    _JOBS_DDL,
    _JOBS_LIVE,
    *_V2_TABLES[2:],  # quarantine and nonces, as version 2 made them
    _JOBS_ASKING,
    _JOBS_FLOW,
    *_HISTORY_INDEXES,
    _ATTEMPTS_DDL,
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_V1_COLUMNS = (
    "jobid, cmd, args, shell, dir, env_id, host, user, state, attempt, workerid, workerhost,"
    " pid, exit_status, submit_ns, start_ns, end_ns, out_bytes"
)
_V2_COLUMNS = _V1_COLUMNS + ", note, escaped"
_V3_COLUMNS = _V2_COLUMNS + ", cpus, mem, gpus, resources, priority, gpu_ids"
_V4_COLUMNS = _V3_COLUMNS + ", " + _FLOW_COLUMNS
_COLUMNS = _V4_COLUMNS + ", owner"
_NAMES = tuple(_COLUMNS.replace(" ", "").split(","))
_V1_NAMES = _NAMES[:18]
_V2_NAMES = _NAMES[:20]
_V3_NAMES = _NAMES[:26]
_V4_NAMES = _NAMES[:37]
_INT_NAMES = frozenset(
    ("jobid", "state", "shell", "attempt", "pid", "exit_status")
    + ("submit_ns", "start_ns", "end_ns", "out_bytes", "escaped")
    + ("cpus", "mem", "gpus", "priority")
    + _FLOW_INTS
)
_ESCAPABLE = (
    *("cmd", "args", "dir", "host", "user", "workerid", "workerhost", "note"),
    *("resources", "gpu_ids", "name", "owner"),
)
_LEAST = (("cpus", 1), ("mem", 0), ("gpus", 0))  # what a request may hold at the least
_UPDATES = ", ".join(f"{c}=excluded.{c}" for c in _NAMES[1:])
_UPSERT_JOB = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})"
    f" ON CONFLICT(jobid) DO UPDATE SET {_UPDATES}"
)
# A job in no workflow (the most): its row without the workflow columns, which take their
# defaults. Binding eleven values fewer makes a batch of such jobs some 8% faster to save.
_NO_FLOW = ("", [], [], 0, 0, 0, 0, 0, 0, 0, 0)  # as _flow_of gives them
_flow_of = operator.attrgetter(*_FLOW_TEXTS, *_FLOW_INTS)
_UPSERT_JOB_NO_FLOW = (  # the columns of v3, then owner
    f"INSERT INTO jobs ({_V3_COLUMNS}, owner) VALUES ({', '.join('?' * (len(_V3_NAMES) + 1))})"
    f" ON CONFLICT(jobid) DO UPDATE SET "
    + ", ".join(
        [f"{c}=excluded.{c}" for c in (*_V3_NAMES[1:], "owner")]
        + [f"{c}=''" for c in _FLOW_TEXTS]
        + [f"{c}=0" for c in _FLOW_INTS]
    )
)
_UPSERT_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT(name) DO UPDATE SET value=excluded.value"
)
_INSERT_NONCE = "INSERT INTO nonces (nonce, sendtime_ns) VALUES (?, ?) ON CONFLICT DO NOTHING"
# the careful reader's columns: each value with its SQLite type, read as bytes if text
_TYPED = ", ".join(f"typeof({c}), {c}" for c in _NAMES)
_NOT_SURELY_ENDED = f"NOT (typeof(state) = 'integer' AND state IN {_ENDED})"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ascii_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
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


def encode_resources(resources: dict[str, int]) -> str:
    """Named counters as text: "" for none, else `encode_args` of their "NAME=N" forms (the
    last "=" ends the name). OverflowError for a value an SQLite INTEGER could not hold."""
    if not resources:
        return ""
    items = []
    for name, value in resources.items():
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError(f"resource {name!r} = {value} does not fit in 64 bits")
        items.append(f"{name}={value:d}")
    return encode_args(items)


def decode_resources(text: str) -> dict[str, int]:
    """What `encode_resources` was given; ValueError if `text` is not of that form (a value
    that is not a whole number from 0 to 2**63 - 1, a repeated name)."""
    if not text:
        return {}
    try:
        items = decode_args(text)
    except ValueError:  # not JSON
        items = None
    if not _is_str_list(items):
        raise ValueError("resources are not a list of strings")
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not value.isdigit() or not value.isascii() or len(value) > 19:
            raise ValueError(f"resource {item[:40]!r} is not NAME=N")
        count = int(value)
        if count > _INT64_MAX:
            raise ValueError(f"resource {item[:40]!r} is not NAME=N")
        out[name] = count
    if len(out) != len(items):
        raise ValueError("resources repeat a name")
    return out


def encode_ids(ids: list[int]) -> str:
    """Job ids (a job's after or after_any) as text: "" for none; the id-range form of
    goq_core.idranges ("1-10000,10005": a few bytes for any run of consecutive ids) when they
    are positive, ascending, without repeats, as the server keeps them; else, so that the list
    comes back exactly whatever it holds, its JSON (which starts with "["). TypeError for
    anything but whole numbers."""
    text = idranges.format_ascending(ids)
    if text is None or (ids and ids[-1] > _INT64_MAX):
        return _dumps([operator.index(i) for i in ids])
    return text


def decode_ids(text: str) -> list[int]:
    """What `encode_ids` was given; ValueError if `text` is not of that form."""
    if not text:
        return []
    if text[0] == "[":
        ids = _loads(text)
        if type(ids) is not list or not all(type(i) is int for i in ids):
            raise ValueError("not a list of job ids")
        return ids
    return list(idranges.ids(idranges.parse(text)))


def _utf8_ok(text: str) -> bool:
    """Whether SQLite can store `text` as TEXT (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_str_list(value: object) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _store_error(text: str, transient: bool = False) -> StoreError:
    """A StoreError of one line, with the `transient` flag the server reads."""
    err = StoreError(" ".join(text.split("\n")))
    err.transient = transient  # type: ignore[attr-defined]
    return err


class _Damaged(Exception):
    """A stored row that cannot be turned into a Job; the message says why."""


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


@contextmanager
def _text_as_bytes(db: sqlite3.Connection) -> Iterator[None]:
    """Read TEXT as bytes, so that a value that is not UTF-8 spoils only its own row."""
    before = db.text_factory
    db.text_factory = bytes
    try:
        yield
    finally:
        db.text_factory = before


def _raw_json(typed: Sequence[Any], names: Sequence[str] = _NAMES) -> str:
    """A row read by the careful reader as JSON: text as str (surrogateescape for bytes that
    are not UTF-8), blobs as {"blob": hex}; for the quarantine table."""
    out: dict[str, object] = {}
    for i, name in enumerate(names):
        kind, value = typed[2 * i], typed[2 * i + 1]
        if kind in (b"text", "text") and isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        elif isinstance(value, bytes):
            value = {"blob": value.hex()}
        out[name] = value
    return _ascii_dumps(out)


def _typed_value(name: str, kind: Any, value: Any) -> Any:
    """One column of a careful read, checked: int for integer columns, str for text ones."""
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if name == "env_id" and kind == "null":
        return None
    if name in _INT_NAMES or name == "env_id":
        if kind != "integer":
            raise _Damaged(f"{name} holds {kind.upper()}, not an integer")
        return value
    if kind != "text":
        raise _Damaged(f"{name} holds {kind.upper()}, not text")
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError:
        raise _Damaged(f"{name} is not valid UTF-8") from None


def _escape(text: str) -> str:
    """Any str as ASCII text that `_unescape` turns back into exactly the same str."""
    return text.encode("unicode_escape").decode("ascii")


def _unescape(name: str, text: str) -> str:
    """A field of an escaped row (see `_escape`)."""
    try:
        return text.encode("ascii").decode("unicode_escape")
    except (ValueError, DeprecationWarning):  # not ASCII, a broken or unknown escape
        raise _Damaged(f"{name} of an escaped row is not in unicode_escape form") from None


def _env_body(env: list[str]) -> str:
    """An environment's body in the env table: its JSON, or u + that escaped."""
    body = _dumps(env)
    return body if _utf8_ok(body) else "u" + _escape(body)


def _env_entries(body: str) -> object:
    """What `_env_body` was given (a list of str unless the row is damaged)."""
    if body[:1] == "u":
        body = _unescape("environment", body[1:])
    return _loads(body)


def _careful_job(typed: Sequence[Any], env_of: Callable[[int], list[str]]) -> Job:
    """The Job of a row read by the careful reader, every value checked; _Damaged if none."""
    v = {name: _typed_value(name, typed[2 * i], typed[2 * i + 1]) for i, name in enumerate(_NAMES)}
    return _job_of(v, env_of)


def _no_env(env_id: int) -> list[str]:
    return []


def _job_of(v: dict[str, Any], env_of: Callable[[int], list[str]]) -> Job:
    """The Job of a row's values by column name, each of its column's type; _Damaged if
    none (the environment: `env_of` its id)."""
    escaped = v.pop("escaped")
    if escaped not in (0, 1):
        raise _Damaged(f"escaped is {escaped}, not 0 or 1")
    if escaped:
        for name in _ESCAPABLE:
            v[name] = _unescape(name, v[name])
    state = _STATES.get(v["state"])
    if state is None:
        raise _Damaged(f"state {v['state']} is not a job state")
    v["state"] = state
    try:
        args = decode_args(v["args"])
    except ValueError:
        args = None
    if not _is_str_list(args):
        raise _Damaged("args are not a list of strings")
    v["args"] = args
    try:
        v["resources"] = decode_resources(v["resources"])
    except ValueError as e:
        raise _Damaged(f"resources do not decode: {e}") from None
    for name, least in _LEAST:
        if v[name] < least:
            raise _Damaged(f"{name} is {v[name]}, not {least} or more")
    for name in ("after", "after_any"):
        try:
            v[name] = decode_ids(v[name])
        except ValueError as e:
            raise _Damaged(f"{name} does not decode: {e}") from None
    v["shell"] = v["shell"] != 0
    env_id = v.pop("env_id")
    v["env"] = [] if env_id is None else env_of(env_id)
    return Job(**v)


def _plain_job(row: tuple[Any, ...]) -> Job:
    """The Job of a row of _COLUMNS read by a trusted query (STRICT: every value of its
    column's type), env empty: directly for the usual row (not escaped, args in their usual
    form, no resources), else through `_job_of`; _Damaged if none."""
    args = row[2]
    if row[19] or (args and args[0] != _US) or row[23] or row[8] not in _STATES:
        return _job_of(dict(zip(_NAMES, row, strict=True)), _no_env)
    cpus, mem, gpus = row[20:23]
    if cpus < 1 or mem < 0 or gpus < 0:
        raise _Damaged(f"cpus {cpus}, mem {mem}, gpus {gpus}")
    try:
        after, after_any = decode_ids(row[27]), decode_ids(row[28])
    except ValueError as e:
        raise _Damaged(f"after or after_any do not decode: {e}") from None
    job = Job(
        row[0],
        row[1],
        args[1:].split(_US) if args else [],
        row[3] != 0,
        row[4],
        [],
        *row[6:8],
        _STATES[row[8]],
        *row[9:19],  # attempt ... note
        cpus=cpus,
        mem=mem,
        gpus=gpus,
        priority=row[24],
        gpu_ids=row[25],
        name=row[26],
        after=after,
        after_any=after_any,
    )
    (
        job.array_id,
        job.array_index,
        job.array_max,
        job.retries,
        job.retry_delay_ms,
        job.retried,
        job.time_limit_ms,
        job.out_base,
        job.owner,
    ) = row[29:]
    return job


def _env_value(env_id: int, typed: Sequence[Any] | None) -> list[str]:
    """The entries of environment `env_id` from (typeof(body), body) read as bytes; _Damaged
    if it is missing or not a JSON list of strings."""
    if typed is None:
        raise _Damaged(f"environment {env_id} is missing")
    kind, body = typed
    try:
        entries = _env_entries(body.decode("utf-8")) if kind == b"text" else None
    except (ValueError, _Damaged):  # not UTF-8, not JSON
        entries = None
    if not _is_str_list(entries):
        raise _Damaged(f"environment {env_id} is not a JSON list of strings")
    return entries


class SqliteStore:
    """Jobs, counters, nonces and quarantined rows in ``<path>/goq.db``. One server uses it at
    a time (the server holds its lock); calls are serialised by an internal lock, so any thread
    may call."""

    name = "sqlite"

    def __init__(self, path: str, create: bool, synchronous: str = "NORMAL") -> None:
        sync = synchronous.upper()
        if sync not in SYNC_MODES:
            raise _store_error(
                f"unknown SQLite sync mode {synchronous!r}; use one of {', '.join(SYNC_MODES)}"
            )
        self.path = os.path.join(path, FILENAME)
        self.synchronous = sync
        self._lock = threading.Lock()
        self._env_ids: dict[tuple[str, ...], int] = {}  # committed envs: entries -> env.id
        self._counters: dict[str, int] = {}  # counter values as last committed
        self._trusted = False  # the jobs and nonces tables are exactly ours (STRICT): fast load
        self._migrated: list[tuple[int, str]] = []  # quarantined by a migration, not reported yet
        self._db: sqlite3.Connection | None = self._open(path, create)

    # ------------------------------------------------------------------------------ opening

    def _open(self, dirpath: str, create: bool) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            if not create:
                raise _store_error(
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
                raise _store_error(
                    f"cannot create goq store {self.path}: {e.strerror}", transient=True
                ) from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise _store_error(f"cannot open goq store {self.path}: {e}") from None
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
                raise _store_error(f"{self.path} is an SQLite file but not a goq store")
            if version > SCHEMA_VERSION:
                raise _store_error(
                    f"goq store {self.path} has schema version {version}, written by a newer"
                    f" goq; this goq knows versions up to {SCHEMA_VERSION}: upgrade goq"
                )
            if version == 0 and not create:  # before any PRAGMA that writes to the file
                raise _store_error(
                    f"goq store {self.path} is empty (no schema); refusing to start on an empty"
                    " queue (restore the file, or run `goq init` in a fresh GOQ_HOME)"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA cache_size=-32768")  # KiB: 32 MiB of page cache
            db.execute("PRAGMA temp_store=MEMORY")
            if version == 0:
                db.execute("BEGIN IMMEDIATE")  # two creators at once: the second sees v2
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _SCHEMA:
                        db.execute(statement)
                db.execute("COMMIT")
                version = SCHEMA_VERSION
            while version < SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if db.execute("PRAGMA user_version").fetchone()[0] == version:
                        _MIGRATIONS[version](self, db)
                        db.execute(f"PRAGMA user_version={version + 1}")
                    db.execute("COMMIT")
                except BaseException:
                    self._rollback(db)
                    raise
                version += 1
            sql = dict(db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"))
            self._trusted = sql.get("jobs") == _JOBS_DDL and sql.get("nonces") == _NONCES_DDL
            self._counters = self._read_counters(db)

    def _migrate_1_to_2(self, db: sqlite3.Connection) -> None:
        """Rebuild jobs as STRICT with note and escaped; add quarantine and nonces. A v1 row
        holding a value of the wrong type goes to quarantine instead."""
        for statement in _V2_TABLES[2:]:
            if statement.startswith("CREATE TABLE"):
                db.execute(statement)
        self._rebuild_jobs(db, 1, _V1_NAMES, _JOBS_V2_DDL, (_JOBS_LIVE_V2,))
        for statement in _V2_TABLES[2:]:
            if not statement.startswith("CREATE TABLE"):
                db.execute(statement)

    def _migrate_2_to_3(self, db: sqlite3.Connection) -> None:
        """Rebuild jobs with cpus, mem, gpus, resources, priority and gpu_ids (at their
        defaults: a job of one cpu, nothing else, priority 0). A row that a v2 table edited by
        hand let hold a value of the wrong type goes to quarantine instead."""
        self._rebuild_jobs(db, 2, _V2_NAMES, _JOBS_V3_DDL, (_JOBS_LIVE_V2, _JOBS_ASKING_V3))

    def _migrate_3_to_4(self, db: sqlite3.Connection) -> None:
        """Rebuild jobs with the workflow columns (name, after, after_any, array_id,
        array_index, array_max, retries, retry_delay_ms, retried, time_limit_ms, out_base, at
        their defaults), its partial indexes for the ended states of v4 (TIMEOUT is one) and
        those of the history; add the attempts table. A row that a v3 table edited by hand let
        hold a value of the wrong type goes to quarantine instead."""
        self._rebuild_jobs(
            db,
            3,
            _V3_NAMES,
            _JOBS_V4_DDL,
            (_JOBS_LIVE, _JOBS_ASKING, _JOBS_FLOW, *_HISTORY_INDEXES_V4),
        )
        db.execute(_ATTEMPTS_DDL)

    def _migrate_4_to_5(self, db: sqlite3.Connection) -> None:
        """Rebuild jobs with owner, "admin" for every row: before version 5 only the cluster's
        key could submit, and it acts as the admin named admin (goq_core.principals.ROOT). The
        history's indexes gain the owner. A row that a v4 table edited by hand let hold a value
        of the wrong type goes to quarantine instead."""
        self._rebuild_jobs(
            db,
            4,
            _V4_NAMES,
            _JOBS_DDL,
            (_JOBS_LIVE, _JOBS_ASKING, _JOBS_FLOW, *_HISTORY_INDEXES),
            fill={"owner": "admin"},
        )

    def _rebuild_jobs(
        self,
        db: sqlite3.Connection,
        version: int,
        names: tuple[str, ...],
        ddl: str,
        indexes: tuple[str, ...],
        fill: dict[str, str] | None = None,
    ) -> None:
        """Replace the jobs table of schema `version` (these columns) with one made by `ddl` and
        `indexes`, copying every row whose values have the right types (with the new text
        columns in `fill` set to its values, the others at their defaults) and quarantining
        the others."""
        old = f"jobs_v{version}"
        db.execute(f"ALTER TABLE jobs RENAME TO {old}")
        db.execute(ddl)
        columns = ", ".join(names)
        filled = "".join(f", {c}" for c in fill or {})
        values = [*(fill or {}).values()]
        fits = " AND ".join(
            f"typeof({c}) = 'integer'"
            if c in _INT_NAMES
            else f"typeof({c}) IN ('integer', 'null')"
            if c == "env_id"
            else f"typeof({c}) = 'text'"
            for c in names
        )
        marks = ", ?" * len(values)
        db.execute(
            f"INSERT INTO jobs ({columns}{filled}) SELECT {columns}{marks} FROM {old} WHERE {fits}",
            values,
        )
        typed = ", ".join(f"typeof({c}), {c}" for c in names)
        now = time.time_ns()
        with _text_as_bytes(db):
            bad = db.execute(f"SELECT rowid, {typed} FROM {old} WHERE NOT ({fits})").fetchall()
        for rowid, *values in bad:
            reason = f"a version {version} row with a value of the wrong type"
            for i, name in enumerate(names):
                try:
                    _typed_value(name, values[2 * i], values[2 * i + 1])
                except _Damaged as e:
                    reason = f"a version {version} row: {e}"
                    break
            db.execute(
                "INSERT INTO quarantine (jobid, row, reason, at_ns) VALUES (?, ?, ?, ?)",
                (rowid, _raw_json(values, names), reason, now),
            )
            self._migrated.append((rowid, reason))
        db.execute(f"DROP TABLE {old}")  # and its index
        for statement in indexes:
            db.execute(statement)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn every failure into a StoreError of one line naming the file, transient when it
        can pass (disk full, read-only, I/O error, busy)."""
        try:
            yield
        except sqlite3.Error as e:
            text = str(e)
            code = getattr(e, "sqlite_errorcode", None) or 0
            if "not a database" in text or "malformed" in text:
                text = f"{text}: the file is corrupt or not an SQLite database"
            transient = (code & 0xFF) in _TRANSIENT_CODES and code != _READONLY_DBMOVED
            if (code & 0xFF) in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
                text += self._why_unwritable()
            raise _store_error(
                f"goq store {self.path}: {doing} failed: {text}", transient
            ) from None
        except (OverflowError, TypeError, ValueError) as e:  # a value SQLite cannot hold
            raise _store_error(f"goq store {self.path}: {doing} failed: {e}") from None
        except OSError as e:
            raise _store_error(
                f"goq store {self.path}: {doing} failed: {e.strerror or e}", transient=True
            ) from None

    def _why_unwritable(self) -> str:
        """Why SQLite may not write the file, as " (...)", or "" if no reason is seen."""
        dirpath = os.path.dirname(self.path)
        try:
            if os.statvfs(dirpath).f_flag & os.ST_RDONLY:
                return " (the file system holding it is mounted read-only)"
            if not os.access(dirpath, os.W_OK):
                return f" (the directory {dirpath} is not writable by this user)"
            if not os.access(self.path, os.W_OK):
                return " (the file is read-only to this user)"
        except OSError:
            pass
        return ""

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise _store_error(f"goq store {self.path} is closed")
        return self._db

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        """Roll back, if a transaction is open; never raises (the first error is the news)."""
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _read_counters(self, db: sqlite3.Connection) -> dict[str, int]:
        counters = dict(db.execute("SELECT name, value FROM counters"))
        for name, value in counters.items():
            if type(name) is not str or type(value) is not int:
                raise _store_error(
                    f"goq store {self.path} is corrupt: counter {name!r} holds {value!r},"
                    " not an integer"
                )
        return counters

    # ------------------------------------------------------------------------------ the contract

    def load(self) -> StoredState:
        """Every job not yet ended, in jobid order, jobs with equal environments sharing one
        list; the counters; the replay guard's nonces. Rows that cannot be turned into a Job
        are moved to quarantine and reported, not loaded (if the move cannot be committed, as
        on a full disk, they are still left out and reported, and the next load moves them)."""
        with self._lock, self._errors("load"), _gc_paused():
            db = self._conn()
            jobs = None
            quarantined: list[tuple[int, str]] = []
            if self._trusted:
                try:
                    jobs = self._load_fast(db)
                except Exception:  # a damaged row: start again, row by row
                    jobs = None
            if jobs is None:
                jobs, damaged = self._load_careful(db)
                if damaged:
                    self._move_to_quarantine(db, damaged)
                    quarantined = [(jobid, reason) for jobid, _, reason in damaged]
            quarantined[:0] = self._migrated
            self._migrated = []
            counters = self._read_counters(db)
            self._counters = dict(counters)
            nonces = [
                (n, t)
                for n, t in db.execute("SELECT nonce, sendtime_ns FROM nonces")
                if type(n) is bytes and type(t) is int
            ]
        return StoredState(jobs=jobs, counters=counters, quarantined=quarantined, nonces=nonces)

    def _load_fast(self, db: sqlite3.Connection) -> list[Job]:
        """The live jobs, trusting STRICT for types; raises on anything odd (then the careful
        reader takes over)."""
        envs = self._live_envs(db)
        asking = self._live_requests(db)
        flows = self._live_flows(db)
        decoded: dict[str, list[int]] = {}  # after and after_any texts, decoded
        strings: dict[str, str] = {}
        same = strings.setdefault  # one str object per distinct value: less memory
        states = _STATES
        jobs = []
        append = jobs.append
        query = f"SELECT {_V2_COLUMNS}, owner FROM jobs WHERE {_LIVE} ORDER BY jobid"
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
            note,
            escaped,
            owner,
        ) in db.execute(query):
            if escaped:
                if escaped != 1:
                    raise ValueError(f"job {jobid}: escaped is {escaped}")
                cmd, args, dir_, host, user, workerid, workerhost, note = (
                    _unescape(n, t)
                    for n, t in zip(
                        _ESCAPABLE[:8],  # resources, gpu_ids: _live_requests; name: below
                        (cmd, args, dir_, host, user, workerid, workerhost, note),
                        strict=True,
                    )
                )
                owner = _unescape("owner", owner)
            if not args:
                arglist: list[str] = []
            elif args[0] == _US:
                arglist = args[1:].split(_US)
            else:
                arglist = _loads(args)
                if not _is_str_list(arglist):
                    raise ValueError(f"job {jobid}: args are not a list of strings")
            job = Job(
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
                note,
                owner=same(owner, owner),
            )  # a request at its defaults: 1 cpu, nothing else, priority 0
            if asking:
                request = asking.get(jobid)
                if request is not None:
                    job.cpus, job.mem, job.gpus, resources, job.priority, job.gpu_ids = request
                    if resources:
                        job.resources = resources.copy()  # shared by equal requests
            if flows:  # workflow fields at their defaults unless given here
                flow = flows.get(jobid)
                if flow is not None:
                    (
                        _,
                        name,
                        after,
                        after_any,
                        job.array_id,
                        job.array_index,
                        job.array_max,
                        job.retries,
                        job.retry_delay_ms,
                        job.retried,
                        job.time_limit_ms,
                        job.out_base,
                    ) = flow
                    if name:
                        if escaped:
                            name = _unescape("name", name)
                        job.name = same(name, name)  # one str for the jobs of an array
                    if after:  # each distinct text decoded once, each job its own list
                        ids = decoded.get(after)
                        if ids is None:
                            ids = decoded[after] = decode_ids(after)
                        job.after = ids.copy()
                    if after_any:
                        ids = decoded.get(after_any)
                        if ids is None:
                            ids = decoded[after_any] = decode_ids(after_any)
                        job.after_any = ids.copy()
            append(job)
        return jobs

    def _live_flows(self, db: sqlite3.Connection) -> dict[int, _Flow]:
        """jobid -> its row (jobid, name, after, after_any as stored, then the eight workflow
        ints) for each live job whose workflow fields are not all at their defaults. Read from
        the jobs_flow index alone, as `_live_requests` does: most jobs are in no workflow, and
        these eleven columns cost them nothing at load."""
        query = f"SELECT jobid, {_FLOW_COLUMNS} FROM jobs WHERE {_LIVE} AND {_FLOWS}"
        return {row[0]: row for row in db.execute(query)}

    def _live_requests(self, db: sqlite3.Connection) -> dict[int, _Request]:
        """jobid -> (cpus, mem, gpus, resources, priority, gpu_ids) of each live job whose
        request is not the default; jobs with equal requests share one tuple (and its dict:
        copy it). Raises on a bad value. Read from the jobs_asking index alone, one row per
        distinct request: reading these six columns of every job in the main query would make
        `load` some 12% slower even when no job asks for anything."""
        requests: dict[int, _Request] = {}
        query = (
            f"SELECT group_concat(jobid), {_REQUEST_COLUMNS} FROM jobs WHERE {_LIVE}"
            f" AND {_ASKS} GROUP BY {_REQUEST_COLUMNS}"
        )
        for ids, cpus, mem, gpus, resources, priority, gpu_ids, escaped in db.execute(query):
            if escaped == 1:
                resources = _unescape("resources", resources)
                gpu_ids = _unescape("gpu_ids", gpu_ids)
            if cpus < 1 or mem < 0 or gpus < 0:
                raise ValueError(f"jobs {ids[:40]}: cpus {cpus}, mem {mem}, gpus {gpus}")
            request = (cpus, mem, gpus, decode_resources(resources), priority, gpu_ids)
            requests.update(dict.fromkeys(map(int, ids.split(",")), request))
        return requests

    def _live_envs(self, db: sqlite3.Connection) -> dict[int | None, list[str]]:
        """env.id -> its entries, for every well-formed environment a live job uses (None:
        empty); a missing or damaged one is left out."""
        envs: dict[int | None, list[str]] = {None: []}
        ids = [r[0] for r in db.execute(f"SELECT DISTINCT env_id FROM jobs WHERE {_LIVE}")]
        ids = [i for i in ids if i is not None]
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            with _text_as_bytes(db):
                rows = db.execute(
                    f"SELECT id, typeof(body), body FROM env WHERE id IN ({marks})", chunk
                ).fetchall()
            for env_id, *typed in rows:
                with suppress(_Damaged):  # then the careful reader says why
                    envs[env_id] = _env_value(env_id, typed)
        return envs

    def _load_careful(self, db: sqlite3.Connection) -> tuple[list[Job], list[tuple[int, str, str]]]:
        """Row by row, every value checked: the live jobs, and the damaged rows as (jobid,
        raw row as JSON, reason)."""
        envs: dict[int, list[str] | str] = {}  # env.id -> entries, or why they are unusable

        def env_of(env_id: int) -> list[str]:
            got = envs.get(env_id)
            if got is None:
                try:
                    got = envs[env_id] = self._careful_env(db, env_id)
                except _Damaged as e:
                    got = envs[env_id] = str(e)
            if type(got) is str:
                raise _Damaged(got)
            return got  # type: ignore[return-value]

        jobs: list[Job] = []
        damaged: list[tuple[int, str, str]] = []
        strings: dict[str, str] = {}
        same = strings.setdefault
        query = f"SELECT rowid, {_TYPED} FROM jobs WHERE {_NOT_SURELY_ENDED} ORDER BY rowid"
        with _text_as_bytes(db):
            for rowid, *typed in db.execute(query):
                try:
                    job = _careful_job(typed, env_of)
                except _Damaged as e:
                    damaged.append((rowid, _raw_json(typed), str(e)))
                    continue
                if job.state in _ENDED_STATES:
                    continue
                job.cmd, job.dir = same(job.cmd, job.cmd), same(job.dir, job.dir)
                job.host, job.user = same(job.host, job.host), same(job.user, job.user)
                jobs.append(job)
        return jobs, damaged

    def _careful_env(self, db: sqlite3.Connection, env_id: int) -> list[str]:
        with _text_as_bytes(db):
            typed = db.execute("SELECT typeof(body), body FROM env WHERE id = ?", (env_id,))
            return _env_value(env_id, typed.fetchone())

    def _move_to_quarantine(
        self, db: sqlite3.Connection, damaged: list[tuple[int, str, str]]
    ) -> None:
        """Move these rows of jobs to quarantine, in one transaction; if that cannot be
        committed (disk full, read-only), leave them where they are: the next load tries again."""
        now = time.time_ns()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO quarantine (jobid, row, reason, at_ns) VALUES (?, ?, ?, ?)",
                [(rowid, row, reason, now) for rowid, row, reason in damaged],
            )
            db.executemany("DELETE FROM jobs WHERE rowid = ?", [(d[0],) for d in damaged])
            db.execute("COMMIT")
        except sqlite3.Error:
            self._rollback(db)

    def save(
        self,
        jobs: Sequence[Job],
        counters: dict[str, int],
        nonces: Sequence[tuple[bytes, int]] = (),
        forget_nonces_before_ns: int = 0,
        attempts: Sequence[Attempt] = (),
    ) -> None:
        """Upsert `jobs` by jobid, set `counters`, add `nonces` (nonce, send time in ns; one
        already stored is kept), forget nonces sent before `forget_nonces_before_ns` (when
        > 0) and upsert `attempts` by (jobid, attempt), in one transaction; returns once
        committed. A failure is a StoreError whose ``transient`` says whether the same save may
        succeed later; the store stays usable."""
        args = (jobs, counters, nonces, forget_nonces_before_ns, attempts)
        with self._lock, self._errors("save"):
            db = self._conn()
            try:
                self._save(db, *args, careful=False)
            except UnicodeEncodeError:  # text that UTF-8 cannot hold (a lone surrogate)
                self._save(db, *args, careful=True)

    def _save(
        self,
        db: sqlite3.Connection,
        jobs: Sequence[Job],
        counters: dict[str, int],
        nonces: Sequence[tuple[bytes, int]],
        forget_nonces_before_ns: int,
        attempts: Sequence[Attempt],
        careful: bool,
    ) -> None:
        known = self._env_ids
        new_envs: dict[tuple[str, ...], int] = {}
        by_list: dict[int, int | None] = {}  # id(env list) -> env.id, valid during this call
        runs: list[tuple[str, list[tuple[Any, ...]]]] = []  # (statement, rows): in job order
        rows: list[tuple[Any, ...]] = []
        last = ""
        flow_of, no_flow = _flow_of, _NO_FLOW
        texts: dict[int, str] = {}  # id(after list) -> its text (an array's jobs may share one)
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
                if careful:
                    row = _careful_row(j, env_id)
                    upsert = _UPSERT_JOB
                else:
                    row = (
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
                        j.note,
                        0,
                        j.cpus,
                        j.mem,
                        j.gpus,
                        encode_resources(j.resources) if j.resources else "",
                        j.priority,
                        j.gpu_ids,
                    )
                    flow = flow_of(j)
                    if flow == no_flow:
                        upsert = _UPSERT_JOB_NO_FLOW
                        row += (j.owner,)
                    else:
                        upsert = _UPSERT_JOB
                        name, after, after_any, *ints = flow
                        row += (name, *_ids_texts(after, after_any, texts), *ints, j.owner)
                if upsert is not last:  # a new run (a job saved twice: its last row wins)
                    rows = []
                    runs.append((upsert, rows))
                    last = upsert
                rows.append(row)
            for upsert, rows in runs:
                db.executemany(upsert, rows)
            if changed:
                db.executemany(_UPSERT_COUNTER, changed)
            if nonces:
                db.executemany(_INSERT_NONCE, nonces)
            if forget_nonces_before_ns > 0:
                db.execute("DELETE FROM nonces WHERE sendtime_ns < ?", (forget_nonces_before_ns,))
            if attempts:
                if careful:
                    db.executemany(_UPSERT_ATTEMPT, map(_careful_attempt_row, attempts))
                else:
                    db.executemany(_UPSERT_ATTEMPT, [(*_attempt_of(a), 0) for a in attempts])
            db.execute("COMMIT")
        except BaseException:
            self._rollback(db)
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
            body = _env_body(env)
            digest = hashlib.blake2b(body.encode(), digest_size=16).digest()
            db.execute(
                "INSERT INTO env (hash, body) VALUES (?, ?) ON CONFLICT DO NOTHING", (digest, body)
            )
            env_id, stored = db.execute(
                "SELECT id, body FROM env WHERE hash = ?", (digest,)
            ).fetchone()
            if stored != body:  # a 128-bit hash collision, or a tampered row: never mix envs
                raise _store_error(f"goq store {self.path}: environment {env_id} does not match")
            new_envs[key] = env_id
        return env_id

    def get_job(self, jobid: int) -> Job | None:
        """The stored record of one job, ended or not (its own copy of every list); None if
        unknown. StoreError, with the reason, for a damaged or quarantined record."""
        if not _INT64_MIN <= jobid <= _INT64_MAX:  # no such job can be stored
            return None
        with self._lock, self._errors("get_job"):
            db = self._conn()
            with _text_as_bytes(db):
                typed = db.execute(
                    f"SELECT {_TYPED} FROM jobs WHERE rowid = ?", (jobid,)
                ).fetchone()
            if typed is None:
                why = db.execute(
                    "SELECT reason FROM quarantine WHERE jobid = ? ORDER BY id DESC LIMIT 1",
                    (jobid,),
                ).fetchone()
                if why is None:
                    return None
                raise _store_error(f"goq store {self.path}: job {jobid} is quarantined: {why[0]}")
            try:
                return _careful_job(typed, lambda env_id: self._careful_env(db, env_id))
            except _Damaged as e:
                raise _store_error(f"goq store {self.path}: job {jobid} is damaged: {e}") from None

    def outcomes(self, ids: Iterable[int]) -> dict[int, tuple[JobState, int]]:
        """(state, exit_status) of each of `ids` stored and ended (FINISHED, CANCELLED,
        TIMEOUT); the others (unknown, not ended, quarantined, damaged) are left out. Reads
        _IN_CHUNK ids per query, in id order."""
        out: dict[int, tuple[JobState, int]] = {}
        states = _STATES
        with self._lock, self._errors("outcomes"):
            db = self._conn()
            wanted = sorted({i for i in ids if _INT64_MIN <= i <= _INT64_MAX})  # none else stored
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                query = (
                    "SELECT jobid, state, exit_status FROM jobs"
                    f" WHERE jobid IN ({marks}) AND state BETWEEN {_ENDED[0]} AND {_ENDED[-1]}"
                )
                for jobid, state, exit_status in db.execute(query, chunk):
                    if type(state) is int and type(exit_status) is int:  # else: damaged
                        out[jobid] = (states[state], exit_status)
        return out

    def quarantine(self, jobid: int, reason: str) -> None:
        """Move job `jobid`'s row to quarantine (the server will not use it), with `reason`;
        nothing if there is no such row. One transaction."""
        if not _INT64_MIN <= jobid <= _INT64_MAX:
            return
        with self._lock, self._errors("quarantine"):
            db = self._conn()
            with _text_as_bytes(db):
                typed = db.execute(
                    f"SELECT {_TYPED} FROM jobs WHERE rowid = ?", (jobid,)
                ).fetchone()
            if typed is None:
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO quarantine (jobid, row, reason, at_ns) VALUES (?, ?, ?, ?)",
                    (jobid, _raw_json(typed), _careful_text(reason), time.time_ns()),
                )
                db.execute("DELETE FROM jobs WHERE rowid = ?", (jobid,))
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise

    def attempts(self, jobid: int) -> list[Attempt]:
        """The saved attempts of job `jobid`, in attempt order; [] if none. StoreError, with
        the reason, if one of them is damaged."""
        if not _INT64_MIN <= jobid <= _INT64_MAX:
            return []
        columns = ", ".join(f"typeof({c}), {c}" for c in (*_ATTEMPT_NAMES[1:], "escaped"))
        with self._lock, self._errors("attempts"):
            db = self._conn()
            with _text_as_bytes(db):
                rows = db.execute(
                    f"SELECT {columns} FROM attempts WHERE jobid = ? ORDER BY attempt", (jobid,)
                ).fetchall()
            out = []
            for typed in rows:
                try:
                    out.append(_careful_attempt(jobid, typed))
                except _Damaged as e:
                    raise _store_error(
                        f"goq store {self.path}: an attempt of job {jobid} is damaged: {e}"
                    ) from None
            return out

    def history(
        self,
        *,
        states: frozenset[str],
        name: str | None,
        since_ns: int,
        before_jobid: int | None,
        limit: int,
        owner: str | None = None,
    ) -> list[Job]:
        """Ended jobs, newest first (jobid descending), at most `limit`: those whose way of
        ending is in `states` (HISTORY_STATES), of name `name` (None: any), ended at `since_ns`
        or later (when > 0), below `before_jobid` (None: any), submitted by `owner` (None:
        any); every field but env (empty). A damaged row is left out.

        Plans, each forced (INDEXED BY) and reading the jobids from an index alone, then the
        rows of those found: when fewer than _WINDOW_MAX jobs ended since `since_ns`, they
        are read by end time (jobs_ended_at) and sorted; else the newest are walked back
        (jobid descending) until `limit` match: those of one name through jobs_ended_name,
        any set with "finished" through jobs_ended, the others through jobs_unsuccessful, one
        state at a time. The owner is in each of these indexes: a history of one owner reads
        no row it does not return. ValueError for a state not in HISTORY_STATES, or `limit`
        over HISTORY_LIMIT_MAX."""
        _check_history(states, limit)
        if before_jobid is not None and before_jobid > _INT64_MAX:
            before_jobid = None
        if limit <= 0 or not states or since_ns > _INT64_MAX:
            return []
        if before_jobid is not None and before_jobid <= _INT64_MIN:
            return []
        terms = [_ENDED_SQL]  # the WHERE of every plan (that of the partial indexes first)
        params: list[Any] = []
        if before_jobid is not None:
            terms.append("jobid < ?")
            params.append(before_jobid)
        if since_ns > 0:
            terms.append("end_ns >= ?")
            params.append(since_ns)
        if owner is not None:
            term, term_params = _text_is("owner", _stored_as(owner))
            terms.append(term)
            params += term_params
        classes = [] if states == HISTORY_STATES else [_CLASS_SQL[s] for s in sorted(states)]
        named = [] if name is None else _stored_as(name)
        with self._lock, self._errors("history"):
            db = self._conn()
            ids: list[int] = []
            if since_ns > 0 and self._window(db, terms, params) < _WINDOW_MAX:
                where = [*terms]
                if classes:
                    where.append(f"({' OR '.join(classes)})")
                where_params = [*params]
                if named:
                    term, term_params = _text_is("name", named)
                    where.append(term)
                    where_params += term_params
                ids = self._history_ids(db, "jobs_ended_at", where, where_params, limit)
            else:
                for index, where, where_params in _walks(terms, params, states, classes, named):
                    ids += self._history_ids(db, index, where, where_params, limit)
                ids = sorted(set(ids), reverse=True)[:limit]
            return self._history_rows(db, ids)

    @staticmethod
    def _window(db: sqlite3.Connection, terms: list[str], params: list[Any]) -> int:
        """How many ended jobs these terms (with since) take, counted up to _WINDOW_MAX."""
        query = (
            "SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_ended_at"
            f" WHERE {' AND '.join(terms)} LIMIT {_WINDOW_MAX})"
        )
        return db.execute(query, params).fetchone()[0]

    @staticmethod
    def _history_ids(
        db: sqlite3.Connection, index: str, where: list[str], params: list[Any], limit: int
    ) -> list[int]:
        query = (
            f"SELECT jobid FROM jobs INDEXED BY {index} WHERE {' AND '.join(where)}"
            f" ORDER BY jobid DESC LIMIT {int(limit)}"
        )
        return [r[0] for r in db.execute(query, params)]

    def _history_rows(self, db: sqlite3.Connection, ids: list[int]) -> list[Job]:
        """The jobs of these ids (env empty), in this order; a damaged row is left out."""
        jobs: dict[int, Job] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            if self._trusted:  # STRICT: every value is of its column's type
                try:
                    query = f"SELECT {_COLUMNS} FROM jobs WHERE jobid IN ({marks})"
                    for row in db.execute(query, chunk).fetchall():
                        jobs[row[0]] = _plain_job(row)
                    continue
                except Exception:  # a damaged row (text not UTF-8, a bad value): one by one
                    pass
            with _text_as_bytes(db):
                rows = db.execute(
                    f"SELECT rowid, {_TYPED} FROM jobs WHERE jobid IN ({marks})", chunk
                ).fetchall()
            for rowid, *typed in rows:
                try:
                    jobs[rowid] = _careful_job(typed, _no_env)
                except _Damaged:
                    jobs.pop(rowid, None)
        return [jobs[i] for i in ids if i in jobs]

    def forget(self, jobids: Iterable[int] = (), before_ns: int = 0) -> int:
        """Remove the ended jobs among `jobids` and, when `before_ns` > 0, every ended job
        whose end_ns is below it, with their attempts, in one transaction; never a job not
        ended. Returns how many jobs were removed. Environments stay, even those no job uses
        any more (each is stored once, shared by all the jobs submitted with it)."""
        wanted = sorted({i for i in jobids if _INT64_MIN <= i <= _INT64_MAX})
        with self._lock, self._errors("forget"):
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                removed: list[int] = []
                for start in range(0, len(wanted), _IN_CHUNK):
                    chunk = wanted[start : start + _IN_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    query = (
                        f"DELETE FROM jobs WHERE jobid IN ({marks}) AND {_ENDED_SQL}"
                        " RETURNING jobid"
                    )
                    removed += [r[0] for r in db.execute(query, chunk).fetchall()]
                if before_ns > 0:
                    removed += self._remove_ended_before(db, min(before_ns, _INT64_MAX), None)
                db.executemany("DELETE FROM attempts WHERE jobid = ?", [(i,) for i in removed])
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise
        return len(removed)

    def prune(self, before_ns: int, limit: int) -> int:
        """Remove at most `limit` ended jobs whose end_ns is below `before_ns`, those that ended
        first, with their attempts, in one short transaction (found through jobs_ended_at);
        returns how many. Environments stay (see `forget`)."""
        if before_ns <= 0 or limit <= 0:
            return 0
        with self._lock, self._errors("prune"):
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                removed = self._remove_ended_before(db, min(before_ns, _INT64_MAX), limit)
                db.executemany("DELETE FROM attempts WHERE jobid = ?", [(i,) for i in removed])
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise
        return len(removed)

    @staticmethod
    def _remove_ended_before(
        db: sqlite3.Connection, before_ns: int, limit: int | None
    ) -> list[int]:
        """Delete the ended jobs whose end_ns is below `before_ns` (at most `limit`, those
        that ended first) inside the open transaction; their jobids."""
        bound = "" if limit is None else f" ORDER BY end_ns LIMIT {int(limit)}"
        query = (
            "DELETE FROM jobs WHERE jobid IN (SELECT jobid FROM jobs INDEXED BY jobs_ended_at"
            f" WHERE {_ENDED_SQL} AND end_ns < ?{bound}) RETURNING jobid"
        )
        return [r[0] for r in db.execute(query, (before_ns,)).fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None


def _ids_texts(after: list[int], after_any: list[int], texts: dict[int, str]) -> tuple[str, str]:
    """`encode_ids` of both lists, each list object encoded once per save (`texts`: by id,
    valid while the jobs being saved hold their lists)."""
    out = []
    for ids in (after, after_any):
        if not ids:
            out.append("")
            continue
        text = texts.get(id(ids))
        if text is None:
            text = texts[id(ids)] = encode_ids(ids)
        out.append(text)
    return out[0], out[1]


def _stored_as(text: str) -> list[tuple[str, int | None]]:
    """The forms in which a text column may hold `text`: (text as stored, escaped: 0, 1, or
    None for a row either way)."""
    escaped = _escape(text)
    if not _utf8_ok(text):
        return [(escaped, 1)]
    if escaped == text:
        return [(text, None)]
    return [(text, 0), (escaped, 1)]


def _text_is(column: str, forms: list[tuple[str, int | None]]) -> tuple[str, list[Any]]:
    """A WHERE term (and its parameters) for `column` holding one of these stored forms."""
    ors, params = [], []
    for text, escaped in forms:
        ors.append(f"{column} = ?" if escaped is None else f"({column} = ? AND escaped = ?)")
        params += [text] if escaped is None else [text, escaped]
    return f"({' OR '.join(ors)})", params


def _check_history(states: frozenset[str], limit: int) -> None:
    unknown = set(states) - HISTORY_STATES
    if unknown:
        raise ValueError(f"unknown history states {sorted(unknown)}: use {sorted(HISTORY_STATES)}")
    if limit > HISTORY_LIMIT_MAX:
        raise ValueError(f"history limit {limit} is over {HISTORY_LIMIT_MAX}")


def _walks(
    terms: list[str],
    params: list[Any],
    states: frozenset[str],
    classes: list[str],
    named: list[tuple[str, int | None]],
) -> Iterator[tuple[str, list[str], list[Any]]]:
    """The index walks (index, WHERE terms, their parameters) whose jobids, each newest first,
    together are the history asked for: see `SqliteStore.history`."""
    picked = [f"({' OR '.join(classes)})"] if classes else []
    if named and named[0][0]:  # one name: its own jobs (the name as stored, escaped or not)
        for text, escaped in named:
            where = [*terms, "name <> ''", "name = ?", *picked]
            if escaped is None:
                yield "jobs_ended_name", where, [*params, text]
            else:
                yield "jobs_ended_name", [*where, "escaped = ?"], [*params, text, escaped]
        return
    unnamed = ["name = ''"] if named else []  # the jobs without a name (not in that index)
    if "finished" in states:
        yield "jobs_ended", [*terms, *picked, *unnamed], params
        return
    for state in sorted(states):
        where = [*terms, _FAILED_SQL, f"state = {_UNSUCCESSFUL_STATE[state]}", *unnamed]
        yield "jobs_unsuccessful", where, params


def _careful_attempt_row(a: Attempt) -> tuple[Any, ...]:
    """An attempt's row for text that UTF-8 may not hold: escaped (outcome, workerid and
    workerhost in `_escape` form, escaped = 1) if one of them cannot be."""
    row = _attempt_of(a)
    texts = [v for n, v in zip(_ATTEMPT_NAMES, row, strict=True) if n in _ATTEMPT_TEXTS]
    if all(type(t) is not str or _utf8_ok(t) for t in texts):
        return (*row, 0)
    return (
        *(
            _escape(v) if n in _ATTEMPT_TEXTS else v
            for n, v in zip(_ATTEMPT_NAMES, row, strict=True)
        ),
        1,
    )


def _careful_attempt(jobid: int, typed: Sequence[Any]) -> Attempt:
    """The Attempt of a row of attempts read as (typeof, value) pairs of its columns after
    jobid (text as bytes), every value checked; _Damaged if none."""
    v: dict[str, Any] = {}
    for i, name in enumerate((*_ATTEMPT_NAMES[1:], "escaped")):
        kind, value = typed[2 * i], typed[2 * i + 1]
        if name in _ATTEMPT_TEXTS:
            if kind != b"text" and kind != "text":
                raise _Damaged(f"{name} is not text")
            try:
                v[name] = value.decode("utf-8") if isinstance(value, bytes) else value
            except UnicodeDecodeError:
                raise _Damaged(f"{name} is not valid UTF-8") from None
        elif kind not in (b"integer", "integer"):
            raise _Damaged(f"{name} is not an integer")
        else:
            v[name] = value
    escaped = v.pop("escaped")
    if escaped not in (0, 1):
        raise _Damaged(f"escaped is {escaped}, not 0 or 1")
    if escaped:
        for name in _ATTEMPT_TEXTS:
            v[name] = _unescape(name, v[name])
    return Attempt(jobid=jobid, **v)


def _careful_text(text: str) -> str:
    """`text` if UTF-8 can hold it, else with its lone surrogates written as \\uXXXX."""
    return text if _utf8_ok(text) else text.encode("utf-8", "backslashreplace").decode()


def _careful_row(j: Job, env_id: int | None) -> tuple[Any, ...]:
    """A job's row for text that UTF-8 may not hold: escaped (see `_escape`) if any of its text
    fields cannot be."""
    texts = (j.cmd, encode_args(j.args), j.dir, j.host, j.user, j.workerid, j.workerhost, j.note)
    texts += (encode_resources(j.resources), j.gpu_ids, j.name, j.owner)
    escaped = not all(type(t) is not str or _utf8_ok(t) for t in texts)
    cmd, args, dir_, host, user, workerid, workerhost, note, resources, gpu_ids, name, owner = (
        (_escape(t) for t in texts) if escaped else texts
    )
    return (
        j.jobid,
        cmd,
        args,
        1 if j.shell else 0,
        dir_,
        env_id,
        host,
        user,
        int(j.state),
        j.attempt,
        workerid,
        workerhost,
        j.pid,
        j.exit_status,
        j.submit_ns,
        j.start_ns,
        j.end_ns,
        j.out_bytes,
        note,
        1 if escaped else 0,
        j.cpus,
        j.mem,
        j.gpus,
        resources,
        j.priority,
        gpu_ids,
        name,
        encode_ids(j.after),
        encode_ids(j.after_any),
        j.array_id,
        j.array_index,
        j.array_max,
        j.retries,
        j.retry_delay_ms,
        j.retried,
        j.time_limit_ms,
        j.out_base,
        owner,
    )


# Migrations from version N to N + 1, each run inside one transaction.
_MIGRATIONS: dict[int, Callable[[SqliteStore, sqlite3.Connection], None]] = {
    1: SqliteStore._migrate_1_to_2,
    2: SqliteStore._migrate_2_to_3,
    3: SqliteStore._migrate_3_to_4,
    4: SqliteStore._migrate_4_to_5,
}


def open_sqlite_store(path: str, create: bool) -> SqliteStore:
    """The plugin factory: sync mode from GOQ_SQLITE_SYNC (NORMAL unless set)."""
    return SqliteStore(path, create, synchronous=os.environ.get("GOQ_SQLITE_SYNC", "NORMAL"))
