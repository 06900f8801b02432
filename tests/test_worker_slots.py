"""The worker runtime with several slots, against a fake server on the memory transport: jobs
handed together run at once, each with its GOQ_CPUS / GOQ_GPUS / CUDA_VISIBLE_DEVICES; the
REQUEST_WORK carries the offer and every run held; one heartbeat lists every run; KILL of one
run kills only that one; results are re-sent until acknowledged, across a server restart; a
run past its time limit is killed (SIGTERM, SIGKILL after GOQ_KILL_GRACE) and its RESULT says
TIMEOUT; an array job gets GOQ_ARRAY_ID and GOQ_ARRAY_INDEX. A worker asks for work only while it has room and no ask is out: the RESULT of a run that ends
is the ask when it can be (the server answers it JOB or, once its hold ends, NOTHING_YET).

The fake server answers what the test says (a rule per kind, or by hand), so each step of the
protocol (goq_core.messages) is checked as the worker speaks it. Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from goq_core.config import Settings
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.plugins import Plugins
from goq_core.roles import worker as worker_module
from goq_core.roles.jobrun import group_alive
from goq_core.roles.offer import make_offer
from goq_core.roles.worker import Worker
from goq_core.wire import Wire
from tests.support import in_thread, wait_for

HEARTBEAT_SEC = 0.5  # the worker holds requests this long
SEND_TIMEOUT_MS = 300  # and waits this much more for an answer
LONG = 10.0  # seconds: a bound never reached when all is well
KILL_GRACE = 0.5  # seconds from SIGTERM to SIGKILL at a time limit (GOQ_KILL_GRACE)
PATH = "PATH=/usr/local/bin:/usr/bin:/bin"
Rule = Callable[[Message], "Message | None"]


class FakeServer:
    """A goq server stand-in: every request is logged; a rule for its kind may answer it at
    once, else it waits in the inbox until the test takes it (`expect`) and answers it."""

    def __init__(self, plugins: Plugins, address: str, wire: Wire) -> None:
        self.wire = wire
        self.end = plugins.transport("memory").listen(address)
        self.rules: dict[Kind, Rule] = {Kind.OUTPUT: lambda m: Message(Kind.ACK)}
        self.log: list[Message] = []
        self._inbox: list[tuple[object, Message]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            got = self.end.recv(0.02)
            if got is None:
                continue
            peer, frame = got
            msg = self.wire.unpack(frame)
            rule = self.rules.get(msg.kind)
            reply = rule(msg) if rule is not None else None
            with self._cond:
                self.log.append(msg)
                if reply is None:
                    self._inbox.append((peer, msg))
                self._cond.notify_all()
            if reply is not None:
                self.answer(peer, msg, reply)

    def expect(
        self, kind: Kind, where: Callable[[Message], bool] = lambda m: True, within: float = LONG
    ) -> tuple[object, Message]:
        """The oldest unanswered request of `kind` that `where` accepts (taken from the inbox);
        older ones of that kind that it does not accept are dropped (the worker gave up on
        them)."""
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                for i, (peer, msg) in enumerate(self._inbox):
                    if msg.kind == kind and where(msg):
                        del self._inbox[i]
                        return peer, msg
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [m.kind.name for _, m in self._inbox]
                    pytest.fail(f"no {kind.name} as wanted within {within} s (inbox: {kinds})")
                self._cond.wait(left)

    def latest(self, kind: Kind) -> tuple[object, Message]:
        """The newest unanswered request of `kind` (waiting for one); older ones are dropped."""
        self.expect(kind)  # at least one
        with self._cond:
            mine = [(p, m) for p, m in self._inbox if m.kind == kind]
            self._inbox = [(p, m) for p, m in self._inbox if m.kind != kind]
        return mine[-1] if mine else self.expect(kind)

    def answer(self, peer: object, msg: Message, reply: Message) -> bool:
        reply.reply_to = msg.nonce
        return self.end.reply(peer, self.wire.pack(reply))

    def answer_newest(self, peer: object, msg: Message, reply: Message) -> None:
        """Answer `msg`, or, when the worker gave up on it and sent it again, its newest copy."""
        if not self.answer(peer, msg, reply):
            peer, msg = self.latest(msg.kind)
            assert self.answer(peer, msg, reply), "the worker gave up on the copy as well"

    def sent(self, kind: Kind) -> list[Message]:
        with self._cond:
            return [m for m in self.log if m.kind == kind]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(LONG)
        self.end.close()


class Rig:
    """One fake server and the workers started against it (stopped at teardown)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir()
        self.plugins = Plugins()
        self.key = os.urandom(32)
        self.settings = Settings(
            home=str(self.home),
            jserv_port=1776,
            transport="memory",
            codec="raw",
            cipher="none",
            heartbeat_sec=HEARTBEAT_SEC,
            sendtimeout_ms=SEND_TIMEOUT_MS,
            kill_grace_sec=KILL_GRACE,
        )
        self.wire = Wire(self.plugins.codec("raw"), self.plugins.cipher("none", self.key))
        self.server = FakeServer(self.plugins, self.settings.address, self.wire)
        self.workers: list[tuple[Worker, threading.Thread, list]] = []

    def worker(self, **kw) -> Worker:
        w = Worker(self.settings, self.key, self.plugins, log=lambda line: None, **kw)
        thread, out = in_thread(w.run)
        self.workers.append((w, thread, out))
        return w

    def outcome(self, w: Worker) -> object:
        """What w.run() returned (or raised), once it has."""
        for mine, thread, out in self.workers:
            if mine is w:
                thread.join(LONG)
                assert not thread.is_alive(), "worker did not stop"
                return out[0]
        raise AssertionError("not a worker of this rig")

    def restart_server(self, down_for: float) -> None:
        self.server.close()
        time.sleep(down_for)
        self.server = FakeServer(self.plugins, self.settings.address, self.wire)

    def close(self) -> None:
        for w, thread, _ in self.workers:
            w.stop("test over")
            thread.join(LONG)
        self.server.close()


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def job(jobid: int, script: str, tmp: Path, attempt: int = 1, **kw) -> Job:
    """A shell job in `tmp` that records its pid as pid.<jobid> and its environment as
    env.<jobid> before running `script`."""
    line = f"echo $$ > pid.{jobid}.tmp && mv pid.{jobid}.tmp pid.{jobid}; env > env.{jobid}; "
    return Job(
        jobid=jobid,
        attempt=attempt,
        cmd=line + script,
        shell=True,
        dir=str(tmp),
        env=[PATH, *kw.pop("env", [])],
        **kw,
    )


