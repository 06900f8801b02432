"""The server runtime's own duties, without sockets: what it does with the kernel's actions."""

from __future__ import annotations

import os
import time
from pathlib import Path

from goq_core.config import Settings
from goq_core.errors import StoreError
from goq_core.kernel import ReplyStoredJob
from goq_core.messages import Job, JobState, Kind, Message
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


# ----------------------------------------------------------------------------- issue 9


class FlakyStore:
    """A store whose commits fail (transiently, like a full disk) while `full` is set."""

    name = "flaky"

    def __init__(self) -> None:
        self.full = False
        self.jobs: dict[int, object] = {}
        self.nonces: list[tuple[bytes, int]] = []
        self.attempts: list = []
        self.commits = 0

    def save(
        self, jobs, counters, nonces=(), forget_nonces_before_ns: int = 0, attempts=()
    ) -> None:
        if self.full:
            err = StoreError("goq store x: save failed: database or disk is full")
            err.transient = True
            raise err
        self.commits += 1
        for j in jobs:
            self.jobs[j.jobid] = (j.state, j.cmd)
        self.nonces += list(nonces)
        self.attempts += list(attempts)

    def get_job(self, jobid: int):
        return None

    def prune(self, before_ns: int, limit: int) -> int:
        return 0

    def close(self) -> None:
        return None


def _server(tmp_path: Path) -> tuple[Server, RecordingEnd, FlakyStore]:
    settings = Settings(home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=1)
    server = Server(settings, os.urandom(32), options=ServerOptions(store="memory"))
    server.end = end = RecordingEnd()
    server.store = store = FlakyStore()
    return server, end, store


def _request(server: Server, msg: Message, peer: str) -> None:
    frame = server.wire.pack(msg)
    actions: list = []
    server._take(peer, frame, time.time(), actions)
    server._perform(actions)


def _replies(server: Server, end: RecordingEnd, peer: str) -> list[Message]:
    return [server.wire.unpack(f) for p, f in end.replies if p == peer]


def test_request_whose_handling_raises_is_answered_error_counted_and_the_loop_goes_on(
    tmp_path: Path, monkeypatch
) -> None:
    server, end, _ = _server(tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.kernel, "handle", boom)
    _request(server, Message(Kind.STAT), "p1")
    (reply,) = _replies(server, end, "p1")
    assert reply.kind == Kind.ERROR and "STAT" in reply.text
    monkeypatch.undo()
    _request(server, Message(Kind.STAT), "p2")
    (status,) = _replies(server, end, "p2")
    assert status.kind == Kind.STATUS and status.counters["errorCount"] == 1


def test_reply_that_cannot_be_encoded_is_answered_error_instead(tmp_path: Path) -> None:
    server, end, _ = _server(tmp_path)
    server._reply("p", Message(Kind.ACK, text="x", jobid=2**70))  # beyond int64: no encoding
    (reply,) = _replies(server, end, "p")
    assert reply.kind == Kind.ERROR and server.kernel.counters.errors == 1


def test_full_store_refuses_submissions_keeps_records_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    server, end, store = _server(tmp_path)
    _request(server, Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")]), "s1")
    assert _replies(server, end, "s1")[0].kind == Kind.SUBMITTED and store.jobs[1][1] == "a"
    store.full = True
    # a worker's request changes state (a dispatch): not committed, kept pending
    _request(server, Message(Kind.REQUEST_WORK, workerid="w1", wait_ms=1000), "w1")
    assert _replies(server, end, "w1")[0].kind == Kind.JOB
    assert store.jobs[1][0] == JobState.WAITING and server.kernel.store_trouble
    _request(server, Message(Kind.SUBMIT, jobs=[Job(cmd="b", dir="/w")]), "s2")
    (refusal,) = _replies(server, end, "s2")
    assert refusal.kind == Kind.ERROR and "disk is full" in refusal.text
    _request(server, Message(Kind.STAT), "st")  # everything else is served
    assert _replies(server, end, "st")[0].counters["storeTrouble"] == 1
    store.full = False
    server._retry_at = 0.0  # the retry is due (it waits STORE_RETRY seconds)
    server._commit({}, [])
    assert store.jobs[1][0] == JobState.RUNNING and not server.kernel.store_trouble
    _request(server, Message(Kind.SUBMIT, jobs=[Job(cmd="c", dir="/w")]), "s3")
    (ack,) = _replies(server, end, "s3")
    assert ack.kind == Kind.SUBMITTED and store.jobs[ack.jobid][1] == "c"
    assert 2 not in store.jobs or store.jobs[2][1] != "b"  # the refused job was never recorded


def test_submission_whose_commit_fails_is_refused_and_undone(tmp_path: Path) -> None:
    server, end, store = _server(tmp_path)
    _request(server, Message(Kind.REQUEST_WORK, workerid="w1", wait_ms=1000), "w1")
    store.full = True
    _request(server, Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")]), "s1")
    (refusal,) = _replies(server, end, "s1")
    assert refusal.kind == Kind.ERROR and "nothing was submitted" in refusal.text
    # it had been dispatched before the commit: it is no longer running, and is never saved
    assert not server.kernel.running and not server.kernel.waiting
    store.full = False
    server._retry_at = 0.0
    server._commit({}, [])
    assert 1 not in store.jobs


def test_remembered_nonces_are_committed_with_the_batch(tmp_path: Path) -> None:
    server, end, store = _server(tmp_path)
    msg = Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")])
    _request(server, msg, "s1")
    assert [n for n, _ in store.nonces] == [msg.nonce]


def test_a_handler_that_fails_half_way_still_saves_what_it_changed(tmp_path: Path) -> None:
    """A kernel bug in a handler (raising after it changed state) must not leave the store
    behind the kernel's memory: what the handler asked for until then is still performed,
    and the request is answered ERROR, counted and logged."""
    from goq_core.kernel import Save
    from goq_core.kernel.kernel import Kernel
    from goq_core.stores.memory import MemoryStore

    settings = Settings(home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=1)
    server = Server(settings, os.urandom(32), options=ServerOptions(store="memory"))
    server.end = RecordingEnd()
    server.store = store = MemoryStore()
    now = time.time()
    submit = Message(Kind.SUBMIT, jobs=[Job(cmd="true", dir="/tmp")])
    submit.nonce, submit.sendtime_ns = os.urandom(16), int(now * 1e9)
    actions: list = []
    server._take("sub", server.wire.pack(submit), now, actions)
    server._perform(actions)

    def broken(self, msg, peer, now, out):  # cancels, then trips over a bug
        job = self.waiting.pop(1)
        job.state = JobState.CANCELLED
        out.append(Save(job))
        raise KeyError("a bug")

    handlers = dict(Kernel._handlers)
    handlers[Kind.CANCEL] = broken
    server.kernel._handlers = handlers  # type: ignore[misc]
    cancel = Message(Kind.CANCEL, jobid=1)
    cancel.nonce, cancel.sendtime_ns = os.urandom(16), int(now * 1e9)
    actions = []
    server._take("k", server.wire.pack(cancel), now, actions)
    server._perform(actions)
    stored = store.get_job(1)
    assert stored is not None and stored.state == JobState.CANCELLED
    replies = [server.wire.unpack(f) for p, f in server.end.replies if p == "k"]
    assert [r.kind for r in replies] == [Kind.ERROR]
    assert server.kernel.stat_counters()["errorCount"] == 1
