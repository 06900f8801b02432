"""The nng transport: a pynng Pair1 polyamorous server (goq_transports.nng_server) and Pair1
clients speaking the SP protocol themselves (goq_transports.sp_client), so that dialling imports
no pynng. Every frame carries an 8-byte request id before its payload.
"""

from __future__ import annotations

from goq_core.limits import MAX_FRAME as DEFAULT_MAX_FRAME
from goq_transports.sp_client import SpClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    from goq_transports.nng_server import NngServer


class NngTransport:
    """Frames over nng Pair1: the server end is nng's (pynng), the client end goq's own."""

    name = "nng"

    def listen(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> NngServer:
        from goq_transports.nng_server import NngServer

        return NngServer(address, max_frame)

    def dial(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> SpClient:
        return SpClient(address, max_frame)
