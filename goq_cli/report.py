"""How `goq stat`, `goq wait`, `goq workers`, `goq jobs` and `goq show` show what the server
said: counters, then running, waiting, blocked and held jobs one per line (with their owners
and names, what each asks beyond the default, and why a waiting or blocked job waits); a job's
outcome in one line; the workers as a table; jobs from the history as a table; one job, every
field.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

from goq_core.attempts import ENDED_STATES, state_name
from goq_core.messages import Job, JobState, Message

TYPE_CHECKING = False  # `goq stat` (the fast path) needs none of the records: 5 ms to import
if TYPE_CHECKING:
    from goq_core.records import Attempt

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


def _owners(jobs: list[Job]) -> Callable[[Job], str]:
    """`  by OWNER`, the owners padded to one width (a column), for `goq stat`'s lines; "" for
    a job without one (when no job has one, nothing at all)."""
    width = max((len(_printable(j.owner)) for j in jobs), default=0)
    if not width:
        return lambda job: ""
    return lambda job: f"  by {_printable(job.owner or '-').ljust(width)}"


def format_status(status: Message, count: int) -> str:
    counters = status.counters
    names = [n for n in _FIRST if n in counters] + sorted(n for n in counters if n not in _FIRST)
    lines = [f"{name}: {counters[name]}" for name in names]
    running = [j for j in status.jobs if j.state == JobState.RUNNING]
    waiting = [j for j in status.jobs if j.state == JobState.WAITING]
    by = _owners(status.jobs)
    now_ns = time.time_ns()
    if running:
        lines.append(
            f"-- running jobs (first {min(count, len(running))} of {counters.get('runQlen', len(running))}):"
        )
        for j in running:
            took = _duration((now_ns - j.start_ns) / 1e9) if j.start_ns else "?"
            line = f"  {j.jobid:>6}  {took:>9}{by(j)}  on {j.workerid}  {_command(j)}"
            lines.append(_with_request(line, j))
    if waiting:
        lines.append(
            f"-- waiting jobs (first {min(count, len(waiting))} of {counters.get('waitingJobs', len(waiting))}):"
        )
        for j in waiting:
            waited = _duration((now_ns - j.submit_ns) / 1e9) if j.submit_ns else "?"
            line = _with_request(
                f"  {j.jobid:>6}  {waited:>9}{by(j)}  attempt {j.attempt}  {_command(j)}", j
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
            line = _with_request(f"  {j.jobid:>6}  {waited:>9}{by(j)}  {_command(j)}", j)
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


# ----------------------------------------------------------------------------- goq jobs

_JOB_COLUMNS = (
    "ID",
    "NAME",
    "OWNER",
    "STATE",
    "EXIT",
    "COMMAND",
    "WORKER",
    "SUBMITTED",
    "WAITED",
    "RAN",
)


def short_duration(seconds: float) -> str:
    """A duration for a table: 1.2s, 42.0s, 3m04s, 2h05m, 3d04h."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    d, rest = divmod(whole, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if d:
        return f"{d}d{h:02d}h"
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def short_time(ns: int, now_ns: int) -> str:
    """A local time for a table: 14:03:27 today, May 02 14:03 this year, else 2023-05-02."""
    if not ns:
        return "-"
    when, now = time.localtime(ns / 1e9), time.localtime(now_ns / 1e9)
    if when[:3] == now[:3]:
        return time.strftime("%H:%M:%S", when)
    if when.tm_year == now.tm_year:
        return time.strftime("%b %d %H:%M", when)
    return time.strftime("%Y-%m-%d", when)


def local_time(ns: int) -> str:
    """A local time in full, with its zone: 2024-05-02 14:03:27.412 CEST ("-" for 0)."""
    if not ns:
        return "-"
    when = time.localtime(ns / 1e9)
    ms = ns // 1_000_000 % 1000
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', when)}.{ms:03d} {time.strftime('%Z', when)}"


