"""The `raw` codec: Message <-> a compact struct-packed binary form, standard library only.

Safe on untrusted input: every count and length is checked against the buffer before it is used,
so a hostile frame costs at most about 8 times its own size in memory (a blob of nothing but
separators, split into a list of empty strings), and anything malformed raises CodecError.

Layout (little-endian):
  head     B version (5), B kind, B strings mode, I njobs, I ncounters, I nstrings,
           I len(nonce), I len(reply_to), I len(data), I len(string blob), I nids
  ints     (6 + 27 * njobs + ncounters) x int64:
           sendtime_ns, jobid, attempt, count, wait_ms, offset;
           per job: jobid, shell, state, attempt, pid, exit_status, submit_ns, start_ns,
                    end_ns, out_bytes, len(args), len(env), cpus, mem, gpus, priority,
                    len(resources), len(after), len(after_any), array_id, array_index,
                    array_max, retries, retry_delay_ms, retried, time_limit_ms, out_base;
           then each counter's value
  ids      nids x int64, each >= 0: per job, its after then its after_any (packed by the
           array module: 100,000 ids cost one C call each way, not one per id)
  lengths  mode 1 only: nstrings x uint32, the length in characters of each string
  bytes    nonce, reply_to, data
  blob     every string, concatenated, as UTF-8 (lone surrogates pass through, so any str
           survives): workerid, host, text; per job cmd, dir, host, user, workerid,
           workerhost, note, gpu_ids, name, owner, *args, *env, *resources as "NAME=N"; then
           each counter's name. Mode 0 (the usual one): the strings are joined by NUL, none
           contains NUL. Mode 1: any string may contain NUL; the lengths table splits the blob.
All strings share one blob so that encoding and decoding cost one codec call, not one per string
(splitting on NUL is 5x faster than slicing by lengths in Python, hence mode 0).

The version byte changes whenever the layout does (3: before the workflow fields of Job; 4:
before its owner); a message of another version is refused with a CodecError that names both
versions.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import fields
from itertools import accumulate

from goq_core.errors import CodecError
from goq_core.messages import Job, JobState, Kind, Message

VERSION = 5
_HEAD = struct.Struct("<BBBIIIIIIII")
_SEP = "\x00"
_SPLIT = 0  # strings joined by NUL
_SIZED = 1  # strings concatenated, with a lengths table
_MSG_INTS = 6
_JOB_INTS = 27
_JOB_STRS = 10
_KINDS = {int(k): k for k in Kind}
_STATES = {int(s): s for s in JobState}
_UTF8 = "utf-8"
_SURR = "surrogatepass"  # lone surrogates (from undecodable argv bytes) survive
_SWAP = sys.byteorder != "little"  # array packs in the machine's order; the wire's is little
# decode builds Job and Message positionally, so it relies on their fields being in this order
_MESSAGE_FIELDS = (
    "kind nonce sendtime_ns reply_to workerid host jobid attempt count wait_ms offset data text"
    " jobs counters"
)
_JOB_FIELDS = (
    "jobid cmd args shell dir env host user state attempt workerid workerhost pid exit_status"
    " submit_ns start_ns end_ns out_bytes note cpus mem gpus resources priority gpu_ids"
    " name after after_any array_id array_index array_max retries retry_delay_ms retried"
    " time_limit_ms out_base owner"
)


def _check_field_order() -> None:
    """Refuse to load if goq_core.messages changed shape under this codec."""
    for cls, expected in ((Message, _MESSAGE_FIELDS), (Job, _JOB_FIELDS)):
        actual = " ".join(f.name for f in fields(cls))
        if actual != expected:
            raise ImportError(
                f"goq_codecs.raw knows {cls.__name__} as {expected!r}, not {actual!r}"
            )


_check_field_order()


class RawCodec:
    """Encodes and decodes Messages in the raw layout above. Stateless; one is enough."""

    __slots__ = ()
    name = "raw"

    def encode(self, msg: Message) -> bytes:
        """The bytes of `msg`; CodecError if a field does not fit (wrong type, int beyond int64)."""
        try:
            strs = [msg.workerid, msg.host, msg.text]
            ints = [msg.sendtime_ns, msg.jobid, msg.attempt, msg.count, msg.wait_ms, msg.offset]
            jobs = msg.jobs
            ids = None
            for j in jobs:
                args = j.args
                env = j.env
                after = j.after
                after_any = j.after_any
                ints += (
                    j.jobid,
                    1 if j.shell else 0,
                    j.state,
                    j.attempt,
                    j.pid,
                    j.exit_status,
                    j.submit_ns,
                    j.start_ns,
                    j.end_ns,
                    j.out_bytes,
                    len(args),
                    len(env),
                    j.cpus,
                    j.mem,
                    j.gpus,
                    j.priority,
                )
                resources = j.resources
                ints += (
                    len(resources),
                    len(after),
                    len(after_any),
                    j.array_id,
                    j.array_index,
                    j.array_max,
                    j.retries,
                    j.retry_delay_ms,
                    j.retried,
                    j.time_limit_ms,
                    j.out_base,
                )
                if after or after_any:
                    if ids is None:
                        ids = array("q")
                    _add_ids(ids, after)
                    _add_ids(ids, after_any)
                strs += (
                    j.cmd,
                    j.dir,
                    j.host,
                    j.user,
                    j.workerid,
                    j.workerhost,
                    j.note,
                    j.gpu_ids,
                    j.name,
                    j.owner,
                )
                strs += args
                strs += env
                if resources:
                    strs += [f"{name}={value:d}" for name, value in resources.items()]
            counters = msg.counters
            if counters:
                strs += counters
                ints += counters.values()
            nstrs = len(strs)
            joined = _SEP.join(strs)
            if joined.count(_SEP) == nstrs - 1:
                mode = _SPLIT
                lengths = b""
            else:
                mode = _SIZED
                joined = "".join(strs)
                lengths = struct.pack(f"<{nstrs}I", *map(len, strs))
            blob = joined.encode(_UTF8, _SURR)
            nonce, reply_to, data = msg.nonce, msg.reply_to, msg.data
            if ids is None:
                nids = 0
                idbytes = b""
            else:
                nids = len(ids)
                if _SWAP:
                    ids.byteswap()
                idbytes = ids.tobytes()
                if not idbytes[7::8].isascii():  # a sign bit set: a negative id
                    raise ValueError("a job id in after/after_any is negative")
            return b"".join(
                (
                    _HEAD.pack(
                        VERSION,
                        msg.kind,
                        mode,
                        len(jobs),
                        len(counters),
                        nstrs,
                        len(nonce),
                        len(reply_to),
                        len(data),
                        len(blob),
                        nids,
                    ),
                    struct.pack(f"<{len(ints)}q", *ints),
                    idbytes,
                    lengths,
                    nonce,
                    reply_to,
                    data,
                    blob,
                )
            )
        except (struct.error, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise CodecError(f"cannot encode message: {exc}") from None

    def decode(self, data: bytes) -> Message:
        """The Message in `data`; CodecError for anything malformed (never another exception)."""
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise CodecError(f"expected bytes, got {type(data).__name__}")
            data = bytes(data)
        try:
            return _decode(data)
        except CodecError:
            raise
        except Exception as exc:  # a safety net: the checks below should leave nothing to catch
            raise CodecError(f"malformed raw message: {exc!r}") from None


def _decode(data: bytes) -> Message:
    size = len(data)
    if size < _HEAD.size:
        raise CodecError(f"raw message too short ({size} bytes)")
    (version, kind, mode, njobs, ncounters, nstrs, lnonce, lreply, ldata, lblob, nids) = (
        _HEAD.unpack_from(data)
    )
    if version != VERSION:
        raise CodecError(
            f"raw message of format version {version}, but this goq speaks raw version"
            f" {VERSION}: run the same goq version on both ends"
        )
    if mode != _SPLIT and mode != _SIZED:
        raise CodecError(f"unknown raw strings mode {mode}")
    if nstrs < 3:
        raise CodecError(f"raw message with {nstrs} strings (at least 3)")
    msgkind = _KINDS.get(kind)
    if msgkind is None:
        raise CodecError(f"unknown message kind {kind}")
    nints = _MSG_INTS + _JOB_INTS * njobs + ncounters
    pos = _HEAD.size
    ids_at = pos + 8 * nints
    lens_at = ids_at + 8 * nids
    bytes_at = lens_at + 4 * nstrs if mode == _SIZED else lens_at
    if bytes_at + lnonce + lreply + ldata + lblob != size:
        raise CodecError("raw message length does not match its header")
    ints = struct.unpack_from(f"<{nints}q", data, pos)
    idlist: list[int] = _ids(data[ids_at:lens_at]) if nids else []
    p = bytes_at
    nonce = data[p : p + lnonce]
    p += lnonce
    reply_to = data[p : p + lreply]
    p += lreply
    payload = data[p : p + ldata]
    p += ldata
    try:
        text = data[p:].decode(_UTF8, _SURR)
    except UnicodeDecodeError as exc:
        raise CodecError(f"bad UTF-8 in raw message: {exc.reason}") from None
    if mode == _SPLIT:
        strs = text.split(_SEP)
        if len(strs) != nstrs:
            raise CodecError("raw message string count does not match its header")
    else:
        strs = _sized_strings(text, struct.unpack_from(f"<{nstrs}I", data, lens_at))

    jobs: list[Job] = []
    si = 3
    ii = _MSG_INTS
    di = 0
    for _ in range(njobs):
        (
            jobid,
            shell,
            state,
            attempt,
            pid,
            exit_status,
            submit_ns,
            start_ns,
            end_ns,
            out_bytes,
            nargs,
            nenv,
            cpus,
            mem,
            gpus,
            priority,
            nres,
            nafter,
            nany,
            array_id,
            array_index,
            array_max,
            retries,
            retry_delay_ms,
            retried,
            time_limit_ms,
            out_base,
        ) = ints[ii : ii + _JOB_INTS]
        ii += _JOB_INTS
        if nargs < 0 or nenv < 0 or nres < 0 or si + _JOB_STRS + nargs + nenv + nres > nstrs:
            raise CodecError("raw message job strings overrun")
        if nafter or nany:
            if nafter < 0 or nany < 0 or di + nafter + nany > nids:
                raise CodecError("raw message job ids overrun")
            after = idlist[di : di + nafter]
            di += nafter
            after_any = idlist[di : di + nany]
            di += nany
        else:
            after = []
            after_any = []
        jobstate = _STATES.get(state)
        if jobstate is None:
            raise CodecError(f"unknown job state {state}")
        if shell != 0 and shell != 1:
            raise CodecError(f"bad shell flag {shell}")
        cmd, dir_, host, user, workerid, workerhost, note, gpu_ids, name, owner = strs[
            si : si + _JOB_STRS
        ]
        si += _JOB_STRS
        args = strs[si : si + nargs]
        si += nargs
        env = strs[si : si + nenv]
        si += nenv
        resources: dict[str, int] = {}
        if nres:
            resources = _resources(strs[si : si + nres])
            si += nres
        jobs.append(
            Job(  # positionally: 3x faster than by keyword; _check_field_order guards it
                jobid,
                cmd,
                args,
                shell == 1,
                dir_,
                env,
                host,
                user,
                jobstate,
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
                cpus,
                mem,
                gpus,
                resources,
                priority,
                gpu_ids,
                name,
                after,
                after_any,
                array_id,
                array_index,
                array_max,
                retries,
                retry_delay_ms,
                retried,
                time_limit_ms,
                out_base,
                owner,
            )
        )
    if si + ncounters != nstrs:
        raise CodecError("raw message has strings left over")
    if di != nids:
        raise CodecError("raw message has job ids left over")
    counters = dict(zip(strs[si:], ints[ii:], strict=True))
    if len(counters) != ncounters:
        raise CodecError("raw message repeats a counter name")
    return Message(
        msgkind,
        nonce,
        ints[0],
        reply_to,
        strs[0],
        strs[1],
        ints[1],
        ints[2],
        ints[3],
        ints[4],
        ints[5],
        payload,
        strs[2],
        jobs,
        counters,
    )


def _add_ids(ids: array, seq: list[int]) -> None:
    """Append `seq` to `ids`; OverflowError beyond int64, TypeError for a non-int."""
    if seq:
        if type(seq) is list:
            ids.fromlist(seq)  # the fastest way in, about 12 ns an id
        else:
            ids.extend(seq)


def _ids(chunk: bytes) -> list[int]:
    """The job ids packed in `chunk` (a multiple of 8 bytes); CodecError if one is negative."""
    if not chunk[7::8].isascii():  # the last byte of each little-endian int64 holds its sign
        raise CodecError("negative job id in raw message")
    ids = array("q", chunk)
    if _SWAP:
        ids.byteswap()
    return ids.tolist()


def _resources(items: list[str]) -> dict[str, int]:
    """Named counters from their "NAME=N" strings; CodecError if one is malformed or repeated."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not value.lstrip("-").isdigit() or not value.isascii():
            raise CodecError(f"bad resource {item[:40]!r} in raw message")
        out[name] = int(value)
    if len(out) != len(items):
        raise CodecError("raw message repeats a resource name")
    return out


def _sized_strings(text: str, lengths: tuple[int, ...]) -> list[str]:
    """Cut `text` into pieces of these lengths, which must add up to all of it."""
    if sum(lengths) != len(text):
        raise CodecError("raw message string lengths do not match its text")
    ends = list(accumulate(lengths))
    return list(map(text.__getitem__, map(slice, [0, *ends[:-1]], ends)))