def pid_of(tmp: Path, jobid: int) -> int:
    path = tmp / f"pid.{jobid}"
    wait_for(path.exists, LONG, f"job {jobid} to start")
    return int(path.read_text())


def env_of(tmp: Path, jobid: int) -> dict[str, str]:
    path = tmp / f"env.{jobid}"
    wait_for(lambda: path.exists() and path.stat().st_size > 0, LONG, f"env of job {jobid}")
    time.sleep(0.05)  # env has finished writing
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def ack(msg: Message) -> Message:
    """What the kernel answers a RESULT when no job waits: ACK, or, when the RESULT asks for
    work (wait_ms > 0), NOTHING_YET once its hold ends (here at once)."""
    return Message(Kind.NOTHING_YET if msg.wait_ms > 0 else Kind.ACK)


def runs(msg: Message) -> list[tuple[int, int]]:
    """The (jobid, attempt) of the runs a REQUEST_WORK or HEARTBEAT lists."""
    listed = msg.jobs[1:] if msg.kind == Kind.REQUEST_WORK else msg.jobs
    return [(j.jobid, j.attempt) for j in listed]


WAIT_RELEASE = "while [ ! -e release ]; do sleep 0.01; done; echo done $GOQ_CPUS"


def reported(srv: FakeServer) -> dict[int, tuple[Message, Job, bytes]]:
    """Each run the RESULTs sent so far report: its RESULT, its outcome and its output in it
    (one run: `data` from `offset`; several: each run's whole output, one after the other)."""
    found: dict[int, tuple[Message, Job, bytes]] = {}
    for msg in srv.sent(Kind.RESULT):
        at = 0
        for outcome in msg.jobs:
            size = len(msg.data) if len(msg.jobs) == 1 else outcome.out_bytes
            found[outcome.jobid] = (msg, outcome, msg.data[at : at + size])
            at += size
    return found


# --- the offer and the runs list ------------------------------------------------------------------


