"""The `capnp` codec: Message <-> Cap'n Proto bytes, with the schema goq.capnp shipped beside
this module. pycapnp is imported and the schema loaded only when a codec is made.

Hostile input is bounded by a traversal limit in proportion to the frame's size and a check
that lists of jobs, counters and (all jobs' together) resources are no longer than honest
elements could fill; every pycapnp failure comes out as CodecError.

Every str travels losslessly, lone surrogates included (what Python makes of undecodable bytes
in argv, environments and paths): as capnp Data holding `s.encode("utf-8", "surrogatepass")`,
not as Text, which must be valid UTF-8. Decoding takes exactly that form back and refuses other
bytes (invalid UTF-8) with CodecError, as the raw codec does. A job's resources travel as a
list of Counter (name, value) pairs; a repeated name is a CodecError, as in the raw codec.
A job's `after` and `after_any` travel as List(Int64); a negative id is a CodecError both ways.

Fields are added to the schema with new ordinals, so a peer built before them reads the message
and silently goes without them: unlike raw, this codec has no format version to refuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goq_core.errors import CodecError
from goq_core.messages import Job, JobState, Kind, Message

SCHEMA_PATH = Path(__file__).with_name("goq.capnp")
_KINDS = {int(k): k for k in Kind}
_STATES = {int(s): s for s in JobState}
_BYTES = (bytes, bytearray, memoryview)
_SLACK_WORDS = 64  # traversal allowance beyond the message's own size
_UTF8 = "utf-8"
_SURR = "surrogatepass"  # lone surrogates (from undecodable argv bytes) survive


def load_schema(path: Path = SCHEMA_PATH) -> Any:
    """The compiled schema module. A syntax error in the file aborts the interpreter (pycapnp
    does that), which is why the tests load it in a subprocess first."""
    import capnp

    return capnp.load(str(path))


class CapnpCodec:
    """Encodes by setting fields one by one (several times faster than new_message(**dict)),
    leaving fields at their default unset."""

    __slots__ = ("_message", "_list_words")
    name = "capnp"

    def __init__(self, schema: Any | None = None) -> None:
        schema = schema if schema is not None else load_schema()
        self._message = schema.Message
        # the words each element of a list of jobs or counters occupies in an honest message
        self._list_words = (_struct_words(schema.Job), _struct_words(schema.Counter))

    def encode(self, msg: Message) -> bytes:
        """The bytes of `msg`; CodecError if a field does not fit (int beyond int64, not a str)."""
        try:
            return self._build(msg).to_bytes()
        except Exception as exc:  # pycapnp raises KjException, TypeError, UnicodeError...
            raise CodecError(f"cannot encode message: {_one_line(exc)}") from None

    def _build(self, msg: Message) -> Any:
        for blob in (msg.nonce, msg.reply_to, msg.data):
            if not isinstance(blob, _BYTES):  # pycapnp would quietly take a str as Data
                raise TypeError(f"a Data field holds {type(blob).__name__}, not bytes")
        m = self._message.new_message()
        m.kind = int(msg.kind)
        if msg.nonce:
            m.nonce = msg.nonce
        if msg.sendtime_ns:
            m.sendtimeNs = msg.sendtime_ns
        if msg.reply_to:
            m.replyTo = msg.reply_to
        if msg.workerid:
            m.workerid = msg.workerid.encode(_UTF8, _SURR)
        if msg.host:
            m.host = msg.host.encode(_UTF8, _SURR)
        if msg.jobid:
            m.jobid = msg.jobid
        if msg.attempt:
            m.attempt = msg.attempt
        if msg.count:
            m.count = msg.count
        if msg.wait_ms:
            m.waitMs = msg.wait_ms
        if msg.offset:
            m.offset = msg.offset
        if msg.data:
            m.data = msg.data
        if msg.text:
            m.text = msg.text.encode(_UTF8, _SURR)
        jobs = msg.jobs
        if jobs:
            built = m.init("jobs", len(jobs))
            for i, job in enumerate(jobs):
                _build_job(built[i], job)
        if msg.counters:
            _build_named(m, "counters", msg.counters)
        return m

    def decode(self, data: bytes) -> Message:
        """The Message in `data`; CodecError for anything malformed (never another exception)."""
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise CodecError(f"expected bytes, got {type(data).__name__}")
            data = bytes(data)
        if len(data) < 8 or len(data) % 8:
            raise CodecError(f"capnp message of {len(data)} bytes (a multiple of 8 is needed)")
        # _read follows each pointer once, so an honest message traverses about its own size;
        # a hostile one (aliased pointers, zero-sized list elements) is cut off there.
        limit = len(data) // 8 + _SLACK_WORDS
        try:
            with self._message.from_bytes(data, traversal_limit_in_words=limit) as r:
                return _read(r, len(data) // 8, *self._list_words)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(f"malformed capnp message: {_one_line(exc)}") from None


def _build_job(b: Any, job: Job) -> None:
    if job.jobid:
        b.jobid = job.jobid
    if job.cmd:
        b.cmd = job.cmd.encode(_UTF8, _SURR)
    if job.args:
        b.args = [a.encode(_UTF8, _SURR) for a in job.args]
    if job.shell:
        b.shell = True
    if job.dir:
        b.dir = job.dir.encode(_UTF8, _SURR)
    if job.env:
        b.env = [e.encode(_UTF8, _SURR) for e in job.env]
    if job.host:
        b.host = job.host.encode(_UTF8, _SURR)
    if job.user:
        b.user = job.user.encode(_UTF8, _SURR)
    if job.state:
        b.state = int(job.state)
    if job.attempt:
        b.attempt = job.attempt
    if job.workerid:
        b.workerid = job.workerid.encode(_UTF8, _SURR)
    if job.workerhost:
        b.workerhost = job.workerhost.encode(_UTF8, _SURR)
    if job.pid:
        b.pid = job.pid
    if job.exit_status:
        b.exitStatus = job.exit_status
    if job.submit_ns:
        b.submitNs = job.submit_ns
    if job.start_ns:
        b.startNs = job.start_ns
    if job.end_ns:
        b.endNs = job.end_ns
    if job.out_bytes:
        b.outBytes = job.out_bytes
    if job.note:
        b.note = job.note.encode(_UTF8, _SURR)
    if job.cpus != 1:  # the schema's default
        b.cpus = job.cpus
    if job.mem:
        b.mem = job.mem
    if job.gpus:
        b.gpus = job.gpus
    if job.resources:
        _build_named(b, "resources", job.resources)
    if job.priority:
        b.priority = job.priority
    if job.gpu_ids:
        b.gpuIds = job.gpu_ids.encode(_UTF8, _SURR)
    if job.name:
        b.name = job.name.encode(_UTF8, _SURR)
    if job.after:
        b.after = _job_ids(job.after)
    if job.after_any:
        b.afterAny = _job_ids(job.after_any)
    if job.array_id:
        b.arrayId = job.array_id
    if job.array_index:
        b.arrayIndex = job.array_index
    if job.array_max:
        b.arrayMax = job.array_max
    if job.retries:
        b.retries = job.retries
    if job.retry_delay_ms:
        b.retryDelayMs = job.retry_delay_ms
    if job.retried:
        b.retried = job.retried
    if job.time_limit_ms:
        b.timeLimitMs = job.time_limit_ms
    if job.out_base:
        b.outBase = job.out_base
    if job.owner:
        b.owner = job.owner.encode(_UTF8, _SURR)


def _job_ids(ids: list[int]) -> list[int]:
    """`ids` if none is negative (pycapnp refuses what does not fit an Int64)."""
    if min(ids) < 0:
        raise ValueError("a job id in after/after_any is negative")
    return ids


def _struct_words(struct_module: Any) -> int:
    node = struct_module.schema.node.struct
    return max(1, node.dataWordCount + node.pointerCount)


def _read(r: Any, words: int, job_words: int, counter_words: int) -> Message:
    # r._get("kind") is 2-4x faster than r.kind, which pycapnp serves from __getattr__ only
    # after the ordinary attribute lookup has failed
    get = r._get
    kind = _KINDS.get(get("kind"))
    if kind is None:
        raise CodecError(f"unknown message kind {get('kind')}")
    # Lists of zero-sized structs cost one word each to traverse but a whole Job or counter in
    # Python: refuse lists longer than honest elements could fill.
    jobs = get("jobs")
    counters_r = get("counters")
    if len(jobs) * job_words > words or len(counters_r) * counter_words > words:
        raise CodecError("capnp list longer than the message could hold")
    # each pointer is read once: see decode
    counters = _named(counters_r, "counter")
    # every job's resources together: each job may hold a list as long as the message allows
    budget = words
    out_jobs = []
    for j in jobs:
        resources_r = j._get("resources")
        budget -= len(resources_r) * counter_words
        if budget < 0:
            raise CodecError("capnp list longer than the message could hold")
        out_jobs.append(_read_job(j, resources_r))
    return Message(
        kind=kind,
        nonce=bytes(get("nonce")),
        sendtime_ns=get("sendtimeNs"),
        reply_to=bytes(get("replyTo")),
        workerid=get("workerid").decode(_UTF8, _SURR),
        host=get("host").decode(_UTF8, _SURR),
        jobid=get("jobid"),
        attempt=get("attempt"),
        count=get("count"),
        wait_ms=get("waitMs"),
        offset=get("offset"),
        data=bytes(get("data")),
        text=get("text").decode(_UTF8, _SURR),
        jobs=out_jobs,
        counters=counters,
    )


def _build_named(builder: Any, field: str, named: dict[str, int]) -> None:
    """Fill the List(Counter) `field` of `builder` from name -> value (the inverse of _named)."""
    built = builder.init(field, len(named))
    for i, (name, value) in enumerate(named.items()):
        c = built[i]
        c.name = name.encode(_UTF8, _SURR)
        c.value = value


def _named(items: Any, what: str) -> dict[str, int]:
    """A dict from a list of Counter; CodecError if a name repeats."""
    pairs = [(c._get("name").decode(_UTF8, _SURR), c._get("value")) for c in items]
    named = dict(pairs)
    if len(named) != len(pairs):
        raise CodecError(f"capnp message repeats a {what} name")
    return named


def _read_job(j: Any, resources_r: Any) -> Job:
    get = j._get
    state = _STATES.get(get("state"))
    if state is None:
        raise CodecError(f"unknown job state {get('state')}")
    return Job(
        jobid=get("jobid"),
        cmd=get("cmd").decode(_UTF8, _SURR),
        args=[a.decode(_UTF8, _SURR) for a in get("args")],
        shell=get("shell"),
        dir=get("dir").decode(_UTF8, _SURR),
        env=[e.decode(_UTF8, _SURR) for e in get("env")],
        host=get("host").decode(_UTF8, _SURR),
        user=get("user").decode(_UTF8, _SURR),
        state=state,
        attempt=get("attempt"),
        workerid=get("workerid").decode(_UTF8, _SURR),
        workerhost=get("workerhost").decode(_UTF8, _SURR),
        pid=get("pid"),
        exit_status=get("exitStatus"),
        submit_ns=get("submitNs"),
        start_ns=get("startNs"),
        end_ns=get("endNs"),
        out_bytes=get("outBytes"),
        note=get("note").decode(_UTF8, _SURR),
        cpus=get("cpus"),
        mem=get("mem"),
        gpus=get("gpus"),
        resources=_named(resources_r, "resource") if len(resources_r) else {},
        priority=get("priority"),
        gpu_ids=get("gpuIds").decode(_UTF8, _SURR),
        name=get("name").decode(_UTF8, _SURR),
        after=_read_ids(get("after")),
        after_any=_read_ids(get("afterAny")),
        array_id=get("arrayId"),
        array_index=get("arrayIndex"),
        array_max=get("arrayMax"),
        retries=get("retries"),
        retry_delay_ms=get("retryDelayMs"),
        retried=get("retried"),
        time_limit_ms=get("timeLimitMs"),
        out_base=get("outBase"),
        owner=get("owner").decode(_UTF8, _SURR),
    )


def _read_ids(ids_r: Any) -> list[int]:
    """The job ids of a List(Int64); CodecError if one is negative."""
    if not len(ids_r):
        return []
    ids = list(ids_r)
    if min(ids) < 0:
        raise CodecError("negative job id in capnp message")
    return ids


def _one_line(exc: BaseException) -> str:
    """pycapnp messages carry a stack dump after the first line; keep only the first."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
