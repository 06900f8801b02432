"""The in-process transport: listeners live in the Transport instance, requests are queued
objects and replies wake the waiting caller. For tests and single-process setups.

A reply to a request whose client has closed (or stopped waiting) returns False; closing a
client wakes its waiting request with a TransportError. Nothing here is reachable from outside
the process, so there is no keyless peer to bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from goq_core.errors import FrameTooBig, TransportError, TransportTimeout
from goq_core.interfaces import DEFAULT_MAX_FRAME


@dataclass(slots=True, eq=False)
class _Pending:
    """One request waiting for its reply; the server's peer handle."""

    client: MemoryClient
    done: threading.Event = field(default_factory=threading.Event)
    reply: bytes | None = None
    abandoned: bool = False  # the caller stopped waiting (timeout) or the client closed


class MemoryServer:
    """The listening end: a queue of (pending request, bytes)."""

    def __init__(self, transport: MemoryTransport, address: str, max_frame: int) -> None:
        self.address = address
        self.max_frame = max_frame
        self.closed = False
        self._transport = transport
        self._inbox: deque[tuple[_Pending, bytes]] = deque()
        self._ready = threading.Condition(threading.Lock())

    def _put(self, pending: _Pending, data: bytes) -> None:
        with self._ready:
            if not self.closed:
                self._inbox.append((pending, data))
                self._ready.notify()

    def recv(self, timeout: float | None) -> tuple[Hashable, bytes] | None:
        with self._ready:
            if not self._inbox and not self.closed:
                self._ready.wait_for(lambda: self._inbox or self.closed, timeout)
            if self._inbox:
                return self._inbox.popleft()
            return None

    def reply(self, peer: Hashable, data: bytes) -> bool:
        if not isinstance(peer, _Pending):
            return False
        with peer.client.lock:
            if peer.abandoned or peer.done.is_set() or peer.client.closed:
                return False
            peer.reply = bytes(data)
            peer.done.set()
            return True

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._inbox.clear()
            self._ready.notify_all()
        self._transport._forget(self)


class MemoryClient:
    """The dialling end: looks the listener up at each request, so it follows a server that
    closed and listened again on the same name."""

    def __init__(self, transport: MemoryTransport, address: str, max_frame: int) -> None:
        self.address = address
        self.max_frame = max_frame
        self.closed = False
        self.lock = threading.Lock()  # guards the abandoned/done hand-over with reply()
        self._transport = transport
        self._pending: _Pending | None = None  # the request waiting now, woken by close()

    def request(self, data: bytes, timeout: float) -> bytes:
        if self.closed:
            raise TransportError("request on a closed client")
        if len(data) > self.max_frame:
            raise FrameTooBig(f"request of {len(data)} bytes exceeds {self.max_frame}")
        deadline = time.monotonic() + timeout
        server = self._transport._wait_listener(self.address, deadline)
        if server is None:
            raise TransportTimeout(f"no server at {self.address} within {timeout:g} s")
        if len(data) > server.max_frame:
            raise FrameTooBig(f"request of {len(data)} bytes refused by {self.address}")
        pending = _Pending(self)
        with self.lock:
            if self.closed:
                raise TransportError("request on a closed client")
            self._pending = pending
        server._put(pending, bytes(data))
        pending.done.wait(max(0.0, deadline - time.monotonic()))
        with self.lock:
            self._pending = None
            if not pending.done.is_set():
                pending.abandoned = True
                raise TransportTimeout(f"no reply from {self.address} within {timeout:g} s")
            if pending.reply is None:  # woken by close()
                raise TransportError("client closed while waiting for a reply")
        reply = pending.reply
        assert reply is not None
        if len(reply) > self.max_frame:
            raise FrameTooBig(f"reply of {len(reply)} bytes exceeds {self.max_frame}")
        return reply

    def close(self) -> None:
        with self.lock:
            self.closed = True
            pending, self._pending = self._pending, None
            if pending is not None:
                pending.abandoned = True
                pending.done.set()


class MemoryTransport:
    """Listeners by name (any string, e.g. memory://x), private to this instance."""

    name = "memory"

    def __init__(self) -> None:
        self._listeners: dict[str, MemoryServer] = {}
        self._changed = threading.Condition(threading.Lock())

    def listen(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> MemoryServer:
        with self._changed:
            if address in self._listeners:
                raise TransportError(f"address in use: {address}")
            server = MemoryServer(self, address, max_frame)
            self._listeners[address] = server
            self._changed.notify_all()
        return server

    def dial(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> MemoryClient:
        return MemoryClient(self, address, max_frame)

    def _wait_listener(self, address: str, deadline: float) -> MemoryServer | None:
        with self._changed:
            while True:
                server = self._listeners.get(address)
                left = deadline - time.monotonic()
                if server is not None or left <= 0:
                    return server
                self._changed.wait(left)

    def _forget(self, server: MemoryServer) -> None:
        with self._changed:
            if self._listeners.get(server.address) is server:
                del self._listeners[server.address]