def test_two_jobs_on_a_2_cpu_worker_run_at_once_and_one_heartbeat_lists_both(rig):
    tmp = rig.tmp
    offer = make_offer(cpus=2, mem=1 << 30, gpu_ids=["0", "1"], resources={"license": 2})
    w = rig.worker(offer=offer, name="node7")
    srv = rig.server

    peer, ask = srv.expect(Kind.REQUEST_WORK)
    assert ask.workerid == "node7" and ask.host and ask.wait_ms == 500 and ask.count == 0
    sent = ask.jobs[0]
    assert (sent.jobid, sent.cpus, sent.mem, sent.gpus, sent.gpu_ids) == (0, 2, 1 << 30, 2, "0,1")
    assert sent.resources == {"license": 2} and sent.workerid == w.token
    assert runs(ask) == []

    a = job(1, WAIT_RELEASE, tmp, gpus=1, gpu_ids="1")
    b = job(2, WAIT_RELEASE, tmp, env=["CUDA_VISIBLE_DEVICES=0,1", "GOQ_GPUS=x"])
    srv.answer(peer, ask, Message(Kind.JOB, jobid=1, attempt=1, jobs=[a, b]))

    # both run at the same time
    pid_a, pid_b = pid_of(tmp, 1), pid_of(tmp, 2)
    assert group_alive(pid_a) and group_alive(pid_b)

    env_a, env_b = env_of(tmp, 1), env_of(tmp, 2)
    assert (env_a["GOQ_CPUS"], env_a["GOQ_GPUS"], env_a["CUDA_VISIBLE_DEVICES"]) == ("1", "1", "1")
    # a CPU job on a worker that manages GPUs sees none, whatever its submitter had
    assert (env_b["GOQ_CPUS"], env_b["GOQ_GPUS"], env_b["CUDA_VISIBLE_DEVICES"]) == ("1", "", "")

    # one heartbeat, after FIRST_HEARTBEAT, covers both runs
    hb_peer, beat = srv.expect(Kind.HEARTBEAT, within=2.0)
    assert beat.workerid == "node7" and beat.wait_ms == 500
    assert runs(beat) == [(1, 1), (2, 1)] and (beat.jobid, beat.attempt) == (1, 1)
    # its 2 cpus held, the worker is full: it has asked for nothing more
    assert len(srv.sent(Kind.REQUEST_WORK)) == 1

    (tmp / "release").touch()
    srv.rules[Kind.RESULT] = ack
    wait_for(lambda: len(reported(srv)) == 2, LONG, "both results")
    first = srv.sent(Kind.RESULT)[0]
    assert first.wait_ms == 500 and first.count == 0  # no ask was out: the first result asks
    results = reported(srv)  # in one RESULT or two, as the runs ended
    for jobid in (1, 2):
        result, outcome, data = results[jobid]
        assert result.wait_ms in (0, 500) and result.workerid == "node7"
        assert (outcome.attempt, outcome.exit_status) == (1, 0) and data == b"done 1\n"
        assert outcome.env == [] and outcome.out_bytes == len(b"done 1\n")
    wait_for(lambda: w.held() == [], LONG, "the runs to be let go once acknowledged")
    assert w.jobs_done == 2

    # once acknowledged, runs are no longer listed; EXIT stops the worker
    peer3, ask3 = srv.expect(Kind.REQUEST_WORK, where=lambda m: runs(m) == [])
    srv.answer(peer3, ask3, Message(Kind.EXIT))
    assert "told to exit" in rig.outcome(w)
    assert not os.path.exists(w._spool)  # the spool goes with the worker


def test_kill_of_one_run_kills_only_that_one_and_its_result_is_still_sent(rig):
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    a = job(1, "sleep 100 & " + WAIT_RELEASE, tmp)
    b = job(2, "sleep 100 & " + WAIT_RELEASE, tmp)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[a, b]))
    pid_a, pid_b = pid_of(tmp, 1), pid_of(tmp, 2)

    hb_peer, beat = srv.expect(Kind.HEARTBEAT, within=2.0)
    assert runs(beat) == [(1, 1), (2, 1)]
    srv.answer(hb_peer, beat, Message(Kind.KILL, jobs=[Job(jobid=2, attempt=1)]))
    wait_for(lambda: not group_alive(pid_b), 2.0, "job 2's whole group to die")
    assert group_alive(pid_a)

    # its result still goes out (the server will count it stale); job 1 runs on
    _, result = srv.expect(Kind.RESULT, lambda m: m.jobid == 2, within=3.0)
    assert result.jobs[0].exit_status < 0  # killed by a signal
    srv.rules[Kind.RESULT] = lambda m: Message(Kind.ACK, text="stale")
    wait_for(lambda: w.held() == [(1, 1)], LONG, "run 2 to be let go")
    # (the heartbeat sent right after KILL still listed both; the next one lists run 1 only)
    hb_peer2, beat2 = srv.expect(Kind.HEARTBEAT, lambda m: runs(m) == [(1, 1)], within=3.0)
    assert group_alive(pid_a)

    # a server that names only jobid (attempt 0) kills every attempt of that job
    srv.answer(hb_peer2, beat2, Message(Kind.KILL, jobid=1))
    wait_for(lambda: not group_alive(pid_a), 2.0, "job 1 to die")
    wait_for(lambda: w.held() == [], LONG, "run 1 to be let go")


