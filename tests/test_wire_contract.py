"""The wire contract, end to end: a real Server and real Clients over every transport x codec x
cipher, checking round trips, held replies, concurrency, restart, bad frames and mismatches.

One server per combination (module-scoped, in a thread of this process, memory store) on a free
127.0.0.1 port; tests that stop or restart a server start their own. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from goq_core.config import Settings
from goq_core.drops import BAD_CODEC, BAD_SIG, DROP_COUNTERS, GARBAGE, MISMATCH, REPLAY, TOO_BIG
from goq_core.errors import GoqError, RemoteError, TransportTimeout
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.plugins import Plugins
from goq_core.roles.client import Client
from goq_core.roles.server import TOO_BIG_SLACK, Server, ServerOptions, output_path
from goq_core.wire import MAGIC, Wire, error_text
from tests.support import free_port, in_thread

TRANSPORTS = ("nng", "zmq")
CODECS = ("capnp", "raw")
CIPHERS = ("aes-gcm", "none")
MAX_FRAME = 1 << 20  # the shared servers' frame limit (small, for the too-big case)
LONG = 5.0  # seconds: a bound never reached when all is well
HELD_MS = 3000  # how long a held request may wait for its reply in these tests

PLUGINS = Plugins()  # one for every client in this module (the server gets its own)


@dataclass(frozen=True, slots=True)
class Combo:
    transport: str
    codec: str
    cipher: str

    @property
    def id(self) -> str:
        return f"{self.transport}-{self.codec}-{self.cipher}"


COMBOS = [Combo(*c) for c in itertools.product(TRANSPORTS, CODECS, CIPHERS)]


def settings_for(home: str, port: int, combo: Combo, **kw) -> Settings:
    return Settings(
        home=home,
        jserv_ip="127.0.0.1",
        jserv_port=port,
        transport=combo.transport,
        codec=combo.codec,
        cipher=combo.cipher,
        heartbeat_sec=1,
        **kw,
    )


class RunningServer:
    """A goq Server looping in a thread of this process, and what it takes to talk to it."""

    def __init__(
        self,
        home: str,
        combo: Combo,
        key: bytes,
        port: int | None = None,
        store: str = "memory",
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.home, self.combo, self.key = home, combo, key
        self.port = port or free_port()
        self.settings = settings_for(home, self.port, combo, sendtimeout_ms=2000)
        os.makedirs(self.settings.dir, exist_ok=True)
        options = ServerOptions(allow_insecure=True, max_frame=max_frame, store=store)
        self.server = Server(self.settings, key, Plugins(), options)
        self.server.open()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.wire = Wire(PLUGINS.codec(combo.codec), PLUGINS.cipher(combo.cipher, key))
        self._closers: list[Callable[[], None]] = []

    def client(self, **kw) -> Client:
        """A Client of this server; `kw` overrides its settings (another codec, a timeout...)."""
        client = Client(replace(self.settings, **kw), self.key, PLUGINS)
        self._closers.append(client.close)
        return client

    def raw_end(self):
        """A bare ClientEnd of this server's transport, for sending frames by hand."""
        end = PLUGINS.transport(self.combo.transport).dial(self.settings.address)
        self._closers.append(end.close)
        return end

    def stop(self) -> None:
        """Stop at the next turn, as SIGTERM does, and close (bounded in time)."""
        if self.thread.is_alive():
            self.server._signalled = True  # what the SIGTERM handler sets
            self.thread.join(LONG)
        assert not self.thread.is_alive(), "server did not stop"
        self.server.close()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers.clear()


@pytest.fixture(scope="module", params=COMBOS, ids=[c.id for c in COMBOS])
def srv(request, tmp_path_factory) -> Iterator[RunningServer]:
    home = str(tmp_path_factory.mktemp(request.param.id))
    running = RunningServer(home, request.param, os.urandom(32))
    yield running
    running.stop()


@pytest.fixture
def client(srv: RunningServer) -> Client:
    return srv.client()


@pytest.fixture
def own_home(tmp_path) -> str:
    return str(tmp_path)


