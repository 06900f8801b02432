"""How `goq stat`, `goq wait` and `goq workers` show what the server said: counters, then
running, waiting, blocked and held jobs one per line (with their names, what each asks beyond
the default, and why a waiting or blocked job waits); a job's outcome in one line; the workers
as a table.
"""

from __future__ import annotations

import shlex
import time

from goq_core.messages import Job, JobState, Message

_FIRST = (
    "runQlen",
    "waitingJobs",
    "blockedJobs",
    "heldJobs",
    "waitingWorkers",
    "jservPid",
    "finishedJobsCount",
    "nextJobId",
)


def _command(job: Job, width: int = 60) -> str:
    text = job.cmd if job.shell else shlex.join([job.cmd, *job.args])
    text = text if len(text) <= width else text[: width - 3] + "..."
    if job.array_id:  # an element of an array: which one
        text = f"index={job.array_index}  {text}"
    return f"name={shlex.quote(job.name)}  {text}" if job.name else text


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.3f}s"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


_UNITS = ("K", "M", "G", "T", "P", "E")


def format_size(n: int) -> str:
    """Bytes in binary units as `goq sub --mem` takes them: 512M, 16G, 15.6G, 100 (bytes)."""
    if n < 1024:
        return str(n)
    power = 1
    while power < len(_UNITS) and n >= 1 << (10 * (power + 1)):
        power += 1
    scale = 1 << (10 * power)
    if n % scale == 0:
        return f"{n // scale}{_UNITS[power - 1]}"
    text = f"{n / scale:.1f}"
    if text == "1024.0" and power < len(_UNITS):  # 1023.96G rounds up: say 1.0T
        power, text = power + 1, "1.0"
    return f"{text}{_UNITS[power - 1]}"


def format_request(job: Job) -> str:
    """What a job asks for beyond the default (1 cpu, priority 0), e.g. "cpus=4 gpus=1 mem=2G
    license=1 prio=5"; a running job's GPUs name the ids it was given. "" for the default."""
    parts = []
    if job.cpus != 1:
        parts.append(f"cpus={job.cpus}")
    if job.gpus:
        ids = f"({job.gpu_ids})" if job.gpu_ids and job.state == JobState.RUNNING else ""
        parts.append(f"gpus={job.gpus}{ids}")
    if job.mem:
        parts.append(f"mem={format_size(job.mem)}")
    parts += [f"{name}={n}" for name, n in sorted(job.resources.items())]
    if job.priority:
        parts.append(f"prio={job.priority}")
    return " ".join(parts)


def _with_request(line: str, job: Job) -> str:
    asks = format_request(job)
    return f"{line}  [{asks}]" if asks else line


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
            line = f"  {j.jobid:>6}  {took:>9}  on {j.workerid}  {_command(j)}"
            lines.append(_with_request(line, j))
    if waiting:
        lines.append(
            f"-- waiting jobs (first {min(count, len(waiting))} of {counters.get('waitingJobs', len(waiting))}):"
        )
        for j in waiting:
            waited = _duration((now_ns - j.submit_ns) / 1e9) if j.submit_ns else "?"
            line = _with_request(
                f"  {j.jobid:>6}  {waited:>9}  attempt {j.attempt}  {_command(j)}", j
            )
            lines.append(f"{line}  waits: {j.note}" if j.note else line)
    for state, title, counter in (
        (JobState.BLOCKED, "blocked", "blockedJobs"),
        (JobState.HELD, "held", "heldJobs"),
    ):
        jobs = [j for j in status.jobs if j.state == state]
        if not jobs:
            continue
        total = counters.get(counter, len(jobs))
        lines.append(f"-- {title} jobs (first {min(count, len(jobs))} of {total}):")
        for j in jobs:
            waited = _duration((now_ns - j.submit_ns) / 1e9) if j.submit_ns else "?"
            line = _with_request(f"  {j.jobid:>6}  {waited:>9}  {_command(j)}", j)
            lines.append(f"{line}  waits: {j.note}" if j.note else line)
    return "\n".join(lines)