def test_results_are_resent_until_acknowledged_even_across_a_server_restart(rig):
    tmp = rig.tmp
    w = rig.worker()
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(5, "echo out", tmp, attempt=3)]))

    # the result of a 1-cpu worker's run asks for the next job; not answered: sent again after
    # the hold and the send timeout, each copy a fresh message that still asks
    _, first = srv.expect(Kind.RESULT)
    assert first.wait_ms == 500 and first.count == 0
    _, second = srv.expect(Kind.RESULT, within=2.0)
    assert (second.jobid, second.attempt) == (first.jobid, first.attempt) == (5, 3)
    assert second.nonce != first.nonce and second.data == first.data == b"out\n"
    assert second.wait_ms == 500
    assert w.held() == [(5, 3)]
    # held while its result is not acknowledged: the worker is full, and its ask is out
    assert len(srv.sent(Kind.REQUEST_WORK)) == 1

    # a server going away answers GOING_AWAY: that is no acknowledgement either
    srv.rules[Kind.RESULT] = lambda m: Message(Kind.GOING_AWAY)
    wait_for(lambda: len(srv.sent(Kind.RESULT)) >= 4, LONG, "more copies")
    assert w.held() == [(5, 3)]

    rig.restart_server(down_for=0.5)
    srv = rig.server
    # the new server answers the ask with a job: the worker takes it after all those copies
    srv.rules[Kind.RESULT] = lambda m: (
        Message(Kind.JOB, jobs=[job(6, "echo six", tmp)]) if m.jobid == 5 else ack(m)
    )
    wait_for(lambda: srv.sent(Kind.RESULT), LONG, "the result at the new server")
    assert srv.sent(Kind.RESULT)[0].jobs[0].exit_status == 0
    assert srv.sent(Kind.RESULT)[0].wait_ms == 500

    def sixes() -> list[Message]:
        return [m for m in srv.sent(Kind.RESULT) if m.jobid == 6]

    wait_for(sixes, LONG, "job 6's result")
    assert sixes()[0].data == b"six\n" and sixes()[0].wait_ms == 500
    wait_for(lambda: w.held() == [], LONG, "the runs to be let go")
    _, ask3 = srv.expect(Kind.REQUEST_WORK, lambda m: runs(m) == [])
    assert w.jobs_done == 2


def test_a_plain_worker_offers_one_cpu_and_leaves_cuda_alone(rig):
    tmp = rig.tmp
    w = rig.worker()
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    offer = ask.jobs[0]
    assert (offer.jobid, offer.cpus, offer.gpus, offer.gpu_ids, offer.mem) == (0, 1, 0, "", 0)
    assert w.name.startswith(f"{w.host}-") and len(w.name) == len(w.host) + 5
    assert ask.workerid == w.name
    # a server that sets the attempt only on the message (as the one-slot kernel did)
    handed = job(1, "true", tmp, attempt=0, env=["CUDA_VISIBLE_DEVICES=3"])
    srv.rules[Kind.RESULT] = ack
    srv.answer(peer, ask, Message(Kind.JOB, jobid=1, attempt=2, jobs=[handed]))
    env = env_of(tmp, 1)
    assert env["GOQ_CPUS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "3" and "GOQ_GPUS" not in env
    wait_for(lambda: srv.sent(Kind.RESULT), LONG, "the result")
    assert srv.sent(Kind.RESULT)[0].attempt == 2


def test_a_job_handed_again_while_it_runs_is_not_started_twice(rig):
    """A JOB reply that was lost is handed again on the next request: a run the worker
    already holds is kept, not started a second time."""
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    a = job(1, "echo x >> starts; " + WAIT_RELEASE, tmp)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[a]))
    peer2, ask2 = srv.expect(Kind.REQUEST_WORK, within=1.0)
    assert runs(ask2) == [(1, 1)]
    srv.answer(peer2, ask2, Message(Kind.JOB, jobs=[job(1, "echo x >> starts", tmp)]))
    _, ask3 = srv.expect(Kind.REQUEST_WORK, within=1.0)
    assert runs(ask3) == [(1, 1)]
    time.sleep(0.2)
    assert (tmp / "starts").read_text() == "x\n"
    assert w.held() == [(1, 1)]


def test_oneshot_asks_for_one_job_and_exits_once_its_result_is_acknowledged(rig):
    tmp = rig.tmp
    w = rig.worker(oneshot=True)
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    assert ask.count == 1
    srv.rules[Kind.RESULT] = ack
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(1, "sleep 0.3", tmp)]))
    assert rig.outcome(w) == "oneshot: one job done"
    assert len(srv.sent(Kind.REQUEST_WORK)) == 1 and len(srv.sent(Kind.RESULT)) == 1
    assert srv.sent(Kind.RESULT)[0].wait_ms == 0  # its one job done, it asks for no other
    assert w.jobs_done == 1


def test_stop_kills_every_run_and_sends_no_result(rig):
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=3))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    jobs = [job(i, "trap '' TERM; sleep 100 & " + WAIT_RELEASE, tmp) for i in (1, 2, 3)]
    srv.answer(peer, ask, Message(Kind.JOB, jobs=jobs))
    pids = [pid_of(tmp, i) for i in (1, 2, 3)]
    t0 = time.monotonic()
    w.stop("signal SIGTERM")
    assert rig.outcome(w) == "signal SIGTERM"
    assert time.monotonic() - t0 < 3.0
    assert not any(group_alive(p) for p in pids)
    assert srv.sent(Kind.RESULT) == []


