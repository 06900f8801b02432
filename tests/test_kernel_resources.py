"""The kernel's resource rules (design.md §7, issue 10): workers with several slots, GPUs, memory,
named counters, priorities, no starvation of a big job, why a job waits, drain, and the fate of
every run of a dead worker. Driven with explicit times, as tests/test_kernel.py."""

from __future__ import annotations

import json

import pytest

from goq_core.kernel import Kernel, KernelConfig, Reply, Save, SaveAttempt, WriteOutput
from goq_core.limits import MAX_RUNS_PER_RESULT
from goq_core.messages import Job, JobState, Kind, Message, batch_counters, runs_counters
from tests.test_kernel import HB, T0, Driver, one_reply, replies_to


@pytest.fixture
def d() -> Driver:
    return Driver()


def offer(cpus: int = 1, gpus: str = "", mem: int = 0, token: str = "t", **res: int) -> Job:
    n = len([g for g in gpus.split(",") if g])
    return Job(jobid=0, cpus=cpus, gpus=n, gpu_ids=gpus, mem=mem, resources=res, workerid=token)


def ask(d: Driver, name: str, off: Job, runs=(), peer: str | None = None, host: str = "h", count=0):
    jobs = [off, *[Job(jobid=j, attempt=a) for j, a in runs]]
    msg = Message(Kind.REQUEST_WORK, workerid=name, host=host, wait_ms=1000, jobs=jobs, count=count)
    return d.send(msg, peer or name)


def submit(d: Driver, n: int = 1, **fields) -> list[int]:
    jobs = [Job(cmd="x", dir="/w", **fields) for _ in range(n)]
    ack = one_reply(d.send(Message(Kind.SUBMIT, jobs=jobs), "sub"), "sub")
    assert ack.kind == Kind.SUBMITTED, ack
    return list(range(ack.jobid, ack.jobid + n))


def handed(out: list, peer: str) -> list[Job]:
    got = [m for m in replies_to(out, peer) if m.kind == Kind.JOB]
    return [j for m in got for j in m.jobs]


def finish(d: Driver, name: str, jobid: int, attempt: int = 1) -> list:
    outcome = Job(jobid=jobid, exit_status=0)
    msg = Message(Kind.RESULT, workerid=name, jobid=jobid, attempt=attempt, jobs=[outcome])
    return d.send(msg, f"res-{name}-{jobid}")


def test_two_one_cpu_jobs_start_at_once_on_a_two_cpu_worker(d: Driver) -> None:
    submit(d, 3)
    jobs = handed(ask(d, "w", offer(cpus=2)), "w")
    assert [j.jobid for j in jobs] == [1, 2] and all(j.attempt == 1 for j in jobs)
    assert list(d.kernel.waiting) == [3]


def test_a_full_worker_keeps_its_request_held_and_gets_the_next_job_when_one_ends(
    d: Driver,
) -> None:
    submit(d, 2)
    assert len(handed(ask(d, "w", offer(cpus=1)), "w")) == 1
    assert handed(ask(d, "w", offer(cpus=1), runs=[(1, 1)], peer="w2"), "w2") == []  # held
    out = finish(d, "w", 1)
    assert [j.jobid for j in handed(out, "w2")] == [2]  # the held request gets it at once


def test_gpu_ids_are_never_handed_to_two_runs_at_once(d: Driver) -> None:
    submit(d, 3, gpus=1)
    first = handed(ask(d, "g", offer(cpus=8, gpus="0,1")), "g")
    assert sorted(j.gpu_ids for j in first) == ["0", "1"]
    assert list(d.kernel.waiting) == [3]  # cpus are free, GPUs are not
    runs = [(j.jobid, 1) for j in first]
    ask(d, "g", offer(cpus=8, gpus="0,1"), runs=runs, peer="g2")
    out = finish(d, "g", first[0].jobid)
    (third,) = handed(out, "g2")
    assert third.gpu_ids == first[0].gpu_ids  # the freed one, and only it


def test_cpu_job_runs_beside_gpu_jobs_without_taking_a_gpu(d: Driver) -> None:
    submit(d, 1, gpus=2)
    submit(d, 1)
    jobs = handed(ask(d, "g", offer(cpus=4, gpus="0,1")), "g")
    assert [(j.jobid, j.gpu_ids) for j in jobs] == [(1, "0,1"), (2, "")]


def test_memory_and_named_counters_must_fit(d: Driver) -> None:
    submit(d, 1, mem=3 << 30)
    submit(d, 2, resources={"license": 1})
    jobs = handed(ask(d, "w", offer(cpus=8, mem=4 << 30, license=1)), "w")
    assert [j.jobid for j in jobs] == [1, 2]  # one licence: job 3 waits
    assert list(d.kernel.waiting) == [3]