def format_outcome(jobid: int, job: Job | None) -> str:
    """How a job ended, in one line:
    `job 5 finished: exit status 0, ran 1.204s on node7 (pid 4242)`,
    `job 6 finished: exit status 3 (failed), ran ...`, `... killed by signal 9 (failed), ...`,
    `job 7 was cancelled: dependency 6 failed`, `job 8 timed out (limit 1m00s), ran ...`.
    What the record lacks (a brief record has no host or pid) is left out."""
    if job is None:
        return f"job {jobid} has ended"
    if job.state == JobState.CANCELLED:
        sep = " " if job.note.startswith("by ") else ": "  # "by goq kill", or a reason
        return f"job {jobid} was cancelled" + (f"{sep}{job.note}" if job.note else "")
    if job.state == JobState.TIMEOUT:
        limit = f" (limit {format_limit(job.time_limit_ms)})" if job.time_limit_ms else ""
        return f"job {jobid} timed out{limit}{_ran(job)}"
    if job.state != JobState.FINISHED:
        return f"job {jobid} is {job.state.name.lower()}"
    if job.exit_status < 0:
        how = f"killed by signal {-job.exit_status} (failed)"
    elif job.exit_status:
        how = f"exit status {job.exit_status} (failed)"
    else:
        how = "exit status 0"
    return f"job {jobid} finished: {how}{_ran(job)}"


def format_limit(ms: int) -> str:
    """A duration as `goq sub --time` takes it: 1h30m, 2h, 45s, 1.5s, 1d2h."""
    if ms % 1000:
        return f"{ms / 1000:g}s"
    seconds, parts = ms // 1000, []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def _ran(job: Job) -> str:
    """`, ran 1.204s on node7 (pid 4242), after 2 retries`, less what the record lacks."""
    text = ""
    if job.end_ns and job.start_ns:
        text += f", ran {_duration((job.end_ns - job.start_ns) / 1e9)}"
    if job.workerhost:
        text += f"{',' if not text else ''} on {job.workerhost}"
    if job.pid:
        text += f" (pid {job.pid})"
    if job.retried:
        text += f", after {job.retried} {'retry' if job.retried == 1 else 'retries'}"
    return text


_WORKER_COLUMNS = ("NAME", "HOST", "STATE", "CPUS", "GPUS", "MEM", "RESOURCES", "JOBS", "HEARD")


def _ago(seconds: float) -> str:
    return f"{max(0.0, seconds):.1f}s ago" if seconds < 10 else f"{_duration(seconds)} ago"


def _free_of(free: object, offered: object, show=str) -> str:
    """`free/offered`, or "-" when nothing is offered."""
    return f"{show(free)}/{show(offered)}" if offered else "-"


def _worker_row(w: dict) -> tuple[str, ...]:
    offer = w.get("offer") or {}
    free = w.get("free") or {}
    gpus, free_gpus = offer.get("gpus") or [], free.get("gpus") or []
    gpu_text = _free_of(len(free_gpus), len(gpus))
    if 0 < len(free_gpus) < len(gpus):  # which ones, when it is not all or none
        gpu_text += f" ({','.join(map(str, free_gpus))})"
    offered_res = offer.get("resources") or {}
    free_res = free.get("resources") or {}
    resources = ",".join(
        f"{name}={free_res.get(name, 0)}/{n}" for name, n in sorted(offered_res.items())
    )
    jobs = ",".join(str(j) for j in w.get("jobs") or [])
    heard = w.get("last_heard_sec_ago")
    return (
        str(w.get("name", "?")),
        str(w.get("host", "?")),
        str(w.get("state", "?")),
        _free_of(free.get("cpus", 0), offer.get("cpus", 0)),
        gpu_text,
        _free_of(free.get("mem", 0), offer.get("mem", 0), format_size),
        resources or "-",
        jobs or "-",
        _ago(heard) if isinstance(heard, int | float) else "?",
    )


def format_workers(workers: list[dict]) -> str:
    """The workers as a table, one line each: name, host, state, then free/offered cpus, gpus
    (with the free ids when some but not all are free), memory and named resources, the running job ids, when last heard."""
    if not workers:
        return "no workers: start one with `goq work`"
    rows = [_WORKER_COLUMNS, *(_worker_row(w) for w in workers)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_WORKER_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
