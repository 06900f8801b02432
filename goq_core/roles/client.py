"""The client runtime used by `goq sub`, `stat`, `kill`, `wait`, `workers`, `drain`, `resume`,
`shutdown` and `immolateworkers`: one connection, one request at a time, each reply checked
against its request.

What a job asks for (cpus, mem, gpus, resources, priority) travels in its Job fields: `submit`
takes them as they are set (goq_cli.resources.Request.apply sets them from the options).

Every failure a user can meet becomes a GoqError with one clear line.

A batch of jobs goes in as many SUBMIT requests as the server's bounds need (goq_core.limits):
at most SUBMIT_CHUNK (<= MAX_JOBS_PER_SUBMIT) jobs and about SUBMIT_CHUNK_BYTES of strings
each. The whole batch is checked before anything is sent, so a job too large for any request
refuses the batch with one line rather than submitting part of it.
"""

from __future__ import annotations

import json
import time

from goq_core.config import Settings
from goq_core.errors import (
    BadFrame,
    CodecError,
    FrameTooBig,
    GoqError,
    RemoteError,
    TransportError,
    TransportTimeout,
)
from goq_core.interfaces import ClientEnd
from goq_core.limits import MAX_FRAME, MAX_JOBS_PER_SUBMIT, MAX_TEXT, SUBMIT_CHUNK_BYTES
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.wire import Wire, error_text

WAIT_HOLD_MS = 5000  # how long one WAIT request may be held by the server
SUBMIT_CHUNK = min(5000, MAX_JOBS_PER_SUBMIT)  # jobs per request in a batch submission
# What a job and a string cost in a SUBMIT beyond their strings' UTF-8 bytes, at most, in
# either codec (capnp: a Job struct of 19 words; a pointer and padding to 8 bytes a string).
_JOB_BYTES = 192
_STR_BYTES = 16
_REQUEST_BYTES = 4096  # a SUBMIT's own fields, the cipher's and the frame's header, and slack