def test_exit_on_the_heartbeat_stops_the_worker_and_its_runs(rig):
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(1, WAIT_RELEASE, tmp)]))
    pid = pid_of(tmp, 1)
    hb_peer, beat = srv.expect(Kind.HEARTBEAT, within=2.0)
    srv.answer(hb_peer, beat, Message(Kind.EXIT))
    assert "told to exit" in rig.outcome(w)
    assert not group_alive(pid)


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs 2 cores",
)
def test_bind_pins_each_run_to_its_own_cores(rig):
    tmp = rig.tmp
    allowed = os.sched_getaffinity(0)
    w = rig.worker(offer=make_offer(cpus=2), bind=True)
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    show = "grep Cpus_allowed_list /proc/self/status; " + WAIT_RELEASE
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(1, show, tmp), job(2, show, tmp)]))
    srv.rules[Kind.RESULT] = ack
    pid_of(tmp, 1), pid_of(tmp, 2)
    (tmp / "release").touch()
    wait_for(lambda: len(srv.sent(Kind.RESULT)) == 2, LONG, "both results")
    cores = []
    for result in srv.sent(Kind.RESULT):
        line = result.data.decode().splitlines()[0]
        cores.append(line.split(":")[1].strip())
    assert sorted(cores) == sorted(str(c) for c in sorted(allowed)[:2])
    assert os.sched_getaffinity(0) == allowed  # the worker's own threads are not pinned
    wait_for(lambda: w._free_cores == sorted(allowed), LONG, "the cores to be given back")


def test_first_heartbeat_waits_for_a_run_to_be_held_a_while(rig, monkeypatch):
    """Short jobs need no heartbeat at all (as with one slot)."""
    tmp = rig.tmp
    w = rig.worker()
    srv = rig.server
    srv.rules[Kind.RESULT] = ack
    for jobid in (1, 2, 3):
        peer, ask = srv.expect(Kind.REQUEST_WORK, lambda m: runs(m) == [])
        srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(jobid, "true", tmp)]))
        wait_for(lambda n=jobid: len(srv.sent(Kind.RESULT)) == n, LONG, "the result")
    assert srv.sent(Kind.HEARTBEAT) == []
    assert len(os.listdir(w._spool)) <= 2  # spool files are reused, not one per run
    assert worker_module.FIRST_HEARTBEAT == 0.2


# --- the ask ---------------------------------------------------------------------------------------


def test_a_result_asks_for_the_next_job_and_its_runner_runs_the_job_handed(rig):
    """Two messages a job: the RESULT asks (wait_ms = the hold), the reply hands the next job."""
    tmp = rig.tmp
    w = rig.worker()
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(1, "echo one", tmp)]))

    p1, r1 = srv.expect(Kind.RESULT)
    assert (r1.jobid, r1.wait_ms, r1.count, r1.data) == (1, 500, 0, b"one\n")
    srv.answer(p1, r1, Message(Kind.JOB, jobid=2, attempt=4, jobs=[job(2, "echo two", tmp, 4)]))

    p2, r2 = srv.expect(Kind.RESULT, lambda m: m.jobid == 2)
    assert (r2.attempt, r2.wait_ms, r2.data) == (4, 500, b"two\n")
    assert w.held() == [(2, 4)] and w.jobs_done == 1
    assert len(srv.sent(Kind.REQUEST_WORK)) == 1  # nothing asked between the two jobs
    assert len(w._runners) == 1  # the thread that sent the result ran the job it was handed

    # the hold ends with nothing to run: the ask is over, and the dispatcher asks anew
    srv.answer(p2, r2, Message(Kind.NOTHING_YET))
    _, ask2 = srv.expect(Kind.REQUEST_WORK, within=1.0)
    assert runs(ask2) == [] and ask2.wait_ms == 500
    assert w.held() == [] and w.jobs_done == 2