def test_higher_priority_first_then_oldest(d: Driver) -> None:
    low = submit(d, 2)
    high = submit(d, 2, priority=5)
    jobs = handed(ask(d, "w", offer(cpus=3)), "w")
    assert [j.jobid for j in jobs] == [high[0], high[1], low[0]]


def test_a_four_gpu_job_is_not_starved_by_a_stream_of_one_gpu_jobs(d: Driver) -> None:
    gpus = "0,1,2,3"
    small = submit(d, 4, gpus=1)
    running = {j.jobid: j for j in handed(ask(d, "g", offer(cpus=16, gpus=gpus)), "g")}
    assert set(running) == set(small)
    (big,) = submit(d, 1, gpus=4)
    n = 0
    while big not in running:  # keep the small ones coming; each finish frees one GPU
        submit(d, 2, gpus=1)
        jobid = min(running)  # it ends: the worker still holds it until its result is in
        ask(d, "g", offer(cpus=16, gpus=gpus), runs=[(j, 1) for j in running], peer=f"a{n}")
        running.pop(jobid)
        out = finish(d, "g", jobid)
        for job in handed(out, f"a{n}"):
            running[job.jobid] = job
        n += 1
        assert n <= 4, "the big job waited for more than the runs ahead of it"
    assert running[big].gpu_ids == gpus
    assert n == 4  # it started as soon as the four runs before it ended


def test_small_jobs_use_other_workers_while_a_big_one_waits_for_its_worker(d: Driver) -> None:
    submit(d, 1, gpus=2)  # job 1 takes both GPUs of g
    handed(ask(d, "g", offer(cpus=4, gpus="0,1")), "g")
    (big,) = submit(d, 1, gpus=2)  # must wait for g
    smalls = submit(d, 2)
    jobs = handed(ask(d, "c", offer(cpus=2)), "c")  # a CPU worker takes the small ones
    assert [j.jobid for j in jobs] == smalls
    assert big in d.kernel.waiting


def test_reserved_worker_gives_small_jobs_only_what_the_big_job_leaves(d: Driver) -> None:
    submit(d, 1, cpus=3)  # job 1 runs on the 4-cpu worker
    handed(ask(d, "w", offer(cpus=4)), "w")
    (big,) = submit(d, 1, cpus=4)  # needs the whole worker: waits
    submit(d, 1, cpus=1)  # would fit in the one free cpu, but would delay the big one
    out = ask(d, "w", offer(cpus=4), runs=[(1, 1)], peer="w2")
    assert handed(out, "w2") == []
    out = finish(d, "w", 1)
    assert [j.jobid for j in handed(out, "w2")] == [big]


def test_job_that_fits_no_worker_waits_says_why_and_holds_nobody_back(d: Driver) -> None:
    (big,) = submit(d, 1, gpus=4)
    (small,) = submit(d, 1, gpus=1)
    jobs = handed(ask(d, "g", offer(cpus=4, gpus="0,1")), "g")
    assert [j.jobid for j in jobs] == [small]
    status = one_reply(d.send(Message(Kind.STAT), "st"), "st")
    (waiting,) = [j for j in status.jobs if j.jobid == big]
    assert waiting.note == "needs gpus=4; the largest worker offers 2"
    assert d.kernel.why_waiting(d.kernel.waiting[big]) == waiting.note


def test_every_run_of_a_dead_worker_is_requeued_at_the_head_as_a_new_attempt(d: Driver) -> None:
    a, b, c = submit(d, 3)
    handed(ask(d, "w", offer(cpus=2)), "w")  # a and b run; then w falls silent
    out = d.tick(T0 + 2 * HB)
    assert sorted(s.job.jobid for s in out if isinstance(s, Save)) == [a, b]
    assert list(d.kernel.waiting) == [a, b, c]
    jobs = handed(ask(d, "v", offer(cpus=3, token="v")), "v")
    assert [(j.jobid, j.attempt) for j in jobs] == [(a, 2), (b, 2), (c, 1)]
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 2


def test_one_heartbeat_covers_every_run_and_cancel_kills_only_its_run(d: Driver) -> None:
    a, b = submit(d, 2)
    handed(ask(d, "w", offer(cpus=2)), "w")
    beat = Message(
        Kind.HEARTBEAT,
        workerid="w",
        jobid=a,
        attempt=1,
        wait_ms=1000,
        jobs=[Job(jobid=a, attempt=1), Job(jobid=b, attempt=1)],
    )
    assert d.send(beat, "hb") == []  # held
    out = d.send(Message(Kind.CANCEL, jobid=b), "killer")
    kill = one_reply(out, "hb")
    assert kill.kind == Kind.KILL and [j.jobid for j in kill.jobs] == [b]
    assert a in d.kernel.running