class Client:
    def __init__(self, settings: Settings, key: bytes, plugins: Plugins | None = None) -> None:
        self.settings = settings
        self.plugins = plugins or Plugins()
        self.wire = Wire(
            self.plugins.codec(settings.codec), self.plugins.cipher(settings.cipher, key)
        )
        self.timeout = settings.sendtimeout_ms / 1000
        self._conn: ClientEnd | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, msg: Message, hold_ms: int = 0) -> Message:
        """Send one request and return its reply (raising GoqError for any failure)."""
        if self._conn is None:
            self._conn = self.plugins.transport(self.settings.transport).dial(self.settings.address)
        timeout = self.timeout + hold_ms / 1000
        try:
            packed = self.wire.pack(msg)
        except CodecError as exc:  # a value no request can carry (an int beyond int64...)
            raise GoqError(f"cannot send this request: {exc}") from None
        try:
            frame = self._conn.request(packed, timeout)
        except FrameTooBig as exc:
            raise GoqError(f"cannot send this request: {exc}") from None
        except TransportTimeout:
            raise GoqError(
                f"no reply from the goq server at {self.settings.address} within "
                f"{int(timeout * 1000)} ms: is `goq serve` running there, and does it use the "
                f"same transport ({self.settings.transport})?"
            ) from None
        except TransportError as exc:
            raise GoqError(
                f"cannot reach the goq server at {self.settings.address}: {exc}"
            ) from None
        text = error_text(frame)
        if text is not None:
            raise RemoteError(f"the server at {self.settings.address} {text}")
        try:
            reply = self.wire.unpack(frame)
        except BadFrame as bad:
            raise GoqError(
                f"unreadable reply from the server at {self.settings.address}: {bad}"
            ) from None
        if reply.reply_to != msg.nonce:
            raise GoqError("the server's reply does not answer our request (replayed?)")
        if reply.kind == Kind.ERROR:
            raise RemoteError(f"the server refused the request: {reply.text}")
        if reply.kind == Kind.GOING_AWAY:
            raise GoqError(f"the goq server at {self.settings.address} is shutting down")
        return reply

    # --------------------------------------------------------------------------- commands

    def submit(self, jobs: list[Job]) -> tuple[int, int]:
        """Submit jobs in one request; (first id, count). Jobs after the first that share its
        environment are sent without it (the server fills it in): their `env` is emptied."""
        if not jobs:
            raise GoqError("no job to submit")
        shared = jobs[0].env
        for job in jobs[1:]:
            if job.env == shared:
                job.env = []
        reply = self.call(Message(Kind.SUBMIT, jobs=jobs))
        if reply.kind != Kind.SUBMITTED:
            raise GoqError(f"unexpected reply to submit: {reply.kind.name}")
        return reply.jobid, reply.count

    def submit_many(self, jobs: list[Job], chunk: int = SUBMIT_CHUNK) -> list[tuple[int, int]]:
        """Submit any number of jobs in as few requests as the server's bounds allow: at most
        `chunk` jobs (and MAX_JOBS_PER_SUBMIT) and about SUBMIT_CHUNK_BYTES of strings each
        (each request is one commit). Checks every job before sending any: GoqError, and
        nothing submitted, if one is too large for a request. Returns the id ranges given, as
        (first, count), adjacent ranges merged: other submitters can interleave between
        requests."""
        ranges: list[tuple[int, int]] = []
        for start, end in batches(jobs, min(chunk, MAX_JOBS_PER_SUBMIT), SUBMIT_CHUNK_BYTES):
            first, n = self.submit(jobs[start:end])
            if ranges and ranges[-1][0] + ranges[-1][1] == first:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + n)
            else:
                ranges.append((first, n))
        return ranges

    def stat(self, count: int = 10) -> Message:
        return self.call(Message(Kind.STAT, count=count))

    def cancel(self, jobid: int) -> Message:
        reply = self.call(Message(Kind.CANCEL, jobid=jobid))
        if reply.kind == Kind.NOT_KNOWN:
            raise GoqError(f"job {jobid} is not known to the server")
        return reply

    def wait(self, jobid: int, deadline: float | None = None) -> Job | None:
        """Block until the job ends; its record (None if the server gave no details)."""
        while True:
            reply = self.call(Message(Kind.WAIT, jobid=jobid, wait_ms=WAIT_HOLD_MS), WAIT_HOLD_MS)
            if reply.kind == Kind.NOT_KNOWN:
                raise GoqError(f"job {jobid} is not known to the server")
            if reply.kind == Kind.FINISHED:
                return reply.jobs[0] if reply.jobs else None
            if deadline is not None and time.time() >= deadline:
                raise GoqError(f"job {jobid} has not ended yet")

    def workers_document(self) -> dict:
        """The server's WORKER_LIST document: {"workers": [{name, host, state, offer, free,
        jobs, last_heard_sec_ago}, ...]} (docs/scheduling.md describes the fields)."""
        reply = self.call(Message(Kind.WORKERS))
        if reply.kind != Kind.WORKER_LIST:
            raise GoqError(f"unexpected reply to workers: {reply.kind.name}")
        try:
            doc = json.loads(reply.text)
        except ValueError as exc:
            raise GoqError(f"unreadable worker list from the server: {exc}") from None
        workers = doc.get("workers") if isinstance(doc, dict) else None
        if not isinstance(workers, list) or not all(isinstance(w, dict) for w in workers):
            raise GoqError('unreadable worker list from the server: no "workers" list')
        return doc

    def workers(self) -> list[dict]:
        """Every worker the server knows, as in workers_document()."""
        return self.workers_document()["workers"]

    def drain(self, name: str | None) -> Message:
        """Give worker `name` (None: every worker) no new jobs; its running jobs finish. The
        ACK's text says what happened; GoqError for a worker the server does not know."""
        return self._worker_op(Kind.DRAIN, name)

    def resume(self, name: str | None) -> Message:
        """Undo drain for worker `name` (None: every worker)."""
        return self._worker_op(Kind.RESUME, name)

    def _worker_op(self, kind: Kind, name: str | None) -> Message:
        if name == "":
            raise GoqError("no worker name given")
        if name is None:
            reply = self.call(Message(kind, count=1))
        else:
            reply = self.call(Message(kind, text=name))
        if reply.kind == Kind.NOT_KNOWN:
            raise GoqError(f"no worker named {name!r} is known to the server (see `goq workers`)")
        if reply.kind != Kind.ACK:
            raise GoqError(f"unexpected reply to {kind.name.lower()}: {reply.kind.name}")
        return reply

    def shutdown(self) -> Message:
        return self.call(Message(Kind.SHUTDOWN))

    def immolate(self) -> Message:
        return self.call(Message(Kind.IMMOLATE))


