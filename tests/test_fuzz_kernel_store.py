"""Random authentic requests at the server runtime, kernel and sqlite store together: arbitrary
text (lone surrogates, NUL, any code point) in every string field, huge and negative numbers,
empty and odd lists, requests of every kind in any order, timers firing in between.

The properties: nothing raises out of the server's turn; every request gets a reply; every job
the server acknowledged (SUBMITTED) is in the store; and a server restarted on that store
finds every acknowledged job again, either live or ended, with its command as submitted. Jobs
carry random workflow fields (dependencies, arrays, retries, limits) and requests random id
lists and array specs, so dependency chains, holds and retries are driven at random too;
well-formed RESULTs of several runs (a worker with slots) name runs that may or may not be
current, twice, or another worker's.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Hashable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goq_core.config import Settings
from goq_core.kernel.dependencies import outside as dependencies_outside
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.roles.server import Server, ServerOptions
from goq_core.stores.sqlite import SqliteStore

INT64 = st.integers(-(2**63), 2**63 - 1)
SMALL = st.one_of(st.integers(0, 6), INT64)  # ids that hit real jobs, or anything at all
IDISH = st.one_of(st.integers(0, 6), st.integers(0, 2**63 - 1))  # codecs carry no negative ids
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and NUL too
PATHISH = st.one_of(TEXT, TEXT.map(lambda s: "/" + s), st.just("/tmp"))
WORKERS = st.one_of(st.sampled_from(["w1", "w2"]), TEXT)

JOBS = st.builds(
    Job,
    jobid=SMALL,
    cmd=st.one_of(TEXT, st.just("true")),
    args=st.lists(TEXT, max_size=3),
    shell=st.booleans(),
    dir=PATHISH,
    env=st.lists(TEXT, max_size=3),
    host=TEXT,
    user=TEXT,
    state=st.sampled_from(list(JobState)),
    attempt=SMALL,
    workerid=WORKERS,
    pid=INT64,
    exit_status=INT64,
    submit_ns=INT64,
    start_ns=INT64,
    end_ns=INT64,
    out_bytes=INT64,
    note=TEXT,
    name=st.one_of(st.just(""), TEXT),
    after=st.lists(IDISH, max_size=3),
    after_any=st.lists(IDISH, max_size=2),
    array_max=st.one_of(st.integers(0, 2), INT64),
    retries=st.one_of(st.integers(0, 2), INT64),
    retry_delay_ms=st.one_of(st.integers(0, 50), INT64),
    retried=SMALL,
    time_limit_ms=st.one_of(st.integers(0, 5), INT64),
    out_base=SMALL,
)
IDS = st.one_of(TEXT, st.sampled_from(["1", "1-3", "2,4", "1-1000000000", "0", "3-1", "9"]))
ARRAYS = st.one_of(st.just(""), st.sampled_from(["1-3:1", "0-4:2", "5-1:1", "1-3"]), TEXT)
REQUESTS = st.builds(
    Message,
    # not SHUTDOWN (it ends the run) nor FORGET (it rightly removes acknowledged jobs that
    # ended, which the final check looks for; tests/test_store_history.py covers it)
    kind=st.sampled_from([k for k in Kind if k not in (Kind.SHUTDOWN, Kind.FORGET)]),
    workerid=WORKERS,
    host=TEXT,
    jobid=SMALL,
    attempt=SMALL,
    count=SMALL,
    wait_ms=st.one_of(st.integers(-5, 3000), INT64),
    offset=st.one_of(st.integers(0, 100), INT64),
    data=st.binary(max_size=64),
    text=st.one_of(TEXT, IDS, ARRAYS),
    jobs=st.lists(JOBS, max_size=4),
    counters=st.dictionaries(TEXT, INT64, max_size=3),
)


def _batch(runs: list[Job], wait_ms: int, worker: str, counters: dict[str, int]) -> Message:
    """A well-formed RESULT of several runs (goq_core.messages): each run's output in data."""
    data = b"".join(bytes([65 + i % 26]) * run.out_bytes for i, run in enumerate(runs))
    first = runs[0]
    return Message(
        Kind.RESULT,
        workerid=worker,
        jobid=first.jobid,
        attempt=first.attempt,
        jobs=runs,
        data=data,
        wait_ms=wait_ms,
        counters=counters,
    )


RUNS = st.builds(
    Job,
    jobid=st.integers(1, 6),
    attempt=st.integers(1, 2),
    out_bytes=st.integers(0, 5),
    exit_status=st.integers(-9, 3),
    state=st.sampled_from([JobState.FINISHED, JobState.TIMEOUT, JobState.RUNNING]),
)
# runs of jobs that may be running on w1 or w2, the same run twice, runs of the other worker
BATCHES = st.builds(
    _batch,
    st.lists(RUNS, min_size=2, max_size=5),
    st.sampled_from([0, 500]),
    st.sampled_from(["w1", "w2"]),
    st.dictionaries(st.sampled_from(["0/maxRssKib", "1/utimeUs", "9/stimeUs", "x"]), INT64),
)
STEPS = st.lists(st.one_of(REQUESTS, BATCHES, st.floats(0, 3)), min_size=1, max_size=25)


