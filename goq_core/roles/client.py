"""The client runtime used by `goq sub`, `stat`, `kill`, `wait`, `shutdown` and
`immolateworkers`: one connection, one request at a time, each reply checked against its request.

Every failure a user can meet becomes a GoqError with one clear line.
"""

from __future__ import annotations

import time

from goq_core.config import Settings
from goq_core.errors import BadFrame, GoqError, RemoteError, TransportError, TransportTimeout
from goq_core.interfaces import ClientEnd
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.wire import Wire, error_text

WAIT_HOLD_MS = 5000  # how long one WAIT request may be held by the server
SUBMIT_CHUNK = 5000  # jobs per request in a batch submission


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
            frame = self._conn.request(self.wire.pack(msg), timeout)
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
        """Submit any number of jobs, `chunk` per request (each request is one commit, and no
        frame nears the size limit). Returns the id ranges given, as (first, count), adjacent
        ranges merged: other submitters can interleave between chunks."""
        ranges: list[tuple[int, int]] = []
        for start in range(0, len(jobs), chunk):
            first, n = self.submit(jobs[start : start + chunk])
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

    def shutdown(self) -> Message:
        return self.call(Message(Kind.SHUTDOWN))

    def immolate(self) -> Message:
        return self.call(Message(Kind.IMMOLATE))