def test_heartbeat_naming_a_run_that_is_not_current_is_told_to_kill_it(d: Driver) -> None:
    (a,) = submit(d, 1)
    handed(ask(d, "w", offer(cpus=2)), "w")
    beat = Message(
        Kind.HEARTBEAT, workerid="w", wait_ms=1000, jobs=[Job(jobid=a, attempt=1), Job(jobid=99)]
    )
    kill = one_reply(d.send(beat, "hb"), "hb")
    assert kill.kind == Kind.KILL and [j.jobid for j in kill.jobs] == [99]


def test_a_lost_dispatch_is_handed_again_when_the_runs_list_lacks_it(d: Driver) -> None:
    a, b = submit(d, 2)
    handed(ask(d, "w", offer(cpus=2)), "w")  # the reply is lost on the way
    again = handed(ask(d, "w", offer(cpus=2), runs=[(a, 1)], peer="w2"), "w2")
    assert [(j.jobid, j.attempt) for j in again] == [(b, 1)]  # same run, not a requeue
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 0


def test_oneshot_worker_gets_one_job_whatever_its_size(d: Driver) -> None:
    submit(d, 3)
    assert len(handed(ask(d, "w", offer(cpus=4), count=1), "w")) == 1


def test_drained_worker_gets_nothing_new_keeps_its_runs_and_resume_undoes_it(d: Driver) -> None:
    (a,) = submit(d, 1)
    handed(ask(d, "w", offer(cpus=2)), "w")
    ack = one_reply(d.send(Message(Kind.DRAIN, text="w"), "adm"), "adm")
    assert ack.kind == Kind.ACK and ack.count == 1
    (b,) = submit(d, 1)
    assert handed(ask(d, "w", offer(cpus=2), runs=[(a, 1)], peer="w2"), "w2") == []
    assert a in d.kernel.running and d.kernel.durable_counters()["drained/w"] == 1
    doc = json.loads(one_reply(d.send(Message(Kind.WORKERS), "ls"), "ls").text)
    assert doc["workers"][0]["state"] == "draining" and doc["workers"][0]["jobs"] == [a]
    out = d.send(Message(Kind.RESUME, text="w"), "adm2")
    assert [j.jobid for j in handed(out, "w2")] == [b]
    assert d.kernel.durable_counters()["drained/w"] == 0


def test_drain_of_an_unknown_worker_is_not_known(d: Driver) -> None:
    assert one_reply(d.send(Message(Kind.DRAIN, text="nope"), "a"), "a").kind == Kind.NOT_KNOWN


def test_drain_survives_a_restart() -> None:
    k = Kernel(KernelConfig(heartbeat_sec=HB, max_hold_sec=HB))
    k.restore([], {"nextJobId": 1, "drained/w": 1, "drained/v": 0}, T0)
    assert k.drained == {"w"}


def test_workers_document_lists_offer_free_runs_and_state(d: Driver) -> None:
    (a,) = submit(d, 1, gpus=1, cpus=2)
    handed(ask(d, "g", offer(cpus=4, gpus="0,1", mem=8 << 30, license=2)), "g")
    doc = json.loads(one_reply(d.send(Message(Kind.WORKERS), "ls"), "ls").text)
    (w,) = doc["workers"]
    assert w["name"] == "g" and w["host"] == "h" and w["state"] == "busy"
    assert w["offer"] == {
        "cpus": 4,
        "mem": 8 << 30,
        "gpus": ["0", "1"],
        "resources": {"license": 2},
    }
    assert w["free"] == {"cpus": 2, "mem": 8 << 30, "gpus": ["1"], "resources": {"license": 2}}
    assert w["jobs"] == [a] and w["last_heard_sec_ago"] == 0


def test_a_name_taken_by_a_live_worker_on_another_host_is_refused(d: Driver) -> None:
    ask(d, "gpu1", offer(token="first"), host="h1")
    reply = one_reply(ask(d, "gpu1", offer(token="second"), host="h2", peer="x"), "x")
    assert reply.kind == Kind.ERROR and "taken" in reply.text


def test_a_worker_restarted_on_its_host_replaces_the_old_process(d: Driver) -> None:
    (a,) = submit(d, 1)
    handed(ask(d, "w", offer(token="old")), "w")
    jobs = handed(ask(d, "w", offer(token="new"), peer="w2"), "w2")
    assert [(j.jobid, j.attempt) for j in jobs] == [(a, 2)]  # the old run died with it


