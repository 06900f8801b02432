"""The client runtime used by `goq sub`, `stat`, `kill`, `wait`, `hold`, `release`, `workers`,
`drain`, `resume`, `shutdown` and `immolateworkers`: one connection, one request at a time, each
reply checked against its request.

What a job asks for (cpus, mem, gpus, resources, priority) travels in its Job fields: `submit`
takes them as they are set (goq_core.options.Request.apply sets them from the options).

Every failure a user can meet becomes a GoqError with one clear line.

A batch of jobs goes in as many SUBMIT requests as the server's bounds need (goq_core.limits):
at most SUBMIT_CHUNK (<= MAX_JOBS_PER_SUBMIT) jobs and about SUBMIT_CHUNK_BYTES of strings
each. The whole batch is checked before anything is sent, so a job too large for any request
refuses the batch with one line rather than submitting part of it.

Workflows (design.md §7): an array goes as one SUBMIT of one template job whatever its length
(submit_array); sets of job ids travel as idranges text ("1-5,8") in HOLD, RELEASE, CANCEL and
WAIT of many jobs, a set too long for one request's text in several requests; SELECT turns a
job name (or "every job not ended") into such a set.
"""

from __future__ import annotations

import time
from bisect import bisect_right

from goq_core import idranges
from goq_core.errors import (
    BadFrame,
    CodecError,
    FrameTooBig,
    GoqError,
    RemoteError,
    TransportError,
    TransportTimeout,
)
from goq_core.limits import MAX_ARRAY, MAX_FRAME, MAX_JOBS_PER_SUBMIT, MAX_TEXT, SUBMIT_CHUNK_BYTES
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.principals import Secret
from goq_core.wire import Wire, error_text

# Only what `goq sub` and `goq stat` need is imported above (the CLI's fast path); json,
# records and the rest come in with the commands that use them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from goq_core.arrayspec import ArraySpec
    from goq_core.config import Settings
    from goq_core.interfaces import ClientEnd
    from goq_core.jobquery import JobQuery
    from goq_core.records import Attempt

_MS_PER_1000_JOBS = 100  # time the server may take per 1,000 jobs of one request (arrays,
# cancelling many), on top of the send timeout: the server handles such a request in one go
WAIT_HOLD_MS = 5000  # how long one WAIT request may be held by the server
SUBMIT_CHUNK = min(5000, MAX_JOBS_PER_SUBMIT)  # jobs per request in a batch submission
# What a job and a string cost in a SUBMIT beyond their strings' UTF-8 bytes, at most, in
# either codec (capnp: a Job struct of about 30 words with the workflow fields; a pointer and
# padding to 8 bytes a string); a dependency id (after, after-any) costs 8 bytes.
_JOB_BYTES = 320
_STR_BYTES = 16
_ID_BYTES = 8
IDS_TEXT_CHARS = 512 * 1024  # at most this much id text in one request (the server takes
# MAX_TEXT characters a string); a longer set goes in several requests
_REQUEST_BYTES = 4096  # a SUBMIT's own fields, the cipher's and the frame's header, and slack


