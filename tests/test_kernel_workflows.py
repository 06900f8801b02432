"""Workflow rules of the pure kernel (design.md §7): dependencies, arrays, retries, time limits,
hold and release, and the requests about many jobs, driven with explicit times."""

from __future__ import annotations

from goq_core import idranges
from goq_core.kernel import Save, WriteOutput
from goq_core.kernel.dependencies import outside
from goq_core.messages import Job, JobState, Kind, Message
from tests.test_kernel import HB, T0, Driver, one_reply, replies_to

W = JobState.WAITING
B, H, R = JobState.BLOCKED, JobState.HELD, JobState.RUNNING
F, C, TO = JobState.FINISHED, JobState.CANCELLED, JobState.TIMEOUT


def sub(d: Driver, cmd: str = "x", array: str = "", peer: str = "sub", **fields) -> Message:
    """Submit one job (or an array of it) and return the reply."""
    job = Job(cmd=cmd, dir="/w", env=["A=1"], **fields)
    out = d.send(Message(Kind.SUBMIT, jobs=[job], text=array), peer)
    return one_reply(out, peer)


def submit(d: Driver, **fields) -> int:
    reply = sub(d, **fields)
    assert reply.kind == Kind.SUBMITTED, reply.text
    return reply.jobid


def state(d: Driver, jobid: int) -> JobState:
    k = d.kernel
    job = k._live(jobid) or k.ended.get(jobid)
    assert job is not None, jobid
    return job.state


def job(d: Driver, jobid: int) -> Job:
    k = d.kernel
    found = k._live(jobid) or k.ended.get(jobid)
    assert found is not None
    return found


def take(d: Driver, worker: str) -> list[Job]:
    """The worker asks for work; the jobs it was handed (maybe none)."""
    out = d.ask_work(worker)
    replies = [m for m in replies_to(out, worker) if m.kind == Kind.JOB]
    return replies[0].jobs if replies else []


def run(d: Driver, worker: str, status: int = 0, state: JobState = JobState.NEW) -> int:
    """The worker takes one job and reports it ended with `status`; the job's id."""
    (j,) = take(d, worker)
    report(d, worker, j, status, state)
    return j.jobid


def report(
    d: Driver, worker: str, j: Job, status: int = 0, state: JobState = JobState.NEW, data=b"out"
) -> list:
    outcome = Job(jobid=j.jobid, exit_status=status, state=state, out_bytes=len(data))
    msg = Message(
        Kind.RESULT, workerid=worker, jobid=j.jobid, attempt=j.attempt, data=data, jobs=[outcome]
    )
    return d.send(msg, worker)


# ------------------------------------------------------------------------------ dependencies


def test_chain_of_three_with_a_failure_in_the_middle_cancels_the_rest_with_reasons() -> None:
    d = Driver()
    a = submit(d, cmd="align")
    b = submit(d, cmd="call", after=[a])
    c = submit(d, cmd="merge", after=[b])
    e = submit(d, cmd="report", after=[c])
    assert [state(d, i) for i in (a, b, c, e)] == [W, B, B, B]
    assert run(d, "w") == a
    assert state(d, b) == W  # a succeeded: b is ready, c and e still wait
    assert [state(d, i) for i in (c, e)] == [B, B]
    assert run(d, "w", status=3) == b
    assert [state(d, i) for i in (b, c, e)] == [F, C, C]
    assert job(d, c).note == f"dependency {b} failed"
    assert job(d, e).note == f"dependency {c} was cancelled"
    assert not d.kernel.blocked and not d.kernel.deps.pending
    assert d.kernel.stat_counters()["cancelledJobsCount"] == 2


def test_after_any_runs_after_a_failure_and_after_a_cancel() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d)
    cleanup = submit(d, cmd="cleanup", after_any=[a, b])
    assert state(d, cleanup) == B
    assert run(d, "w", status=1) == a
    assert state(d, cleanup) == B  # b has not ended yet
    d.send(Message(Kind.CANCEL, jobid=b), "k")
    assert state(d, cleanup) == W
    assert run(d, "w") == cleanup


def test_a_job_needing_success_and_any_end_of_the_same_job_needs_success() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d, after=[a], after_any=[a])
    run(d, "w", status=2)
    assert state(d, b) == C


