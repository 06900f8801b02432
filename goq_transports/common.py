"""Small pieces shared by the socket transports: tcp address checks, request ids and the
retry of a listen whose port is still being released by a socket closed a moment ago.
"""

from __future__ import annotations

import os
import time

from goq_core.errors import TransportError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the CLI's start-up 3 ms; only type checkers need it here
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

REQID_LEN = 8  # bytes of request id in front of every frame (big-endian counter)
RELISTEN_GRACE = 0.5  # seconds a listen retries an address still held by a closing socket


def check_tcp_address(address: str) -> tuple[str, int]:
    """(host, port) of a tcp://HOST:PORT address; TransportError if it is not one."""
    if not address.startswith("tcp://"):
        raise TransportError(f"bad address {address!r}: expected tcp://HOST:PORT")
    host, sep, port = address[6:].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TransportError(f"bad address {address!r}: expected tcp://HOST:PORT")
    return host, int(port)


def first_reqid() -> int:
    """A random start for a client's request counter, so that ids from a client that went
    away and a new one on the same connection slot do not collide."""
    return int.from_bytes(os.urandom(6), "big")


def retry_in_use(attempt: Callable[[], T], in_use: Callable[[BaseException], bool]) -> T:
    """Run `attempt`; while it fails with an address-in-use error, retry for up to
    RELISTEN_GRACE seconds (a socket closed just before may still hold the port)."""
    deadline = time.monotonic() + RELISTEN_GRACE
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not in_use(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)
