"""goq's Python API: `from goq_core import Client` (docs/python-api.md).

A thin layer over the CLI's own client runtime (goq_core.roles.client.Client): the same
settings ($GOQ_HOME, its settings file, GOQ_* variables), key, transport, codec and cipher
plugins, and the same requests; no subprocess. What it adds is Python's shape: jobs from
argv and keyword options, ids as ints and ranges, records as goq_core.records.JobRecord (the
fields of `--json`), and errors as exceptions carrying the CLI's one-line messages.

Rules:
- Every failure is a GoqError (goq_core.errors) with one line, except a call that is wrong
  for Python (an unknown keyword, a value of the wrong type): TypeError, as Python's own.
  A value out of range is InvalidValue, both a GoqError and a ValueError; a wait that runs
  out of time is WaitTimeout, both a GoqError and a TimeoutError.
- Option values are checked by the parsers `goq sub` uses too (goq_core.options), so the
  messages are the CLI's; nothing here imports goq_cli or click.
- One connection, one request at a time: a Client is not for several threads at once.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from goq_core import idranges
from goq_core.arrayspec import ArraySpec, parse_array
from goq_core.config import ENV_NAMES, Settings, _parse, load_settings
from goq_core.credentials import load_secret
from goq_core.errors import GoqError
from goq_core.jobquery import DEFAULT_LIMIT, MAX_LIST, JobQuery
from goq_core.limits import MAX_INT
from goq_core.messages import Job
from goq_core.options import (
    MAX_JOB_MEM,
    Request,
    Workflow,
    check_job_name,
    parse_amount,
    parse_duration_ms,
    parse_mem,
    parse_named_resource,
    parse_priority,
    parse_retries,
    parse_states,
)
from goq_core.plugins import Plugins
from goq_core.principals import name_problem
from goq_core.records import STATES, JobRecord
from goq_core.roles import client as lowlevel

__all__ = ["Client", "InvalidValue", "WaitTimeout"]

# what submit() takes as **options, as `goq sub` takes them (--after-any: after_any, ...)
OPTIONS = (
    "cpus",
    "gpus",
    "mem",
    "resources",
    "priority",
    "name",
    "after",
    "after_any",
    "retries",
    "retry_delay",
    "time",
    "hold",
)
_SPEC_KEYS = ("cmd", "args", "shell", "cwd", "env")
_ALIASES = {"ip": "jserv_ip", "port": "jserv_port"}  # short names for Client(**overrides)
DEFAULT_SINCE_S = 24 * 3600  # jobs(): the ended jobs it lists ended this recently


class InvalidValue(GoqError, ValueError):
    """A value goq cannot take (a cpus of 0, a duration of "soon", an empty command)."""


class WaitTimeout(GoqError, TimeoutError):
    """wait() ran out of time. `pending`: the ids not ended yet (sorted); `done`: the records
    of those that ended, by id."""

    def __init__(self, message: str, pending: list[int], done: dict[int, JobRecord]) -> None:
        super().__init__(message)
        self.pending = pending
        self.done = done


class Client:
    """A connection to a goq server. `Client()` or `Client.from_env()`: $GOQ_HOME and the
    GOQ_* variables, as the CLI; `Client(home=PATH)`: that home's settings file only (GOQ_*
    variables are not read). Keyword overrides are Settings fields (jserv_ip or ip,
    jserv_port or port, transport, codec, cipher, sendtimeout_ms, ...) or address
    ("tcp://HOST:PORT" or "HOST:PORT")."""

    def __init__(self, home: str | os.PathLike[str] | None = None, **overrides: Any) -> None:
        if home is None:
            env: Mapping[str, str] = os.environ
        else:
            env = {"GOQ_HOME": os.fspath(home)}
        self._settings = _settings(env, overrides)
        key = load_secret(self._settings)
        self._client = lowlevel.Client(self._settings, key, Plugins(lazy=True))
        self._host, self._user = _origin()

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        """Settings as the CLI reads them: $GOQ_HOME's settings file, then GOQ_* variables,
        then `overrides`."""
        return cls(None, **overrides)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def address(self) -> str:
        """The server's address, e.g. tcp://10.0.0.5:1776."""
        return self._settings.address

    def __repr__(self) -> str:
        s = self._settings
        return f"<goq Client {s.address} {s.transport}/{s.codec}/{s.cipher}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        self._client.close()

    # ------------------------------------------------------------------------- submit

    def submit(
        self,
        cmd: str | os.PathLike[str],
        *args: Any,
        shell: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | Iterable[str] | None = None,
        **options: Any,
    ) -> int:
        """Submit one job: `cmd` with `args` (or, with shell, `cmd` and `args` joined by
        spaces as one /bin/sh line), run in `cwd` (default: the current directory) with `env`
        (default: this process's environment). Options as `goq sub`'s. Its id."""
        job = self._job([cmd, *args], shell, _cwd(cwd), _env(env))
        _options(options).apply([job])
        ranges = self._client.submit_many([job])
        return ranges[0][0]

    def submit_many(
        self,
        specs: Iterable[Sequence[Any] | Mapping[str, Any]],
        *,
        shell: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | Iterable[str] | None = None,
        **options: Any,
    ) -> Sequence[int]:
        """Submit many jobs in as few requests as the server's bounds allow (5,000 jobs a
        request). Each spec is an argv (a list or tuple) or a dict {"cmd": ..., "args": [...],
        "shell", "cwd", "env", **options}; the keyword arguments are defaults for every spec.

        Returns the ids, in the order of `specs`: a range when they are consecutive (always,
        for a batch that fits one request; for a larger one, unless another client submitted
        between its requests), else a list. Every spec is checked before any is sent."""
        base_cwd, base_env = _cwd(cwd), _env(env)
        base = _options(options)
        jobs: list[Job] = []
        for i, spec in enumerate(specs):
            if isinstance(spec, Mapping):
                extra = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}
                if "cmd" not in spec:
                    raise TypeError(f"spec {i} has no 'cmd'")
                if isinstance(spec.get("args", ()), (str, bytes)):
                    raise TypeError(f"spec {i}: 'args' is a list of arguments, not a string")
                argv = [spec["cmd"], *spec.get("args", ())]
                job = self._job(
                    argv,
                    bool(spec.get("shell", shell)),
                    _cwd(spec["cwd"]) if spec.get("cwd") is not None else base_cwd,
                    _env(spec["env"]) if spec.get("env") is not None else base_env,
                )
                (_options({**options, **extra}) if extra else base).apply([job])
            elif isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
                raise TypeError(
                    f"spec {i} is a {type(spec).__name__}: give an argv (a list) or a dict "
                    '{"cmd": ..., "args": [...], ...} (a shell line: {"cmd": LINE, "shell": True})'
                )
            else:
                job = self._job(list(spec), shell, base_cwd, base_env)
                base.apply([job])
            jobs.append(job)
        if not jobs:
            return range(0)
        ranges = self._client.submit_many(jobs)
        if len(ranges) == 1:
            first, n = ranges[0]
            return range(first, first + n)
        return [jobid for first, n in ranges for jobid in range(first, first + n)]

    def submit_array(
        self,
        cmd: str | os.PathLike[str],
        *args: Any,
        indexes: range | str | ArraySpec,
        max_running: int | None = None,
        shell: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | Iterable[str] | None = None,
        **options: Any,
    ) -> range:
        """Submit an array: one job per index (a range, or "START-STOP[:STEP][%MAX]" as
        `goq sub --array` takes it), each seeing its index in $GOQ_ARRAY_INDEX, at most
        `max_running` (or %MAX) running at once. One request whatever its length; the ids
        are consecutive: their range."""
        spec = _array_spec(indexes, max_running)
        job = self._job([cmd, *args], shell, _cwd(cwd), _env(env))
        _options(options).apply([job])
        first, n = self._client.submit_array(job, spec)
        return range(first, first + n)

    def _job(self, argv: list[Any], shell: bool, cwd: str, env: list[str]) -> Job:
        words = [_word(w, i) for i, w in enumerate(argv)]
        if not words or not words[0]:
            raise InvalidValue("refusing to submit an empty command")
        for i, word in enumerate(words):
            if "\x00" in word:
                where = "the command" if i == 0 else f"argument {i}"
                raise InvalidValue(
                    f"refusing to submit a NUL character in {where}: exec cannot pass it"
                )
        host, user = self._host, self._user
        if shell:
            return Job(cmd=" ".join(words), shell=True, dir=cwd, env=env, host=host, user=user)
        return Job(cmd=words[0], args=words[1:], dir=cwd, env=env, host=host, user=user)

    # ------------------------------------------------------------------------- wait

    def wait(self, ids: int | Iterable[int] | str, timeout: float | None = None) -> list[JobRecord]:
        """Block until every job of `ids` has ended; their records, in the order given.
        WaitTimeout (a TimeoutError) if they have not all ended within `timeout` seconds;
        GoqError if an id was never a job."""
        order = _id_list(ids)
        ranges = idranges.merge((i, i) for i in order) if order else []
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        done: dict[int, JobRecord] = {}

        def ended(jobid: int, job: Job | None) -> None:
            done[jobid] = self._ended_record(jobid, job)

        pending = self._client.wait_many(ranges, ended, deadline=deadline)
        if pending:
            left = list(idranges.ids(pending))
            raise WaitTimeout(
                f"{len(left):,} of {len(done) + len(left):,} jobs had not ended within "
                f"{timeout:g} s (job {left[0]} among them)",
                left,
                done,
            )
        return [done[jobid] for jobid in order]

    def _ended_record(self, jobid: int, job: Job | None) -> JobRecord:
        if job is None:  # the server had no details: ask for its record
            return self.show(jobid)
        return JobRecord.from_job(job)

    # ------------------------------------------------------------------------- history

    def jobs(
        self,
        state: str | Iterable[str] | None = None,
        name: str | None = None,
        since: float | str | timedelta | datetime | None = None,
        limit: int = DEFAULT_LIMIT,
        before: int | None = None,
        owner: str | None = None,
        mine: bool = False,
    ) -> list[JobRecord]:
        """Jobs, newest first, as `goq jobs`: `state` one of waiting, blocked, held, running,
        finished, failed, cancelled, timeout or all (or several: a list, or "failed,timeout";
        default all); `name` a job name; `since` how long ago (seconds, "7d", a timedelta) or
        when (a datetime) the ended ones ended, "all" for any time (default: 24 h; jobs not
        ended are always listed); `limit` 1 to 10,000; `before` only ids below this (the next
        page after one whose last id it is); `owner` only the jobs of this principal (a
        credential's name), `mine` only those of the principal this client acts as."""
        if state is None:
            states = frozenset(STATES)
        else:
            words = [state] if isinstance(state, str) else list(state)
            if not all(isinstance(w, str) for w in words):
                raise TypeError("state is a state name or a list of them")
            try:
                states = parse_states(",".join(words))
            except ValueError as exc:
                raise InvalidValue(f"invalid value for state: {exc}") from None
        if name is not None:
            try:
                name = check_job_name(name if isinstance(name, str) else str(name))
            except ValueError as exc:
                raise InvalidValue(f"invalid value for name: {exc}") from None
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit is an int, not a {type(limit).__name__}")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidValue(f"invalid value for limit: {limit} is not in 1 to {MAX_LIST:,}")
        if before is not None:
            before = _jobid(before)
        if since is None:
            since = DEFAULT_SINCE_S
        since_ns = 0 if since == "all" else _when_ns("since", since)
        if mine:
            mine_is = self._client.principal.name
            if owner is not None and owner != mine_is:
                raise InvalidValue(f"invalid value for owner: {owner!r} with mine ({mine_is!r})")
            owner = mine_is
        if owner is not None:
            problem = name_problem(owner) if isinstance(owner, str) else "it is not a str"
            if problem is not None:
                raise InvalidValue(f"invalid value for owner: {problem}")
        query = JobQuery(states, name, since_ns, before, limit, owner)
        return [JobRecord.from_job(job) for job in self._client.jobs(query)]

    def show(self, jobid: int) -> JobRecord:
        """Everything about one job, with every attempt (`attempts`) and where its output is
        written (`output_path`). GoqError if the server does not know it."""
        job, attempts, output_path = self._client.show(_jobid(jobid))
        return JobRecord.from_job(job, attempts, output_path)

    def forget(
        self,
        ids: int | Iterable[int] | str | None = None,
        *,
        before: float | str | timedelta | datetime | None = None,
    ) -> int:
        """Remove ended jobs from the history: those of `ids`, or (before) every one that
        ended longer ago than that (seconds, "30d", a timedelta) or before then (a datetime).
        Jobs not ended are never removed. How many were."""
        if (ids is None) == (before is None):
            raise TypeError("forget() takes ids or before=, exactly one of them")
        if before is not None:
            return self._client.forget(before_ns=_when_ns("before", before))
        return self._client.forget(_ranges(ids))

    # ------------------------------------------------------------------------- act on jobs

    def cancel(self, ids: int | Iterable[int] | str) -> int:
        """Cancel the jobs of `ids` not ended yet (a running one is killed on its worker;
        the jobs after it with `after` are cancelled too). How many of them were cancelled;
        GoqError if an id was never a job."""
        return self._jobs_op("cancel_many", ids)

    def hold(self, ids: int | Iterable[int] | str) -> int:
        """Hold the waiting or blocked jobs of `ids`: they run only once released. How many
        were held (running and ended jobs are left as they are)."""
        return self._jobs_op("hold", ids)

    def release(self, ids: int | Iterable[int] | str) -> int:
        """Let the held jobs of `ids` run. How many were released."""
        return self._jobs_op("release", ids)

    def _jobs_op(self, verb: str, ids: int | Iterable[int] | str) -> int:
        ranges = _ranges(ids)
        if not ranges:
            return 0
        next_id = self.stat().get("nextJobId")
        if next_id is not None and ranges[-1][1] >= next_id:
            raise GoqError(f"job {max(ranges[-1][0], next_id)} is not known to the server")
        return getattr(self._client, verb)(ranges).count

    # ------------------------------------------------------------------------- server

    def stat(self) -> dict[str, int]:
        """The server's counters, as `goq stat` prints them (runQlen, waitingJobs, ...)."""
        return dict(self._client.stat(0).counters)

    def workers(self) -> list[dict[str, Any]]:
        """Every worker the server knows, as `goq workers --json` lists them."""
        return self._client.workers()


