"""The zmq transport's client end: a DEALER speaking ZMTP 3.1 (NULL mechanism) itself, so that
dialling the zmq server costs no pyzmq import and no I/O thread (stream_client.py does the rest).

ZMTP (rfc.zeromq.org, 23/ZMTP and 37/ZMTP) on a TCP connection: a 64-byte greeting each way
(signature, version 3.1, mechanism "NULL", as-server 0), a READY command each way carrying the
socket types (ours DEALER, the server's ROUTER), then frames: a flags byte (bit 0 more frames
follow, bit 1 an 8-byte size instead of 1 byte, bit 2 a command) and the size. A request is
the two frames [request id, payload]; the ROUTER server answers [request id, reply]. The server
PINGs every connection (ZMTP heartbeats): PINGs are answered PONG whenever the socket is read,
so a request held for hours keeps its connection, and an idle one is dropped by the server and
dialled afresh. A peer that does not greet as a zmq ROUTER is a TransportError that says so;
one that hangs up during every greeting (an nng server does) too.
"""

from __future__ import annotations

from goq_core.errors import TransportError
from goq_transports.common import REQID_LEN
from goq_transports.stream_client import Gone, StreamClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

SIGNATURE = b"\xff" + bytes(8) + b"\x7f"  # the first 10 bytes of every ZMTP greeting
GREETING = SIGNATURE + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
GREETING_LEN = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
_SLACK = 64  # bytes a frame may exceed max_frame by: a command's name, a request id


def _command(name: bytes, body: bytes = b"") -> bytes:
    """A command frame: flags, size, then name length, name and body."""
    payload = bytes([len(name)]) + name + body
    return _frame_header(COMMAND, len(payload)) + payload


def _frame_header(flags: int, size: int) -> bytes:
    if size < 256:
        return bytes((flags, size))
    return bytes((flags | LONG,)) + size.to_bytes(8, "big")


def _ready() -> bytes:
    value = b"DEALER"
    prop = bytes([11]) + b"Socket-Type" + len(value).to_bytes(4, "big") + value
    return _command(b"READY", prop)


READY = _ready()


def _properties(body: bytes) -> dict[bytes, bytes]:
    """READY's metadata: (name length, name, 4-byte value length, value)*; ValueError if bad."""
    props: dict[bytes, bytes] = {}
    at = 0
    while at < len(body):
        n = body[at]
        name = body[at + 1 : at + 1 + n]
        at += 1 + n
        if at + 4 > len(body):
            raise ValueError("truncated property")
        size = int.from_bytes(body[at : at + 4], "big")
        at += 4
        if at + size > len(body):
            raise ValueError("truncated property value")
        props[name.lower()] = body[at : at + size]
        at += size
    return props


class ZmtpClient(StreamClient):
    """One DEALER connection to a zmq ROUTER."""

    protocol = "zmq (ZMTP)"
    cut_text = (
        "closes connections during the zmq handshake: is it running with another transport "
        "(--transport / GOQ_TRANSPORT)?"
    )

    def _greet(self, sock: _socket.socket, deadline: float) -> None:
        """Greetings and READY both ways; TransportError if the peer is not a zmq ROUTER."""
        sock.sendall(GREETING + READY)
        head = self._take(sock, len(SIGNATURE), deadline)
        if head[0] != 0xFF or head[9] != 0x7F:
            raise self.not_this_protocol()
        rest = self._take(sock, GREETING_LEN - len(SIGNATURE), deadline)
        if rest[0] < 3 or bytes(rest[2:22]).rstrip(b"\x00") != b"NULL":
            raise TransportError(
                f"the server at {self.address} speaks ZMTP {rest[0]} with mechanism "
                f"{bytes(rest[2:22]).rstrip(bytes(1))!r}; goq's zmq transport needs 3.x NULL"
            )
        flags, body = self._frame(sock, deadline)
        name, rest_body = _command_parts(flags, body)
        if name == b"ERROR":
            reason = rest_body[1 : 1 + rest_body[0]] if rest_body else b""
            raise TransportError(f"the server at {self.address} refused us: {reason!r}")
        try:
            kind = _properties(rest_body).get(b"socket-type") if name == b"READY" else None
        except ValueError:
            kind = None
        if kind != b"ROUTER":
            raise TransportError(
                f"the server at {self.address} is not a goq zmq server (its zmq socket is "
                f"{kind!r}, not ROUTER)"
            )

    def _head(self, reqid: bytes, size: int) -> bytes:
        return _frame_header(MORE, REQID_LEN) + reqid + _frame_header(0, size)

    def _message(self, sock: _socket.socket, deadline: float) -> tuple[bytes, bytes] | None:
        """The next message's frames (PINGs answered meanwhile): (id, reply) when there are
        two, None for any other shape."""
        parts: list[bytes] = []
        while True:
            flags, body = self._frame(sock, deadline)
            if flags & COMMAND:
                self._command(sock, flags, body)
                continue
            if len(parts) < 3:  # a longer message is not a goq reply: read it, keep none
                parts.append(body)
            if not flags & MORE:
                return (parts[0], parts[1]) if len(parts) == 2 else None

    def _pending(self, sock: _socket.socket) -> None:
        while self._complete():  # frame by frame: a late reply's frames are dropped
            flags, body = self._frame(sock, 0.0)
            if flags & COMMAND:
                self._command(sock, flags, body)

    def _complete(self) -> bool:
        """Whether the buffer holds at least one whole frame."""
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[0] & LONG:
            return len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[1:9], "big")
        return len(buf) >= 2 + buf[1]

    def _command(self, sock: _socket.socket, flags: int, body: bytes) -> None:
        """A command between messages: PING is answered, ERROR ends the connection."""
        name, rest = _command_parts(flags, body)
        if name == b"PING":  # [TTL:2][context]: answered with the context
            sock.sendall(_command(b"PONG", bytes(rest[2:])))
        elif name == b"ERROR":
            raise Gone("the server sent ERROR")

    def _frame(self, sock: _socket.socket, deadline: float) -> tuple[int, bytes]:
        head = self._take(sock, 2, deadline, consume=False)
        flags = head[0]
        if flags & ~(MORE | LONG | COMMAND):
            raise Gone(f"bad frame flags {flags:#x}")
        if flags & LONG:
            size = int.from_bytes(self._take(sock, 9, deadline, consume=False)[1:9], "big")
            start = 9
        else:
            size, start = head[1], 2
        self._check_size(size, _SLACK)
        whole = self._take(sock, start + size, deadline)
        return flags, bytes(whole[start:])


def _command_parts(flags: int, body: bytes) -> tuple[bytes, bytes]:
    """(name, the rest) of a command frame; Gone for anything else."""
    if not flags & COMMAND or not body or len(body) < 1 + body[0]:
        raise Gone("expected a ZMTP command")
    n = body[0]
    return bytes(body[1 : 1 + n]), body[1 + n :]
