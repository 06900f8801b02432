"""The kernel's hardening rules (issue 9): the front door, bounded replies, liveness judged on
time the server could hear, undeliverable dispatches, refusing and undoing submissions while the
store cannot commit, and replay refusal across a restart."""

from __future__ import annotations

import pytest

from goq_core.kernel import Kernel, KernelConfig, Remember, Reply, Save
from goq_core.limits import MAX_JOBS_PER_SUBMIT, MAX_STAT_LIST
from goq_core.messages import Job, JobState, Kind, Message
from tests.test_kernel import HB, T0, Driver, one_reply


@pytest.fixture
def d() -> Driver:
    return Driver()


def refused(d: Driver, msg: Message, peer: str = "bad") -> str:
    out = d.send(msg, peer)
    reply = one_reply(out, peer)
    assert reply.kind == Kind.ERROR, reply
    assert not [a for a in out if isinstance(a, Save)]
    return reply.text


@pytest.mark.parametrize(
    ("job", "says"),
    [
        (Job(cmd="ls", dir="/tmp/a\x00b"), "NUL"),
        (Job(cmd="ls", dir=""), "no directory"),
        (Job(cmd="ls", dir="relative/dir"), "not an absolute path"),
        (Job(cmd="l\x00s", dir="/w"), "NUL"),
        (Job(cmd="ls", args=["ok", "a\x00"], dir="/w"), "NUL"),
        (Job(cmd="ls", dir="/w", env=["A=\x00"]), "NUL"),
        (Job(cmd="ls", dir="/w", args=["\ud800"]), "surrogate"),
        (Job(cmd="ls", dir="/w", args=["x" * (1 << 20 + 1)]), "characters"),
        (Job(cmd="", dir="/w"), "empty command"),
    ],
)
def test_unrunnable_job_is_refused_at_the_front_door_and_nothing_is_queued(
    d: Driver, job: Job, says: str
) -> None:
    text = refused(d, Message(Kind.SUBMIT, jobs=[Job(cmd="fine", dir="/w"), job]))
    assert says in text
    assert not d.kernel.waiting and d.kernel.next_jobid == 1
    assert d.kernel.stat_counters()["refusedCount"] == 1


def test_non_utf8_bytes_in_surrogateescape_form_are_accepted_as_submitted(d: Driver) -> None:
    job = Job(cmd="echo", args=["caf\udce9"], dir="/w/d\udce9", env=["X=\udcff"])
    out = d.send(Message(Kind.SUBMIT, jobs=[job]), "sub")
    assert one_reply(out, "sub").kind == Kind.SUBMITTED
    assert d.kernel.waiting[1].args == ["caf\udce9"]


def test_submit_of_more_jobs_than_the_limit_is_refused(d: Driver) -> None:
    jobs = [Job(cmd="x", dir="/w") for _ in range(MAX_JOBS_PER_SUBMIT + 1)]
    assert "at most" in refused(d, Message(Kind.SUBMIT, jobs=jobs))


@pytest.mark.parametrize(
    "msg",
    [
        Message(Kind.CANCEL, jobid=-5),
        Message(Kind.WAIT, jobid=1, wait_ms=-1),
        Message(Kind.REQUEST_WORK, workerid="", wait_ms=1000),
        Message(Kind.HEARTBEAT, workerid="w\x00", jobid=1, attempt=1),
        Message(Kind.OUTPUT, workerid="w", jobid=1, attempt=1, offset=-1),
        Message(Kind.WAIT, jobid=1, wait_ms=10**12),
        Message(Kind.ACK),
    ],
)
def test_malformed_request_is_refused_with_one_line(d: Driver, msg: Message) -> None:
    text = refused(d, msg)
    assert text.startswith("refused: ") and "\n" not in text


def test_stat_lists_no_more_than_the_cap_however_many_are_asked(d: Driver) -> None:
    d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w") for _ in range(MAX_STAT_LIST + 5)]))
    reply = one_reply(d.send(Message(Kind.STAT, count=2**62), "st"), "st")
    assert len(reply.jobs) == MAX_STAT_LIST
    assert reply.counters["waitingJobs"] == MAX_STAT_LIST + 5


def test_a_server_stall_does_not_make_live_workers_look_dead(d: Driver) -> None:
    jobid = d.submit("long")
    d.ask_work("w1")
    d.heartbeat("w1", jobid, 1)  # held until T0 + HB
    # The server is stuck for 10 heartbeats (e.g. a huge request), then runs its timers.
    d.kernel.excuse(10 * HB)
    out = d.tick(T0 + 10 * HB)
    assert one_reply(out, "hb-w1").kind == Kind.ALIVE  # the late answer to its heartbeat
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 0
    d.heartbeat("w1", jobid, 1, peer="hb2")  # the worker answers at once
    d.tick(T0 + 10.5 * HB)
    assert d.kernel.running[jobid].workerid == "w1"
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 0