# ----------------------------------------------------------------------------- settings


def _settings(env: Mapping[str, str], overrides: dict[str, Any]) -> Settings:
    """load_settings(env), then `overrides`, each checked as the CLI checks a GOQ_* value."""
    from dataclasses import replace

    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "address":
            values.update(_address(value))
            continue
        if key == "cred":  # a credential file (as GOQ_CRED / --cred)
            values["cred"] = os.fspath(value)
            continue
        name = _ALIASES.get(key, key)
        if name not in ENV_NAMES:
            known = ", ".join(["address", "cred", *_ALIASES, *ENV_NAMES])
            raise TypeError(f"Client() got an unexpected keyword argument {key!r} (known: {known})")
        values[name] = _parse(name, str(value), f"the {key}= argument")
    settings = load_settings(env)
    return replace(settings, **values) if values else settings


def _address(value: Any) -> dict[str, Any]:
    text = str(value)
    rest = text.removeprefix("tcp://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise InvalidValue(f"address {text!r}: expected tcp://HOST:PORT or HOST:PORT")
    return {
        "jserv_ip": _parse("jserv_ip", host, "the address= argument"),
        "jserv_port": _parse("jserv_port", port, "the address= argument"),
    }


def _origin() -> tuple[str, str]:
    """This host's name and this user's, as a job records them."""
    import pwd

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = os.environ.get("USER") or str(os.getuid())
    return os.uname().nodename, user


# ----------------------------------------------------------------------------- jobs


def _word(value: Any, i: int) -> str:
    """One word of an argv as a str (bytes and paths as the file system encodes them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, os.PathLike)):
        return os.fsdecode(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    where = "the command" if i == 0 else f"argument {i}"
    raise TypeError(f"{where} is a {type(value).__name__}: give str, bytes, a path or a number")


def _cwd(cwd: str | os.PathLike[str] | None) -> str:
    if cwd is None:
        try:
            return os.getcwd()
        except FileNotFoundError:
            raise GoqError(
                "the current directory no longer exists; cd somewhere and submit again"
            ) from None
    path = os.path.abspath(os.fsdecode(cwd))
    if not os.path.isdir(path):
        raise InvalidValue(f"cwd {path!r} is not a directory")
    return path


def _env(env: Mapping[str, str] | Iterable[str] | None) -> list[str]:
    """A job's environment as "NAME=value" entries (default: this process's)."""
    if env is None:
        return [f"{k}={v}" for k, v in os.environ.items()]
    if isinstance(env, (str, bytes)):
        raise TypeError('env is a dict or a list of "NAME=value", not a string')
    if isinstance(env, Mapping):
        entries = [f"{os.fsdecode(k)}={os.fsdecode(v)}" for k, v in env.items()]
    else:
        entries = [os.fsdecode(e) for e in env]
    for entry in entries:
        name = entry.partition("=")[0]
        if "=" not in entry or not name:
            raise InvalidValue(f'env entry {entry!r} is not "NAME=value"')
    return entries


class _Options:
    """submit()'s options, checked: what they set on each job."""

    def __init__(self, request: Request | None = None, flow: Workflow | None = None) -> None:
        self.request, self.flow = request, flow

    def apply(self, jobs: list[Job]) -> None:
        if self.request is not None:
            self.request.apply(jobs)
        if self.flow is not None:
            self.flow.apply(jobs)