def test_dependency_on_jobs_that_already_ended() -> None:
    d = Driver()
    ok = submit(d)
    bad = submit(d)
    run(d, "w")
    run(d, "w", status=1)
    ready = submit(d, after=[ok])
    assert state(d, ready) == W  # nothing to wait for
    doomed = submit(d, after=[bad])
    assert state(d, doomed) == C and job(d, doomed).note == f"dependency {bad} failed"
    anyway = submit(d, after_any=[bad])
    assert state(d, anyway) == W


def test_unknown_dependency_is_refused_and_nothing_is_submitted() -> None:
    d = Driver()
    a = submit(d)
    for bad in (a + 1, 999):
        reply = sub(d, after=[a, bad])
        assert reply.kind == Kind.ERROR
        assert f"job {bad} is not known" in reply.text
    assert d.kernel.next_jobid == a + 1
    assert sub(d, after=[0]).kind == Kind.ERROR  # the front door


def test_a_dependency_forgotten_by_memory_is_looked_up_through_learn() -> None:
    d = Driver(ended_ring=2)
    old = submit(d)
    run(d, "w", status=4)
    for _ in range(3):  # push `old` out of the ring of ended jobs
        submit(d)
        run(d, "w")
    msg = Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w", after=[old])])
    assert d.kernel.unresolved(msg) == [old]
    assert sub(d, after=[old]).kind == Kind.ERROR  # not learned: unknown, refused
    d.kernel.learn({old: (JobState.FINISHED, 4)})
    assert d.kernel.unresolved(msg) == []
    jobid = submit(d, after=[old])
    assert state(d, jobid) == C and job(d, jobid).note == f"dependency {old} failed"


def test_fan_in_of_10000_on_an_array_waits_for_every_element() -> None:
    d = Driver()
    first = sub(d, array="1-10000:1").jobid
    merge = submit(d, cmd="merge", after=list(range(first, first + 10_000)))
    assert d.kernel.deps.pending[merge] == 10_000
    for _ in range(9_999):
        run(d, "w")
    assert state(d, merge) == B
    assert d.kernel.why_blocked(job(d, merge)) == f"for job {first + 9_999}"
    run(d, "w")
    assert state(d, merge) == W


def test_fan_out_of_10000_is_released_when_its_dependency_succeeds() -> None:
    d = Driver()
    a = submit(d)
    first = sub(d, array="1-10000:1", after=[a]).jobid
    assert len(d.kernel.blocked) == 10_000 and not d.kernel.waiting.get(first)
    out = report(d, "w", take(d, "w")[0])
    assert len(d.kernel.waiting) == 10_000 and not d.kernel.blocked
    # one record to commit: the dependency's end; the released jobs are found ready again
    # from their dependencies if the server restarts (see the restore tests)
    assert [x.job.jobid for x in out if isinstance(x, Save)] == [a]


def test_blocked_jobs_are_listed_by_stat_with_what_they_wait_for() -> None:
    d = Driver()
    a, b = submit(d), submit(d)
    c = submit(d, after=[a, b], name="merge")
    status = one_reply(d.send(Message(Kind.STAT, count=10), "s"), "s")
    (blocked,) = [j for j in status.jobs if j.jobid == c]
    assert blocked.state == B and blocked.name == "merge"
    assert blocked.note == f"for jobs {a}-{b}"
    assert status.counters["blockedJobs"] == 1


# ------------------------------------------------------------------------------ arrays


def test_array_makes_consecutive_jobs_with_their_indexes() -> None:
    d = Driver()
    reply = sub(d, array="0-20:5", name="sweep")
    assert (reply.kind, reply.count) == (Kind.SUBMITTED, 5)
    jobs = [job(d, reply.jobid + i) for i in range(5)]
    assert [j.array_index for j in jobs] == [0, 5, 10, 15, 20]
    assert {j.array_id for j in jobs} == {reply.jobid}
    assert {j.name for j in jobs} == {"sweep"}
    assert len({id(j.env) for j in jobs}) == 1  # one environment shared


def test_array_cap_is_never_exceeded() -> None:
    d = Driver()
    first = sub(d, array="1-12:1", array_max=3).jobid
    other = submit(d, cmd="other")  # not in the array: never held back by its cap
    workers = [f"w{i}" for i in range(6)]
    running: dict[str, Job] = {}
    done: list[int] = []
    for step in range(40):
        for w in workers:
            if w not in running:
                handed = take(d, w)
                if handed:
                    running[w] = handed[0]
        in_array = [j for j in running.values() if j.array_id == first]
        assert len(in_array) <= 3, step
        assert d.kernel.caps.running.get(first, 0) == len(in_array)
        if not running:
            break
        w = sorted(running)[step % len(running)]
        j = running.pop(w)
        report(d, w, j)
        done.append(j.jobid)
    assert sorted(done) == sorted([*range(first, first + 12), other])
    assert other in done[:4]  # it ran at once, beside the capped array