def test_restored_runs_keep_their_gpus_when_the_worker_comes_back() -> None:
    k = Kernel(KernelConfig(heartbeat_sec=HB, max_hold_sec=HB))
    run = Job(
        jobid=5, cmd="r", dir="/w", state=JobState.RUNNING, attempt=1, workerid="g", gpus=1,
        gpu_ids="1",
    )  # fmt: skip
    wait = Job(jobid=6, cmd="w", dir="/w", state=JobState.WAITING, gpus=1)
    k.restore([run, wait], {"nextJobId": 7}, T0)
    msg = Message(
        Kind.REQUEST_WORK, nonce=b"n" * 16, sendtime_ns=int(T0 * 1e9), workerid="g", host="h",
        wait_ms=1000, jobs=[offer(cpus=4, gpus="0,1"), Job(jobid=5, attempt=1)],
    )  # fmt: skip
    out = k.handle(msg, "g", T0)
    (reply,) = [a.msg for a in out if isinstance(a, Reply)]
    assert [(j.jobid, j.gpu_ids) for j in reply.jobs] == [(6, "0")]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"cpus": 0}, "cpus=0"),
        ({"gpus": -1}, "gpus=-1"),
        ({"cpus": 1 << 31}, "cpus="),
        ({"mem": -5}, "mem=-5"),
        ({"resources": {"x": -1}}, "x=-1"),
        ({"resources": {"a=b": 1}}, "resource name"),
        ({"priority": 1 << 40}, "priority"),
    ],
)
def test_out_of_range_requests_are_refused_at_the_front_door(d: Driver, fields, says) -> None:
    out = d.send(Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w", **fields)]), "s")
    reply = one_reply(out, "s")
    assert reply.kind == Kind.ERROR and says in reply.text
    assert not d.kernel.waiting


def test_an_offer_with_repeated_gpu_ids_is_refused(d: Driver) -> None:
    reply = one_reply(ask(d, "g", offer(gpus="0,0")), "g")
    assert reply.kind == Kind.ERROR and "GPU ids" in reply.text


def test_a_result_that_asks_for_more_is_the_workers_ask_and_leaves_other_runs_alone(
    d: Driver,
) -> None:
    a, b, c = submit(d, 3)
    handed(ask(d, "w", offer(cpus=2)), "w")  # a and b run; the worker asks no more while full
    result = Message(
        Kind.RESULT, workerid="w", jobid=a, attempt=1, wait_ms=1000, jobs=[Job(jobid=a)]
    )
    out = d.send(result, "res")
    reply = one_reply(out, "res")
    assert reply.kind == Kind.JOB and [j.jobid for j in reply.jobs] == [c]  # not b again
    assert d.kernel.running[b].attempt == 1 and d.kernel.running[c].workerid == "w"


# --- several runs in one RESULT (a worker with slots reports the runs that ended together) ------


def report(
    d: Driver, name: str, runs: list[tuple[int, int, bytes, int]], wait_ms: int = 0, **fields
) -> list:
    """One RESULT of several runs: (jobid, attempt, output, exit status) each, their outputs
    one after the other in `data` and each run's rusage as "I/NAME" (goq_core.messages)."""
    outcomes = [
        Job(jobid=j, attempt=a, exit_status=s, pid=100 + j, start_ns=1, end_ns=2, out_bytes=len(o))
        for j, a, o, s in runs
    ]
    usage = [{"maxRssKib": 1000 + j, "utimeUs": 10 * j, "stimeUs": j} for j, *_ in runs]
    msg = Message(
        Kind.RESULT,
        workerid=name,
        jobid=runs[0][0],
        attempt=runs[0][1],
        jobs=outcomes,
        data=b"".join(o for _, _, o, _ in runs),
        counters=batch_counters(usage),
        wait_ms=wait_ms,
    )
    for key, value in fields.items():
        setattr(msg, key, value)
    return d.send(msg, f"rep-{name}")


def test_one_result_ends_each_run_it_reports_with_its_own_output_and_rusage(d: Driver) -> None:
    ids = submit(d, 5)
    assert [j.jobid for j in handed(ask(d, "w", offer(cpus=4)), "w")] == ids[:4]
    runs = [(1, 1, b"one\n", 0), (2, 1, b"", 3), (3, 1, b"three\n", 0)]
    out = report(d, "w", runs, wait_ms=1000)

    ended = {j.jobid: j for j in d.kernel.ended.values()}
    assert sorted(ended) == [1, 2, 3] and d.kernel.running.keys() == {4, 5}
    assert [ended[j].exit_status for j in (1, 2, 3)] == [0, 3, 0]
    assert [ended[j].pid for j in (1, 2, 3)] == [101, 102, 103]
    writes = {a.job.jobid: (a.offset, a.data, a.start) for a in out if isinstance(a, WriteOutput)}
    assert writes == {1: (0, b"one\n", True), 2: (0, b"", True), 3: (0, b"three\n", True)}
    usage = {
        a.attempt.jobid: (a.attempt.max_rss_kib, a.attempt.utime_us, a.attempt.stime_us)
        for a in out
        if isinstance(a, SaveAttempt)
    }
    assert usage == {1: (1001, 10, 1), 2: (1002, 20, 2), 3: (1003, 30, 3)}
    assert d.kernel.stat_counters()["batchedResultRunCount"] == 3
    # the batch was the ask: 3 cpus freed, and the one job left is handed in its reply
    assert [j.jobid for j in handed(out, "rep-w")] == [5]
    # every answer to a worker's ask or RESULT says how many runs one RESULT may report
    assert one_reply(out, "rep-w").count == MAX_RUNS_PER_RESULT


def test_a_stale_run_in_a_batch_is_counted_and_the_others_end(d: Driver) -> None:
    submit(d, 2)
    handed(ask(d, "w", offer(cpus=2)), "w")
    out = report(d, "w", [(1, 7, b"old", 0), (2, 1, b"new", 0)])
    ack = one_reply(out, "rep-w")
    assert (ack.kind, ack.count) == (Kind.ACK, MAX_RUNS_PER_RESULT)
    assert d.kernel.running.keys() == {1} and d.kernel.ended.keys() == {2}
    assert d.kernel.counters.stale_results == 1
    assert [a.job.jobid for a in out if isinstance(a, WriteOutput)] == [2]
    again = report(d, "w", [(2, 1, b"new", 0), (1, 1, b"x", 0)])  # job 2's batch sent again
    assert one_reply(again, "rep-w").kind == Kind.ACK
    assert d.kernel.counters.duplicate_results == 1 and d.kernel.ended.keys() == {1, 2}


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"offset": 5}, "offset 0"),
        ({"data": b"onetwo!"}, "bytes of output"),
        ({"data": b"one"}, "bytes of output"),
    ],
)
def test_a_malformed_batch_is_refused_and_changes_nothing(d: Driver, fields, why) -> None:
    submit(d, 2)
    handed(ask(d, "w", offer(cpus=2)), "w")
    out = report(d, "w", [(1, 1, b"one", 0), (2, 1, b"two", 0)], **fields)
    reply = one_reply(out, "rep-w")
    assert reply.kind == Kind.ERROR and why in reply.text
    assert d.kernel.running.keys() == {1, 2} and not d.kernel.ended


