"""The server runtime's own duties, without sockets: what it does with the kernel's actions."""

from __future__ import annotations

import os
from pathlib import Path

from goq_core.config import Settings
from goq_core.errors import StoreError
from goq_core.kernel import ReplyStoredJob
from goq_core.messages import Kind
from goq_core.roles.server import Server, ServerOptions


class RecordingEnd:
    def __init__(self) -> None:
        self.replies: list[tuple[object, bytes]] = []

    def reply(self, peer, data: bytes) -> bool:
        self.replies.append((peer, data))
        return True

    def close(self) -> None:
        return None


class BrokenStore:
    name = "broken"

    def get_job(self, jobid: int):
        raise StoreError("database disk image is malformed")


def test_unreadable_stored_job_is_answered_with_an_error_not_a_crash(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=1)
    server = Server(settings, os.urandom(32), options=ServerOptions(store="memory"))
    server.end = RecordingEnd()
    server.store = BrokenStore()
    server._reply_stored(ReplyStoredJob("waiter", b"n" * 16, 7))
    ((peer, frame),) = server.end.replies
    reply = server.wire.unpack(frame)
    assert peer == "waiter" and reply.kind == Kind.ERROR and reply.reply_to == b"n" * 16
    assert "job 7" in reply.text and "malformed" in reply.text