def test_stat_says_why_a_capped_array_job_waits() -> None:
    d = Driver()
    first = sub(d, array="1-3:1", array_max=1).jobid
    take(d, "w1")
    why = d.kernel.why_waiting(job(d, first + 1))
    assert why == f"array {first} runs 1 of at most 1 at once"


def test_array_front_door_refusals() -> None:
    d = Driver()
    for bad in ("5-1:1", "1-2000000:1", "a-b:c", "1-3"):
        assert sub(d, array=bad).kind == Kind.ERROR, bad
    two = Message(Kind.SUBMIT, jobs=[Job(cmd="a", dir="/w"), Job(cmd="b", dir="/w")], text="1-2:1")
    assert one_reply(d.send(two, "s"), "s").kind == Kind.ERROR
    assert d.kernel.next_jobid == 1


# ------------------------------------------------------------------------------ retries


def test_retries_count_and_stop_with_every_attempt_in_one_output() -> None:
    d = Driver()
    jobid = submit(d, retries=2)
    writes: list[WriteOutput] = []
    for attempt in (1, 2, 3):
        (j,) = take(d, "w")
        assert j.jobid == jobid and j.retried == attempt - 1
        out = report(d, "w", j, status=1, data=b"boom\n")
        writes += [a for a in out if isinstance(a, WriteOutput)]
        if attempt < 3:
            assert state(d, jobid) == W
    assert state(d, jobid) == F and job(d, jobid).exit_status == 1
    assert job(d, jobid).retried == 2
    line = [f"--- goq: attempt {k} of 3 ---\n".encode() + b"boom\n" for k in (1, 2, 3)]
    assert [(w.offset, w.data, w.start) for w in writes] == [
        (0, line[0], True),
        (len(line[0]), line[1], True),
        (len(line[0]) + len(line[1]), line[2], True),
    ]
    assert job(d, jobid).out_bytes == sum(map(len, line))
    assert d.kernel.stat_counters()["retriedCount"] == 2


def test_a_success_ends_the_retries() -> None:
    d = Driver()
    jobid = submit(d, retries=5)
    run(d, "w", status=1)
    run(d, "w", status=0)
    assert state(d, jobid) == F and job(d, jobid).retried == 1


def test_a_signal_counts_as_a_failure_but_a_timeout_is_not_retried() -> None:
    d = Driver()
    killed = submit(d, retries=1)
    run(d, "w", status=-9)
    assert state(d, killed) == W
    run(d, "w")
    slow = submit(d, retries=3, time_limit_ms=1000)
    run(d, "w", status=-15, state=JobState.TIMEOUT)
    assert state(d, slow) == TO
    assert d.kernel.stat_counters()["timedOutJobsCount"] == 1


def test_timeout_fails_an_after_dependency() -> None:
    d = Driver()
    slow = submit(d, time_limit_ms=1000)
    nxt = submit(d, after=[slow])
    run(d, "w", status=-9, state=JobState.TIMEOUT)
    assert state(d, nxt) == C and job(d, nxt).note == f"dependency {slow} timed out"


def test_worker_death_mid_retry_does_not_use_a_retry() -> None:
    d = Driver()
    jobid = submit(d, retries=1)
    run(d, "w1", status=1)  # first attempt fails: one retry used
    (j,) = take(d, "w1")
    assert j.retried == 1
    attempt = j.attempt
    d.tick(d.now + 3 * HB)  # w1 went silent: dead; its run is requeued
    assert state(d, jobid) == W and job(d, jobid).retried == 1
    (again,) = take(d, "w2")
    assert again.jobid == jobid and again.attempt == attempt + 1
    out = report(d, "w2", again, status=1)
    (w,) = [a for a in out if isinstance(a, WriteOutput)]
    assert w.start and w.offset == job(d, jobid).out_base  # over the dead run's partial output
    assert state(d, jobid) == F  # the retry was its last


def test_retry_delay_keeps_the_job_out_of_the_queue_until_it_passes() -> None:
    d = Driver()
    jobid = submit(d, retries=1, retry_delay_ms=5000)
    run(d, "w", status=1)
    assert take(d, "w") == []
    assert "after a delay of 5 s" in (d.kernel.why_waiting(job(d, jobid)) or "")
    d.tick(d.now + 4)
    assert jobid not in d.kernel.waiting
    d.tick(d.now + 1.5)
    assert jobid in d.kernel.waiting