def result(call: tuple[threading.Thread, list], timeout: float = LONG) -> object:
    thread, out = call
    thread.join(timeout)
    assert not thread.is_alive(), "call still blocked"
    assert len(out) == 1
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def counters(client: Client) -> dict[str, int]:
    return client.stat(1).counters


def until(client: Client, pred: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """Poll STAT until pred(counters) holds (at most LONG seconds)."""
    deadline = time.monotonic() + LONG
    while True:
        c = counters(client)
        if pred(c) or time.monotonic() > deadline:
            assert pred(c), c
            return c
        time.sleep(0.01)


def a_job(home: str, n: int = 0) -> Job:
    return Job(cmd=f"echo {n}", args=["a", str(n)], dir=home, env=["A=1"], host="h", user="u")


def worker_asks(srv: RunningServer, workerid: str, kind: Kind = Kind.REQUEST_WORK, **kw):
    """A worker's held request, made in a thread on a client of its own."""
    c = srv.client()
    msg = Message(kind, workerid=workerid, host="wh", wait_ms=HELD_MS, **kw)
    return in_thread(lambda: c.call(msg, HELD_MS))


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


# ----------------------------------------------------------------------- messages survive the wire


def rich_message(kind: Kind) -> Message:
    """Every field of a Message (and of its Jobs) set to something unlike its default."""
    job = Job(
        jobid=2**40 + 7,
        cmd="printf '%s\\n' \"héllo wörld\" $HOME ✓",
        args=["a b", "", "ü\n\t", "x" * 300],
        shell=True,
        dir="/tmp/dir with space/ü",
        env=["A=1", "B=ü=2", "EMPTY=", "PATH=/usr/bin:/bin"],
        host="submit-host",
        user="alice",
        state=JobState.RUNNING,
        attempt=3,
        workerid="worker-7",
        workerhost="node-3",
        pid=424242,
        exit_status=-9,
        submit_ns=1_700_000_000_123_456_789,
        start_ns=1_700_000_001_123_456_789,
        end_ns=1_700_000_002_123_456_789,
        out_bytes=2**33 + 1,
        owner="alice@lab",
    )
    return Message(
        kind,
        reply_to=bytes(range(16)),
        workerid="wörker-1",
        host="host.example",
        jobid=2**40 + 7,
        attempt=3,
        count=1000,
        wait_ms=5000,
        offset=2**33,
        data=bytes(range(256)) * 4,
        text="tëxt with\nnewline and ✓",
        jobs=[job, Job(jobid=1, cmd="true", state=JobState.CANCELLED)],
        counters={"nextJobId": 2**40, "waitingJobs": 0, "droppedReplayCount": 12345},
    )


WIRE_PAIRS = list(itertools.product(CODECS, CIPHERS))


@pytest.mark.parametrize("codec,cipher", WIRE_PAIRS, ids=[f"{co}-{ci}" for co, ci in WIRE_PAIRS])
def test_every_field_of_every_kind_survives_pack_and_unpack(codec: str, cipher: str) -> None:
    key = os.urandom(32)
    sender = Wire(PLUGINS.codec(codec), PLUGINS.cipher(cipher, key))
    receiver = Wire(PLUGINS.codec(codec), PLUGINS.cipher(cipher, key))
    for kind in Kind:
        for msg in (rich_message(kind), Message(kind)):
            frame = sender.pack(msg)  # stamps nonce and sendtime_ns on msg
            assert len(msg.nonce) == 16 and msg.sendtime_ns > 0
            got = receiver.unpack(frame)
            assert got == msg
            assert type(got.kind) is Kind
            assert all(type(j.state) is JobState for j in got.jobs)


# ----------------------------------------------------------------------- round trips


def test_submit_stat_cancel_round_trips(srv: RunningServer, client: Client) -> None:
    before = counters(client)
    first, n = client.submit([a_job(srv.home, 1), a_job(srv.home, 2)])
    assert (first, n) == (before["nextJobId"], 2)
    status = client.stat(10)
    assert status.kind == Kind.STATUS
    assert status.counters["waitingJobs"] == before["waitingJobs"] + 2
    assert status.counters["nextJobId"] == first + 2
    listed = {j.jobid: j for j in status.jobs}
    assert listed[first].cmd == "echo 1" and listed[first].state == JobState.WAITING
    assert listed[first].env == []  # stat leaves environments out

    for jobid in (first, first + 1):
        reply = client.cancel(jobid)
        assert reply.kind == Kind.ACK and f"cancelled waiting job {jobid}" in reply.text
    again = client.call(Message(Kind.CANCEL, jobid=first))
    assert again.kind == Kind.ACK and "already ended" in again.text
    unknown = client.call(Message(Kind.CANCEL, jobid=10**12))
    assert unknown.kind == Kind.NOT_KNOWN
    after = counters(client)
    assert after["waitingJobs"] == before["waitingJobs"]
    assert after["cancelledJobsCount"] == before["cancelledJobsCount"] + 2


def test_a_job_runs_through_a_worker_and_its_waiter_hears_the_end(
    srv: RunningServer, client: Client, tmp_path
) -> None:
    assert counters(client)["waitingJobs"] == 0, "a test left jobs waiting"
    wid = unique("w")
    asking = worker_asks(srv, wid)
    until(client, lambda c: c["waitingWorkers"] >= 1)
    job = a_job(str(tmp_path), 7)
    jobid, _ = client.submit([job])

    got = result(asking)
    assert got.kind == Kind.JOB and got.jobid == jobid and got.attempt == 1
    assert got.jobs[0].cmd == "echo 7" and got.jobs[0].env == ["A=1"]
    assert got.jobs[0].state == JobState.RUNNING and got.jobs[0].workerid == wid

    waiting = in_thread(lambda: srv.client().wait(jobid, time.time() + LONG))
    until(client, lambda c: c["waiters"] >= 1)

    # a heartbeat for the running job is held, then answered ALIVE; one for another job: KILL
    t0 = time.monotonic()
    alive = srv.client().call(
        Message(Kind.HEARTBEAT, workerid=wid, jobid=jobid, attempt=1, wait_ms=200), 1000
    )
    assert alive.kind == Kind.ALIVE and time.monotonic() - t0 >= 0.15
    kill = client.call(Message(Kind.HEARTBEAT, workerid=wid, jobid=10**12, attempt=1))
    assert kill.kind == Kind.KILL

    out = client.call(
        Message(Kind.OUTPUT, workerid=wid, jobid=jobid, attempt=1, offset=0, data=b"hello\n")
    )
    assert out.kind == Kind.ACK and out.text == ""
    outcome = Job(jobid=jobid, pid=999, exit_status=3, start_ns=1, end_ns=2, out_bytes=10)
    done = client.call(
        Message(
            Kind.RESULT,
            workerid=wid,
            jobid=jobid,
            attempt=1,
            offset=6,
            data=b"bye\n",
            jobs=[outcome],
        )
    )
    assert done.kind == Kind.ACK

    finished = result(waiting)
    assert finished is not None and finished.jobid == jobid
    assert finished.exit_status == 3 and finished.state == JobState.FINISHED
    with open(output_path(str(tmp_path), srv.settings.odir, jobid), "rb") as f:
        assert f.read() == b"hello\nbye\n"
    # waiting on a job that has ended answers at once
    again = client.call(Message(Kind.WAIT, jobid=jobid, wait_ms=HELD_MS), HELD_MS)
    assert again.kind == Kind.FINISHED and again.jobs[0].exit_status == 3
    assert client.call(Message(Kind.WAIT, jobid=10**12)).kind == Kind.NOT_KNOWN


def test_immolate_tells_a_waiting_worker_to_exit(srv: RunningServer, client: Client) -> None:
    asking = worker_asks(srv, unique("doomed"))
    until(client, lambda c: c["waitingWorkers"] >= 1)
    ack = client.immolate()
    assert ack.kind == Kind.ACK and ack.count >= 1
    assert result(asking).kind == Kind.EXIT


def test_held_waits_are_answered_in_the_order_their_jobs_end(
    srv: RunningServer, client: Client
) -> None:
    first, _ = client.submit([a_job(srv.home, 1), a_job(srv.home, 2)])
    second = first + 1
    base = counters(client)["waiters"]
    wait_first = in_thread(lambda: srv.client().wait(first, time.time() + LONG))
    wait_second = in_thread(lambda: srv.client().wait(second, time.time() + LONG))
    until(client, lambda c: c["waiters"] >= base + 2)  # both questions are held
    client.cancel(second)  # the later question is answered first
    assert result(wait_second).jobid == second
    assert wait_first[0].is_alive() and wait_first[1] == []
    client.cancel(first)
    assert result(wait_first).jobid == first


def test_fifty_concurrent_clients_get_distinct_job_ids(srv: RunningServer, client: Client) -> None:
    before = counters(client)["nextJobId"]
    clients = [srv.client() for _ in range(50)]
    calls = [
        in_thread(lambda c=c, i=i: c.submit([a_job(srv.home, i)])) for i, c in enumerate(clients)
    ]
    replies = [result(call, LONG * 2) for call in calls]
    ids = [jobid for jobid, n in replies]
    assert all(n == 1 for _, n in replies)
    assert sorted(ids) == list(range(before, before + 50))
    status = client.stat(100)
    cmds = {j.jobid: j.cmd for j in status.jobs}
    for i, jobid in enumerate(ids):
        assert cmds[jobid] == f"echo {i}"  # each client's job is the one it was told about
    for jobid in ids:
        client.cancel(jobid)
    assert counters(client)["waitingJobs"] == 0


# ----------------------------------------------------------------------- bad frames


def _flip_last_byte(frame: bytes) -> bytes:
    return frame[:-1] + bytes((frame[-1] ^ 0xFF,))


BAD_CASES = ("random-bytes", "truncated", "other-key", "flipped-byte", "replayed", "too-big")


def _stat_frame(srv: RunningServer, key: bytes | None = None) -> bytes:
    wire = srv.wire
    if key is not None:
        wire = Wire(PLUGINS.codec(srv.combo.codec), PLUGINS.cipher(srv.combo.cipher, key))
    return wire.pack(Message(Kind.STAT, count=1))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_frame_is_dropped_and_counted_and_the_server_keeps_serving(
    srv: RunningServer, client: Client, case: str
) -> None:
    end = srv.raw_end()
    sealed = srv.combo.cipher != "none"
    before = counters(client)
    replies: list[bytes] = []
    allowed: set[str | None]  # the drop counter that may take the frame (None: read, harmless)

    if case == "random-bytes":
        junk = random.Random(7).randbytes(300)
        assert junk[:2] != MAGIC
        replies.append(end.request(junk, LONG))
        allowed = {GARBAGE}
    elif case == "truncated":
        frame = _stat_frame(srv)
        cut = len(srv.wire.header) + (len(frame) - len(srv.wire.header)) // 2
        replies.append(end.request(frame[:cut], LONG))
        allowed = {BAD_SIG} if sealed else {BAD_CODEC}
    elif case == "other-key":
        replies.append(end.request(_stat_frame(srv, os.urandom(32)), LONG))
        allowed = {BAD_SIG} if sealed else {None}  # unsealed: any key reads it (a STAT)
    elif case == "flipped-byte":
        replies.append(end.request(_flip_last_byte(_stat_frame(srv)), LONG))
        allowed = {BAD_SIG} if sealed else {BAD_CODEC, GARBAGE, None}
    elif case == "replayed":
        frame = _stat_frame(srv)
        first = srv.wire.unpack(end.request(frame, LONG))
        assert first.kind == Kind.STATUS
        replies.append(end.request(frame, LONG))
        allowed = {REPLAY}
    else:  # too-big: over the limit yet within the slack is refused; beyond it, cut off
        assert TOO_BIG_SLACK >= MAX_FRAME // 2
        big = srv.wire.pack(Message(Kind.OUTPUT, data=bytes(MAX_FRAME + MAX_FRAME // 2)))
        replies.append(end.request(big, LONG))
        allowed = {TOO_BIG}
        huge = bytes(MAX_FRAME + TOO_BIG_SLACK + 1024)
        with pytest.raises(TransportTimeout):
            srv.raw_end().request(huge, 0.3)

    after = counters(client)
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in DROP_COUNTERS}
    counted = [k for k, d in grew.items() if d]
    assert len(counted) <= 1 and all(d in (0, 1) for d in grew.values()), grew
    dropped = counted[0] if counted else None
    assert dropped in allowed, grew
    reply = replies[-1]
    if dropped == REPLAY:
        assert srv.wire.unpack(reply).kind == Kind.ERROR  # the kernel refuses it, sealed
    elif dropped is not None:
        text = error_text(reply)
        assert text is not None and text.startswith("refused"), reply[:80]
    else:
        assert srv.wire.unpack(reply).kind in (Kind.STATUS, Kind.ERROR)

    for name in ("waitingJobs", "runQlen", "nextJobId", "finishedJobsCount"):
        assert after[name] == before[name], name
    jobid, _ = client.submit([a_job(srv.home)])  # and it still serves
    assert jobid == before["nextJobId"]
    client.cancel(jobid)


# ----------------------------------------------------------------------- mismatches


def _other(options: tuple[str, ...], mine: str) -> str:
    return next(o for o in options if o != mine)


@pytest.mark.parametrize("what", ("codec", "cipher", "key"))
def test_codec_or_cipher_mismatch_is_a_clear_error_not_a_hang(
    srv: RunningServer, client: Client, what: str
) -> None:
    if what == "key" and srv.combo.cipher == "none":
        pytest.skip("the none cipher has no key to differ")
    before = counters(client)
    if what == "key":
        other = Client(srv.settings, os.urandom(32), PLUGINS)
        counter = BAD_SIG
    else:
        choices = CODECS if what == "codec" else CIPHERS
        theirs = _other(choices, getattr(srv.combo, what))
        other = srv.client(**{what: theirs})
        counter = MISMATCH
    t0 = time.monotonic()
    try:
        with pytest.raises(RemoteError) as err:
            other.stat()
    finally:
        other.close()
    assert time.monotonic() - t0 < 1.0
    message = str(err.value)
    assert "refused" in message
    if what != "key":
        assert "codec" in message and "cipher" in message
    else:
        assert "key" in message
    after = counters(client)
    assert after.get(counter, 0) == before.get(counter, 0) + 1


def test_transport_mismatch_is_a_goq_error_within_the_send_timeout(
    srv: RunningServer, client: Client
) -> None:
    other = srv.client(transport=_other(TRANSPORTS, srv.combo.transport), sendtimeout_ms=300)
    t0 = time.monotonic()
    # a zmq client finds an nng server hanging up during the handshake and says so; an nng
    # client hears nothing from a zmq server
    with pytest.raises(GoqError, match="no reply|another transport"):
        other.stat()
    assert time.monotonic() - t0 < 1.5
    other.close()
    assert client.stat().kind == Kind.STATUS  # the stranger did not hurt the server


# ----------------------------------------------------------------------- stop and restart


@pytest.fixture(params=COMBOS, ids=[c.id for c in COMBOS])
def combo(request) -> Combo:
    return request.param


def test_shutdown_is_acknowledged_then_the_server_stops(combo: Combo, own_home: str) -> None:
    running = RunningServer(own_home, combo, os.urandom(32))
    try:
        c = running.client(sendtimeout_ms=300)
        assert c.shutdown().kind == Kind.ACK
        running.thread.join(LONG)
        assert not running.thread.is_alive()
        with pytest.raises(GoqError):
            c.stat()
    finally:
        running.stop()


def test_a_client_keeps_working_across_a_server_restart(combo: Combo, own_home: str) -> None:
    Plugins().store("sqlite", os.path.join(own_home, ".goq"), create=True).close()
    key = os.urandom(32)
    first = RunningServer(own_home, combo, key, store="sqlite")
    port = first.port
    c = first.client()
    try:
        jobid, _ = c.submit([a_job(own_home, 1)])
    finally:
        first.stop()
    second = RunningServer(own_home, combo, key, port=port, store="sqlite")
    try:
        status = c.stat()  # the same client object, its connection re-made underneath
        assert status.counters["waitingJobs"] == 1
        assert [j.jobid for j in status.jobs] == [jobid]
        assert c.submit([a_job(own_home, 2)]) == (jobid + 1, 1)  # no id reused
        assert c.cancel(jobid).kind == Kind.ACK
    finally:
        c.close()
        second.stop()
