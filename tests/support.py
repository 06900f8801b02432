"""Small helpers shared by the tests: a free loopback port, bounded polling, a call in a thread,
an echoing transport server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.02):
    """Poll until predicate() is truthy (returning it) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list]:
    """Run fn in a thread; its result (or exception) lands in the returned list."""
    out: list = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


class Echo:
    """A transport server loop in a thread replying b"re:" + request at once, until stopped
    (stop() closes the server)."""

    def __init__(self, server) -> None:
        self.server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                got = self.server.recv(0.05)
                if got is not None:
                    self.server.reply(got[0], b"re:" + got[1])
        finally:
            self.server.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