def test_a_delayed_retry_handed_to_a_waiting_worker_when_the_delay_passes() -> None:
    d = Driver()
    jobid = submit(d, retries=1, retry_delay_ms=500)
    run(d, "w", status=1)
    d.ask_work("w")  # held: nothing to do yet
    out = d.tick(d.now + 0.6)
    (reply,) = [m for m in replies_to(out, "w") if m.kind == Kind.JOB]
    assert reply.jobs[0].jobid == jobid


# ------------------------------------------------------------------------------ hold / release


def test_hold_and_release() -> None:
    d = Driver()
    held = submit(d, state=JobState.HELD)
    plain = submit(d)
    assert state(d, held) == H
    assert take(d, "w")[0].jobid == plain
    out = d.send(Message(Kind.HOLD, text=f"{plain},{held}"), "c")
    assert "running, so not held" in one_reply(out, "c").text
    out = d.send(Message(Kind.RELEASE, text=str(held)), "c")
    assert one_reply(out, "c").count == 1 and state(d, held) == W
    out = d.send(Message(Kind.HOLD, text=str(held)), "c")
    assert one_reply(out, "c").count == 1 and state(d, held) == H
    assert held not in d.kernel.waiting


def test_a_held_job_with_dependencies_is_blocked_when_released_early() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d, after=[a], state=JobState.HELD)
    assert state(d, b) == H
    d.send(Message(Kind.RELEASE, text=str(b)), "c")
    assert state(d, b) == B
    run(d, "w")
    assert state(d, b) == W


def test_a_held_job_is_cancelled_when_its_dependency_fails() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d, after=[a], state=JobState.HELD)
    run(d, "w", status=1)
    assert state(d, b) == C and not d.kernel.held


# ------------------------------------------------------------------------------ many at once


def test_cancel_many_and_select_by_name() -> None:
    d = Driver()
    first = sub(d, array="1-5:1", name="sweep").jobid
    other = submit(d, name="other")
    out = d.send(Message(Kind.SELECT, text="sweep"), "c")
    reply = one_reply(out, "c")
    assert (reply.kind, reply.text, reply.count) == (Kind.JOB_IDS, f"{first}-{first + 4}", 5)
    out = d.send(Message(Kind.CANCEL, text=f"{first}-{first + 4},999999"), "c")
    reply = one_reply(out, "c")
    assert reply.kind == Kind.ACK and reply.count == 5
    assert state(d, other) == W
    every = one_reply(d.send(Message(Kind.SELECT, count=1), "c"), "c")
    assert every.text == str(other)


def test_wait_on_many_answers_ended_ones_then_holds_until_the_next() -> None:
    d = Driver()
    a, b = submit(d), submit(d)
    run(d, "w")
    out = d.send(Message(Kind.WAIT, text=f"{a}-{b}", wait_ms=1000), "c")
    reply = one_reply(out, "c")
    assert reply.kind == Kind.FINISHED and [j.jobid for j in reply.jobs] == [a]
    out = d.send(Message(Kind.WAIT, text=str(b), wait_ms=1000), "c")
    assert replies_to(out, "c") == []  # held
    out = run(d, "w", status=2) and d.actions
    reply = [m for m in replies_to(d.actions, "c") if m.kind == Kind.FINISHED][-1]
    assert [(j.jobid, j.exit_status) for j in reply.jobs] == [(b, 2)]
    unknown = one_reply(d.send(Message(Kind.WAIT, text="5-7", wait_ms=1000), "c"), "c")
    assert unknown.kind == Kind.NOT_KNOWN and "job 5" in unknown.text


def test_wait_on_many_names_ended_jobs_no_longer_in_memory() -> None:
    d = Driver(ended_ring=1)
    a, b = submit(d), submit(d)
    run(d, "w")
    run(d, "w")
    reply = one_reply(d.send(Message(Kind.WAIT, text=f"{a},{b}", wait_ms=1000), "c"), "c")
    assert [j.jobid for j in reply.jobs] == [b] and reply.text == str(a)


def test_wait_on_many_expires_with_nothing_yet() -> None:
    d = Driver()
    a = submit(d)
    d.send(Message(Kind.WAIT, text=str(a), wait_ms=500), "c")
    out = d.tick(d.now + 0.6)
    assert one_reply(out, "c").kind == Kind.NOTHING_YET
    assert not d.kernel.multi_waiters


