"""Frames on the wire: a small plaintext header, then a Message encoded by the codec and sealed
by the cipher with the header as associated data. Also the plaintext error frame.

Layout: b"GQ" + version (1 byte) + type (b"M" message | b"E" error) + for M: label length
(1 byte) + label ("codec/cipher", ascii) + sealed body; for E: utf-8 text. Peers whose labels
differ get a clear error frame back instead of silence.
"""

from __future__ import annotations

import os
import time

from goq_core.drops import BAD_CODEC, BAD_SIG, GARBAGE, MISMATCH, TOO_BIG
from goq_core.errors import BadFrame, CipherError, CodecError
from goq_core.interfaces import DEFAULT_MAX_FRAME, Cipher, Codec
from goq_core.messages import Message

MAGIC = b"GQ"
VERSION = 1
_MSG = ord("M")
_ERR = ord("E")
_ERR_HEADER = MAGIC + bytes((VERSION, _ERR))


def error_frame(text: str) -> bytes:
    """A plaintext frame telling the peer why its request was refused."""
    return _ERR_HEADER + text.encode("utf-8", "replace")


def error_text(frame: bytes) -> str | None:
    """The text of an error frame, or None if `frame` is not one."""
    if frame[:4] == _ERR_HEADER:
        return bytes(frame[4:]).decode("utf-8", "replace")
    return None


class Wire:
    """Packs and unpacks Messages with one codec and one cipher."""

    __slots__ = ("codec", "cipher", "label", "header", "max_frame")

    def __init__(self, codec: Codec, cipher: Cipher, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.codec = codec
        self.cipher = cipher
        self.label = f"{codec.name}/{cipher.name}"
        raw = self.label.encode("ascii")
        self.header = MAGIC + bytes((VERSION, _MSG, len(raw))) + raw
        self.max_frame = max_frame

    def pack(self, msg: Message) -> bytes:
        """Stamp `msg` with a fresh nonce and the send time, encode and seal it."""
        msg.nonce = os.urandom(16)
        msg.sendtime_ns = time.time_ns()
        return self.header + self.cipher.seal(self.codec.encode(msg), self.header)

    def unpack(self, frame: bytes) -> Message:
        """Open and decode a frame; raise BadFrame(reason) for anything that is not a valid,
        authentic message of ours. `reason` is one of goq_core.drops' counters."""
        if len(frame) > self.max_frame:
            raise BadFrame(TOO_BIG, f"{len(frame)} bytes > {self.max_frame}")
        header = self.header
        n = len(header)
        if frame[:n] != header:
            if frame[:2] != MAGIC or len(frame) < 5 or frame[3] != _MSG:
                raise BadFrame(GARBAGE, "not a goq frame")
            theirs = bytes(frame[5 : 5 + frame[4]]).decode("ascii", "replace")
            raise BadFrame(
                MISMATCH,
                f"peer speaks codec/cipher {theirs!r} but this end speaks {self.label!r}",
            )
        try:
            plain = self.cipher.open(frame[n:], header)
        except CipherError as exc:
            raise BadFrame(BAD_SIG, str(exc)) from None
        try:
            return self.codec.decode(plain)
        except CodecError as exc:
            raise BadFrame(BAD_CODEC, str(exc)) from None
