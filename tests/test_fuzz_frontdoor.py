"""The server's front door under fire: thousands of random, truncated, mis-sealed, tampered,
replayed, skewed, undecodable and oversized frames at a live server (zmq, raw, aes-gcm), and
frames sealed for credentials that are forged, tampered, cut or name made-up principals.

Every bad frame must get a refusal and be counted in exactly one drop counter, so the counters
add up to the frames sent; none may change the queue; and the server must still run a job from
submit to finish afterwards.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goq_core.config import Settings
from goq_core.credentials import issue
from goq_core.drops import BAD_CODEC, BAD_SIG, DROP_COUNTERS, GARBAGE, REPLAY, TOO_BIG
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.principals import SUBMIT, Principal, Secret
from goq_core.roles.client import Client
from goq_core.roles.server import Server, ServerOptions, output_path
from goq_core.wire import MAGIC, Wire, error_text
from tests.cluster import free_port

MAX_FRAME = 64 * 1024  # the server's frame limit: small, so that too-big frames are cheap
LONG = 5.0  # seconds: a bound never reached when all is well
SKEW_SEC = 30  # the kernel's allowed clock skew
EXAMPLES = 200  # x 10 to 60 frames each: a few thousand frames in all

PLUGINS = Plugins()


@dataclass(slots=True)
class Door:
    """A live server in a thread of this process, a raw end to throw frames at it, and a
    Client to read its counters."""

    server: Server
    thread: threading.Thread
    settings: Settings
    key: bytes
    wire: Wire
    end: object
    client: Client
    sent_bad: Counter[str]


@pytest.fixture(scope="module")
def door(tmp_path_factory) -> Iterator[Door]:
    home = str(tmp_path_factory.mktemp("frontdoor"))
    key = os.urandom(32)
    cfg = Settings(home=home, jserv_port=free_port(), heartbeat_sec=1, sendtimeout_ms=2000)
    os.makedirs(cfg.dir, exist_ok=True)
    server = Server(cfg, key, Plugins(), ServerOptions(max_frame=MAX_FRAME, store="memory"))
    server.open()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    wire = Wire(PLUGINS.codec(cfg.codec), PLUGINS.cipher(cfg.cipher, key))
    end = PLUGINS.transport(cfg.transport).dial(cfg.address)
    client = Client(cfg, key, PLUGINS)
    try:
        yield Door(server, thread, cfg, key, wire, end, client, Counter())
    finally:
        client.close()
        end.close()
        server._signalled = True  # what SIGTERM sets: stop at the next turn
        thread.join(LONG)
        server.close()
        assert not thread.is_alive(), "server did not stop"


def _job(home: str, n: int) -> Job:
    return Job(cmd="echo", args=[str(n)], dir=home, env=["A=1"], host="h", user="u")


def _submit_frame(d: Door, wire: Wire | None = None) -> bytes:
    return (wire or d.wire).pack(Message(Kind.SUBMIT, jobs=[_job(d.settings.home, 1)]))


def _sealed(d: Door, plain: bytes) -> bytes:
    """Authentic (right key) but whatever the plaintext is."""
    return d.wire.header + d.wire.cipher.seal(plain, d.wire.header)


def _at_time(d: Door, sendtime_ns: int) -> bytes:
    """A well-formed, authentic STAT whose send time we choose."""
    msg = Message(Kind.STAT, count=1, nonce=os.urandom(16), sendtime_ns=sendtime_ns)
    return _sealed(d, d.wire.codec.encode(msg))


# Each case: (kind, params). `expect` is the counter the frame must land in (None: any one).
CASES = st.one_of(
    st.tuples(st.just("garbage"), st.binary(max_size=300).filter(lambda b: b[:2] != MAGIC)),
    st.tuples(st.just("truncated"), st.integers(min_value=0)),
    st.tuples(st.just("other-key"), st.just(0)),
    st.tuples(st.just("flipped"), st.tuples(st.integers(min_value=0), st.integers(0, 7))),
    st.tuples(st.just("undecodable"), st.binary(max_size=200)),
    st.tuples(st.just("cut-plaintext"), st.integers(min_value=0)),
    st.tuples(st.just("skewed"), st.sampled_from([-1, 1])),
    st.tuples(st.just("replayed"), st.just(0)),
    st.tuples(st.just("too-big"), st.integers(1, 4096)),
    # frames sealed for a credential (goq_core.gate): forged, tampered, cut, made-up principals
    st.tuples(st.just("cred-forged"), st.sampled_from(["work", "submit", "admin"])),
    st.tuples(st.just("cred-flipped"), st.tuples(st.integers(min_value=0), st.integers(0, 7))),
    st.tuples(st.just("cred-truncated"), st.integers(min_value=0)),
    st.tuples(st.just("cred-principal"), st.binary(max_size=80)),
)


def _bad_frame(d: Door, kind: str, p) -> tuple[bytes, str | None]:
    """Build one bad frame; the drop counter it must land in (None: any one of them)."""
    if kind == "garbage":
        return p, GARBAGE
    if kind == "truncated":
        frame = _submit_frame(d)
        return frame[: p % len(frame)], None
    if kind == "other-key":
        stranger = Wire(d.wire.codec, PLUGINS.cipher(d.settings.cipher, os.urandom(32)))
        return _submit_frame(d, stranger), BAD_SIG
    if kind == "flipped":
        frame = bytearray(_submit_frame(d))
        pos, bit = p
        frame[pos % len(frame)] ^= 1 << bit
        return bytes(frame), None
    if kind == "undecodable":
        return _sealed(d, p), BAD_CODEC
    if kind == "cut-plaintext":
        plain = d.wire.codec.encode(Message(Kind.SUBMIT, nonce=os.urandom(16), jobs=[_job("", 1)]))
        return _sealed(d, plain[: p % len(plain)]), BAD_CODEC
    if kind == "skewed":
        return _at_time(d, time.time_ns() + p * (SKEW_SEC + 5) * 1_000_000_000), REPLAY
    if kind == "replayed":
        frame = d.wire.pack(Message(Kind.STAT, count=1))
        first = d.wire.unpack(d.end.request(frame, LONG))  # the original is served
        assert first.kind == Kind.STATUS
        return frame, REPLAY
    if kind.startswith("cred-"):
        return _credential_frame(d, kind, p)
    assert kind == "too-big"
    big = d.wire.pack(Message(Kind.OUTPUT, data=bytes(MAX_FRAME + p)))
    return big, TOO_BIG


def _credential_frame(d: Door, kind: str, p) -> tuple[bytes, str | None]:
    now = time.time_ns()
    if kind == "cred-forged":  # a credential whose key the root secret did not make
        forged = Secret(os.urandom(32), Principal(p, "mallory", now - 1, 0))
        return _submit_frame(d, _cred_wire(d, forged)), BAD_SIG
    real = _cred_wire(d, issue(d.key, SUBMIT, "fuzzer", now - 1))
    if kind == "cred-flipped":
        frame = bytearray(_submit_frame(d, real))
        pos, bit = p
        frame[pos % len(frame)] ^= 1 << bit
        return bytes(frame), None
    if kind == "cred-truncated":
        frame = _submit_frame(d, real)
        return frame[: p % len(frame)], None
    assert kind == "cred-principal"  # whatever bytes where the principal goes
    label = real.label.encode("ascii")
    head = MAGIC + bytes((1, ord("C"), len(label))) + label + bytes((len(p),)) + p
    return head + real.cipher.seal(b"x" * 40, head), None


def _cred_wire(d: Door, secret: Secret) -> Wire:
    cipher = PLUGINS.cipher(d.settings.cipher, secret.key)
    return Wire(d.wire.codec, cipher, principal=secret.principal)


def _drops(d: Door) -> dict[str, int]:
    counters = d.client.stat(1).counters
    return {name: counters.get(name, 0) for name in DROP_COUNTERS} | {
        "nextJobId": counters["nextJobId"],
        "waitingJobs": counters["waitingJobs"],
    }


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cases=st.lists(CASES, min_size=10, max_size=60))
def test_every_bad_frame_is_refused_and_counted_exactly_once(door: Door, cases) -> None:
    before = _drops(door)
    expected: Counter[str] = Counter()
    for kind, params in cases:
        frame, expect = _bad_frame(door, kind, params)
        reply = door.end.request(frame, LONG)
        text = error_text(reply)
        if text is None:  # refused by the kernel (replay guard), sealed
            assert door.wire.unpack(reply).kind == Kind.ERROR, kind
        else:
            assert text.startswith("refused"), (kind, text)
        if expect is not None:
            expected[expect] += 1
        door.sent_bad[kind] += 1
    after = _drops(door)
    grew = {name: after[name] - before[name] for name in DROP_COUNTERS}
    assert sum(grew.values()) == len(cases), (grew, Counter(k for k, _ in cases))
    for name, n in expected.items():
        assert grew[name] >= n, (name, grew, expected)
    # nothing got in: no job was made by any of them
    assert after["nextJobId"] == before["nextJobId"]
    assert after["waitingJobs"] == before["waitingJobs"]


def test_after_the_barrage_the_server_still_runs_a_job_and_the_drops_add_up(door: Door) -> None:
    """Runs after the fuzz test (same module server): a job from submit to finish, by hand."""
    sent = sum(door.sent_bad.values())
    counters = door.client.stat(1).counters
    assert sum(counters.get(name, 0) for name in DROP_COUNTERS) == sent
    print(f"\n[frontdoor] bad frames sent: {sent} {dict(door.sent_bad)}")
    assert door.thread.is_alive()

    home = door.settings.home
    jobid, n = door.client.submit([_job(home, 7)])
    assert n == 1
    worker = Client(replace(door.settings), door.key, PLUGINS)
    try:
        got = worker.call(
            Message(Kind.REQUEST_WORK, workerid="fuzz-w", host="h", wait_ms=1000), 1000
        )
        assert got.kind == Kind.JOB and got.jobid == jobid
        outcome = replace(got.jobs[0], env=[], args=[], exit_status=0, pid=1, out_bytes=2)
        ack = worker.call(
            Message(
                Kind.RESULT,
                workerid="fuzz-w",
                host="h",
                jobid=jobid,
                attempt=got.attempt,
                offset=0,
                data=b"7\n",
                jobs=[outcome],
            )
        )
        assert ack.kind == Kind.ACK
    finally:
        worker.close()
    done = door.client.wait(jobid, deadline=time.time() + LONG)
    assert done is not None and done.exit_status == 0
    with open(output_path(home, door.settings.odir, jobid)) as fh:
        assert fh.read() == "7\n"
    after = door.client.stat(1).counters
    assert after["finishedJobsCount"] == 1
    assert sum(after.get(name, 0) for name in DROP_COUNTERS) == sent  # the good ones count none