class Client:
    def __init__(
        self, settings: Settings, key: bytes | Secret, plugins: Plugins | None = None
    ) -> None:
        self.settings = settings
        self.plugins = plugins or Plugins()
        self.wire = Wire.sealing(
            self.plugins.codec(settings.codec),
            lambda k: self.plugins.cipher(settings.cipher, k),
            key,
        )
        self.principal = self.wire.acting  # who this end acts as (ROOT for the root secret)
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
        if reply.kind == Kind.ERROR or reply.kind == Kind.DENIED:
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

    def submit_array(self, template: Job, spec: ArraySpec) -> tuple[int, int]:
        """Submit an array: one request whatever its length, `template` made once per index
        of `spec` by the server, with consecutive ids (its array_max is set to the spec's cap).
        Returns (first id, count). The template is checked as a batch of one is."""
        template.array_max = spec.max_running
        batches([template], 1, SUBMIT_CHUNK_BYTES)  # GoqError if it cannot fit a request
        msg = Message(Kind.SUBMIT, text=spec.wire(), jobs=[template])
        reply = self.call(msg, hold_ms=len(spec) * _MS_PER_1000_JOBS // 1000)
        if reply.kind != Kind.SUBMITTED:
            raise GoqError(f"unexpected reply to submit: {reply.kind.name}")
        return reply.jobid, reply.count

    def stat(self, count: int = 10) -> Message:
        return self.call(Message(Kind.STAT, count=count))

    def cancel(self, jobid: int) -> Message:
        reply = self.call(Message(Kind.CANCEL, jobid=jobid))
        if reply.kind == Kind.NOT_KNOWN:
            raise GoqError(f"job {jobid} is not known to the server")
        return reply

    def cancel_many(self, ranges: list[idranges.Range]) -> Message:
        """Cancel the jobs of `ranges` that have not ended. An ACK: count, how many were
        cancelled; text, what the server said (one sentence per request)."""
        return self._jobs_op(Kind.CANCEL, ranges)

    def hold(self, ranges: list[idranges.Range]) -> Message:
        """Hold the waiting jobs of `ranges` (they run only once released); ACK as cancel_many."""
        return self._jobs_op(Kind.HOLD, ranges)

    def release(self, ranges: list[idranges.Range]) -> Message:
        """Let the held jobs of `ranges` run; ACK as cancel_many."""
        return self._jobs_op(Kind.RELEASE, ranges)

    def _jobs_op(self, kind: Kind, ranges: list[idranges.Range]) -> Message:
        """`kind` (HOLD, RELEASE or CANCEL of many) for every id of `ranges`, in as few requests
        as the id text allows; one ACK summing their counts and joining their texts."""
        verb = kind.name.lower()
        if not ranges:
            raise GoqError(f"no job id given to {verb}")
        count, texts = 0, []
        for text in split_ids_text(ranges):
            many = min(idranges.count(idranges.parse(text)), MAX_ARRAY)  # ranges may be wide
            reply = self.call(Message(kind, jobid=0, text=text), many * _MS_PER_1000_JOBS // 1000)
            if reply.kind == Kind.NOT_KNOWN:
                raise GoqError(reply.text or f"not every job of {text} is known to the server")
            if reply.kind != Kind.ACK:
                raise GoqError(f"unexpected reply to {verb}: {reply.kind.name}")
            count += reply.count
            if reply.text:
                texts.append(reply.text)
        return Message(Kind.ACK, count=count, text="\n".join(texts))

    def select(self, name: str | None) -> list[idranges.Range]:
        """The ids of the jobs named `name` that have not ended, and of those that ended
        recently (the server still holds them); with None, of every job not ended."""
        if name == "":
            raise GoqError("no job name given")
        if name is None:
            reply = self.call(Message(Kind.SELECT, text="", count=1))
        else:
            reply = self.call(Message(Kind.SELECT, text=name))
        if reply.kind == Kind.NOT_KNOWN:
            return []
        if reply.kind != Kind.JOB_IDS:
            raise GoqError(f"unexpected reply to select: {reply.kind.name}")
        return _reply_ids(reply.text)

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

    def wait_many(
        self,
        ranges: list[idranges.Range],
        on_end: Callable[[int, Job | None], None],
        hold_ms: int = WAIT_HOLD_MS,
        deadline: float | None = None,
    ) -> list[idranges.Range]:
        """Block until every job of `ranges` has ended, calling on_end(jobid, record) for each
        as the server reports it (by id within one reply). Each WAIT names the ids not yet seen
        ended and is held until one of them ends; a job whose record the server no longer holds
        in memory is fetched alone (single-id WAIT: the stored record). With a `deadline`
        (time.monotonic()), returns the ids still not ended once a hold passes it with nothing
        ended ([] when all did). GoqError if an id was never a job, or for any failure to reach
        the server."""
        pending = idranges.merge(ranges)
        while pending:
            hold = hold_ms
            if deadline is not None:
                hold = min(hold, max(0, int((deadline - time.monotonic()) * 1000)))
            text = next(split_ids_text(pending))  # a very scattered set: the first part first
            reply = self.call(Message(Kind.WAIT, jobid=0, text=text, wait_ms=hold), hold)
            ended: dict[int, Job | None] = {}
            if reply.kind == Kind.NOT_KNOWN:
                raise GoqError(reply.text or f"a job of {text} is not known to the server")
            if reply.kind == Kind.FINISHED:
                for job in reply.jobs:
                    if _holds(pending, job.jobid):
                        ended[job.jobid] = job
                for jobid in idranges.ids(_reply_ids(reply.text)):
                    if jobid not in ended and _holds(pending, jobid):
                        ended[jobid] = self.wait(jobid)  # ended: its stored record, at once
                if not ended:
                    raise GoqError("the server's reply to wait names none of the jobs waited for")
            elif reply.kind != Kind.NOTHING_YET:
                raise GoqError(f"unexpected reply to wait: {reply.kind.name}")
            for jobid in sorted(ended):
                on_end(jobid, ended[jobid])
            pending = subtract(pending, sorted(ended))
            # out of time once a hold passed with nothing ended (a reply that listed ended
            # jobs may not have listed them all: ask again, holding no longer)
            if not ended and deadline is not None and time.monotonic() >= deadline:
                return pending
        return []

    def jobs(self, query: JobQuery) -> list[Job]:
        """The jobs `query` asks for, newest first (live ones from the server's memory, ended
        ones from its history; no environments)."""
        reply = self.call(Message(Kind.JOBS, text=query.to_text()))
        if reply.kind != Kind.JOB_LIST:
            raise GoqError(f"unexpected reply to jobs: {reply.kind.name}")
        return reply.jobs

    def show(self, jobid: int) -> tuple[Job, list[Attempt], str | None]:
        """Everything about one job: its record (with its environment), every attempt, and the
        path its output is written to. GoqError if the server does not know it."""
        reply = self.call(Message(Kind.SHOW, jobid=jobid))
        if reply.kind == Kind.NOT_KNOWN:
            raise GoqError(reply.text or f"job {jobid} is not known to the server")
        if reply.kind != Kind.JOB_RECORD or len(reply.jobs) != 1:
            raise GoqError(f"unexpected reply to show: {reply.kind.name}")
        try:
            import json

            from goq_core.records import attempt_from_dict

            extra = json.loads(reply.text) if reply.text else {}
            attempts = [attempt_from_dict(a) for a in extra.get("attempts", [])]
        except (ValueError, TypeError) as exc:
            raise GoqError(f"unreadable reply to show: {exc}") from None
        return reply.jobs[0], attempts, extra.get("output_path")

    def forget(self, ranges: list[idranges.Range] | None = None, before_ns: int = 0) -> int:
        """Remove ended jobs from the history: those of `ranges`, or (before_ns) all that
        ended before then. Jobs that have not ended are never removed. How many were."""
        removed = 0
        if before_ns:
            reply = self.call(Message(Kind.FORGET, offset=before_ns))
            return reply.count
        for text in split_ids_text(ranges or []):
            many = min(idranges.count(idranges.parse(text)), MAX_ARRAY)
            reply = self.call(Message(Kind.FORGET, text=text), many * _MS_PER_1000_JOBS // 1000)
            if reply.kind != Kind.ACK:
                raise GoqError(reply.text or f"unexpected reply to forget: {reply.kind.name}")
            removed += reply.count
        return removed

    def workers_document(self) -> dict:
        """The server's WORKER_LIST document: {"workers": [{name, host, state, offer, free,
        jobs, last_heard_sec_ago}, ...]} (docs/scheduling.md describes the fields)."""
        reply = self.call(Message(Kind.WORKERS))
        if reply.kind != Kind.WORKER_LIST:
            raise GoqError(f"unexpected reply to workers: {reply.kind.name}")
        import json

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

    def revoke(self, name: str | None) -> dict[str, int]:
        """Refuse, from now on, the credentials of `name` issued until now (None: change
        nothing); either way, every revoked name with when it was revoked (ns). Admin only."""
        reply = self.call(Message(Kind.REVOKE, text=name or ""))
        if reply.kind != Kind.ACK:
            raise GoqError(f"unexpected reply to revoke: {reply.kind.name}")
        import json

        try:
            revoked = json.loads(reply.text)["revoked"]
        except (ValueError, KeyError, TypeError) as exc:
            raise GoqError(f"unreadable revocation list from the server: {exc}") from None
        return {str(k): int(v) for k, v in revoked.items()}

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


def split_ids_text(ranges: list[idranges.Range], max_chars: int = IDS_TEXT_CHARS) -> Iterator[str]:
    """The idranges text of `ranges` (merged and sorted), in parts of at most about
    `max_chars` characters each (one request's worth); one part for any usual set."""
    parts: list[str] = []
    used = 0
    for a, b in idranges.merge(ranges):
        word = str(a) if a == b else f"{a}-{b}"
        if parts and used + len(word) + 1 > max_chars:
            yield ",".join(parts)
            parts, used = [], 0
        parts.append(word)
        used += len(word) + 1
    if parts:
        yield ",".join(parts)


def subtract(ranges: list[idranges.Range], ended: list[int]) -> list[idranges.Range]:
    """`ranges` (merged, sorted) less the sorted ids `ended`: O(ranges + ended), so waiting
    on 100,000 jobs costs little per reply."""
    out: list[idranges.Range] = []
    i = 0
    for a, b in ranges:
        while i < len(ended) and ended[i] < a:
            i += 1
        start = a
        while i < len(ended) and ended[i] <= b:
            if ended[i] > start:
                out.append((start, ended[i] - 1))
            start = max(start, ended[i] + 1)
            i += 1
        if start <= b:
            out.append((start, b))
    return out


def _holds(ranges: list[idranges.Range], jobid: int) -> bool:
    """Whether `jobid` is in `ranges` (merged, sorted)."""
    i = bisect_right(ranges, (jobid, 1 << 64)) - 1
    return i >= 0 and ranges[i][0] <= jobid <= ranges[i][1]


def _reply_ids(text: str) -> list[idranges.Range]:
    try:
        return idranges.parse(text)
    except ValueError as exc:
        raise GoqError(f"unreadable job ids from the server: {exc}") from None


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
        strings = [job.cmd, job.dir, job.host, job.user, job.note, job.name, *job.args]
        own = _JOB_BYTES + _strings_bytes(strings)
        own += _ID_BYTES * (len(job.after) + len(job.after_any))
        if job.env is not env_of:
            env_of, env_cost = job.env, _strings_bytes(job.env)
            if env_cost > MAX_TEXT:  # else no entry can be longer than MAX_TEXT
                _check_text(_which(i, jobs), [("an environment entry", e) for e in job.env])
        if own > MAX_TEXT:
            named = [("its command", job.cmd), ("its directory", job.dir), ("its note", job.note)]
            named += [("its host", job.host), ("its user", job.user), ("its name", job.name)]
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
