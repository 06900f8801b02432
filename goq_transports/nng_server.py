"""The nng transport's server end: a pynng Pair1 polyamorous socket (one pipe per client), every
frame prefixed by an 8-byte request id. The hot path calls nng through pynng's cffi `lib`.

A reply goes back on the pipe its request came in on, without blocking; a client (sp_client.py)
matches replies to its request by id and drops any other (late replies to requests it gave up
on).

Pair1 silently discards a message sent to a pipe that has closed, so the server tracks its live
pipes through nng's pipe callbacks: reply() returns False as soon as the pipe a request came on
is gone (a client process that was killed: within a millisecond or so of its death, when the
kernel closes its socket; measured by tests/test_transport_contract.py).

Memory a peer without the key can make the server hold (bench/keyless_flood.py measures it):
- A frame whose header announces more than max_frame bytes closes its pipe (recv-size-max); nng
  allocates a frame when its header arrives, but only the pages actually received become
  resident. Each pipe reads one frame at a time and waits until the socket takes it; the socket
  queues _RECV_BUFFER frame(s). So a pipe holds at most one frame in progress and one waiting.
- At most MAX_PIPES pipes at once: more are closed as they come (pre-add pipe callback).
- Idle pipes: nng has no heartbeat or idle timeout of its own (TCP keepalive finds only dead
  hosts, not silent peers), so the server closes a pipe from which no whole frame has come for
  IDLE_PIPE_SEC while no request of it is held. A half-sent frame is freed within IDLE_PIPE_SEC
  (+ REAP_EVERY) of the pipe's last whole frame. A live client that was idle that long simply
  dials again at its next request; a held request (a worker waiting for work, for
  hours if need be) keeps its pipe. The flip side: a legitimate frame must arrive whole within
  IDLE_PIPE_SEC of the pipe's previous one (a 5 MiB frame: about 350 KB/s).
- nng's TCP transport drops a connection that does not send its SP header within 10 s.
What nng cannot bound: a peer that keeps sending whole frames keeps its pipe and its memory; so
the bound is MAX_PIPES x 2 x (max_frame + 8) while such peers keep sending, freed when they stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import pynng
from pynng._nng import ffi, lib

from goq_core.errors import TransportError
from goq_transports.common import REQID_LEN, check_tcp_address, retry_in_use

_RECV_TIMEOUT = b"recv-timeout"
_SEND_BUFFER = 8192  # replies queued in the server socket (nng's maximum)
_RECV_BUFFER = 1  # whole frames queued in the server socket for its thread (nng's default)
MAX_PIPES = 4096  # connections a server takes at once; more are closed as they come
IDLE_PIPE_SEC = 15.0  # a pipe with no whole frame this long and no held request is closed
REAP_EVERY = 1.0  # seconds between two looks for idle pipes (recv waits no longer at once)


def _ms(timeout: float | None) -> int:
    """nng milliseconds for a timeout in seconds (None: forever)."""
    return -1 if timeout is None else max(0, int(timeout * 1000 + 0.5))


def _strerror(err: int) -> str:
    return ffi.string(lib.nng_strerror(err)).decode()


class NngServer:
    """Pair1 polyamorous listener; a peer handle is (pipe id, request id)."""

    def __init__(
        self,
        address: str,
        max_frame: int,
        *,
        max_pipes: int = MAX_PIPES,
        idle_sec: float = IDLE_PIPE_SEC,
    ) -> None:
        check_tcp_address(address)
        self.address = address
        self.max_pipes = max_pipes
        self.idle_sec = idle_sec
        self.refused_pipes = 0  # pipes closed because MAX_PIPES were open
        self.reaped_pipes = 0  # pipes closed for being idle
        # Live pipes: id -> monotonic time of its last whole frame; and requests held per pipe.
        self._seen: dict[int, float] = {}
        self._held: dict[int, int] = {}
        self._pipes_lock = threading.Lock()
        self._next_reap = time.monotonic() + REAP_EVERY
        # The poly socket hands replies to pipes through one socket-wide queue; without a
        # buffer a non-blocking send fails whenever that hand-over is busy.
        self._sock = pynng.Pair1(
            polyamorous=True,
            recv_max_size=max_frame + REQID_LEN,
            recv_buffer_size=_RECV_BUFFER,
            send_buffer_size=_SEND_BUFFER,
        )
        # Pipe callbacks must be in place before the socket listens.
        self._sock.add_pre_pipe_connect_cb(self._on_pipe_add)
        self._sock.add_post_pipe_remove_cb(self._on_pipe_remove)
        self._sid = self._sock.socket
        self._recv_ms: int | None = None
        self._msg_p = ffi.new("nng_msg **")
        self._out_p = ffi.new("nng_msg **")
        self._pipe_p = ffi.new("nng_pipe *")
        self._close_p = ffi.new("nng_pipe *")
        self._int_p = ffi.new("int *")
        try:
            retry_in_use(lambda: self._sock.listen(address), _in_use)
        except pynng.NNGException as exc:
            self._sock.close()
            raise TransportError(f"cannot listen on {address}: {exc}") from None

    # ------------------------------------------------------------------ pipe bookkeeping
    # (called in nng's threads)

    def _on_pipe_add(self, pipe: pynng.Pipe) -> None:
        with self._pipes_lock:
            full = len(self._seen) >= self.max_pipes
            if not full:
                self._seen[pipe.id] = time.monotonic()
        if full:
            self.refused_pipes += 1
            pipe.close()

    def _on_pipe_remove(self, pipe: pynng.Pipe) -> None:
        with self._pipes_lock:
            self._seen.pop(pipe.id, None)
            self._held.pop(pipe.id, None)

    def live_pipes(self) -> int:
        """How many client connections are open now."""
        return len(self._seen)

    def _reap(self, now: float) -> None:
        """Close the pipes idle for idle_sec with no request held."""
        self._next_reap = now + REAP_EVERY
        limit = now - self.idle_sec
        with self._pipes_lock:
            idle = [p for p, seen in self._seen.items() if seen < limit and not self._held.get(p)]
        pipe = self._close_p[0]
        for pipe_id in idle:
            pipe.id = pipe_id
            lib.nng_pipe_close(pipe)  # its remove callback forgets it
            self.reaped_pipes += 1

    # ------------------------------------------------------------------ ServerEnd

    def recv(self, timeout: float | None) -> tuple[Hashable, bytes] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self._next_reap:
                self._reap(now)
            left = None if deadline is None else max(0.0, deadline - now)
            wait = min(REAP_EVERY, left) if left is not None else REAP_EVERY
            ms = _ms(wait)
            if ms != self._recv_ms:
                lib.nng_socket_set_ms(self._sid, _RECV_TIMEOUT, ms)
                self._recv_ms = ms
            err = lib.nng_recvmsg(self._sid, self._msg_p, 0)
            if err:
                if err == lib.NNG_ETIMEDOUT or err == lib.NNG_EAGAIN:
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    continue  # a slice of a longer wait ended: look for idle pipes
                raise TransportError(f"nng recv on {self.address}: {_strerror(err)}")
            msg = self._msg_p[0]
            size = lib.nng_msg_len(msg)
            pipe_id = lib.nng_pipe_id(lib.nng_msg_get_pipe(msg))
            with self._pipes_lock:
                if pipe_id in self._seen:
                    self._seen[pipe_id] = time.monotonic()
                    if size >= REQID_LEN:
                        self._held[pipe_id] = self._held.get(pipe_id, 0) + 1
            if size >= REQID_LEN:
                body = ffi.buffer(lib.nng_msg_body(msg), size)
                peer = (pipe_id, body[:REQID_LEN])
                data = body[REQID_LEN:]
                lib.nng_msg_free(msg)
                return peer, data
            lib.nng_msg_free(msg)  # too short to carry a request id: not one of ours

    def reply(self, peer: Hashable, data: bytes) -> bool:
        try:
            pipe_id, reqid = peer  # type: ignore[misc]
            with self._pipes_lock:
                if pipe_id not in self._seen:
                    return False  # the pipe closed: Pair1 would drop the reply silently
                held = self._held.get(pipe_id, 0)
                if held > 1:
                    self._held[pipe_id] = held - 1
                else:
                    self._held.pop(pipe_id, None)
            pipe = self._pipe_p[0]
            pipe.id = pipe_id
            # A pipe that is gone has no options any more: the same test, from nng itself.
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


def _in_use(exc: BaseException) -> bool:
    return isinstance(exc, pynng.AddressInUse)