def _printable(text: str) -> str:
    """Text on one line of a table: control characters (a newline in a shell line) escaped."""
    if text.isprintable():
        return text
    return "".join(
        ch if ord(ch) >= 32 and ord(ch) != 127 else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _shorten(text: str, width: int) -> str:
    text = _printable(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def command_text(job: Job) -> str:
    """The job's command as one line: its shell line, or its argv shell-quoted."""
    return job.cmd if job.shell else shlex.join([job.cmd, *job.args])


def exit_text(job: Job) -> str:
    """How an ended job exited: its exit status, `sig N`, or "-" (cancelled, not ended)."""
    if job.state not in (JobState.FINISHED, JobState.TIMEOUT):
        return "-"
    if job.state == JobState.TIMEOUT and not job.end_ns:
        return "-"
    return f"sig {-job.exit_status}" if job.exit_status < 0 else str(job.exit_status)


def _job_row(job: Job, now_ns: int) -> tuple[str, ...]:
    state = state_name(job)
    ended = state in ENDED_STATES
    started = bool(job.attempt and job.start_ns)
    if started:
        waited = short_duration((job.start_ns - job.submit_ns) / 1e9) if job.submit_ns else "-"
    elif not ended and job.submit_ns:  # still waiting: for how long so far
        waited = short_duration((now_ns - job.submit_ns) / 1e9)
    else:
        waited = "-"
    if started and ended and job.end_ns:
        ran = short_duration((job.end_ns - job.start_ns) / 1e9)
    elif started and state == "running":  # so far
        ran = short_duration((now_ns - job.start_ns) / 1e9)
    else:
        ran = "-"
    return (
        str(job.jobid),
        _shorten(job.name, 20) if job.name else "-",
        _shorten(job.owner, 20) if job.owner else "-",
        state,
        exit_text(job),
        _shorten(command_text(job), 40),
        _shorten(job.workerid, 20) if job.workerid else "-",
        short_time(job.submit_ns, now_ns),
        waited,
        ran,
    )


def format_jobs(jobs: list[Job], now_ns: int | None = None) -> str:
    """`goq jobs`: one row per job, as the server listed them (newest first)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    rows = [_JOB_COLUMNS, *(_job_row(job, now_ns) for job in jobs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_JOB_COLUMNS))]
    right = {0, 4, 8, 9}  # numbers and durations line up on the right
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


# ----------------------------------------------------------------------------- goq show

_ATTEMPT_COLUMNS = (
    "ATTEMPT",
    "OUTCOME",
    "WORKER",
    "HOST",
    "PID",
    "STARTED",
    "ENDED",
    "RAN",
    "EXIT",
    "MAX RSS",
    "USER",
    "SYSTEM",
)


def _state_line(job: Job) -> str:
    state = state_name(job)
    if job.state in (JobState.FINISHED, JobState.TIMEOUT) and job.end_ns:
        if job.exit_status < 0:
            state += f": killed by signal {-job.exit_status}"
        else:
            state += f": exit status {job.exit_status}"
    elif job.state == JobState.RUNNING and job.workerid:
        state += f" on {job.workerid}"
    return state


def _seconds(value: float | None) -> str:
    return "-" if value is None else _duration(value)


def _attempt_row(a: Attempt) -> tuple[str, ...]:
    from goq_core.records import AttemptRecord

    r = AttemptRecord.from_attempt(a)
    if r.signal is not None:
        exit_ = f"sig {r.signal}"
    else:
        exit_ = "-" if r.exit_status is None else str(r.exit_status)
    return (
        str(r.attempt),
        r.outcome,
        _printable(r.worker or "-"),
        _printable(r.worker_host or "-"),
        str(r.pid) if r.pid else "-",
        local_time(a.start_ns),
        local_time(a.end_ns),
        _seconds(r.ran),
        exit_,
        format_size(r.max_rss_kib * 1024) if r.max_rss_kib is not None else "-",
        f"{r.user_cpu:.2f}s" if r.user_cpu is not None else "-",
        f"{r.system_cpu:.2f}s" if r.system_cpu is not None else "-",
    )


def _running_row(job: Job, now_ns: int) -> tuple[str, ...]:
    """The attempt running now, as far as the job's record says."""
    ran = f"{short_duration((now_ns - job.start_ns) / 1e9)}+" if job.start_ns else "-"
    return (
        str(job.attempt),
        "running",
        _printable(job.workerid or "-"),
        _printable(job.workerhost or "-"),
        str(job.pid) if job.pid else "-",
        local_time(job.start_ns),
        "-",
        ran,
        "-",
        "-",
        "-",
        "-",
    )


def _asked(job: Job) -> str:
    parts = [f"cpus={job.cpus}", f"gpus={job.gpus}"]
    parts.append(f"mem={format_size(job.mem)}" if job.mem else "mem=-")
    parts += [f"{name}={n}" for name, n in sorted(job.resources.items())]
    return " ".join(parts)


def format_show(
    job: Job,
    attempts: list[Attempt],
    output_path: str | None,
    show_env: bool = False,
    now_ns: int | None = None,
    env_hidden: bool = False,
) -> str:
    """`goq show`: every field of one job, one per line, then its attempts as a table.
    `env_hidden`: the server kept the environment from this viewer (not its owner, not an
    admin)."""
    from goq_core import idranges

    now_ns = time.time_ns() if now_ns is None else now_ns
    state = state_name(job)
    ended = state in ENDED_STATES
    started = bool(job.attempt and job.start_ns)
    rows: list[tuple[str, str]] = [
        ("name", _printable(job.name) if job.name else "-"),
        ("state", _state_line(job)),
    ]
    if job.note:
        rows.append(("reason", _printable(job.note)))
    if job.shell:
        rows.append(("shell line", _printable(job.cmd)))
    else:
        rows.append(("command", _printable(shlex.join([job.cmd, *job.args]))))
    rows += [
        ("directory", _printable(job.dir) or "-"),
        ("submitted by", _printable(f"{job.user or '?'}@{job.host or '?'}")),
        ("owner", _printable(job.owner) if job.owner else "-"),
        ("asked", _asked(job)),
        ("given gpus", job.gpu_ids or "-"),
        ("priority", str(job.priority)),
        ("after", idranges.format_ids(job.after) or "-"),
        ("after any", idranges.format_ids(job.after_any) or "-"),
        (
            "array",
            f"{job.array_id}, index {job.array_index}"
            + (f" (at most {job.array_max} at once)" if job.array_max else "")
            if job.array_id
            else "-",
        ),
        (
            "retries",
            f"{job.retried} of {job.retries} used"
            + (f", {format_limit(job.retry_delay_ms)} apart" if job.retry_delay_ms else "")
            if job.retries
            else "-",
        ),
        ("time limit", format_limit(job.time_limit_ms) if job.time_limit_ms else "-"),
        ("attempt", str(job.attempt)),
        ("submitted", local_time(job.submit_ns)),
        ("started", local_time(job.start_ns) if started else "-"),
        ("ended", local_time(job.end_ns) if ended and job.end_ns else "-"),
    ]
    if started:
        waited = _duration((job.start_ns - job.submit_ns) / 1e9) if job.submit_ns else "-"
    elif not ended and job.submit_ns:
        waited = f"{_duration((now_ns - job.submit_ns) / 1e9)} so far"
    else:
        waited = "-"
    if started and ended and job.end_ns:
        ran = _duration((job.end_ns - job.start_ns) / 1e9)
    elif started and state == "running":
        ran = f"{_duration((now_ns - job.start_ns) / 1e9)} so far"
    else:
        ran = "-"
    rows += [("waited", waited), ("ran", ran)]
    size = f"{job.out_bytes:,} bytes"
    if job.out_bytes >= 1024:
        size += f", {format_size(job.out_bytes)}"
    rows.append(("output", f"{_printable(output_path)} ({size})" if output_path else size))
    n = len(job.env)
    if env_hidden:
        rows.append(("environment", "hidden: only its owner and admins see it"))
    else:
        rows.append(("environment", f"{n} variable{'s' if n != 1 else ''}"))
    width = max(len(label) for label, _ in rows)
    lines = [f"job {job.jobid}"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    if show_env:
        lines += [f"    {_printable(entry)}" for entry in job.env]
    elif n:
        lines[-1] += " (goq show --env lists them)"
    table = [_ATTEMPT_COLUMNS, *(_attempt_row(a) for a in attempts)]
    if state == "running" and all(a.attempt != job.attempt for a in attempts):
        table.append(_running_row(job, now_ns))  # the history has only attempts that are over
    if len(table) > 1:
        lines.append("attempts:")
        widths = [max(len(row[i]) for row in table) for i in range(len(_ATTEMPT_COLUMNS))]
        lines += [
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        ]
    else:
        lines.append("attempts: none")
    return "\n".join(lines)
