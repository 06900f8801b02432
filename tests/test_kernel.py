"""Behaviour of the pure kernel, rule by rule from design.md §3, driven with explicit times."""

from __future__ import annotations

import itertools

import pytest

from goq_core.drops import REPLAY
from goq_core.kernel import (
    Kernel,
    KernelConfig,
    Notify,
    Reply,
    ReplyStoredJob,
    Save,
    Stop,
    WriteOutput,
)
from goq_core.messages import Job, JobState, Kind, Message

HB = 1.0  # heartbeat seconds in these tests
T0 = 1_700_000_000.0


class Driver:
    """Feeds a kernel messages stamped like a real sender's and collects its replies."""

    def __init__(self, **config: float) -> None:
        self.kernel = Kernel(KernelConfig(heartbeat_sec=HB, max_hold_sec=HB, **config))
        self.now = T0
        self._nonces = itertools.count(1)
        self.actions: list = []

    def send(self, msg: Message, peer: str = "p", at: float | None = None) -> list:
        if at is not None:
            self.now = at
        if not msg.nonce:
            msg.nonce = next(self._nonces).to_bytes(16, "big")
        if not msg.sendtime_ns:
            msg.sendtime_ns = int(self.now * 1e9)
        out = self.kernel.handle(msg, peer, self.now)
        self.actions += out
        return out

    def tick(self, at: float) -> list:
        self.now = at
        out = self.kernel.tick(at)
        self.actions += out
        return out

    # -- conveniences
    def submit(self, *cmds: str, peer: str = "sub") -> int:
        msg = Message(Kind.SUBMIT, jobs=[Job(cmd=c, dir="/w", env=["A=1"]) for c in cmds])
        out = self.send(msg, peer)
        (ack,) = replies_to(out, peer)
        assert ack.kind == Kind.SUBMITTED
        return ack.jobid

    def ask_work(self, worker: str, peer: str | None = None, wait_ms: int = 1000) -> list:
        msg = Message(Kind.REQUEST_WORK, workerid=worker, host="h-" + worker, wait_ms=wait_ms)
        return self.send(msg, peer or worker)

    def heartbeat(self, worker: str, jobid: int, attempt: int, peer: str | None = None) -> list:
        msg = Message(Kind.HEARTBEAT, workerid=worker, jobid=jobid, attempt=attempt, wait_ms=1000)
        return self.send(msg, peer or f"hb-{worker}")

    def result(
        self, worker: str, jobid: int, attempt: int, status: int = 0, more: bool = False
    ) -> list:
        outcome = Job(jobid=jobid, exit_status=status, pid=42, start_ns=1, end_ns=2, out_bytes=3)
        msg = Message(
            Kind.RESULT,
            workerid=worker,
            jobid=jobid,
            attempt=attempt,
            data=b"out",
            jobs=[outcome],
            wait_ms=1000 if more else 0,
        )
        return self.send(msg, worker)


def replies_to(actions: list, peer: str) -> list[Message]:
    return [a.msg for a in actions if isinstance(a, Reply) and a.peer == peer]


def one_reply(actions: list, peer: str) -> Message:
    found = replies_to(actions, peer)
    assert len(found) == 1, f"expected one reply to {peer}, got {found}"
    return found[0]


@pytest.fixture
def d() -> Driver:
    return Driver()


# ------------------------------------------------------------------------------- submit


def test_submit_assigns_consecutive_ids_and_saves_each_job(d: Driver) -> None:
    out = d.send(
        Message(
            Kind.SUBMIT,
            jobs=[Job(cmd="a", dir="/w"), Job(cmd="b", dir="/w"), Job(cmd="c", dir="/w")],
        ),
        "sub",
    )
    ack = one_reply(out, "sub")
    assert (ack.kind, ack.jobid, ack.count) == (Kind.SUBMITTED, 1, 3)
    saved = [a.job for a in out if isinstance(a, Save)]
    assert [j.jobid for j in saved] == [1, 2, 3]
    assert all(j.state == JobState.WAITING for j in saved)
    assert [a.job.jobid for a in out if isinstance(a, Notify) and a.event == "submitted"] == [
        1,
        2,
        3,
    ]
    assert d.submit("d") == 4


