"""The zmq transport's client end: a DEALER speaking ZMTP 3.1 (NULL mechanism) over a plain
socket, in Python, so that dialling the zmq server costs no pyzmq import and no I/O thread.

ZMTP (rfc.zeromq.org, 23/ZMTP and 37/ZMTP) on a TCP connection: a 64-byte greeting each way
(signature, version 3.1, mechanism "NULL", as-server 0), a READY command each way carrying the
socket types (ours DEALER, the server's ROUTER), then frames: a flags byte (bit 0 more frames
follow, bit 1 an 8-byte size instead of 1 byte, bit 2 a command) and the size. A request is
the two frames [request id, payload]; the ROUTER server answers [request id, reply]. The server
PINGs every connection (ZMTP heartbeats); we answer PONG while we wait for a reply, and a
connection left idle long enough to be dropped by the server is dialled afresh on the next
request (found closed before anything is sent, so nothing is lost or sent twice).

What libzmq's DEALER did for the server and the contract tests (tests/test_transport_contract.py)
holds here too: a request is sent only on a connection whose handshake completed (a request
made while no server listens times out and never reaches a later one); a reply with another
request id (a late answer to a timed-out request) is skipped; a frame larger than `max_frame`
ends the connection; a peer that does not greet as a zmq ROUTER is a TransportError that says
so (e.g. a server started with --transport nng).
"""

from __future__ import annotations

import _socket  # socket's C core: `import socket` adds 3 ms to every `goq sub` (enums, selectors)
import _thread
import time

from goq_core.errors import FrameTooBig, TransportError, TransportTimeout
from goq_core.limits import MAX_FRAME as DEFAULT_MAX_FRAME
from goq_transports.common import REQID_LEN, check_tcp_address, first_reqid

SIGNATURE = b"\xff" + bytes(8) + b"\x7f"  # the first 10 bytes of every ZMTP greeting
GREETING = SIGNATURE + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
GREETING_LEN = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04

_RECONNECT_S = 0.02  # first pause between dials while no server listens (libzmq's was 20 ms)
_RECONNECT_MAX_S = 0.5  # and the longest (libzmq's RECONNECT_IVL_MAX was 500 ms)
_RECV_CHUNK = 1 << 16


class _Gone(Exception):
    """The connection ended (closed by the server, reset, or failed its handshake)."""


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