def test_one_ask_at_a_time_and_none_while_full(rig):
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    wait = "while [ ! -e go{n} ]; do sleep 0.01; done; echo {n}"
    a, b = job(1, wait.format(n=1), tmp), job(2, wait.format(n=2), tmp)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[a, b]))
    pid_of(tmp, 1), pid_of(tmp, 2)
    time.sleep(0.3)
    assert len(srv.sent(Kind.REQUEST_WORK)) == 1  # full: no ask

    (tmp / "go1").touch()
    p1, r1 = srv.expect(Kind.RESULT, lambda m: m.jobid == 1)
    assert r1.wait_ms == 500  # held here, unanswered, for now
    (tmp / "go2").touch()
    p2, r2 = srv.expect(Kind.RESULT, lambda m: m.jobid == 2)
    assert r2.wait_ms == 0  # an ask is out: this one only reports
    srv.answer(p2, r2, Message(Kind.ACK))
    wait_for(lambda: w.held() == [(1, 1)], LONG, "run 2 to be let go")
    time.sleep(0.1)
    assert len(srv.sent(Kind.REQUEST_WORK)) == 1  # room now, but the result's ask is out

    srv.answer_newest(p1, r1, Message(Kind.JOB, jobs=[job(3, WAIT_RELEASE, tmp)]))
    pid_of(tmp, 3)
    # one cpu still free: the dispatcher asks, listing the run it holds
    _, ask2 = srv.expect(Kind.REQUEST_WORK, within=1.0)
    assert runs(ask2) == [(3, 1)]
    assert w.held() == [(3, 1)] and w.jobs_done == 2


@pytest.mark.parametrize("limit", [worker_module.MAX_RUNS_PER_RESULT, 0], ids=["says", "older"])
def test_runs_that_end_while_a_result_is_on_its_way_go_out_together(rig, monkeypatch, limit):
    """The reports of runs that ended while another RESULT waited for its answer go in one
    RESULT (goq_core.messages, "Several runs in one RESULT"); a run whose output took OUTPUT
    chunks goes alone. Only for a server that says, in its replies' count, that it takes
    several (an older server says 0: one run per RESULT)."""
    monkeypatch.setattr(worker_module, "CHUNK", 8)  # bytes: "0123456789abc" takes a chunk
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=5))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    wait = "while [ ! -e go{n} ]; do sleep 0.01; done; "
    jobs = [
        job(1, wait.format(n=1) + "echo one", tmp),
        job(2, wait.format(n=2) + "echo two", tmp),
        job(3, wait.format(n=3) + "printf 0123456789abc", tmp),
        job(4, wait.format(n=3) + "echo a", tmp),
        job(5, wait.format(n=3) + "echo b", tmp),
    ]
    srv.answer(peer, ask, Message(Kind.JOB, jobs=jobs, count=limit))
    pids = [pid_of(tmp, i) for i in range(1, 6)]

    (tmp / "go1").touch()
    p1, r1 = srv.expect(Kind.RESULT, lambda m: m.jobid == 1)
    assert r1.wait_ms == 500 and len(r1.jobs) == 1  # it asks: held here, unanswered
    (tmp / "go2").touch()
    p2, r2 = srv.expect(Kind.RESULT, lambda m: m.jobid == 2)
    assert r2.wait_ms == 0 and len(r2.jobs) == 1  # alone: nothing else had ended
    # while job 2's RESULT waits for its answer, jobs 3, 4 and 5 end
    (tmp / "go3").touch()
    wait_for(lambda: not any(group_alive(p) for p in pids[2:]), LONG, "jobs 3-5 to end")
    time.sleep(0.2)  # their runners have put their reports in the outbox
    srv.rules[Kind.RESULT] = lambda m: Message(Kind.ACK, count=limit)
    srv.answer_newest(p2, r2, Message(Kind.ACK, count=limit))
    wait_for(lambda: w.held() == [(1, 1)], LONG, "jobs 2-5 to be let go")

    later = [m for m in srv.sent(Kind.RESULT) if m.jobid not in (1, 2)]
    if not limit:  # an older server: one run per RESULT, as before
        assert sorted(len(m.jobs) for m in later) == [1, 1, 1]
        assert {m.jobid for m in later} == {3, 4, 5}
        srv.answer_newest(p1, r1, Message(Kind.NOTHING_YET))
        wait_for(lambda: w.held() == [], LONG, "job 1 to be let go")
        return
    assert len(later) == 2, [[j.jobid for j in m.jobs] for m in later]
    (big,) = [m for m in later if m.jobid == 3]
    (pair,) = [m for m in later if m.jobid != 3]
    assert (len(big.jobs), big.offset, big.data) == (1, 8, b"89abc")
    assert [o.data for o in srv.sent(Kind.OUTPUT)] == [b"01234567"]
    assert sorted(j.jobid for j in pair.jobs) == [4, 5] and pair.wait_ms == 0
    assert pair.offset == 0 and [j.out_bytes for j in pair.jobs] == [2, 2]
    by_job = {jobid: data for jobid, (_, _, data) in reported(srv).items()}
    assert (by_job[4], by_job[5]) == (b"a\n", b"b\n")
    keys = sorted(k.split("/")[1] for k in pair.counters)
    assert keys == sorted(["maxRssKib", "utimeUs", "stimeUs"] * 2)
    assert {k.split("/")[0] for k in pair.counters} == {"0", "1"}
    assert w.jobs_done == 4

    srv.answer_newest(p1, r1, Message(Kind.NOTHING_YET))
    wait_for(lambda: w.held() == [], LONG, "job 1 to be let go")
    assert w.jobs_done == 5