def test_submit_saves_before_replying_in_action_order(d: Driver) -> None:
    out = d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")]), "sub")
    kinds = [type(a) for a in out]
    assert kinds.index(Save) < kinds.index(Reply)


def test_submit_of_empty_command_is_refused_and_nothing_is_queued(d: Driver) -> None:
    out = d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="ok", dir="/w"), Job(cmd="", dir="/w")]), "sub")
    assert one_reply(out, "sub").kind == Kind.ERROR
    assert d.kernel.stat_counters()["waitingJobs"] == 0
    assert d.kernel.next_jobid == 1


def test_jobs_without_env_inherit_the_env_of_the_job_before_them_in_a_batch(d: Driver) -> None:
    jobs = [
        Job(cmd="a", dir="/w", env=["X=1", "Y=2"]),
        Job(cmd="b", dir="/w"),
        Job(cmd="c", dir="/w"),
    ]
    d.send(Message(Kind.SUBMIT, jobs=jobs), "sub")
    waiting = list(d.kernel.waiting.values())
    assert [j.env for j in waiting] == [["X=1", "Y=2"]] * 3
    assert waiting[0].env is waiting[1].env is waiting[2].env  # shared, not copied


def test_client_supplied_state_and_ids_are_ignored_on_submit(d: Driver) -> None:
    bogus = Job(cmd="a", dir="/w", jobid=999, state=JobState.FINISHED, attempt=7, workerid="w")
    d.send(Message(Kind.SUBMIT, jobs=[bogus]), "sub")
    (job,) = d.kernel.waiting.values()
    assert (job.jobid, job.state, job.attempt, job.workerid) == (1, JobState.WAITING, 0, "")


# ------------------------------------------------------------------------------- dispatch


def test_request_for_work_is_held_until_a_job_arrives_then_answered_at_once(d: Driver) -> None:
    assert d.ask_work("w1") == []  # held: no reply yet
    jobid = d.submit("echo hi")
    dispatched = one_reply(d.actions, "w1")
    assert dispatched.kind == Kind.JOB
    assert dispatched.jobs[0].jobid == jobid and dispatched.attempt == 1
    assert dispatched.jobs[0].env == ["A=1"]


def test_waiting_job_goes_to_a_worker_the_moment_it_asks(d: Driver) -> None:
    jobid = d.submit("x")
    out = d.ask_work("w1")
    assert one_reply(out, "w1").jobs[0].jobid == jobid


def test_oldest_job_goes_to_longest_waiting_worker(d: Driver) -> None:
    d.ask_work("w1")
    d.now += 0.1
    d.ask_work("w2")
    d.now += 0.1
    d.ask_work("w3")
    first = d.submit("first")
    d.submit("second")
    assert one_reply(d.actions, "w1").jobs[0].jobid == first
    assert one_reply(d.actions, "w2").jobs[0].jobid == first + 1
    assert replies_to(d.actions, "w3") == []


def test_held_request_for_work_is_answered_nothing_yet_after_its_hold(d: Driver) -> None:
    d.ask_work("w1", wait_ms=500)
    assert d.kernel.next_deadline() == pytest.approx(T0 + 0.5)
    assert d.tick(T0 + 0.4) == []
    out = d.tick(T0 + 0.5)
    assert one_reply(out, "w1").kind == Kind.NOTHING_YET
    assert d.kernel.stat_counters()["waitingWorkers"] == 0
    d.submit("x")  # no one to take it now
    assert d.kernel.stat_counters()["waitingJobs"] == 1


def test_hold_is_capped_by_the_server_max(d: Driver) -> None:
    d.ask_work("w1", wait_ms=60_000)
    assert d.kernel.next_deadline() == pytest.approx(T0 + HB)


def test_worker_asking_again_gets_its_earlier_held_request_answered(d: Driver) -> None:
    d.ask_work("w1", peer="old")
    out = d.ask_work("w1", peer="new")
    assert one_reply(out, "old").kind == Kind.NOTHING_YET
    d.submit("x")
    assert one_reply(d.actions, "new").kind == Kind.JOB


# ------------------------------------------------------------------------------- results