class Recorder:
    """Stands in for the transport's server end: keeps every reply by peer."""

    def __init__(self) -> None:
        self.replies: dict[Hashable, list[bytes]] = {}

    def reply(self, peer: Hashable, data: bytes) -> bool:
        self.replies.setdefault(peer, []).append(data)
        return True

    def close(self) -> None:
        return None


def _server(home: str) -> Server:
    cfg = Settings(home=home, jserv_ip="127.0.0.1", jserv_port=1, heartbeat_sec=1)
    server = Server(cfg, os.urandom(32), options=ServerOptions(store="sqlite"))
    server.end = Recorder()
    server.store = SqliteStore(os.path.join(home, ".goq"), create=True)
    return server


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=STEPS)
def test_random_authentic_requests_never_stop_the_server_or_lose_an_acknowledged_job(
    steps: list,
) -> None:
    with tempfile.TemporaryDirectory() as home:
        server = _server(home)
        end = server.end
        acked: dict[int, str] = {}
        now = time.time()
        for n, step in enumerate(steps):
            if isinstance(step, float):  # time passes: timers fire
                now += step
                server._perform(server.kernel.tick(now))
                continue
            peer = f"peer{n}"
            actions: list = []
            server._take(peer, server.wire.pack(step), now, actions)
            server._perform(actions)
            answered = [server.wire.unpack(f) for f in end.replies.get(peer, [])]
            held = step.kind in (Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.WAIT, Kind.RESULT)
            assert answered or held, f"no reply to {step.kind.name}"
            for reply in answered:
                if reply.kind == Kind.SUBMITTED:
                    for i in range(reply.count):  # an array: its one job, made many times
                        acked[reply.jobid + i] = step.jobs[0 if step.text else i].cmd
        server._perform(server.kernel.shutdown(now + 1))
        assert server.store is not None
        for jobid, cmd in acked.items():
            stored = server.store.get_job(jobid)
            assert stored is not None and stored.cmd == cmd
        server.store.close()

        again = _server(home)
        assert again.store is not None
        stored = again.store.load()
        jobs = again._usable(stored.jobs)
        outcomes = again.store.outcomes(dependencies_outside(jobs))
        again.kernel.restore(jobs, stored.counters, now + 2, outcomes=outcomes)
        live = {j.jobid: j for j in again.kernel._all_live()}
        for jobid, cmd in acked.items():
            job = live.get(jobid) or again.store.get_job(jobid)
            assert job is not None and job.cmd == cmd
            if jobid not in live:
                assert job.state in (JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT)
        assert again.kernel.next_jobid > max(acked, default=0)
        again.store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.one_of(BATCHES, st.floats(0, 0.6)), min_size=1, max_size=12))
def test_random_batches_of_results_end_each_run_once_with_its_own_output(steps: list) -> None:
    """Six jobs running on w1 and w2 (three each), then RESULTs of several runs at random:
    current or not, the same run twice, the other worker's. Each job ends at most once, every
    RESULT is answered, and an ended job's output file is exactly its own slice of the batch
    that ended it (one letter per position in the batch, as long as its recorded size)."""
    with tempfile.TemporaryDirectory() as home:
        server = _server(home)
        end = server.end
        now = time.time()

        def send(msg: Message, peer: str) -> list[Message]:
            actions: list = []
            server._take(peer, server.wire.pack(msg), now, actions)
            server._perform(actions)
            return [server.wire.unpack(f) for f in end.replies.get(peer, [])]

        jobs = [Job(cmd="true", dir=home) for _ in range(6)]
        assert send(Message(Kind.SUBMIT, jobs=jobs), "sub")[0].kind == Kind.SUBMITTED
        for worker in ("w1", "w2"):
            offer = Job(jobid=0, cpus=3, workerid=f"token-{worker}")
            ask = Message(Kind.REQUEST_WORK, workerid=worker, wait_ms=500, jobs=[offer])
            (handed,) = send(ask, f"ask-{worker}")
            assert handed.kind == Kind.JOB and len(handed.jobs) == 3
        for n, step in enumerate(steps):
            if isinstance(step, float):
                now += step
                server._perform(server.kernel.tick(now))
                continue
            answered = send(step, f"peer{n}")
            assert answered or step.wait_ms > 0, "a RESULT that did not ask got no answer"
            assert all(r.kind != Kind.ERROR for r in answered), answered
        assert server.store is not None
        c = server.kernel.counters
        ended = [server.store.get_job(i) for i in range(1, 7)]
        over = [
            j for j in ended if j is not None and j.state in (JobState.FINISHED, JobState.TIMEOUT)
        ]
        assert c.finished + c.timed_out == len(over)  # each ended once
        for job in over:
            path = os.path.join(home, "o", f"out.{job.jobid:05d}")
            with open(path, "rb") as fh:
                written = fh.read()
            assert len(written) == job.out_bytes and len(set(written)) <= 1, (job, written)
        server.store.close()
