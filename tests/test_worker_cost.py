"""The shortcuts that keep a worker's CPU per job down (issue 15, the drain) change nothing that
a job or the server sees."""

import os

from goq_core.messages import Job, JobState
from goq_core.roles import guardian as guardian_mod
from goq_core.roles.jobrun import JobRun, _env_dict


def test_each_job_gets_its_own_environment_dict():
    entries = ["A=1", "B=x=y", "=nameless", "noequals", "C="]
    first = _env_dict(entries)
    first["GOQ_CPUS"] = "4"  # what the worker adds must not leak into the next job
    again = _env_dict(list(entries))
    assert again == {"A": "1", "B": "x=y", "C": ""}
    assert again is not first
    entries.append("D=2")  # the caller's list changing afterwards is a different env
    assert _env_dict(entries) == {"A": "1", "B": "x=y", "C": "", "D": "2"}
    assert _env_dict([]) == {}


def test_outcome_is_what_a_result_reports_and_the_server_reads(tmp_path):
    job = Job(jobid=7, attempt=2, cmd="/bin/true", env=["X=1"], dir=str(tmp_path), cpus=1)
    run = JobRun.start(job, str(tmp_path), str(tmp_path / "spool"))
    assert run.wait(10) == 0
    done = run.outcome()
    expected = Job(
        jobid=7,
        attempt=2,
        state=JobState.FINISHED,
        pid=run.pid,
        start_ns=run.start_ns,
        end_ns=run.end_ns,
        exit_status=0,
        out_bytes=0,
    )
    assert done == expected and done is not job
    assert run.outcome(out_bytes=5).out_bytes == 5  # the caller's size, no second stat
    assert job.state == JobState.NEW  # the job handed is left as it was


def test_guardian_reads_lines_that_gathered_in_the_pipe_and_kills_at_eof(tmp_path):
    sleeper = Job(jobid=1, attempt=1, cmd="/bin/sleep", args=["30"])
    watched = JobRun.start(sleeper, str(tmp_path), str(tmp_path / "spool"), "a.out")
    ended = JobRun.start(sleeper, str(tmp_path), str(tmp_path / "spool"), "b.out")
    try:
        r, w = os.pipe()
        lines = b"+%d\n+%d\n-%d\n+1\n+0\n" % (watched.pgid, ended.pgid, ended.pgid)
        os.write(w, lines)  # all written before the guardian reads: they gathered in the pipe
        os.close(w)
        killed = guardian_mod.serve(r, gather=0.01)
        os.close(r)
        assert killed == {watched.pgid}
        assert watched.wait(10) == -9
        assert ended.poll() is None  # unwatched before EOF: left alone
    finally:
        watched.kill(grace=0)
        ended.kill(grace=0)