# ------------------------------------------------------------------------------ durability


def test_restore_rebuilds_blocked_held_delayed_and_array_caps() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d, after=[a])
    h = submit(d, state=JobState.HELD)
    first = sub(d, array="1-3:1", array_max=1).jobid
    r = submit(d, retries=1, retry_delay_ms=10_000)
    take(d, "w0")  # a
    (arr,) = take(d, "w1")
    assert arr.jobid == first
    (rj,) = take(d, "w2")
    report(d, "w2", rj, status=1)  # r waits 10 s for its retry
    live = [j for j in d.kernel._all_live()]
    copies = [Job(**{f: getattr(j, f) for f in j.__slots__}) for j in live]
    copies.sort(key=lambda j: j.jobid)

    again = Driver()
    out = again.kernel.restore(copies, {"nextJobId": d.kernel.next_jobid}, d.now + 1)
    assert out == []
    k = again.kernel
    assert set(k.blocked) == {b} and set(k.held) == {h} and set(k.delayed) == {r}
    assert k.caps.running == {first: 1}
    assert take(again, "w9") == []  # a, first: running; the array is at its cap; r delayed
    # a's result arrives at the new server: b becomes ready
    (a_run,) = [j for j in copies if j.jobid == a]
    out = report(again, "w0", a_run)
    (handed,) = [m for m in replies_to(out, "w9") if m.kind == Kind.JOB]  # w9's held ask
    assert [j.jobid for j in handed.jobs] == [b]
    again.tick(again.now + 10)
    assert [j.jobid for j in take(again, "w8")] == [r]


def test_restore_finds_a_released_job_ready_though_its_record_says_blocked() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d, after=[a])
    run(d, "w")
    saves_of_b = [x for x in d.actions if isinstance(x, Save) and x.job.jobid == b]
    assert len(saves_of_b) == 1 and state(d, b) == W  # saved once, BLOCKED, at submission
    record = Job(jobid=b, cmd="x", dir="/w", state=B, after=[a])
    again = Driver()
    out = again.kernel.restore([record], {"nextJobId": 3}, T0, outcomes={a: (F, 0)})
    assert out == [] and state(again, b) == W and b in again.kernel.waiting


def test_restore_cancels_jobs_whose_dependency_failed_or_is_gone() -> None:
    blocked = Job(jobid=5, cmd="x", dir="/w", state=B, after=[2, 3])
    gone = Job(jobid=6, cmd="x", dir="/w", state=B, after=[4])
    anyway = Job(jobid=7, cmd="x", dir="/w", state=B, after_any=[2, 4])
    assert outside([blocked, gone, anyway]) == {2, 3, 4}
    d = Driver()
    outcomes = {2: (JobState.FINISHED, 0), 3: (JobState.FINISHED, 1)}
    out = d.kernel.restore([blocked, gone, anyway], {"nextJobId": 8}, T0, outcomes=outcomes)
    saved = {a.job.jobid: a.job for a in out if isinstance(a, Save)}
    assert saved[5].state == C and saved[5].note == "dependency 3 failed"
    assert saved[6].state == C and saved[6].note == "dependency 4 is no longer in the store"
    assert 7 not in saved and state(d, 7) == W  # after-any: ended either way
    assert idranges.format_ids(d.kernel.waiting) == "7"


def test_cancelling_many_where_one_depends_on_another_cancels_each_once() -> None:
    d = Driver()
    a = submit(d)
    b = submit(d, after=[a], state=JobState.HELD)
    c = submit(d, after=[b])
    out = d.send(Message(Kind.CANCEL, text=f"{a}-{c}"), "k")
    reply = one_reply(out, "k")
    assert reply.kind == Kind.ACK and reply.count == 3, reply.text
    assert "2 that depended on them" in reply.text
    assert [state(d, i) for i in (a, b, c)] == [C, C, C]
    assert job(d, a).note == "by goq kill" and job(d, b).note == f"dependency {a} was cancelled"
    assert d.kernel.stat_counters()["cancelledJobsCount"] == 3


def test_a_single_cancel_says_in_its_count_whether_it_cancelled() -> None:
    d = Driver()
    a = submit(d)
    first = one_reply(d.send(Message(Kind.CANCEL, jobid=a), "k"), "k")
    again = one_reply(d.send(Message(Kind.CANCEL, jobid=a), "k"), "k")
    assert (first.kind, first.count) == (Kind.ACK, 1)
    assert (again.kind, again.count) == (Kind.ACK, 0) and "already ended" in again.text
