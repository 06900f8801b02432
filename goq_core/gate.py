"""The server's front gate: opens each request frame with the right key, the cluster's root
secret for its own frames and, for a credential's, the key derived from it (cached), and says
which principal sent it. Replies go back through the same Wire, sealed for that credential.

Only frames that open are cached, so forged principals cost a derivation each and fill nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from goq_core.credentials import derive
from goq_core.drops import GARBAGE, TOO_BIG
from goq_core.errors import BadFrame
from goq_core.interfaces import DEFAULT_MAX_FRAME, Cipher, Codec
from goq_core.messages import Message
from goq_core.principals import parse
from goq_core.wire import CRED, MAGIC, Wire

CACHE = 4096  # credentials' wires kept (the oldest is dropped past this)


class Gate:
    __slots__ = ("root", "_codec", "_cipher", "_secret", "_wires", "max_frame")

    def __init__(
        self,
        codec: Codec,
        cipher: Callable[[bytes], Cipher],
        root_secret: bytes,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.root = Wire(codec, cipher(root_secret), max_frame)
        self._codec = codec
        self._cipher = cipher
        self._secret = root_secret
        self._wires: dict[bytes, Wire] = {}  # a credential's frame header -> its wire
        self.max_frame = max_frame

    def open(self, frame: bytes) -> tuple[Message, Wire]:
        """The request in `frame` and the wire it came through (its `principal`: who sent it,
        None for the root secret); BadFrame(reason) for anything else."""
        if len(frame) > self.max_frame:
            raise BadFrame(TOO_BIG, f"{len(frame)} bytes > {self.max_frame}")
        if len(frame) < 5 or frame[3] != CRED or frame[:2] != MAGIC:
            return self.root.unpack(frame), self.root
        n = 5 + frame[4]
        end = n + 1 + (frame[n] if len(frame) > n else 0)
        wire = self._wires.get(frame[:end])
        if wire is not None:  # a header seen before: its label and principal were checked
            return wire.open_body(frame), wire
        self.root.check_label(frame)
        header = bytes(frame[:end])
        principal = parse(bytes(frame[n + 1 : end]).decode("ascii", "replace"))
        if principal is None or len(frame) <= n:
            raise BadFrame(GARBAGE, "a credential frame whose principal is not one")
        wire = Wire(
            self._codec, self._cipher(derive(self._secret, principal)), self.max_frame, principal
        )
        if wire.header != header:
            raise BadFrame(GARBAGE, "a credential frame whose principal is not written as goq does")
        msg = wire.open_body(frame)  # BadFrame(BAD_SIG) unless the root secret made its key
        if len(self._wires) >= CACHE:
            del self._wires[next(iter(self._wires))]
        self._wires[header] = wire
        return msg, wire
