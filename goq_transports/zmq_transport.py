"""The zmq transport: a ROUTER server (pyzmq, goq_transports.zmq_server) and DEALER clients
speaking ZMTP themselves (goq_transports.zmtp_client), so that dialling imports no pyzmq.

Every request is sent as the two parts [request id, payload] and answered as [request id,
reply]. The server end is imported when a server listens; a client never loads libzmq.
"""

from __future__ import annotations

from goq_core.limits import MAX_FRAME as DEFAULT_MAX_FRAME  # = goq_core.interfaces' (cheaper)
from goq_transports.zmtp_client import ZmtpClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    from goq_transports.zmq_server import ZmqServer


class ZmqTransport:
    """Frames over zmq ROUTER/DEALER; every server has a zmq context of its own."""

    name = "zmq"

    def listen(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> ZmqServer:
        from goq_transports.zmq_server import ZmqServer

        return ZmqServer(address, max_frame)

    def dial(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> ZmtpClient:
        return ZmtpClient(address, max_frame)
