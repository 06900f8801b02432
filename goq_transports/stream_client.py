"""The client end of the transports whose wire goq speaks itself over one TCP connection (zmq's
ZMTP in zmtp_client.py, nng's SP in sp_client.py): no pyzmq or pynng import, no I/O thread.

This module owns what both share: dialling (retried until the request's deadline), the read
buffer, request ids, skipping late replies, and the rules about a connection that ends:
- a request is sent only on a connection whose greeting completed, so one made while no server
  listens times out and never reaches a later server;
- before a request, what the server sent meanwhile is read without waiting: a connection it
  closed while ours sat idle (a heartbeat or idle timeout) is dialled afresh, and nothing was
  sent on it, so nothing is lost or sent twice; a request not sent whole is sent again on a new
  connection (the server cannot have taken a part of it);
- a connection that ends after the request went out is reported at once (TransportTimeout: no
  reply will come on another connection; the caller asks again);
- a frame larger than max_frame ends the connection.
A subclass says how to greet, how a request is framed, and how to read one message.
"""

from __future__ import annotations

import _socket  # socket's C core: `import socket` adds 3 ms to every `goq sub` (enums, selectors)
import _thread
import time

from goq_core.errors import FrameTooBig, TransportError, TransportTimeout
from goq_core.limits import MAX_FRAME as DEFAULT_MAX_FRAME
from goq_transports.common import REQID_LEN, check_tcp_address, first_reqid

RECONNECT_S = 0.02  # first pause between dials while no server listens
RECONNECT_MAX_S = 0.5  # and the longest
_RECV_CHUNK = 1 << 16
_ONE_WRITE = 4096  # a request smaller than this goes out in one sendall with its header


class Gone(Exception):
    """The connection ended (closed by the server, reset, or broke its protocol)."""


class StreamClient:
    """One connection to a server; reconnects by itself. One request at a time (a lock
    serialises callers), as every ClientEnd."""

    protocol = ""  # for messages, e.g. "zmq (ZMTP)"
    # When every connection within a request's time is closed during the greeting: a
    # TransportError with this text (None: a timeout, e.g. a server with no place free).
    cut_text: str | None = None

    def __init__(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        host, self._port = check_tcp_address(address)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # an IPv6 literal, tcp://[::1]:1776 (nng's servers take them)
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

    # -------------------------------------------------------------------------- the protocol

    def _greet(self, sock: _socket.socket, deadline: float) -> None:
        """Greet the server on a new connection: TransportError if it does not speak this
        protocol, Gone if it closed the connection."""
        raise NotImplementedError

    def _head(self, reqid: bytes, size: int) -> bytes:
        """What goes before a request's `size` bytes of data."""
        raise NotImplementedError

    def _message(self, sock: _socket.socket, deadline: float) -> tuple[bytes, bytes] | None:
        """Read one message: (request id, reply), or None for one that answers nothing (a
        command, a malformed reply); Gone when the connection must end."""
        raise NotImplementedError

    def _pending(self, sock: _socket.socket) -> None:
        """Handle the messages complete in the buffer, without waiting (no request is out,
        so each is a late reply or a command)."""
        raise NotImplementedError

    # -------------------------------------------------------------------------- one request

    def _request(self, data: bytes, deadline: float, timeout: float) -> bytes:
        self._next = (self._next + 1) & 0xFFFF_FFFF_FFFF_FFFF
        reqid = self._next.to_bytes(REQID_LEN, "big")
        head = self._head(reqid, len(data))
        while True:
            sock = self._connected(deadline, timeout)
            try:
                self._settle(sock)
                sock.settimeout(max(0.0, deadline - time.monotonic()))
                if len(data) < _ONE_WRITE:
                    sock.sendall(head + data)
                else:
                    sock.sendall(head)
                    sock.sendall(data)
            except (Gone, OSError) as exc:
                self._drop()  # not sent whole: the server cannot have taken it; send again
                if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
                    raise TransportTimeout(
                        f"no server at {self.address} within {timeout:g} s"
                    ) from None
                continue
            break
        try:
            while True:
                got = self._message(sock, deadline)
                if got is not None and got[0] == reqid:
                    return got[1]
        except TimeoutError:
            raise TransportTimeout(f"no reply from {self.address} within {timeout:g} s") from None
        except (Gone, OSError) as exc:
            self._drop()
            raise TransportTimeout(
                f"no reply from {self.address}: the connection ended ({exc or 'closed'})"
            ) from None

    # -------------------------------------------------------------------------- the connection

    def _connected(self, deadline: float, timeout: float) -> _socket.socket:
        """The live connection, dialled and greeted if need be, retrying until `deadline`."""
        if self._sock is not None:
            return self._sock
        pause = RECONNECT_S
        cuts = 0  # connections in a row the server closed during the greeting
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                # one cut may be a server stopping or starting; every try cut is a pattern
                if cuts >= 2 and self.cut_text is not None:
                    raise TransportError(f"the server at {self.address} {self.cut_text}")
                raise TransportTimeout(f"no server at {self.address} within {timeout:g} s")
            try:
                sock = _dial(self._host, self._port, left)
            except (ConnectionError, TimeoutError):
                cuts = 0
            except OSError as exc:  # no such host, no route...
                raise TransportError(f"cannot dial {self.address}: {exc}") from None
            else:
                self._buf.clear()
                try:
                    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                    sock.settimeout(max(0.0, deadline - time.monotonic()))
                    self._greet(sock, deadline)
                except TimeoutError:
                    sock.close()
                    raise TransportTimeout(
                        f"no {self.protocol} greeting from {self.address} within {timeout:g} s"
                    ) from None
                except (Gone, ConnectionError):
                    sock.close()
                    cuts += 1
                except TransportError:
                    sock.close()
                    raise
                except OSError as exc:
                    sock.close()
                    raise TransportError(f"cannot dial {self.address}: {exc}") from None
                else:
                    self._sock = sock
                    return sock
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, RECONNECT_MAX_S)

    def not_this_protocol(self) -> TransportError:
        """The error for a server that answers in another protocol."""
        return TransportError(
            f"the server at {self.address} does not speak {self.protocol}: is it running with "
            f"another transport (--transport / GOQ_TRANSPORT)?"
        )

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    # -------------------------------------------------------------------------- reading

    def _settle(self, sock: _socket.socket) -> None:
        """Before a request: read what is there already, without waiting; Gone if the server
        closed the connection meanwhile."""
        sock.settimeout(0.0)
        try:
            while True:
                chunk = sock.recv(_RECV_CHUNK)
                if not chunk:
                    raise Gone("closed by the server")
                self._buf += chunk
        except BlockingIOError:
            pass
        self._pending(sock)

    def _check_size(self, size: int, slack: int) -> None:
        """Gone for a frame over max_frame (+ `slack` bytes of the protocol's own)."""
        if size > self.max_frame + slack:
            raise Gone(f"a frame of {size} bytes exceeds {self.max_frame}")

    def _take(
        self, sock: _socket.socket, n: int, deadline: float, *, consume: bool = True
    ) -> bytes | bytearray:
        """The buffer's first n bytes, reading the socket until they are there (TimeoutError
        at `deadline`); with consume=False they stay in the buffer."""
        buf = self._buf
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(max(_RECV_CHUNK, n - len(buf)))
            if not chunk:
                raise Gone("closed by the server")
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
