"""The codec contract, checked the same way against `raw` and `capnp`: every field of every
kind survives a round trip (any str, lone surrogates included: undecodable bytes from argv,
environments and paths), and malformed bytes raise CodecError and nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct
import subprocess
import sys
import time

import pluggy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import goq_codecs.plugin
from goq_codecs.capnp_codec import SCHEMA_PATH, CapnpCodec, load_schema
from goq_codecs.raw import _HEAD, VERSION, RawCodec
from goq_core import hookspecs
from goq_core.errors import CodecError
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.plugins import Plugins, register_builtin

INT64 = st.integers(-(2**63), 2**63 - 1)
JOB_ID = st.integers(0, 2**63 - 1)  # what after/after_any hold
# any code point, lone surrogates included (hypothesis leaves category Cs out by default)
TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
BLOB = st.binary(max_size=300)
FAST = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

jobs = st.builds(
    Job,
    jobid=INT64,
    cmd=TEXT,
    args=st.lists(TEXT, max_size=6),
    shell=st.booleans(),
    dir=TEXT,
    env=st.lists(TEXT, max_size=50),
    host=TEXT,
    user=TEXT,
    state=st.sampled_from(JobState),
    attempt=INT64,
    workerid=TEXT,
    workerhost=TEXT,
    pid=INT64,
    exit_status=INT64,
    submit_ns=INT64,
    start_ns=INT64,
    end_ns=INT64,
    out_bytes=INT64,
    note=TEXT,
    cpus=INT64,
    mem=INT64,
    gpus=INT64,
    resources=st.dictionaries(TEXT, INT64, max_size=4),
    priority=INT64,
    gpu_ids=TEXT,
    name=TEXT,
    after=st.lists(JOB_ID, max_size=6),
    after_any=st.lists(JOB_ID, max_size=6),
    array_id=INT64,
    array_index=INT64,
    array_max=INT64,
    retries=INT64,
    retry_delay_ms=INT64,
    retried=INT64,
    time_limit_ms=INT64,
    out_base=INT64,
)
messages = st.builds(
    Message,
    kind=st.sampled_from(Kind),
    nonce=BLOB,
    sendtime_ns=INT64,
    reply_to=BLOB,
    workerid=TEXT,
    host=TEXT,
    jobid=INT64,
    attempt=INT64,
    count=INT64,
    wait_ms=INT64,
    offset=INT64,
    data=BLOB,
    text=TEXT,
    jobs=st.lists(jobs, max_size=3),
    counters=st.dictionaries(TEXT, INT64, max_size=8),
)


@functools.cache
def loaded_schema():
    """Loaded on first use, not at collection: see test_capnp_schema_loads_in_a_subprocess."""
    return load_schema()


@pytest.fixture
def schema():
    return loaded_schema()


@pytest.fixture(params=["raw", "capnp"])
def codec(request, schema):
    return RawCodec() if request.param == "raw" else CapnpCodec(schema)


def typical_job_message() -> Message:
    env = [f"VAR{i}=/usr/local/share/value-{i}" for i in range(40)]
    job = Job(jobid=7, cmd="make", args=["-j2", "all"], dir="/home/al/src", env=env,
              host="h1", user="al", state=JobState.RUNNING, attempt=1, workerid="w1",
              workerhost="h2", submit_ns=1_700_000_000_000_000_000)  # fmt: skip
    return Message(Kind.JOB, nonce=b"n" * 16, sendtime_ns=1_700_000_000_000_000_001,
                   reply_to=b"r" * 16, jobs=[job], attempt=1)  # fmt: skip


def every_field_set() -> Message:
    """A message with every field of Message and Job away from its default."""
    job = Job(jobid=-1, cmd="c", args=["a", ""], shell=True, dir="d", env=["E=1"], host="h",
              user="u", state=JobState.CANCELLED, attempt=3, workerid="w", workerhost="wh",
              pid=99, exit_status=-9, submit_ns=1, start_ns=2, end_ns=3, out_bytes=4,
              note="n", cpus=0, mem=2**40, gpus=2, resources={"lic": 1, "a=b": -(2**63)},
              priority=-5, gpu_ids="0,2", name="nm\udce9", after=[0, 2**63 - 1],
              after_any=[5], array_id=11, array_index=12, array_max=13, retries=14,
              retry_delay_ms=15, retried=16, time_limit_ms=17, out_base=-18,
              owner="ön\udce9")  # fmt: skip
    msg = Message(Kind.STATUS, nonce=b"\x00\x01", sendtime_ns=5, reply_to=b"\xff", workerid="w",
                  host="h", jobid=6, attempt=7, count=8, wait_ms=9, offset=10, data=b"d",
                  text="t", jobs=[job, Job()], counters={"a": 1, "b": -(2**63)})  # fmt: skip
    for obj in (msg, job):
        defaults = type(obj)(Kind.ACK) if obj is msg else Job()
        for f in dataclasses.fields(obj):
            assert getattr(obj, f.name) != getattr(defaults, f.name), f.name
    return msg


# --- round trips -----------------------------------------------------------------------------


@FAST
@given(msg=messages)
def test_any_message_survives_a_round_trip(msg: Message) -> None:
    for codec in (RawCodec(), CapnpCodec(loaded_schema())):
        assert codec.decode(codec.encode(msg)) == msg


def test_every_field_of_message_and_job_survives(codec) -> None:
    msg = every_field_set()
    back = codec.decode(codec.encode(msg))
    assert back == msg
    assert type(back.kind) is Kind and type(back.jobs[0].state) is JobState
    assert back.jobs[0].shell is True and back.jobs[1].shell is False


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_survives(codec, kind: Kind) -> None:
    msg = dataclasses.replace(every_field_set(), kind=kind)
    assert codec.decode(codec.encode(msg)).kind is kind


def test_default_message_survives(codec) -> None:
    assert codec.decode(codec.encode(Message(Kind.NOTHING_YET))) == Message(Kind.NOTHING_YET)


def test_large_data_survives(codec) -> None:
    msg = Message(Kind.OUTPUT, data=bytes(range(256)) * 8192, offset=2**40)  # 2 MiB
    assert codec.decode(codec.encode(msg)) == msg


def test_unicode_and_nul_in_strings_survive(codec) -> None:
    weird = ["", "\x00", "a\x00b", "é", "日本語", "🚀", "\x00\x00"]
    job = Job(cmd="ünï", args=weird, env=weird, dir="\x00")
    msg = Message(Kind.SUBMIT, text="naïve 🚀", jobs=[job], counters={"\x00": 1, "é": 2})
    assert codec.decode(codec.encode(msg)) == msg


def test_many_jobs_survive(codec) -> None:
    msg = Message(Kind.STATUS, jobs=[typical_job_message().jobs[0]] * 500)
    assert codec.decode(codec.encode(msg)) == msg


def test_raw_carries_lone_surrogates_from_undecodable_argv() -> None:
    arg = b"caf\xe9".decode("utf-8", "surrogateescape")  # what sys.argv holds for Latin-1 bytes
    msg = Message(Kind.SUBMIT, jobs=[Job(cmd="ls", args=[arg, "\ud800"])])
    back = RawCodec().decode(RawCodec().encode(msg))
    assert back == msg
    assert back.jobs[0].args[0].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_lone_surrogates_from_undecodable_bytes_survive_in_every_string_field(codec) -> None:
    """What Linux hands Python for non-UTF-8 argv, environment and paths reaches the other side
    exactly (capnp used to refuse it: Text must be UTF-8)."""
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")  # sys.argv for Latin-1 bytes
    env = "V=" + b"\xff\xfe".decode("utf-8", "surrogateescape")
    path = "/tmp/" + b"d\xe9".decode("utf-8", "surrogateescape")
    odd = ["\ud800", "\udfff", "\ud83d\ude80", "a\udc80\x00b"]  # any lone surrogate, NUL
    job = Job(cmd=latin1, args=[latin1, *odd], dir=path, env=[env, *odd], host=latin1,
              user=latin1, workerid=latin1, workerhost=latin1, note=path, gpu_ids=latin1,
              name=latin1)  # fmt: skip
    msg = Message(Kind.SUBMIT, workerid=latin1, host=latin1, text=path, jobs=[job],
                  counters={latin1: 1})  # fmt: skip
    back = codec.decode(codec.encode(msg))
    assert back == msg
    assert back.jobs[0].args[0].encode("utf-8", "surrogateescape") == b"caf\xe9"
    assert back.jobs[0].env[0].encode("utf-8", "surrogateescape") == b"V=\xff\xfe"
    assert os.fsencode(back.jobs[0].dir) == b"/tmp/d\xe9"


@FAST
@given(value=TEXT, values=st.lists(TEXT, max_size=4))
def test_any_str_survives_in_job_and_message_fields(value: str, values: list[str]) -> None:
    job = Job(cmd=value, args=values, dir=value, env=values, host=value, user=value,
              workerid=value, workerhost=value, note=value, gpu_ids=value,
              name=value)  # fmt: skip
    msg = Message(Kind.STATUS, workerid=value, host=value, text=value, jobs=[job],
                  counters=dict.fromkeys(values, 1))  # fmt: skip
    for codec in (RawCodec(), CapnpCodec(loaded_schema())):
        assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_int_beyond_int64_is_a_codec_error_on_encode(codec, value: int) -> None:
    with pytest.raises(CodecError):
        codec.encode(Message(Kind.ACK, jobid=value))
    with pytest.raises(CodecError):
        codec.encode(Message(Kind.JOB, jobs=[Job(exit_status=value)]))


def test_wrong_field_type_is_a_codec_error_on_encode(codec) -> None:
    with pytest.raises(CodecError):
        codec.encode(Message(Kind.ACK, host=5))  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        codec.encode(Message(Kind.ACK, nonce="not bytes"))  # type: ignore[arg-type]


# --- workflow fields: names, dependencies, arrays, retries, time limits ------------------------

MAX64 = 2**63 - 1
MANY_IDS = 100_000  # goq_core.limits.MAX_DEPENDENCIES


def workflow_job(**changes) -> Job:
    """A job with every workflow field of Job away from its default."""
    job = Job(jobid=9, cmd="run", state=JobState.BLOCKED, name="build-\udce9",
              after=[0, 1, MAX64], after_any=[MAX64, 3], array_id=MAX64, array_index=MAX64,
              array_max=MAX64, retries=MAX64, retry_delay_ms=MAX64, retried=MAX64,
              time_limit_ms=MAX64, out_base=MAX64)  # fmt: skip
    return dataclasses.replace(job, **changes)


def test_every_workflow_field_survives(codec) -> None:
    job = workflow_job(array_id=1, array_index=-2, array_max=3, retries=4, retry_delay_ms=5,
                       retried=6, time_limit_ms=7, out_base=-(2**63))  # fmt: skip
    defaults = Job()
    for name in ("name", "after", "after_any", "array_id", "array_index", "array_max", "retries",
                 "retry_delay_ms", "retried", "time_limit_ms", "out_base"):  # fmt: skip
        assert getattr(job, name) != getattr(defaults, name), name
    for j in (job, workflow_job()):
        # between plain jobs, so that each job's ids are told apart from its neighbours'
        msg = Message(Kind.SUBMIT, jobs=[Job(), j, Job(after=[8]), Job(after_any=[9]), Job()])
        back = codec.decode(codec.encode(msg))
        assert back == msg
        assert back.jobs[1].name.encode("utf-8", "surrogateescape") == b"build-\xe9"
        assert all(type(i) is int for i in back.jobs[1].after + back.jobs[1].after_any)


def test_decoded_jobs_do_not_share_their_id_lists(codec) -> None:
    back = codec.decode(codec.encode(Message(Kind.STATUS, jobs=[Job(), Job()])))
    lists = [back.jobs[0].after, back.jobs[0].after_any, back.jobs[1].after, back.jobs[1].after_any]
    assert len({id(x) for x in lists}) == 4


@pytest.mark.parametrize("state", list(JobState))
def test_each_job_state_survives(codec, state: JobState) -> None:
    msg = Message(Kind.FINISHED, jobs=[workflow_job(state=state)])
    back = codec.decode(codec.encode(msg))
    assert back == msg and back.jobs[0].state is state


@pytest.mark.parametrize("kind", [Kind.HOLD, Kind.RELEASE, Kind.SELECT, Kind.JOB_IDS])
def test_each_workflow_kind_survives(codec, kind: Kind) -> None:
    msg = Message(kind, text="1-5,9", count=1, jobs=[workflow_job()])
    back = codec.decode(codec.encode(msg))
    assert back == msg and back.kind is kind


def test_a_hundred_thousand_dependencies_are_compact_and_fast(codec) -> None:
    after = list(range(MAX64 - MANY_IDS, MAX64))  # the widest ids there are
    after_any = list(range(MANY_IDS))
    msg = Message(Kind.SUBMIT, jobs=[workflow_job(after=after), workflow_job(after_any=after_any)])
    started = time.perf_counter()
    data = codec.encode(msg)
    back = codec.decode(data)
    elapsed = time.perf_counter() - started
    assert back == msg
    assert len(data) < 8 * (2 * MANY_IDS + 5) + 2000  # 8 bytes an id, packed
    assert elapsed < 2.0  # about 5 ms (raw) and 30 ms (capnp); a per-id text join is far slower


@pytest.mark.parametrize(
    "changes",
    [{"after": [-1]}, {"after_any": [-1]}, {"after": [1, 2, -(2**63)]}, {"after": [2**63]},
     {"after_any": [0, 2**64]}, {"after": [-(2**63) - 1]}, {"array_id": 2**63},
     {"array_index": -(2**63) - 1}, {"array_max": 2**63}, {"retries": 2**63},
     {"retry_delay_ms": 2**63}, {"retried": 2**63}, {"time_limit_ms": 2**63},
     {"out_base": 2**63}, {"name": 5}, {"after": ["1"]}, {"after_any": [1.5]}],
)  # fmt: skip
def test_out_of_range_workflow_value_is_a_codec_error_on_encode(codec, changes) -> None:
    with pytest.raises(CodecError):
        codec.encode(Message(Kind.SUBMIT, jobs=[Job(), workflow_job(**changes)]))


def raw_with_ids(ids: list[int], nids_delta: int = 0) -> bytes:
    """A raw SUBMIT of one job whose after ids are replaced in place by `ids` (as many)."""
    data = bytearray(RawCodec().encode(Message(Kind.SUBMIT, jobs=[Job(after=[7] * len(ids))])))
    at = data.index(struct.pack("<q", 7) * len(ids), _HEAD.size)
    data[at : at + 8 * len(ids)] = struct.pack(f"<{len(ids)}q", *ids)
    nids_at = _HEAD.size - 4
    assert struct.unpack_from("<I", data, nids_at)[0] == len(ids)
    struct.pack_into("<I", data, nids_at, len(ids) + nids_delta)
    return bytes(data)


def test_raw_negative_or_miscounted_job_ids_are_codec_errors() -> None:
    assert RawCodec().decode(raw_with_ids([0, MAX64])).jobs[0].after == [0, MAX64]
    for ids in ([-1], [0, -(2**63)], [5, -2, 6]):
        with pytest.raises(CodecError, match="negative job id"):
            RawCodec().decode(raw_with_ids(ids))
    for delta in (-1, 1, 2**32 - 3):
        with pytest.raises(CodecError):
            RawCodec().decode(raw_with_ids([1, 2], delta))


@pytest.mark.parametrize("count", [-1, 2, 2**62])
def test_raw_job_id_count_beyond_the_ids_is_a_codec_error(count: int) -> None:
    data = bytearray(RawCodec().encode(Message(Kind.SUBMIT, jobs=[Job(after=[4])])))
    at = _HEAD.size + 8 * (6 + 17)  # len(after): the job's 18th int, after the message's 6
    assert struct.unpack_from("<qq", data, at) == (1, 0)  # len(after), len(after_any)
    struct.pack_into("<q", data, at, count)
    with pytest.raises(CodecError, match="ids"):
        RawCodec().decode(bytes(data))


def test_raw_peer_of_another_format_version_gets_a_clear_error() -> None:
    data = bytearray(RawCodec().encode(Message(Kind.ACK)))
    assert data[0] == VERSION == 5
    for old in (4, 6):
        data[0] = old
        with pytest.raises(CodecError, match=f"version {old}.*version {VERSION}"):
            RawCodec().decode(bytes(data))


@pytest.mark.parametrize("field", ["after", "afterAny"])
def test_capnp_negative_job_id_is_a_codec_error(schema, field: str) -> None:
    def submit(ids: list[int]) -> bytes:
        m = schema.Message.new_message()
        m.kind = int(Kind.SUBMIT)
        setattr(m.init("jobs", 1)[0], field, ids)
        return m.to_bytes()

    back = CapnpCodec(schema).decode(submit([3, MAX64])).jobs[0]
    assert [3, MAX64] in (back.after, back.after_any)
    for ids in ([3, -1], [-(2**63)]):
        with pytest.raises(CodecError, match="negative job id"):
            CapnpCodec(schema).decode(submit(ids))


# --- malformed input -------------------------------------------------------------------------


def decodes_or_codec_error(codec, data: bytes) -> None:
    try:
        msg = codec.decode(data)
    except CodecError:
        return
    assert isinstance(msg, Message)


@FAST
@given(data=st.binary(max_size=400))
def test_random_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    for codec in (RawCodec(), CapnpCodec(loaded_schema())):
        decodes_or_codec_error(codec, data)
        decodes_or_codec_error(codec, bytes([VERSION]) + data)  # past raw's version check
        decodes_or_codec_error(codec, b"\x00\x00\x00\x00" + data)  # a one-segment capnp table


@FAST
@given(msg=messages, cut=st.floats(0, 1, exclude_max=True))
def test_truncated_encoding_is_a_codec_error(msg: Message, cut: float) -> None:
    for codec in (RawCodec(), CapnpCodec(loaded_schema())):
        data = codec.encode(msg)
        with pytest.raises(CodecError):
            codec.decode(data[: int(len(data) * cut)])


@FAST
@given(msg=messages, where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_corrupted_encoding_decodes_or_raises_codec_error(msg, where, xor) -> None:
    for codec in (RawCodec(), CapnpCodec(loaded_schema())):
        data = bytearray(codec.encode(msg))
        data[int(len(data) * where)] ^= xor
        decodes_or_codec_error(codec, bytes(data))


def test_every_truncation_of_a_typical_message_is_a_codec_error(codec) -> None:
    data = codec.encode(typical_job_message())
    for n in range(len(data)):
        with pytest.raises(CodecError):
            codec.decode(data[:n])


@pytest.mark.parametrize("bad", [None, "text", 12, 10**12, [1, 2]])
def test_non_bytes_input_is_a_codec_error(codec, bad) -> None:
    with pytest.raises(CodecError):
        codec.decode(bad)


def test_bytearray_and_memoryview_input_decode(codec) -> None:
    data = codec.encode(typical_job_message())
    assert codec.decode(bytearray(data)) == typical_job_message()
    assert codec.decode(memoryview(data)) == typical_job_message()


def test_raw_unknown_kind_is_a_codec_error() -> None:
    data = bytearray(RawCodec().encode(Message(Kind.ACK)))
    assert data[1] == Kind.ACK
    data[1] = 99
    with pytest.raises(CodecError, match="kind"):
        RawCodec().decode(bytes(data))


def test_raw_unknown_job_state_is_a_codec_error() -> None:
    data = bytearray(RawCodec().encode(Message(Kind.JOB, jobs=[Job(state=JobState.RUNNING)])))
    at = data.index(struct.pack("<q", JobState.RUNNING), _HEAD.size + 6 * 8)  # past msg ints
    data[at] = 17
    with pytest.raises(CodecError, match="state"):
        RawCodec().decode(bytes(data))


def test_raw_header_claiming_huge_counts_is_refused_without_allocating() -> None:
    data = bytearray(RawCodec().encode(Message(Kind.STATUS)))
    struct.pack_into("<III", data, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1)
    with pytest.raises(CodecError, match="length"):
        RawCodec().decode(bytes(data))


def test_resources_and_the_cpus_default_survive(codec) -> None:
    odd = "x\x00=\ud800"  # NUL, "=" and a lone surrogate in a resource name
    for job in (Job(), Job(cpus=0), Job(cpus=2**63 - 1, resources={odd: 0, "": 1, "g": -1})):
        back = codec.decode(codec.encode(Message(Kind.JOB, jobs=[job])))
        assert back.jobs == [job]
    assert codec.decode(codec.encode(Message(Kind.JOB, jobs=[Job()]))).jobs[0].cpus == 1


def raw_with_resource_strings(replace: dict[str, str]) -> bytes:
    """A raw JOB message whose resource strings ("NAME=N") are edited in its blob."""
    job = Job(cmd="c", resources={"aa": 1, "bb": 2})
    data = RawCodec().encode(Message(Kind.JOB, jobs=[job]))
    lblob = struct.unpack_from("<I", data, 27)[0]
    head, blob = data[: len(data) - lblob], data[len(data) - lblob :]
    for old, new in replace.items():
        assert blob.count(old.encode()) == 1
        blob = blob.replace(old.encode(), new.encode())
    head = bytearray(head)
    struct.pack_into("<I", head, 27, len(blob))
    return bytes(head) + blob


@pytest.mark.parametrize(
    "replace",
    [{"aa=1": "x"}, {"aa=1": "a=1x"}, {"bb=2": "aa=2"}, {"aa=1": "a="}, {"aa=1": "a=-"},
     {"aa=1": "a=1.5"}, {"aa=1": "a=\u0661"}, {"aa=1": "a=--1"}],
)  # fmt: skip
def test_raw_malformed_resource_is_a_codec_error(replace: dict[str, str]) -> None:
    assert RawCodec().decode(raw_with_resource_strings({})).jobs[0].resources == {"aa": 1, "bb": 2}
    with pytest.raises(CodecError):
        RawCodec().decode(raw_with_resource_strings(replace))


def test_raw_trailing_bytes_are_a_codec_error() -> None:
    with pytest.raises(CodecError):
        RawCodec().decode(RawCodec().encode(Message(Kind.ACK)) + b"\x00")


def test_capnp_unknown_kind_and_state_are_codec_errors(schema) -> None:
    m = schema.Message.new_message()
    m.kind = 99
    with pytest.raises(CodecError, match="kind"):
        CapnpCodec(schema).decode(m.to_bytes())
    m = schema.Message.new_message()
    m.kind = int(Kind.JOB)
    m.init("jobs", 1)[0].state = 17
    with pytest.raises(CodecError, match="state"):
        CapnpCodec(schema).decode(m.to_bytes())


@pytest.mark.parametrize("where", ["text", "job.cmd", "job.env", "counter"])
def test_capnp_invalid_utf8_in_a_string_field_is_a_codec_error(schema, where: str) -> None:
    m = schema.Message.new_message()
    m.kind = int(Kind.STATUS)
    bad = b"\xff\xfe"  # not what str.encode("utf-8", "surrogatepass") makes of any str
    if where == "text":
        m.text = bad
    elif where == "counter":
        m.init("counters", 1)[0].name = bad
    else:
        job = m.init("jobs", 1)[0]
        job.state = int(JobState.WAITING)
        if where == "job.cmd":
            job.cmd = bad
        else:
            job.env = [b"A=1", bad]
    with pytest.raises(CodecError):
        CapnpCodec(schema).decode(m.to_bytes())


def test_capnp_repeated_resource_name_is_a_codec_error(schema) -> None:
    m = schema.Message.new_message()
    m.kind = int(Kind.JOB)
    job = m.init("jobs", 1)[0]
    resources = job.init("resources", 2)
    for r in resources:
        r.name = b"lic"
        r.value = 1
    with pytest.raises(CodecError, match="repeats a resource"):
        CapnpCodec(schema).decode(m.to_bytes())


def test_capnp_long_resource_lists_are_refused(schema) -> None:
    """Resource lists count against the message's size, all jobs' together."""
    m = schema.Message.new_message()
    m.kind = int(Kind.JOB)
    jobs = m.init("jobs", 2)
    for job in jobs:
        resources = job.init("resources", 50)
        for i, r in enumerate(resources):
            r.name = b"r%d" % i
    honest = m.to_bytes()
    assert len(CapnpCodec(schema).decode(honest).jobs[1].resources) == 50
    codec = CapnpCodec(schema)
    codec._list_words = (codec._list_words[0], len(honest) // 8 // 80)  # 100 fit, not 80 each
    with pytest.raises(CodecError, match="longer than the message"):
        codec.decode(honest)


def hostile_capnp_zero_sized_jobs(count: int) -> bytes:
    """A 17-word capnp Message whose `jobs` claims `count` zero-sized structs: an amplification
    attack (a few bytes in, `count` Job objects out) that the traversal limit must stop."""
    words = [0] * 17
    words[0] = (7 << 32) | (8 << 48)  # root struct pointer: offset 0, 7 data words, 8 pointers
    words[1] = int(Kind.STATUS)  # kind, in the first byte of the data section
    words[8 + 6] = 1 | (1 << 2) | (7 << 32)  # jobs: list pointer, offset 1, composite, 0 words
    words[16] = count << 2  # the list's tag: `count` elements of 0 data and 0 pointer words
    return struct.pack("<II", 0, len(words)) + struct.pack(f"<{len(words)}Q", *words)


def test_capnp_amplification_is_refused(schema) -> None:
    hostile = hostile_capnp_zero_sized_jobs(100_000)
    with schema.Message.from_bytes(hostile) as r:  # pycapnp's default limits let it through
        assert len(r.jobs) == 100_000
    for count in (2, 100_000, 2**29 - 1):
        with pytest.raises(CodecError, match="longer than the message|traversal limit"):
            CapnpCodec(schema).decode(hostile_capnp_zero_sized_jobs(count))


def test_capnp_traversal_is_limited_to_the_message_size(schema) -> None:
    hostile = hostile_capnp_zero_sized_jobs(100_000)
    limited = schema.Message.from_bytes(hostile, traversal_limit_in_words=len(hostile) // 8)
    with pytest.raises(Exception, match="traversal limit"), limited as r:
        list(r.jobs)
    codec = CapnpCodec(schema)
    codec._list_words = (0, 0)  # without the list check, the traversal limit still stops it
    with pytest.raises(CodecError, match="traversal limit"):
        codec.decode(hostile)


def test_capnp_schema_loads_in_a_subprocess() -> None:
    """A syntax error in a capnp schema aborts the interpreter, so load it where that is safe."""
    code = "from goq_codecs.capnp_codec import load_schema; print(load_schema().Message)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert SCHEMA_PATH.is_file() and SCHEMA_PATH.suffix == ".capnp"


# --- registration ----------------------------------------------------------------------------


def codec_plugins() -> Plugins:
    pm = pluggy.PluginManager("goq")
    pm.add_hookspecs(hookspecs)
    register_builtin(pm, goq_codecs.plugin)  # marks its plain hook functions, then registers
    return Plugins(pm)


def test_codecs_register_under_their_names() -> None:
    plugins = codec_plugins()
    assert plugins.names("codec") == ["capnp", "raw"]
    for name in ("raw", "capnp"):
        codec = plugins.codec(name)
        assert codec.name == name
        assert codec.decode(codec.encode(every_field_set())) == every_field_set()


def test_importing_the_plugin_loads_no_heavy_library() -> None:
    code = (
        "import sys, goq_codecs.plugin; "
        "print(sorted(m for m in ('capnp', 'cryptography', 'Crypto') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "[]"