_NO_OPTIONS = _Options()


def _options(options: Mapping[str, Any]) -> _Options:
    """The options of a job, checked by `goq sub`'s own parsers (goq_core.options). TypeError
    for an unknown one; InvalidValue (the CLI's line) for a bad value. An option given as None
    is not given."""
    for key in options:
        if key not in OPTIONS:
            import difflib

            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"submit() got an unexpected keyword argument {key!r}{hint} "
                f"(options: {', '.join(OPTIONS)})"
            )
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return _NO_OPTIONS

    def check(key: str, parse: Callable[..., Any], value: Any, *args: Any) -> Any:
        try:
            return parse(value, *args)
        except ValueError as exc:
            raise InvalidValue(f"invalid value for {key}: {exc}") from None

    request = Request(
        cpus=check("cpus", parse_amount, given.get("cpus", 1), 1),
        gpus=check("gpus", parse_amount, given.get("gpus", 0), 0),
        mem=check("mem", parse_mem, given.get("mem", 0), False, MAX_JOB_MEM),
        priority=check("priority", parse_priority, given.get("priority", 0)),
    )
    resources = given.get("resources", {})
    if not isinstance(resources, Mapping):
        raise TypeError(f"resources is a dict {{NAME: N}}, not a {type(resources).__name__}")
    for rname, n in resources.items():
        got, amount = check("resources", parse_named_resource, f"{rname}={n}")
        request.resources[got] = amount
    name = given.get("name")
    if name is not None:
        name = check("name", check_job_name, name if isinstance(name, str) else str(name))
    retries = given.get("retries")
    if retries is not None:
        retries = check("retries", parse_retries, retries)
    delay = given.get("retry_delay")
    if delay is not None:
        if retries is None:
            raise InvalidValue("retry_delay needs retries=N (how many times to retry)")
        delay = _duration_ms("retry_delay", delay, allow_zero=True)
    limit = given.get("time")
    if limit is not None:
        limit = _duration_ms("time", limit)
    hold = given.get("hold", False)
    if not isinstance(hold, bool):
        raise TypeError(f"hold is True or False, not {hold!r}")
    after = [_ranges(given["after"], "after")] if "after" in given else []
    after_any = [_ranges(given["after_any"], "after_any")] if "after_any" in given else []
    try:
        flow = Workflow.from_options(after, after_any, retries, delay, limit, name, hold)
    except ValueError as exc:  # too many dependencies
        raise InvalidValue(str(exc)) from None
    return _Options(request, flow)