def test_the_reporter_sends_every_report_and_only_the_batch_that_empties_the_outbox_asks(
    rig, monkeypatch
):
    """Whatever waits in the outbox, reports go out in batches (small ones together, within
    CHUNK and MAX_RUNS_PER_RESULT; one that took OUTPUT chunks alone) until it is empty; only
    the last batch asks for work, since the runner that asks stops reporting."""
    monkeypatch.setattr(worker_module, "CHUNK", 10)
    many = worker_module.MAX_RUNS_PER_RESULT + 3
    w = Worker(
        rig.settings, rig.key, rig.plugins, log=lambda line: None, offer=make_offer(cpus=many + 4)
    )
    w._batch_limit = worker_module.MAX_RUNS_PER_RESULT  # what the server said
    sent: list[tuple[list[int], bool]] = []

    def fake_send(conn, batch, asks):
        sent.append(([r.held.job.jobid for r in batch], asks))
        kind = Kind.NOTHING_YET if asks else Kind.ACK
        return Message(kind, count=worker_module.MAX_RUNS_PER_RESULT), conn

    monkeypatch.setattr(w, "_send_result", fake_send)
    monkeypatch.setattr(w, "_borrow", lambda: None)
    monkeypatch.setattr(w, "_give_back", lambda conn: None)

    def queue(jobid: int, data: bytes, offset: int = 0) -> None:
        held = worker_module._Run(Job(jobid=jobid, attempt=1), ())
        w._runs[held.key] = held
        w._cpus_held += 1
        outcome = Job(jobid=jobid, attempt=1, out_bytes=offset + len(data))
        w._outbox.append(worker_module._Report(held, outcome, offset, data, {}))

    queue(1, b"aaaa")
    queue(2, b"bb", offset=10)  # its output took a chunk: reported alone
    queue(3, b"cccc")
    queue(4, b"dddd")  # 4 + 4 + 4 bytes > CHUNK: not with 1 and 3
    w._reporting = True
    assert w._report() is None
    assert sent == [([1, 3], False), ([2], False), ([4], True)]
    assert not w._outbox and not w._reporting and w._runs == {} and w.jobs_done == 4

    sent.clear()
    for jobid in range(10, 10 + many):
        queue(jobid, b"")
    w._reporting = True
    w._report()
    assert [(len(ids), asks) for ids, asks in sent] == [(many - 3, False), (3, True)]
    assert not w._outbox and w._runs == {}


def test_a_result_sent_while_the_dispatcher_asks_does_not_ask(rig):
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(1, "echo one", tmp)]))
    # room for one more: the dispatcher asks at once, listing the run
    p2, ask2 = srv.expect(Kind.REQUEST_WORK, within=1.0)
    assert runs(ask2) == [(1, 1)]
    p, r = srv.expect(Kind.RESULT)
    assert r.wait_ms == 0
    srv.answer(p, r, Message(Kind.ACK))
    wait_for(lambda: w.held() == [], LONG, "run 1 to be let go")
    # its ask answered NOTHING_YET, the dispatcher asks again, listing no run
    srv.answer_newest(p2, ask2, Message(Kind.NOTHING_YET))
    _, ask3 = srv.expect(Kind.REQUEST_WORK, within=1.0)
    assert runs(ask3) == []


# --- time limits and arrays ------------------------------------------------------------------------


def test_runs_past_their_time_limit_end_timeout_and_their_results_go_out(rig):
    """At its limit a run's group gets SIGTERM, then SIGKILL after the grace: one that ignores
    SIGTERM ends -9 within grace + 1 s of the limit, one that does not ends -15; both TIMEOUT.
    A run within its limit ends FINISHED. Every RESULT goes out as usual."""
    tmp = rig.tmp
    w = rig.worker(offer=make_offer(cpus=3))
    srv = rig.server
    srv.rules[Kind.RESULT] = ack
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    stubborn = job(1, "echo one; trap '' TERM; sleep 30 & sleep 30", tmp, time_limit_ms=1000)
    meek = job(2, "echo two; sleep 30", tmp, time_limit_ms=1000)
    quick = job(3, "echo three", tmp, time_limit_ms=5000)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[stubborn, meek, quick]))
    pids = {i: pid_of(tmp, i) for i in (1, 2)}
    t0 = time.monotonic()

    def result(jobid: int) -> Message:
        found = [m for m in srv.sent(Kind.RESULT) if m.jobid == jobid]
        return found[0] if found else None

    wait_for(lambda: result(3), LONG, "job 3's result")
    assert result(3).jobs[0].state == JobState.FINISHED and result(3).jobs[0].exit_status == 0
    # both gone within grace + 1 s of the limit (t0 is after their start)
    wait_for(lambda: result(1) and result(2), 1.0 + KILL_GRACE + 1.0, "jobs 1 and 2's results")
    assert time.monotonic() - t0 <= 1.0 + KILL_GRACE + 1.0
    assert not group_alive(pids[1]) and not group_alive(pids[2])  # the background sleep too

    one, two = result(1), result(2)
    assert (one.jobs[0].state, one.jobs[0].exit_status) == (JobState.TIMEOUT, -signal.SIGKILL)
    assert (two.jobs[0].state, two.jobs[0].exit_status) == (JobState.TIMEOUT, -signal.SIGTERM)
    assert (one.data, two.data) == (b"one\n", b"two\n")
    assert one.jobs[0].out_bytes == 4 and one.attempt == 1 and one.workerid == w.name
    wait_for(lambda: w.held() == [], LONG, "the runs to be let go")
    assert w.jobs_done == 3


