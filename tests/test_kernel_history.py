"""History rules of the pure kernel (issue 12): every attempt that is over is recorded once with
how it ended; JOBS, SHOW and FORGET hand the store's part to the runtime, with the live part."""

from __future__ import annotations

from goq_core.jobquery import JobQuery
from goq_core.kernel import Forget, QueryJobs, SaveAttempt, ShowJob
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.records import Attempt
from tests.test_kernel import HB, Driver, one_reply
from tests.test_kernel_workflows import report, submit, take


def attempts(d: Driver) -> list[Attempt]:
    return [a.attempt for a in d.actions if isinstance(a, SaveAttempt)]


def test_a_finished_run_is_recorded_with_its_rusage() -> None:
    d = Driver()
    jobid = submit(d)
    (j,) = take(d, "w")
    outcome = Job(jobid=jobid, exit_status=3, pid=77, start_ns=10, end_ns=20, out_bytes=0)
    usage = {"maxRssKib": 204_800, "utimeUs": 900_000, "stimeUs": 10_000}
    msg = Message(
        Kind.RESULT,
        workerid="w",
        jobid=jobid,
        attempt=j.attempt,
        jobs=[outcome],
        counters=usage,
    )
    d.send(msg, "w")
    (a,) = attempts(d)
    assert (a.jobid, a.attempt, a.outcome, a.pid, a.exit_status) == (jobid, 1, "finished", 77, 3)
    assert (a.workerid, a.start_ns, a.end_ns) == ("w", 10, 20)
    assert (a.max_rss_kib, a.utime_us, a.stime_us) == (204_800, 900_000, 10_000)


def test_requeue_retry_timeout_and_cancel_each_record_their_attempt() -> None:
    d = Driver()
    jobid = submit(d, retries=1, time_limit_ms=1000)
    take(d, "w1")
    d.tick(d.now + 3 * HB)  # w1 dead: attempt 1 requeued
    (j,) = take(d, "w2")
    report(d, "w2", j, status=1)  # attempt 2 failed: a retry
    (j,) = take(d, "w2")
    report(d, "w2", j, status=-15, state=JobState.TIMEOUT)  # attempt 3 timed out
    other = submit(d)
    take(d, "w2")
    d.send(Message(Kind.CANCEL, jobid=other), "k")
    got = [(a.jobid, a.attempt, a.outcome) for a in attempts(d)]
    assert got == [
        (jobid, 1, "requeued"),
        (jobid, 2, "finished"),
        (jobid, 3, "timeout"),
        (other, 1, "cancelled"),
    ]
    requeued = attempts(d)[0]
    assert requeued.workerid == "w1" and requeued.pid == 0 and requeued.end_ns > 0


def test_jobs_query_hands_the_live_jobs_that_match_to_the_runtime() -> None:
    d = Driver()
    a = submit(d, name="x")
    b = submit(d, name="x", after=[a])
    submit(d, name="y")
    q = JobQuery(states=frozenset({"waiting", "blocked", "finished"}), name="x", limit=10)
    out = d.send(Message(Kind.JOBS, text=q.to_text()), "c")
    (query,) = [x for x in out if isinstance(x, QueryJobs)]
    assert query.query == q
    assert [(j.jobid, j.state) for j in query.live] == [
        (b, JobState.BLOCKED),
        (a, JobState.WAITING),
    ]
    assert query.live[0].note == f"for job {a}" and query.live[0].env == []
    bad = d.send(Message(Kind.JOBS, text='{"states": ["sleeping"]}'), "c")
    assert one_reply(bad, "c").kind == Kind.ERROR


def test_show_of_a_live_job_an_ended_one_and_an_unknown_one() -> None:
    d = Driver()
    a = submit(d)
    out = d.send(Message(Kind.SHOW, jobid=a), "c")
    (show,) = [x for x in out if isinstance(x, ShowJob)]
    assert show.job is not None and show.job.jobid == a and show.job.env == ["A=1"]
    assert show.job is not d.kernel.waiting[a]  # a copy
    d.send(Message(Kind.CANCEL, jobid=a), "k")
    out = d.send(Message(Kind.SHOW, jobid=a), "c")
    (show,) = [x for x in out if isinstance(x, ShowJob)]
    assert show.job is None  # ended: the store's record is the one to show
    unknown = one_reply(d.send(Message(Kind.SHOW, jobid=99), "c"), "c")
    assert unknown.kind == Kind.NOT_KNOWN


def test_forget_never_names_a_live_job_and_drops_ended_ones_from_memory() -> None:
    d = Driver()
    a, b = submit(d), submit(d)
    d.send(Message(Kind.CANCEL, jobid=a), "k")
    out = d.send(Message(Kind.FORGET, text="1-1000000000"), "c")
    (forget,) = [x for x in out if isinstance(x, Forget)]
    assert forget.jobids == [a] and a not in d.kernel.ended and b in d.kernel.waiting
    out = d.send(Message(Kind.FORGET, offset=5), "c")
    (forget,) = [x for x in out if isinstance(x, Forget)]
    assert (forget.jobids, forget.before_ns) == ([], 5)