def test_a_batch_over_the_limit_or_naming_no_run_is_refused(d: Driver) -> None:
    submit(d, 2)
    handed(ask(d, "w", offer(cpus=2)), "w")
    many = [(1, 1, b"", 0)] * (MAX_RUNS_PER_RESULT + 1)
    assert "at most" in one_reply(report(d, "w", many), "rep-w").text
    nameless = [(1, 1, b"", 0), (0, 1, b"", 0)]
    assert one_reply(report(d, "w", nameless), "rep-w").kind == Kind.ERROR
    assert d.kernel.running.keys() == {1, 2}


def test_a_held_ask_that_runs_out_says_how_many_runs_a_result_may_report(d: Driver) -> None:
    out = ask(d, "w", offer(cpus=2))
    assert not replies_to(out, "w")  # nothing to run: held
    expired = one_reply(d.tick(T0 + 2 * HB), "w")
    assert (expired.kind, expired.count) == (Kind.NOTHING_YET, MAX_RUNS_PER_RESULT)


def test_a_batch_counters_are_read_per_run_and_stray_names_ignored() -> None:
    runs = [Job(jobid=j, attempt=1) for j in (1, 2, 3)]
    counters = {**batch_counters([{"maxRssKib": 5}, {}, {"utimeUs": 7, "stimeUs": 8}])}
    counters.update({"01/maxRssKib": 9, "3/utimeUs": 9, "x": 9, "-1/stimeUs": 9, "1": 9})
    msg = Message(Kind.RESULT, jobs=runs, counters=counters)
    assert runs_counters(msg) == [{"maxRssKib": 5}, {}, {"utimeUs": 7, "stimeUs": 8}]
    one = Message(Kind.RESULT, jobs=runs[:1], counters={"maxRssKib": 3})
    assert runs_counters(one) == [{"maxRssKib": 3}]
