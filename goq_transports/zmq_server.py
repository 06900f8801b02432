"""The zmq transport's server end: a ROUTER socket (pyzmq, sync), every request received as
[connection id, request id, payload] and answered as [request id, reply] to that connection.

ROUTER_MANDATORY makes a reply to a client that is gone fail at once (reply() returns False):
libzmq drops a peer's routing id as soon as its TCP connection closes, so a reply to a client
process that was killed fails within a millisecond or so of its death (the kernel closes its
sockets; measured by tests/test_transport_contract.py). The client end is
goq_transports.zmtp_client (no pyzmq).

Memory a peer without the key can make the server hold (bench/keyless_flood.py measures it):
- A frame is refused (and the connection closed) as soon as its header announces more than
  max_frame bytes (MAXMSGSIZE); libzmq allocates the frame when its header arrives, but only the
  pages actually received become resident.
- Each connection queues at most _RCVHWM messages for the server thread, and stops reading its
  socket beyond that; so a connection holds at most one frame in progress while the server
  keeps up, and (_RCVHWM + 1) frames when the server thread stalls.
- ZMTP heartbeats: the server PINGs every _HEARTBEAT_IVL_MS and drops a connection from which no
  complete frame or command (a PONG counts) arrived within _HEARTBEAT_TIMEOUT_MS of a PING. A
  live client answers PINGs while its request is held, even for hours (zmtp_client reads its
  socket while it waits), so only peers that stopped talking (or trickle one frame for longer
  than that) go, and a client's idle connection, dropped, is dialled afresh on its next request; a
  half-sent frame is freed within _HEARTBEAT_IVL_MS + _HEARTBEAT_TIMEOUT_MS (12 s) of the last
  complete one. The flip side: a legitimate frame must arrive whole within that time (a 5 MiB
  frame needs about 0.5 MB/s; output and submits come in chunks of 1 and 2 MiB).
- A connection must finish the ZMTP handshake within _HANDSHAKE_IVL_MS.
What zmq cannot bound: the number of connections. libzmq has no limit on accepted connections
and no way to close one by routing id; they are bounded only by the process's open-file limit
(RLIMIT_NOFILE) or a firewall. So the bound is connections x (max_frame + a few KiB) while the
server keeps up, for as long as those peers keep sending.
"""

from __future__ import annotations

import time

import zmq

from goq_core.errors import TransportError
from goq_transports.common import REQID_LEN, check_tcp_address, retry_in_use

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Hashable

_RCVHWM = 4  # messages queued per connection for the server (goq clients send one at a time)
_HEARTBEAT_IVL_MS = 2_000  # the server PINGs each connection this often
_HEARTBEAT_TIMEOUT_MS = 10_000  # and drops it when nothing whole came back within this
_HANDSHAKE_IVL_MS = 5_000  # a connection must finish the ZMTP handshake within this


def _ms(timeout: float | None) -> int:
    """zmq milliseconds for a timeout in seconds (None: forever)."""
    return -1 if timeout is None else max(0, int(timeout * 1000 + 0.5))


class ZmqServer:
    """ROUTER listener; a peer handle is (connection identity, request id)."""

    def __init__(
        self,
        address: str,
        max_frame: int,
        *,
        heartbeat_ivl_ms: int = _HEARTBEAT_IVL_MS,
        heartbeat_timeout_ms: int = _HEARTBEAT_TIMEOUT_MS,
    ) -> None:
        check_tcp_address(address)
        self.address = address
        # A context of its own, terminated on close: that is what flushes the last replies.
        self._ctx = ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, max_frame)
        sock.setsockopt(zmq.RCVHWM, _RCVHWM)
        sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, heartbeat_timeout_ms)
        sock.setsockopt(zmq.HANDSHAKE_IVL, _HANDSHAKE_IVL_MS)
        self._sock = sock
        self._rcv_ms: int | None = None
        try:
            retry_in_use(lambda: sock.bind(address), _in_use)
        except zmq.ZMQError as exc:
            sock.close(0)
            ctx.term()
            raise TransportError(f"cannot listen on {address}: {exc}") from None

    def recv(self, timeout: float | None) -> tuple[Hashable, bytes] | None:
        if timeout == 0 and not self._sock.poll(0, zmq.POLLIN):
            return None  # the server's "anything else queued?" check: no exception to build
        ms = _ms(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._sock
        while True:
            if ms != self._rcv_ms:
                sock.setsockopt(zmq.RCVTIMEO, ms)
                self._rcv_ms = ms
            try:
                parts = sock.recv_multipart()
            except zmq.Again:
                return None
            except zmq.ZMQError as exc:
                raise TransportError(f"zmq recv on {self.address}: {exc}") from None
            if len(parts) == 3 and len(parts[1]) == REQID_LEN:
                return (parts[0], parts[1]), parts[2]
            # Not one of ours (wrong shape): drop it and keep waiting out the timeout.
            if deadline is not None:
                ms = _ms(max(0.0, deadline - time.monotonic()))

    def reply(self, peer: Hashable, data: bytes) -> bool:
        try:
            ident, reqid = peer  # type: ignore[misc]
            self._sock.send_multipart((ident, reqid, data), zmq.NOBLOCK)
            return True
        except (zmq.ZMQError, TypeError, ValueError):
            return False  # EHOSTUNREACH: client gone; EAGAIN: its queue is full

    def close(self) -> None:
        # Linger a little so the last replies (e.g. the ack of `goq shutdown`) go out; the
        # context's term() waits for them (at most the linger).
        self._sock.close(linger=_CLOSE_LINGER_MS)
        self._ctx.term()


_CLOSE_LINGER_MS = 500


def _in_use(exc: BaseException) -> bool:
    return isinstance(exc, zmq.ZMQError) and exc.errno == zmq.EADDRINUSE