def batches(jobs: list[Job], max_jobs: int, max_bytes: int) -> list[tuple[int, int]]:
    """How to cut `jobs` into SUBMIT requests: (start, end) slices of at most `max_jobs` jobs
    whose estimated size stays within `max_bytes` (a job larger than that goes alone). A job's
    environment counts only when it differs from its request's first job's (Client.submit sends
    it once). GoqError if a job, alone, could not fit in a frame (MAX_FRAME) or has a string
    longer than the server takes (MAX_TEXT characters)."""
    spans: list[tuple[int, int]] = []
    start = used = 0
    shared: list[str] | None = None  # the environment of the request's first job
    env_of: list[str] | None = None  # the environment whose size env_cost is
    env_cost = 0
    for i, job in enumerate(jobs):
        strings = [job.cmd, job.dir, job.host, job.user, job.note, *job.args]
        own = _JOB_BYTES + _strings_bytes(strings)
        if job.env is not env_of:
            env_of, env_cost = job.env, _strings_bytes(job.env)
            if env_cost > MAX_TEXT:  # else no entry can be longer than MAX_TEXT
                _check_text(_which(i, jobs), [("an environment entry", e) for e in job.env])
        if own > MAX_TEXT:
            named = [("its command", job.cmd), ("its directory", job.dir), ("its note", job.note)]
            named += [("its host", job.host), ("its user", job.user)]
            _check_text(_which(i, jobs), named + [("an argument", a) for a in job.args])
        alone = own + env_cost
        if alone + _REQUEST_BYTES > MAX_FRAME:
            raise GoqError(
                f"{_which(i, jobs)} is about {alone:,} bytes encoded, over the limit of "
                f"{MAX_FRAME:,} bytes that one request may carry"
            )
        same_env = job.env is shared or job.env == shared
        cost = own if same_env else alone
        if i > start and (i - start >= max_jobs or used + cost > max_bytes):
            spans.append((start, i))
            start, used = i, 0
        if i == start:
            shared, cost = job.env, alone
        used += cost
    if start < len(jobs):
        spans.append((start, len(jobs)))
    return spans


def _text_bytes(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def _strings_bytes(strings: list[str]) -> int:
    return sum(map(_text_bytes, strings)) + _STR_BYTES * len(strings)


def _which(i: int, jobs: list[Job]) -> str:
    return "the job" if len(jobs) == 1 else f"job {i + 1} of {len(jobs)}"


def _check_text(which: str, named: list[tuple[str, str]]) -> None:
    """GoqError if a string of `named` ((what it is, string) pairs) is longer than the server
    takes (MAX_TEXT characters)."""
    what, longest = max(named, key=lambda pair: len(pair[1]))
    if len(longest) > MAX_TEXT:
        raise GoqError(
            f"{which} has {what} of {len(longest):,} characters, over the limit of "
            f"{MAX_TEXT:,} that the server takes"
        )
