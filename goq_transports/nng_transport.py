"""The nng transport: pynng Pair1 sockets, the server polyamorous (one pipe per client), every
frame prefixed by an 8-byte request id. The hot path calls nng through pynng's cffi `lib`.

A reply goes back on the pipe its request came in on, without blocking; a client matches replies
to its request by id and drops any other (late replies to requests it gave up on).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import pynng
from pynng._nng import ffi, lib

from goq_core.errors import FrameTooBig, TransportError, TransportTimeout
from goq_core.interfaces import DEFAULT_MAX_FRAME
from goq_transports.common import REQID_LEN, check_tcp_address, first_reqid, retry_in_use

_RECV_TIMEOUT = b"recv-timeout"
_SEND_TIMEOUT = b"send-timeout"
_RECONNECT_MIN_MS = 20
_RECONNECT_MAX_MS = 500
_SEND_BUFFER = 8192  # replies queued in the server socket (nng's maximum)


def _ms(timeout: float | None) -> int:
    """nng milliseconds for a timeout in seconds (None: forever)."""
    return -1 if timeout is None else max(0, int(timeout * 1000 + 0.5))


def _strerror(err: int) -> str:
    return ffi.string(lib.nng_strerror(err)).decode()


class NngServer:
    """Pair1 polyamorous listener; a peer handle is (pipe id, request id)."""

    def __init__(self, address: str, max_frame: int) -> None:
        check_tcp_address(address)
        self.address = address
        # The poly socket hands replies to pipes through one socket-wide queue; without a
        # buffer a non-blocking send fails whenever that hand-over is busy.
        self._sock = pynng.Pair1(
            polyamorous=True,
            recv_max_size=max_frame + REQID_LEN,
            send_buffer_size=_SEND_BUFFER,
        )
        self._sid = self._sock.socket
        self._recv_ms: int | None = None
        self._msg_p = ffi.new("nng_msg **")
        self._out_p = ffi.new("nng_msg **")
        self._pipe_p = ffi.new("nng_pipe *")
        self._int_p = ffi.new("int *")
        try:
            retry_in_use(lambda: self._sock.listen(address), _in_use)
        except pynng.NNGException as exc:
            self._sock.close()
            raise TransportError(f"cannot listen on {address}: {exc}") from None

    def recv(self, timeout: float | None) -> tuple[Hashable, bytes] | None:
        ms = _ms(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if ms != self._recv_ms:
                lib.nng_socket_set_ms(self._sid, _RECV_TIMEOUT, ms)
                self._recv_ms = ms
            err = lib.nng_recvmsg(self._sid, self._msg_p, 0)
            if err:
                if err == lib.NNG_ETIMEDOUT or err == lib.NNG_EAGAIN:
                    return None
                raise TransportError(f"nng recv on {self.address}: {_strerror(err)}")
            msg = self._msg_p[0]
            size = lib.nng_msg_len(msg)
            if size >= REQID_LEN:
                body = ffi.buffer(lib.nng_msg_body(msg), size)
                peer = (lib.nng_pipe_id(lib.nng_msg_get_pipe(msg)), body[:REQID_LEN])
                data = body[REQID_LEN:]
                lib.nng_msg_free(msg)
                return peer, data
            lib.nng_msg_free(msg)  # too short to carry a request id: not one of ours
            if deadline is not None:
                ms = _ms(max(0.0, deadline - time.monotonic()))

    def reply(self, peer: Hashable, data: bytes) -> bool:
        try:
            pipe_id, reqid = peer  # type: ignore[misc]
            pipe = self._pipe_p[0]
            pipe.id = pipe_id
            # A pipe that is gone has no options any more: that is our "client gone" test.
            if lib.nng_pipe_get_int(pipe, b"recv-size-max", self._int_p) == lib.NNG_ENOENT:
                return False
            msg_p = self._out_p
            if lib.nng_msg_alloc(msg_p, 0):
                return False
            msg = msg_p[0]
            if lib.nng_msg_append(msg, reqid, REQID_LEN) or lib.nng_msg_append(
                msg, data, len(data)
            ):
                lib.nng_msg_free(msg)
                return False
            lib.nng_msg_set_pipe(msg, pipe)
            if lib.nng_sendmsg(self._sid, msg, lib.NNG_FLAG_NONBLOCK):
                lib.nng_msg_free(msg)
                return False
            return True
        except Exception:
            return False

    def close(self) -> None:
        self._sock.close()


class NngClient:
    """Pair1 dialler; reconnects by itself. One request at a time (a lock serialises callers)."""

    def __init__(self, address: str, max_frame: int) -> None:
        check_tcp_address(address)
        self.address = address
        self.max_frame = max_frame
        self._sock = pynng.Pair1(
            recv_max_size=max_frame + REQID_LEN,
            reconnect_time_min=_RECONNECT_MIN_MS,
            reconnect_time_max=_RECONNECT_MAX_MS,
        )
        self._sid = self._sock.socket
        self._next = first_reqid()
        self._lock = threading.Lock()
        self._recv_ms: int | None = None
        self._send_ms: int | None = None
        self._buf_p = ffi.new("char **")
        self._size_p = ffi.new("size_t *")
        try:
            self._sock.dial(address, block=False)
        except pynng.NNGException as exc:
            self._sock.close()
            raise TransportError(f"cannot dial {address}: {exc}") from None

    def _set(self, name: bytes, attr: str, ms: int) -> None:
        if getattr(self, attr) != ms:
            lib.nng_socket_set_ms(self._sid, name, ms)
            setattr(self, attr, ms)

    def request(self, data: bytes, timeout: float) -> bytes:
        if len(data) > self.max_frame:
            raise FrameTooBig(f"request of {len(data)} bytes exceeds {self.max_frame}")
        with self._lock:
            return self._request(data, timeout)

    def _request(self, data: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        ms = _ms(timeout)
        self._next = (self._next + 1) & 0xFFFF_FFFF_FFFF_FFFF
        reqid = self._next.to_bytes(REQID_LEN, "big")
        frame = reqid + data
        self._set(_SEND_TIMEOUT, "_send_ms", ms)
        err = lib.nng_send(self._sid, frame, len(frame), 0)
        if err:
            self._fail(err, timeout)
        recv_ms = ms
        if time.monotonic() - deadline + timeout > 0.005:  # send waited for a connection
            recv_ms = _ms(max(0.0, deadline - time.monotonic()))
        buf_p, size_p = self._buf_p, self._size_p
        while True:
            self._set(_RECV_TIMEOUT, "_recv_ms", recv_ms)
            err = lib.nng_recv(self._sid, buf_p, size_p, lib.NNG_FLAG_ALLOC)
            if err:
                self._fail(err, timeout)
            size = size_p[0]
            raw = ffi.buffer(buf_p[0], size)
            if size >= REQID_LEN and raw[:REQID_LEN] == reqid:
                reply = raw[REQID_LEN:]
                lib.nng_free(buf_p[0], size)
                return reply
            lib.nng_free(buf_p[0], size)  # a late reply to an abandoned request
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"no reply from {self.address} within {timeout:g} s")
            recv_ms = _ms(left)

    def _fail(self, err: int, timeout: float) -> None:
        if err == lib.NNG_ETIMEDOUT or err == lib.NNG_EAGAIN:
            raise TransportTimeout(f"no reply from {self.address} within {timeout:g} s")
        raise TransportError(f"nng request to {self.address}: {_strerror(err)}")

    def close(self) -> None:
        # No lock: closing an nng socket is thread-safe and wakes a request blocked in it.
        self._sock.close()


def _in_use(exc: BaseException) -> bool:
    return isinstance(exc, pynng.AddressInUse)


class NngTransport:
    """Frames over nng (pynng) Pair1 sockets."""

    name = "nng"

    def listen(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> NngServer:
        return NngServer(address, max_frame)

    def dial(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> NngClient:
        return NngClient(address, max_frame)