def test_result_finishes_job_once_and_writes_output_and_answers_heartbeat(d: Driver) -> None:
    jobid = d.submit("x")
    d.ask_work("w1")
    d.heartbeat("w1", jobid, 1)
    out = d.result("w1", jobid, 1, status=3)
    assert one_reply(out, "hb-w1").kind == Kind.ACK  # heartbeat hold released
    assert one_reply(out, "w1").kind == Kind.ACK
    writes = [a for a in out if isinstance(a, WriteOutput)]
    assert [(w.job.jobid, w.offset, w.data) for w in writes] == [(jobid, 0, b"out")]
    (saved,) = [a.job for a in out if isinstance(a, Save)]
    assert (saved.state, saved.exit_status, saved.pid) == (JobState.FINISHED, 3, 42)
    assert [a.event for a in out if isinstance(a, Notify)] == ["finished"]
    assert d.kernel.stat_counters()["finishedJobsCount"] == 1


def test_result_with_more_wanted_returns_next_job_in_same_reply(d: Driver) -> None:
    a = d.submit("a")
    b = d.submit("b")
    d.ask_work("w1")
    out = d.result("w1", a, 1, more=True)
    nxt = one_reply(out, "w1")
    assert nxt.kind == Kind.JOB and nxt.jobs[0].jobid == b


def test_result_with_more_wanted_is_held_when_queue_is_empty(d: Driver) -> None:
    a = d.submit("a")
    d.ask_work("w1")
    out = d.result("w1", a, 1, more=True)
    assert replies_to(out, "w1") == []
    assert d.kernel.stat_counters()["waitingWorkers"] == 1


def test_repeated_result_is_a_counted_duplicate_and_does_not_finish_twice(d: Driver) -> None:
    jobid = d.submit("x")
    d.ask_work("w1")
    d.result("w1", jobid, 1)
    out = d.result("w1", jobid, 1)
    assert one_reply(out, "w1").kind == Kind.ACK
    assert not [a for a in out if isinstance(a, (Save, WriteOutput, Notify))]
    counters = d.kernel.stat_counters()
    assert counters["finishedJobsCount"] == 1 and counters["duplicateResultCount"] == 1
    assert counters["staleResultCount"] == 0


def test_worker_asking_again_after_a_lost_dispatch_gets_the_same_run_not_a_requeue(
    d: Driver,
) -> None:
    a = d.submit("a")
    d.submit("b")
    d.ask_work("w1", peer="given-up")  # the JOB reply to this request never reaches w1
    assert one_reply(d.actions, "given-up").jobs[0].jobid == a
    again = one_reply(d.ask_work("w1", peer="fresh"), "fresh")
    assert (again.kind, again.jobid, again.attempt) == (Kind.JOB, a, 1)
    counters = d.kernel.stat_counters()
    assert counters["requeuedJobsCount"] == 0 and counters["waitingJobs"] == 1


def test_output_chunks_of_current_attempt_are_written_and_stale_ones_dropped(d: Driver) -> None:
    jobid = d.submit("x")
    d.ask_work("w1")
    chunk = Message(Kind.OUTPUT, workerid="w1", jobid=jobid, attempt=1, offset=0, data=b"ab")
    out = d.send(chunk, "w1")
    assert [(w.offset, w.data) for w in out if isinstance(w, WriteOutput)] == [(0, b"ab")]
    stale = Message(Kind.OUTPUT, workerid="w1", jobid=jobid, attempt=2, offset=2, data=b"zz")
    out = d.send(stale, "w1")
    assert not [a for a in out if isinstance(a, WriteOutput)]
    assert one_reply(out, "w1").text == "stale"


# ------------------------------------------------------------------------------- heartbeats


def test_heartbeat_is_held_and_answered_alive_after_its_hold(d: Driver) -> None:
    jobid = d.submit("x")
    d.ask_work("w1")
    assert d.heartbeat("w1", jobid, 1) == []
    out = d.tick(T0 + HB)
    assert one_reply(out, "hb-w1").kind == Kind.ALIVE


def test_job_of_dead_worker_is_requeued_at_head_after_two_heartbeats(d: Driver) -> None:
    a = d.submit("a")
    b = d.submit("b")
    d.ask_work("w1")  # takes a, then falls silent
    assert d.tick(T0 + 2 * HB - 0.01) == []  # not yet
    out = d.tick(T0 + 2 * HB)
    requeued = [s.job for s in out if isinstance(s, Save)]
    assert [(j.jobid, j.state) for j in requeued] == [(a, JobState.WAITING)]
    assert list(d.kernel.waiting) == [a, b]  # at the head
    reply = one_reply(d.ask_work("w2"), "w2")
    assert reply.jobs[0].jobid == a and reply.attempt == 2  # a new attempt
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 1