class ZmtpClient:
    """One DEALER connection to a ROUTER; reconnects by itself. One request at a time (a lock
    serialises callers), as every ClientEnd."""

    def __init__(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        host, self._port = check_tcp_address(address)
        # an ASCII name as bytes: getaddrinfo would import the idna codec for a str (2 ms of a
        # CLI's start-up); a non-ASCII name stays str for it to encode
        self._host: str | bytes = host.encode() if host.isascii() else host
        self.address = address
        self.max_frame = max_frame
        self._sock: _socket.socket | None = None
        self._buf = bytearray()
        self._next = first_reqid()
        self._lock = _thread.allocate_lock()
        self._closed = False

    # -------------------------------------------------------------------------- the contract

    def request(self, data: bytes, timeout: float) -> bytes:
        if len(data) > self.max_frame:
            raise FrameTooBig(f"request of {len(data)} bytes exceeds {self.max_frame}")
        with self._lock:
            if self._closed:
                raise TransportError(f"connection to {self.address} is closed")
            return self._request(data, time.monotonic() + timeout, timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    # -------------------------------------------------------------------------- one request

    def _request(self, data: bytes, deadline: float, timeout: float) -> bytes:
        self._next = (self._next + 1) & 0xFFFF_FFFF_FFFF_FFFF
        reqid = self._next.to_bytes(REQID_LEN, "big")
        message = (
            _frame_header(MORE, REQID_LEN) + reqid + _frame_header(0, len(data)),
            data,
        )
        while True:
            sock = self._connected(deadline, timeout)
            try:
                self._settle(sock)  # PINGs answered, late replies skipped, a close noticed
                sock.settimeout(max(0.0, deadline - time.monotonic()))
                sock.sendall(message[0] + message[1] if len(data) < 4096 else message[0])
                if len(data) >= 4096:
                    sock.sendall(data)
            except (_Gone, OSError) as exc:
                # Not sent whole, so the server cannot have taken it: dial again and resend.
                self._drop()
                if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
                    raise TransportTimeout(
                        f"no server at {self.address} within {timeout:g} s"
                    ) from None
                continue
            break
        return self._reply(sock, reqid, deadline, timeout)

    def _reply(self, sock: _socket.socket, reqid: bytes, deadline: float, timeout: float) -> bytes:
        """The frames that answer `reqid`, skipping late replies; PINGs answered meanwhile."""
        try:
            while True:
                parts = self._message(sock, deadline)
                if len(parts) == 2 and parts[0] == reqid:
                    return parts[1]
        except TimeoutError:
            raise TransportTimeout(f"no reply from {self.address} within {timeout:g} s") from None
        except (_Gone, OSError) as exc:
            self._drop()
            # The request went out; no reply can come on another connection. Say so now
            # rather than at the deadline (a caller re-asks either way).
            raise TransportTimeout(
                f"no reply from {self.address}: the connection ended ({exc or 'closed'})"
            ) from None

    # -------------------------------------------------------------------------- the connection

    def _connected(self, deadline: float, timeout: float) -> _socket.socket:
        """The live connection, dialled and greeted if need be, retrying until `deadline`."""
        if self._sock is not None:
            return self._sock
        pause = _RECONNECT_S
        cut = False  # the last connection was closed by the peer during the handshake
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if cut:  # e.g. an nng server: it reads our greeting and hangs up
                    raise TransportError(
                        f"the server at {self.address} closes connections during the zmq "
                        f"handshake: is it running with another transport (--transport / "
                        f"GOQ_TRANSPORT)?"
                    )
                raise TransportTimeout(f"no server at {self.address} within {timeout:g} s")
            try:
                sock = _dial(self._host, self._port, left)
            except (ConnectionError, TimeoutError):
                cut = False
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, _RECONNECT_MAX_S)
                continue
            except OSError as exc:  # no such host, no route...
                raise TransportError(f"cannot dial {self.address}: {exc}") from None
            try:
                self._handshake(sock, deadline)
            except TimeoutError:
                sock.close()
                raise TransportTimeout(
                    f"no zmq handshake from {self.address} within {timeout:g} s"
                ) from None
            except (_Gone, ConnectionError):
                sock.close()
                self._buf.clear()
                cut = True
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, _RECONNECT_MAX_S)
                continue
            except OSError as exc:
                sock.close()
                raise TransportError(f"cannot dial {self.address}: {exc}") from None
            self._sock = sock
            return sock

    def _handshake(self, sock: _socket.socket, deadline: float) -> None:
        """Greetings and READY both ways; TransportError if the peer is not a zmq ROUTER."""
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._buf.clear()
        sock.settimeout(max(0.0, deadline - time.monotonic()))
        sock.sendall(GREETING + READY)
        head = self._take(sock, len(SIGNATURE), deadline)
        if head[0] != 0xFF or head[9] != 0x7F:
            sock.close()
            raise TransportError(
                f"the server at {self.address} does not speak zmq (ZMTP): is it running with "
                f"another transport (--transport / GOQ_TRANSPORT)?"
            )
        rest = self._take(sock, GREETING_LEN - len(SIGNATURE), deadline)
        if rest[0] < 3 or bytes(rest[2:22]).rstrip(b"\x00") != b"NULL":
            sock.close()
            raise TransportError(
                f"the server at {self.address} speaks ZMTP {rest[0]} with mechanism "
                f"{bytes(rest[2:22]).rstrip(bytes(1))!r}; goq's zmq transport needs 3.x NULL"
            )
        flags, body = self._frame(sock, deadline)
        name, rest_body = _command_parts(flags, body)
        if name == b"ERROR":
            sock.close()
            reason = rest_body[1 : 1 + rest_body[0]] if rest_body else b""
            raise TransportError(f"the server at {self.address} refused us: {reason!r}")
        try:
            kind = _properties(rest_body).get(b"socket-type") if name == b"READY" else None
        except ValueError:
            kind = None
        if kind != b"ROUTER":
            sock.close()
            raise TransportError(
                f"the server at {self.address} is not a goq zmq server (its zmq socket is "
                f"{kind!r}, not ROUTER)"
            )

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    # -------------------------------------------------------------------------- reading

    def _settle(self, sock: _socket.socket) -> None:
        """Before a request: read what is already there without waiting (PINGs to answer,
        late replies to skip); _Gone if the server closed the connection meanwhile."""
        sock.settimeout(0.0)
        try:
            while True:
                chunk = sock.recv(_RECV_CHUNK)
                if not chunk:
                    raise _Gone("closed by the server")
                self._buf += chunk
        except BlockingIOError:
            pass
        while self._complete():  # no request is out: any message here is a late reply
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

    def _message(self, sock: _socket.socket, deadline: float) -> list[bytes]:
        """The next message's frames, answering PINGs and skipping other commands."""
        parts: list[bytes] = []
        while True:
            flags, body = self._frame(sock, deadline)
            if flags & COMMAND:
                self._command(sock, flags, body)
                continue
            parts.append(body)
            if not flags & MORE:
                return parts
            if len(parts) > 2:  # not a goq reply: drain it as one unusable message
                parts = parts[:2] + [b""]

    def _command(self, sock: _socket.socket, flags: int, body: bytes) -> None:
        """A command between messages: PING is answered, ERROR ends the connection."""
        name, rest = _command_parts(flags, body)
        if name == b"PING":  # [TTL:2][context]: answered with the context
            sock.sendall(_command(b"PONG", bytes(rest[2:])))
        elif name == b"ERROR":
            raise _Gone("the server sent ERROR")

    def _frame(self, sock: _socket.socket, deadline: float) -> tuple[int, bytes]:
        head = self._take(sock, 2, deadline, consume=False)
        flags = head[0]
        if flags & ~(MORE | LONG | COMMAND):
            raise _Gone(f"bad frame flags {flags:#x}")
        if flags & LONG:
            size = int.from_bytes(self._take(sock, 9, deadline, consume=False)[1:9], "big")
            start = 9
        else:
            size, start = head[1], 2
        if size > self.max_frame + 64:  # room for a command's name and a request id
            raise _Gone(f"a frame of {size} bytes exceeds {self.max_frame}")
        whole = self._take(sock, start + size, deadline)
        return flags, bytes(whole[start:])

    def _take(
        self, sock: _socket.socket, n: int, deadline: float, *, consume: bool = True
    ) -> bytes | bytearray:
        """The buffer's first n bytes, reading the socket until they are there."""
        buf = self._buf
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(max(_RECV_CHUNK, n - len(buf)))
            if not chunk:
                raise _Gone("closed by the server")
            buf += chunk
        if not consume:
            return buf
        head = buf[:n]
        del buf[:n]
        return head


def _dial(host: str | bytes, port: int, timeout: float) -> _socket.socket:
    """A TCP connection to the first of host's addresses that takes it (as
    socket.create_connection); the last failure is raised when none does."""
    failure: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        return sock
    raise failure or OSError(f"no address for {host!r}")


def _command_parts(flags: int, body: bytes) -> tuple[bytes, bytes]:
    """(name, the rest) of a command frame; _Gone for anything else."""
    if not flags & COMMAND or not body or len(body) < 1 + body[0]:
        raise _Gone("expected a ZMTP command")
    n = body[0]
    return bytes(body[1 : 1 + n]), body[1 + n :]