def _duration_ms(key: str, value: Any, allow_zero: bool = False) -> int:
    """Seconds (a number), a duration as `goq sub --time` takes it ("10m", "1:30:00"), or a
    timedelta, in ms; InvalidValue with the CLI's line."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(
            f"{key} is seconds, a duration such as '10m', or a timedelta; "
            f"not a {type(value).__name__}"
        )
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, float) and math.isfinite(value) and "e" in text:
        text = format(value, "f")
    try:
        return parse_duration_ms(text, allow_zero)
    except ValueError as exc:
        raise InvalidValue(f"invalid value for {key}: {exc}") from None


def _array_spec(indexes: range | str | ArraySpec, max_running: int | None) -> ArraySpec:
    if isinstance(indexes, ArraySpec):
        text = indexes.describe()
    elif isinstance(indexes, str):
        text = indexes
    elif isinstance(indexes, range):
        if not indexes:
            raise InvalidValue(f"indexes {indexes!r} is empty")
        if indexes.step < 1:
            raise InvalidValue(f"indexes {indexes!r}: the step must be at least 1")
        text = f"{indexes[0]}-{indexes[-1]}:{indexes.step}"
    else:
        raise TypeError(
            f"indexes is a range or 'START-STOP[:STEP][%MAX]', not a {type(indexes).__name__}"
        )
    if max_running is not None:
        if "%" in text:
            raise InvalidValue("give the cap as %MAX in indexes or as max_running, not both")
        text = f"{text}%{max_running}"
    try:
        return parse_array(text)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None


# ----------------------------------------------------------------------------- ids and times


def _jobid(value: Any, what: str = "a job id") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} is an int, not a {type(value).__name__}")
    if not 1 <= value <= MAX_INT:
        raise InvalidValue(f"{value} is not a job id (1 to {MAX_INT})")
    return value


def _ranges(ids: Any, what: str = "ids") -> list[idranges.Range]:
    """Job ids (an int, an iterable of ints, a range, or text "1-5,8") as merged ranges."""
    if isinstance(ids, range) and ids.step == 1:
        if not ids:
            return []
        return [(_jobid(ids[0]), _jobid(ids[-1]))]
    if isinstance(ids, str):
        try:
            ranges = idranges.parse(ids.replace(" ", ""), MAX_INT)
        except ValueError as exc:
            raise InvalidValue(f"invalid value for {what}: {exc}") from None
        if not ranges:
            raise InvalidValue(f"invalid value for {what}: no job id given")
        return ranges
    return idranges.merge((i, i) for i in _id_list(ids, what))


def _id_list(ids: Any, what: str = "ids") -> list[int]:
    """Job ids as a list, in the order given."""
    if isinstance(ids, int) and not isinstance(ids, bool):
        return [_jobid(ids)]
    if isinstance(ids, str):
        return list(idranges.ids(_ranges(ids, what)))
    if isinstance(ids, bytes) or not isinstance(ids, Iterable):
        raise TypeError(f"{what} is a job id or an iterable of them, not a {type(ids).__name__}")
    return [_jobid(i) for i in ids]


def _when_ns(key: str, value: Any) -> int:
    """A moment in ns since the epoch: a datetime (naive: local time), or how long ago
    (seconds, a duration string, a timedelta)."""
    if isinstance(value, datetime):
        return max(0, int(value.timestamp() * 1e9))
    ms = _duration_ms(key, value, allow_zero=True)
    return max(0, time.time_ns() - ms * 1_000_000)
