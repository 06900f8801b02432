"""Frames on the wire: a small plaintext header, then a Message encoded by the codec and sealed
by the cipher with the header as associated data. Also the plaintext error frame.

Layout: b"GQ" + version (1 byte) + type (b"M" message | b"C" credential's message | b"E"
error) + for M and C: label length (1 byte) + label ("codec/cipher", ascii) + for C: principal
length (1 byte) + principal text (goq_core.principals) + sealed body; for E: utf-8 text.
An M frame is sealed with the cluster's root secret, a C frame with the key of the credential
its principal names (goq_core.credentials); replies use the request's. Peers whose labels
differ get a clear error frame back instead of silence.
"""

from __future__ import annotations

import os
import time

from goq_core.drops import BAD_CODEC, BAD_SIG, GARBAGE, MISMATCH, TOO_BIG
from goq_core.errors import BadFrame, CipherError, CodecError
from goq_core.limits import MAX_FRAME as DEFAULT_MAX_FRAME
from goq_core.messages import Message
from goq_core.principals import ROOT, Principal, Secret

TYPE_CHECKING = False  # the interfaces (dataclasses, records) cost `goq sub` ~5 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable

    from goq_core.interfaces import Cipher, Codec

MAGIC = b"GQ"
VERSION = 1
_MSG = ord("M")
CRED = ord("C")  # the type byte of a frame sealed for a credential
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

    __slots__ = ("codec", "cipher", "label", "header", "max_frame", "principal")

    def __init__(
        self,
        codec: Codec,
        cipher: Cipher,
        max_frame: int = DEFAULT_MAX_FRAME,
        principal: Principal | None = None,
    ) -> None:
        """`principal`: the credential `cipher`'s key belongs to (None: the root secret)."""
        self.codec = codec
        self.cipher = cipher
        self.label = f"{codec.name}/{cipher.name}"
        self.principal = principal
        raw = self.label.encode("ascii")
        if principal is None:
            self.header = MAGIC + bytes((VERSION, _MSG, len(raw))) + raw
        else:
            who = principal.text().encode("ascii")
            self.header = MAGIC + bytes((VERSION, CRED, len(raw))) + raw + bytes((len(who),)) + who
        self.max_frame = max_frame

    @property
    def acting(self) -> Principal:
        """Who sends through this wire: its credential's principal, or ROOT (the root secret)."""
        return self.principal if self.principal is not None else ROOT

    @classmethod
    def sealing(cls, codec: Codec, cipher: Callable[[bytes], Cipher], key: bytes | Secret) -> Wire:
        """The wire a client or worker sends through: sealed with its credential's key, for its
        principal, or with the root secret (`key` as bytes)."""
        secret = key if isinstance(key, Secret) else Secret(key)
        return cls(codec, cipher(secret.key), principal=secret.principal)

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
            self.check_label(frame)
            raise BadFrame(GARBAGE, "a frame sealed for another credential")
        return self.open_body(frame)

    def check_label(self, frame: bytes) -> None:
        """BadFrame unless `frame` is a message frame with this end's codec/cipher label."""
        if frame[:2] != MAGIC or len(frame) < 5 or frame[3] not in (_MSG, CRED):
            raise BadFrame(GARBAGE, "not a goq frame")
        theirs = bytes(frame[5 : 5 + frame[4]])
        if theirs != self.header[5 : 5 + self.header[4]]:
            raise BadFrame(
                MISMATCH,
                f"peer speaks codec/cipher {theirs.decode('ascii', 'replace')!r} but this end "
                f"speaks {self.label!r}",
            )

    def open_body(self, frame: bytes) -> Message:
        """Open and decode the sealed body of a frame that starts with this wire's header."""
        header = self.header
        try:
            plain = self.cipher.open(frame[len(header) :], header)
        except CipherError as exc:
            raise BadFrame(BAD_SIG, str(exc)) from None
        try:
            return self.codec.decode(plain)
        except CodecError as exc:
            raise BadFrame(BAD_CODEC, str(exc)) from None