def test_a_run_killed_before_its_time_limit_is_not_a_timeout(rig):
    tmp = rig.tmp
    w = rig.worker()
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[job(1, "sleep 30", tmp, time_limit_ms=5000)]))
    pid = pid_of(tmp, 1)
    hb_peer, beat = srv.expect(Kind.HEARTBEAT, within=2.0)
    srv.answer(hb_peer, beat, Message(Kind.KILL, jobs=[Job(jobid=1, attempt=1)]))
    rpeer, result = srv.expect(Kind.RESULT, within=3.0)
    assert result.jobs[0].state == JobState.FINISHED and result.jobs[0].exit_status < 0
    assert not group_alive(pid)
    srv.answer(rpeer, result, ack(result))
    wait_for(lambda: w.held() == [], LONG, "the run to be let go")


def test_a_stop_during_a_time_limits_grace_is_not_held_up_by_it(rig):
    """The grace is waited out with the runner still listening: a stop kills at once."""
    tmp = rig.tmp
    rig.settings = dataclasses.replace(rig.settings, kill_grace_sec=60.0)
    w = rig.worker()
    srv = rig.server
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    stubborn = job(1, "trap '' TERM; sleep 30", tmp, time_limit_ms=200)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[stubborn]))
    pid = pid_of(tmp, 1)
    time.sleep(0.6)  # past the limit: SIGTERMed, ignoring it, 60 s of grace to go
    assert group_alive(pid)
    t0 = time.monotonic()
    w.stop("signal SIGTERM")
    assert rig.outcome(w) == "signal SIGTERM"
    assert time.monotonic() - t0 < 3.0
    assert not group_alive(pid)
    assert srv.sent(Kind.RESULT) == []  # stopped mid-run: the server requeues it


def test_an_array_job_runs_with_its_array_id_and_index(rig):
    tmp = rig.tmp
    rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    srv.rules[Kind.RESULT] = ack
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    member = job(12, "true", tmp, array_id=10, array_index=7, env=["GOQ_ARRAY_INDEX=99"])
    alone = job(13, "true", tmp)
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[member, alone]))
    env = env_of(tmp, 12)
    assert (env["GOQ_ARRAY_ID"], env["GOQ_ARRAY_INDEX"]) == ("10", "7")  # goq's win
    assert env["GOQ_CPUS"] == "1"
    env = env_of(tmp, 13)
    assert "GOQ_ARRAY_ID" not in env and "GOQ_ARRAY_INDEX" not in env


# --- rusage ----------------------------------------------------------------------------------------


def test_a_result_carries_the_runs_rusage_in_its_counters(rig):
    """maxRssKib, utimeUs and stimeUs of the job (see tests/test_rusage.py); none of them for a
    command that could not start."""
    tmp = rig.tmp
    rig.worker(offer=make_offer(cpus=2))
    srv = rig.server
    srv.rules[Kind.RESULT] = ack
    peer, ask = srv.expect(Kind.REQUEST_WORK)
    busy = "import time; t=time.process_time()\nwhile time.process_time()-t<0.5: sum(range(9999))"
    burns = Job(jobid=1, attempt=1, cmd=sys.executable, args=["-c", busy], dir=str(tmp), env=[PATH])
    missing = Job(jobid=2, attempt=1, cmd="/no/such/program", dir=str(tmp), env=[PATH])
    srv.answer(peer, ask, Message(Kind.JOB, jobs=[burns, missing]))
    wait_for(lambda: len(srv.sent(Kind.RESULT)) == 2, LONG, "both results")
    results = {m.jobid: m for m in srv.sent(Kind.RESULT)}
    assert results[1].jobs[0].exit_status == 0
    counters = results[1].counters
    assert set(counters) == {"maxRssKib", "utimeUs", "stimeUs"}
    assert counters["utimeUs"] >= 400_000 and counters["stimeUs"] >= 0
    assert counters["maxRssKib"] > 1024  # a Python process: several MiB at least
    assert results[2].jobs[0].exit_status == 127 and results[2].counters == {}