def test_heartbeats_keep_a_busy_worker_alive(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("w1")
    for i in range(1, 6):
        d.tick(T0 + i * HB - 0.5)
        d.heartbeat("w1", jobid, 1, peer=f"hb{i}")
    d.tick(T0 + 6 * HB)
    assert d.kernel.stat_counters()["runQlen"] == 1
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 0


def test_late_result_of_old_attempt_is_stale_after_requeue(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("w1")
    d.tick(T0 + 2 * HB)  # w1 presumed dead
    d.ask_work("w2")  # attempt 2 on w2
    out = d.result("w1", jobid, 1)  # w1 was alive after all
    assert not [a for a in out if isinstance(a, (Save, WriteOutput))]
    assert d.kernel.stat_counters()["staleResultCount"] == 1
    out = d.result("w2", jobid, 2)
    assert [a.job.state for a in out if isinstance(a, Save)] == [JobState.FINISHED]
    assert d.kernel.stat_counters()["finishedJobsCount"] == 1


def test_heartbeat_for_a_superseded_attempt_is_told_to_kill(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("w1")
    d.tick(T0 + 2 * HB)
    d.ask_work("w2")
    out = d.heartbeat("w1", jobid, 1)
    assert one_reply(out, "hb-w1").kind == Kind.KILL


def test_idle_worker_that_falls_silent_is_forgotten_and_gets_no_job(d: Driver) -> None:
    d.ask_work("w1", wait_ms=1000)
    d.tick(T0 + HB)  # NOTHING_YET; w1 never asks again
    d.tick(T0 + 3 * HB + 0.01)
    assert d.kernel.stat_counters()["knownWorkers"] == 0


# ------------------------------------------------------------------------------- cancel


def test_cancel_of_waiting_job_removes_it(d: Driver) -> None:
    jobid = d.submit("a")
    out = d.send(Message(Kind.CANCEL, jobid=jobid), "c")
    assert one_reply(out, "c").kind == Kind.ACK
    assert [a.job.state for a in out if isinstance(a, Save)] == [JobState.CANCELLED]
    d.ask_work("w1")
    assert replies_to(d.actions, "w1") == []


def test_cancel_of_running_job_kills_it_at_once_via_held_heartbeat(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("w1")
    d.heartbeat("w1", jobid, 1)
    out = d.send(Message(Kind.CANCEL, jobid=jobid), "c")
    assert one_reply(out, "hb-w1").kind == Kind.KILL
    assert one_reply(out, "c").kind == Kind.ACK
    assert d.kernel.stat_counters()["cancelledJobsCount"] == 1
    out = d.result("w1", jobid, 1, status=-15)  # the killed run reports: stale
    assert not [a for a in out if isinstance(a, Save)]


def test_cancel_of_running_job_without_held_heartbeat_kills_at_next_one(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("w1")
    d.send(Message(Kind.CANCEL, jobid=jobid), "c")
    assert one_reply(d.heartbeat("w1", jobid, 1), "hb-w1").kind == Kind.KILL


def test_cancel_of_unknown_job_says_not_known(d: Driver) -> None:
    out = d.send(Message(Kind.CANCEL, jobid=77), "c")
    assert one_reply(out, "c").kind == Kind.NOT_KNOWN


def test_cancel_of_ended_job_says_already_ended(d: Driver) -> None:
    jobid = d.submit("a")
    d.send(Message(Kind.CANCEL, jobid=jobid), "c1")
    out = d.send(Message(Kind.CANCEL, jobid=jobid), "c2")
    reply = one_reply(out, "c2")
    assert reply.kind == Kind.ACK and "already ended" in reply.text
    assert d.kernel.stat_counters()["cancelledJobsCount"] == 1


# ------------------------------------------------------------------------------- wait


def test_wait_is_answered_when_the_job_finishes(d: Driver) -> None:
    jobid = d.submit("a")
    assert d.send(Message(Kind.WAIT, jobid=jobid, wait_ms=1000), "waiter") == []
    d.ask_work("w1")
    out = d.result("w1", jobid, 1, status=0)
    done = one_reply(out, "waiter")
    assert done.kind == Kind.FINISHED and done.jobs[0].state == JobState.FINISHED


def test_wait_is_answered_when_the_job_is_cancelled(d: Driver) -> None:
    jobid = d.submit("a")
    d.send(Message(Kind.WAIT, jobid=jobid, wait_ms=1000), "waiter")
    out = d.send(Message(Kind.CANCEL, jobid=jobid), "c")
    assert one_reply(out, "waiter").jobs[0].state == JobState.CANCELLED


def test_wait_for_finished_job_returns_at_once(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("w1")
    d.result("w1", jobid, 1)
    out = d.send(Message(Kind.WAIT, jobid=jobid), "waiter")
    assert one_reply(out, "waiter").kind == Kind.FINISHED


def test_wait_for_unknown_job_says_not_known_at_once(d: Driver) -> None:
    out = d.send(Message(Kind.WAIT, jobid=5), "waiter")
    assert one_reply(out, "waiter").kind == Kind.NOT_KNOWN


def test_wait_for_job_ended_long_ago_is_looked_up_in_the_store() -> None:
    d = Driver(ended_ring=1)
    a = d.submit("a")
    d.submit("b")
    d.send(Message(Kind.CANCEL, jobid=a), "c")
    d.send(Message(Kind.CANCEL, jobid=a + 1), "c")  # pushes a out of the ring
    out = d.send(Message(Kind.WAIT, jobid=a), "waiter")
    assert [(x.peer, x.jobid) for x in out if isinstance(x, ReplyStoredJob)] == [("waiter", a)]


def test_held_wait_is_answered_nothing_yet_so_the_client_asks_again(d: Driver) -> None:
    jobid = d.submit("a")
    d.send(Message(Kind.WAIT, jobid=jobid, wait_ms=300), "waiter")
    out = d.tick(T0 + 0.3)
    assert one_reply(out, "waiter").kind == Kind.NOTHING_YET
    assert d.kernel.stat_counters()["waiters"] == 0


# ------------------------------------------------------------------------------- stat


def test_stat_lists_counters_then_running_and_waiting_jobs_without_env(d: Driver) -> None:
    for i in range(5):
        d.submit(f"job{i}")
    d.ask_work("w1")
    out = d.send(Message(Kind.STAT, count=2), "s")
    status = one_reply(out, "s")
    assert status.counters["runQlen"] == 1 and status.counters["waitingJobs"] == 4
    assert status.counters["nextJobId"] == 6
    assert [(j.jobid, j.state) for j in status.jobs] == [
        (1, JobState.RUNNING),
        (2, JobState.WAITING),
        (3, JobState.WAITING),
    ]
    assert all(j.env == [] for j in status.jobs)
    assert d.kernel.running[1].env == ["A=1"]  # the job itself keeps its env


# ------------------------------------------------------------------------------- shutdown


def test_shutdown_answers_every_hold_going_away_and_stops(d: Driver) -> None:
    jobid = d.submit("a")
    d.send(Message(Kind.WAIT, jobid=jobid, wait_ms=1000), "waiter")
    d.ask_work("w1")  # takes a
    d.heartbeat("w1", jobid, 1)
    d.ask_work("w2")  # idle, held
    out = d.send(Message(Kind.SHUTDOWN), "admin")
    for peer in ("waiter", "hb-w1", "w2"):
        assert one_reply(out, peer).kind == Kind.GOING_AWAY
    assert one_reply(out, "admin").kind == Kind.ACK
    assert any(isinstance(a, Stop) for a in out)
    later = d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="late", dir="/w")]), "sub")
    assert one_reply(later, "sub").kind == Kind.GOING_AWAY


# ------------------------------------------------------------------------------- immolate


def test_immolate_tells_idle_workers_to_exit_and_requeues_busy_workers_jobs(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("busy")
    d.heartbeat("busy", jobid, 1)
    d.ask_work("idle")
    out = d.send(Message(Kind.IMMOLATE), "admin")
    assert one_reply(out, "idle").kind == Kind.EXIT
    assert one_reply(out, "hb-busy").kind == Kind.EXIT
    assert list(d.kernel.waiting) == [jobid]
    assert d.kernel.stat_counters()["knownWorkers"] == 0


def test_immolated_worker_not_holding_a_request_is_told_exit_at_next_contact(d: Driver) -> None:
    jobid = d.submit("a")
    d.ask_work("busy")  # dispatched, not heartbeating yet
    d.send(Message(Kind.IMMOLATE), "admin")
    assert one_reply(d.heartbeat("busy", jobid, 1), "hb-busy").kind == Kind.EXIT


# ------------------------------------------------------------------------------- replay guard


def test_replayed_message_is_dropped_and_counted(d: Driver) -> None:
    msg = Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")], nonce=b"n" * 16)
    d.send(msg, "sub")
    replay = Message(
        Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")], nonce=b"n" * 16, sendtime_ns=msg.sendtime_ns
    )
    out = d.send(replay, "evil")
    assert one_reply(out, "evil").kind == Kind.ERROR
    assert d.kernel.stat_counters()[REPLAY] == 1
    assert d.kernel.stat_counters()["waitingJobs"] == 1


@pytest.mark.parametrize("offset", [-31.0, +31.0])
def test_message_outside_clock_skew_window_is_dropped(d: Driver, offset: float) -> None:
    msg = Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w")], sendtime_ns=int((T0 + offset) * 1e9))
    out = d.send(msg, "sub")
    assert one_reply(out, "sub").kind == Kind.ERROR
    assert d.kernel.stat_counters()["waitingJobs"] == 0


def test_replay_memory_is_bounded_without_opening_a_replay_hole() -> None:
    d = Driver(max_nonces=3)
    sent = []
    for i in range(10):
        msg = Message(Kind.STAT, nonce=bytes([i]) * 16, sendtime_ns=int((T0 + i * 0.001) * 1e9))
        d.send(msg, "s", at=T0 + 0.01)
        sent.append(msg)
    assert len(d.kernel.replay) <= 3
    for old in sent:  # every one of them, remembered or forgotten, is refused again
        again = Message(Kind.STAT, nonce=old.nonce, sendtime_ns=old.sendtime_ns)
        assert one_reply(d.send(again, "evil"), "evil").kind == Kind.ERROR


# ------------------------------------------------------------------------------- restore


def test_restore_rebuilds_queues_and_gives_running_jobs_three_heartbeats() -> None:
    d = Driver()
    waiting = Job(jobid=7, cmd="w", state=JobState.WAITING)
    running = Job(jobid=5, cmd="r", state=JobState.RUNNING, attempt=1, workerid="w1")
    d.kernel.restore([running, waiting], {"nextJobId": 9, "finishedJobsCount": 4}, T0)
    c = d.kernel.stat_counters()
    assert (c["runQlen"], c["waitingJobs"], c["nextJobId"], c["finishedJobsCount"]) == (1, 1, 9, 4)
    d.tick(T0 + 2 * HB + 0.01)
    assert list(d.kernel.waiting) == [7]  # 2 heartbeats after a restart are not enough to judge
    d.tick(T0 + 3 * HB + 0.01)  # w1 never reported
    assert list(d.kernel.waiting) == [5, 7]


def test_restored_running_job_keeps_running_when_its_worker_reports() -> None:
    d = Driver()
    running = Job(jobid=5, cmd="r", state=JobState.RUNNING, attempt=1, workerid="w1")
    d.kernel.restore([running], {"nextJobId": 6}, T0)
    assert d.heartbeat("w1", 5, 1) == []  # recognized: held, not killed


def test_durable_counters_include_next_job_id(d: Driver) -> None:
    d.submit("a", "b")
    assert d.kernel.durable_counters()["nextJobId"] == 3


def test_waiting_jobs_share_equal_strings_to_keep_memory_small(d: Driver) -> None:
    def fresh(text: str) -> str:  # an equal string that is a distinct object
        return "".join(list(text))

    jobs = [Job(cmd=fresh("/bin/echo"), dir=fresh("/data/x"), host=fresh("hhh")) for _ in range(3)]
    assert jobs[0].cmd is not jobs[1].cmd
    d.send(Message(Kind.SUBMIT, jobs=jobs), "sub")
    a, b, c = d.kernel.waiting.values()
    assert a.cmd is b.cmd is c.cmd and a.dir is b.dir is c.dir and a.host is c.host
