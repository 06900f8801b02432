"""The nng transport's client end: a Pair1 peer speaking the SP wire protocol itself, so that
dialling the nng server costs no pynng import and no nng threads (stream_client.py does the rest).

SP over TCP (nng's TCP transport): an 8-byte header each way ("\\0SP\\0", the protocol number,
0x11 for Pair1, two reserved bytes), then messages, each an 8-byte big-endian length and the
message. A Pair1 message starts with a 32-bit hop count (1 as sent; the server refuses more
than its TTL and closes a pipe whose count is over 255), then goq's request id and payload.
There is no heartbeat: the server closes a pipe idle for a while with no request held, and it
is dialled afresh on the next request. A server with no place free closes new pipes at once,
which is a timeout, as with nng's own dialer; a server speaking another protocol (e.g. zmq's
greeting) is a TransportError that says so.
"""

from __future__ import annotations

from goq_core.errors import TransportError
from goq_transports.common import REQID_LEN
from goq_transports.stream_client import Gone, StreamClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

PAIR1 = 0x11
HEADER = b"\x00SP\x00" + PAIR1.to_bytes(2, "big") + b"\x00\x00"
HOPS = (1).to_bytes(4, "big")  # the hop count of a message sent directly to its peer
_LENGTH = 8  # bytes of a message's length
_SLACK = 4 + REQID_LEN  # a message's own bytes beyond its payload: hop count, request id


class SpClient(StreamClient):
    """One Pair1 connection to an nng Pair1 (polyamorous) server."""

    protocol = "nng (SP)"

    def _greet(self, sock: _socket.socket, deadline: float) -> None:
        """SP headers both ways; TransportError if the server is not a Pair1 SP peer."""
        sock.sendall(HEADER)
        head = self._take(sock, len(HEADER), deadline)
        if head[:4] != b"\x00SP\x00":
            raise self.not_this_protocol()
        proto = int.from_bytes(head[4:6], "big")
        if proto != PAIR1:
            raise TransportError(
                f"the server at {self.address} speaks SP protocol {proto:#x}, not Pair1 "
                f"({PAIR1:#x}): is it a goq server?"
            )

    def _head(self, reqid: bytes, size: int) -> bytes:
        return (size + _SLACK).to_bytes(_LENGTH, "big") + HOPS + reqid

    def _message(self, sock: _socket.socket, deadline: float) -> tuple[bytes, bytes] | None:
        """One message: (id, reply); None for one too short to carry an id."""
        size = int.from_bytes(self._take(sock, _LENGTH, deadline, consume=False)[:_LENGTH], "big")
        self._check_size(size, _SLACK)
        body = self._take(sock, _LENGTH + size, deadline)
        if size < 4 or int.from_bytes(body[_LENGTH : _LENGTH + 4], "big") > 0xFF:
            raise Gone("a message without a valid hop count")
        if size < _SLACK:
            return None
        start = _LENGTH + 4
        return bytes(body[start : start + REQID_LEN]), bytes(body[start + REQID_LEN :])

    def _pending(self, sock: _socket.socket) -> None:
        buf = self._buf  # no request is out: whole messages here are late replies
        while len(buf) >= _LENGTH and len(buf) >= _LENGTH + int.from_bytes(buf[:_LENGTH], "big"):
            self._message(sock, 0.0)