def test_a_stall_is_excused_but_real_silence_after_it_still_counts(d: Driver) -> None:
    jobid = d.submit("long")
    d.ask_work("w1")
    d.kernel.excuse(5 * HB)  # a stall just after the dispatch
    assert not [a for a in d.tick(T0 + 6.9 * HB) if isinstance(a, Save)]
    out = d.tick(T0 + 7 * HB)  # 2 heartbeats of silence on top of the 5 excused
    assert [(a.job.jobid, a.job.state) for a in out if isinstance(a, Save)] == [
        (jobid, JobState.WAITING)
    ]


def test_undeliverable_dispatch_goes_to_a_live_idle_worker_at_once(d: Driver) -> None:
    d.ask_work("dead")
    d.ask_work("live")
    jobid = d.submit("x")
    (to_dead,) = [a for a in d.actions if isinstance(a, Reply) and a.msg.kind == Kind.JOB]
    assert to_dead.peer == "dead"
    out = d.kernel.undelivered(jobid, to_dead.msg.attempt, d.now)
    reply = one_reply(out, "live")
    assert reply.kind == Kind.JOB and reply.jobid == jobid
    counters = d.kernel.stat_counters()
    assert counters["requeuedJobsCount"] == 0 and counters["undeliveredCount"] == 1
    assert "dead" not in d.kernel.workers
    assert d.kernel.running[jobid].workerid == "live"


def test_undeliverable_dispatch_with_no_other_worker_waits_at_the_head(d: Driver) -> None:
    d.ask_work("dead")
    a = d.submit("a")
    b = d.submit("b")
    d.kernel.undelivered(a, 1, d.now)
    assert list(d.kernel.waiting) == [a, b]
    assert d.kernel.waiting[a].state == JobState.WAITING


def test_undelivered_report_about_an_old_attempt_changes_nothing(d: Driver) -> None:
    d.ask_work("w1")
    a = d.submit("a")
    assert d.kernel.undelivered(a, 7, d.now) == []
    assert d.kernel.running[a].workerid == "w1"


def test_submissions_are_refused_while_the_store_cannot_commit(d: Driver) -> None:
    d.kernel.set_store_trouble("disk is full")
    text = refused(d, Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w")]))
    assert "disk is full" in text and "nothing was submitted" in text
    assert one_reply(d.send(Message(Kind.STAT), "st"), "st").kind == Kind.STATUS  # reads go on
    d.kernel.set_store_trouble("")
    assert d.submit("x") == 1


def test_retracted_submission_leaves_the_queue_and_its_running_job_is_killed(d: Driver) -> None:
    d.ask_work("w1")
    out = d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w"), Job(cmd="b", dir="/w")]))
    first = one_reply(out, "p").jobid
    d.heartbeat("w1", first, 1)  # w1 started job `first`
    undo = d.kernel.retract(first, 2, d.now)
    assert one_reply(undo, "hb-w1").kind == Kind.KILL
    assert not d.kernel.waiting and not d.kernel.running
    assert d.kernel.next_jobid == first + 2  # ids are never given twice
    # the worker's result for it later is stale, not a finish
    d.result("w1", first, 1)
    assert d.kernel.stat_counters()["finishedJobsCount"] == 0


def test_state_changing_requests_are_remembered_for_a_restart(d: Driver) -> None:
    out = d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w")], nonce=b"s" * 16))
    assert [(a.nonce, a.sendtime_ns) for a in out if isinstance(a, Remember)] == [
        (b"s" * 16, int(T0 * 1e9))
    ]
    assert not [a for a in d.send(Message(Kind.STAT), "st") if isinstance(a, Remember)]


def test_restored_kernel_refuses_a_replay_of_a_remembered_request() -> None:
    k = Kernel(KernelConfig(heartbeat_sec=HB, max_hold_sec=HB))
    sent = int(T0 * 1e9)
    k.restore([], {"nextJobId": 2}, T0 + 5, nonces=[(b"s" * 16, sent)])
    replay = Message(Kind.SHUTDOWN, nonce=b"s" * 16, sendtime_ns=sent)
    (reply,) = k.handle(replay, "attacker", T0 + 5)
    assert reply.msg.kind == Kind.ERROR and not k.stopping
    fresh = Message(Kind.SHUTDOWN, nonce=b"t" * 16, sendtime_ns=sent + 10**9)
    assert any(
        isinstance(a, Reply) and a.msg.kind == Kind.ACK for a in k.handle(fresh, "p", T0 + 6)
    )
