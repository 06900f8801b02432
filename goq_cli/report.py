"""How `goq stat` and `goq wait` show what the server said: counters, then running and waiting
jobs one per line; a job's outcome in one line.
"""

from __future__ import annotations

import shlex
import time

from goq_core.messages import Job, JobState, Message

_FIRST = ("runQlen", "waitingJobs", "waitingWorkers", "jservPid", "finishedJobsCount", "nextJobId")


def _command(job: Job, width: int = 60) -> str:
    text = job.cmd if job.shell else shlex.join([job.cmd, *job.args])
    return text if len(text) <= width else text[: width - 3] + "..."


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.3f}s"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def format_status(status: Message, count: int) -> str:
    counters = status.counters
    names = [n for n in _FIRST if n in counters] + sorted(n for n in counters if n not in _FIRST)
    lines = [f"{name}: {counters[name]}" for name in names]
    running = [j for j in status.jobs if j.state == JobState.RUNNING]
    waiting = [j for j in status.jobs if j.state == JobState.WAITING]
    now_ns = time.time_ns()
    if running:
        lines.append(
            f"-- running jobs (first {min(count, len(running))} of {counters.get('runQlen', len(running))}):"
        )
        for j in running:
            took = _duration((now_ns - j.start_ns) / 1e9) if j.start_ns else "?"
            lines.append(f"  {j.jobid:>6}  {took:>9}  on {j.workerid}  {_command(j)}")
    if waiting:
        lines.append(
            f"-- waiting jobs (first {min(count, len(waiting))} of {counters.get('waitingJobs', len(waiting))}):"
        )
        for j in waiting:
            waited = _duration((now_ns - j.submit_ns) / 1e9) if j.submit_ns else "?"
            lines.append(f"  {j.jobid:>6}  {waited:>9}  attempt {j.attempt}  {_command(j)}")
    return "\n".join(lines)


def format_outcome(jobid: int, job: Job | None) -> str:
    if job is None:
        return f"job {jobid} has ended"
    if job.state == JobState.CANCELLED:
        return f"job {jobid} was cancelled"
    if job.exit_status < 0:
        how = f"killed by signal {-job.exit_status}"
    else:
        how = f"exit status {job.exit_status}"
    took = _duration((job.end_ns - job.start_ns) / 1e9) if job.end_ns and job.start_ns else "?"
    return f"job {jobid} finished: {how}, ran {took} on {job.workerhost or '?'} (pid {job.pid})"
