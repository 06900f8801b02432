"""A batch that handed out jobs lingers for the frames that follow before it commits (issue 15,
item 2): one commit for a chain of RESULTs that each ask for the next job, and no wait at all
for a batch whose replies wait on the commit (a submission's acknowledgement)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from goq_core.config import Settings
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.roles import server as server_mod
from goq_core.roles.offer import make_offer, new_token
from goq_core.roles.server import Server, ServerOptions
from tests.test_server_runtime import FlakyStore

HOLD_MS = 1000


class InstantWorkerEnd:
    """A server end whose one worker ("w") answers every JOB at once with the RESULT of its
    job, asking for the next (as a 1-cpu `goq work` running jobs that end at once)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.queued: list[tuple[object, bytes]] = []
        self.replies: list[tuple[object, Message]] = []
        self.waits: list[float | None] = []  # the timeout of each recv that found nothing queued
        self.offer = replace(make_offer(), jobid=0, cpus=1)
        self.offer.workerid = new_token()

    def ask(self) -> None:
        msg = Message(Kind.REQUEST_WORK, workerid="w", host="h", wait_ms=HOLD_MS, jobs=[self.offer])
        self.queued.append(("w", self.server.wire.pack(msg)))

    def recv(self, timeout: float | None):
        if self.queued:
            return self.queued.pop(0)
        self.waits.append(timeout)
        return None

    def reply(self, peer, data: bytes) -> bool:
        msg = self.server.wire.unpack(data)
        self.replies.append((peer, msg))
        if peer == "w" and msg.kind == Kind.JOB:
            job = msg.jobs[0]
            now = time.time_ns()
            outcome = replace(job, state=JobState.FINISHED, start_ns=now, end_ns=now)
            outcome.env, outcome.args = [], []
            result = Message(
                Kind.RESULT,
                workerid="w",
                host="h",
                jobid=job.jobid,
                attempt=job.attempt,
                data=b"out\n",
                jobs=[outcome],
                wait_ms=HOLD_MS,
            )
            self.queued.append(("w", self.server.wire.pack(result)))
        return True

    def close(self) -> None:
        return None


def _server(tmp_path: Path) -> tuple[Server, InstantWorkerEnd, FlakyStore]:
    settings = Settings(home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=1)
    server = Server(settings, os.urandom(32), options=ServerOptions(store="memory"))
    server.end = end = InstantWorkerEnd(server)
    server.store = store = FlakyStore()
    return server, end, store


def _submit(server: Server, end: InstantWorkerEnd, count: int, peer: str = "sub") -> None:
    jobs = [Job(cmd="/bin/true", dir=str(end.server.settings.home)) for _ in range(count)]
    end.queued.append((peer, server.wire.pack(Message(Kind.SUBMIT, jobs=jobs))))


def test_a_chain_of_results_asking_for_more_is_one_commit(tmp_path: Path) -> None:
    server, end, store = _server(tmp_path)
    _submit(server, end, 5)
    server._turn()  # no worker yet: the submission is committed and acknowledged
    assert store.commits == 1
    assert [m.kind for p, m in end.replies] == [Kind.SUBMITTED]
    end.ask()
    server._turn()  # the worker asks; every RESULT asks for the next: one batch
    assert store.commits == 2
    assert sorted(store.jobs) == [1, 2, 3, 4, 5]
    assert all(state == JobState.FINISHED for state, _ in store.jobs.values())
    worker = [m.kind for p, m in end.replies if p == "w"]
    assert worker == [Kind.JOB] * 5  # the last RESULT's ask is held: nothing to hand out
    # each wait for more found the next RESULT there; the last RESULT handed out nothing, so
    # the batch did not wait again
    assert not any(end.waits)
    for n in range(1, 6):
        out = os.path.join(server.settings.home, server.settings.odir, f"out.{n:05d}")
        with open(out, "rb") as f:
            assert f.read() == b"out\n"


def test_a_submission_handed_to_a_waiting_worker_is_acknowledged_without_lingering(
    tmp_path: Path,
) -> None:
    server, end, store = _server(tmp_path)
    end.ask()
    server._turn()  # the worker's ask is held
    end.waits.clear()
    _submit(server, end, 1)
    server._turn()
    kinds = [(p, m.kind) for p, m in end.replies]
    assert kinds[:2] == [("w", Kind.JOB), ("sub", Kind.SUBMITTED)]
    assert not any(end.waits)  # the turn's own "anything else queued?" only: no lingering
    assert store.commits == 1


def test_lingering_stops_at_its_budget(tmp_path: Path, monkeypatch) -> None:
    server, end, store = _server(tmp_path)
    monkeypatch.setattr(server_mod, "LINGER_BUDGET", 0.0)
    _submit(server, end, 3)
    server._turn()
    end.ask()
    server._turn()  # the first dispatch is past the budget: commit at once
    assert store.commits == 2
    assert [m.kind for p, m in end.replies if p == "w"] == [Kind.JOB]
    assert len(end.queued) == 1  # the RESULT of job 1 waits for the next turn
    server._turn()
    assert store.commits == 3
