"""The `json` codec: a Message as a JSON object of its fields, by name (bytes in base64).

Slower and larger than `raw`, but readable and independent of field order. Decoding trusts
nothing: every field must have its type (ints within int64, job ids not negative), or
CodecError. A string holding surrogates (undecodable bytes from argv) travels as its bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import fields
from typing import Any

from goq_core.errors import CodecError
from goq_core.messages import Job, JobState, Kind, Message

INT64 = (-(2**63), 2**63 - 1)
_SURROGATES = re.compile("[\ud800-\udfff]")
_JOB_DEFAULTS = Job()
_MSG_DEFAULTS = Message(Kind.ACK)


def _int(value: Any, lo: int = INT64[0]) -> int:
    if type(value) is not int or not lo <= value <= INT64[1]:
        raise CodecError(f"expected an int64, got {value!r:.40}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise CodecError(f"expected a string, got {type(value).__name__}")
    return value


def _str_out(value: Any) -> Any:
    """A str as itself, or, when it holds surrogates (JSON would pair them up on the way
    back), as {"sp": base64 of its UTF-8 bytes with surrogates passed through}."""
    text = _str(value)
    if _SURROGATES.search(text) is None:
        return text
    return {"sp": base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")}


def _str_in(value: Any) -> str:
    if type(value) is dict and set(value) == {"sp"}:
        try:
            return _bytes_in(value["sp"]).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise CodecError(f"bad string: {exc}") from None
    return _str(value)


def _bytes_out(value: Any) -> str:
    if type(value) is not bytes:
        raise CodecError(f"expected bytes, got {type(value).__name__}")
    return base64.b64encode(value).decode("ascii")


def _bytes_in(value: Any) -> bytes:
    try:
        return base64.b64decode(_str(value), validate=True)
    except binascii.Error as exc:
        raise CodecError(f"bad base64: {exc}") from None


def _list(value: Any, item) -> list:
    if type(value) is not list:
        raise CodecError(f"expected a list, got {type(value).__name__}")
    return [item(v) for v in value]


def _counts(value: Any, out: bool) -> Any:
    """A dict of str to int, as a list of [name, count] pairs (names may hold surrogates)."""
    if out:
        if type(value) is not dict:
            raise CodecError(f"expected a dict, got {type(value).__name__}")
        return [[_str_out(k), _int(v)] for k, v in value.items()]
    pairs = _list(value, lambda p: p if type(p) is list and len(p) == 2 else None)
    if None in pairs:
        raise CodecError("expected [name, count] pairs")
    return {_str_in(k): _int(v) for k, v in pairs}


def _enum(cls: type, value: Any) -> Any:
    try:
        return cls(_int(value))
    except ValueError:
        raise CodecError(f"no {cls.__name__} {value}") from None


def _convert(default: Any, name: str, value: Any, out: bool) -> Any:
    """One field's value, checked against the type of its default; to JSON or back."""
    if isinstance(default, (Kind, JobState)):
        return (
            _int(int(value))
            if out and isinstance(value, type(default))
            else _enum(type(default), value)
        )
    if isinstance(default, bool):
        if type(value) is not bool:
            raise CodecError(f"{name}: expected a boolean")
        return value
    if isinstance(default, int):
        return _int(value)
    if isinstance(default, str):
        return _str_out(value) if out else _str_in(value)
    if isinstance(default, bytes):
        return _bytes_out(value) if out else _bytes_in(value)
    if isinstance(default, dict):
        return _counts(value, out)
    if name in ("after", "after_any"):
        return _list(value, lambda v: _int(v, 0))
    if name == "jobs":
        return _list(value, lambda j: _job(j, out))
    return _list(value, _str_out if out else _str_in)  # args, env


def _record(obj: Any, cls: type, defaults: Any, out: bool) -> Any:
    if out:
        if type(obj) is not cls:
            raise CodecError(f"expected a {cls.__name__}")
        return {f.name: _convert(getattr(defaults, f.name), f.name, getattr(obj, f.name), True)
                for f in fields(cls)}  # fmt: skip
    if type(obj) is not dict or set(obj) != {f.name for f in fields(cls)}:
        raise CodecError(f"a {cls.__name__} must be an object with exactly its fields")
    return cls(**{f.name: _convert(getattr(defaults, f.name), f.name, obj[f.name], False)
                  for f in fields(cls)})  # fmt: skip


def _job(obj: Any, out: bool) -> Any:
    return _record(obj, Job, _JOB_DEFAULTS, out)


class JsonCodec:
    """Encodes and decodes Messages as JSON (UTF-8, ASCII only). Stateless."""

    name = "json"

    def encode(self, msg: Message) -> bytes:
        doc = _record(msg, Message, _MSG_DEFAULTS, True)
        return json.dumps(doc, separators=(",", ":")).encode("ascii")

    def decode(self, data: bytes) -> Message:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"expected bytes, got {type(data).__name__}")
        try:
            doc = json.loads(bytes(data))
        except (ValueError, RecursionError) as exc:
            raise CodecError(f"not a JSON message: {exc}") from None
        return _record(doc, Message, _MSG_DEFAULTS, False)
