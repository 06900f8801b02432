"""The front door's rules: what an authenticated request must look like before the kernel acts
on it, and what a stored job must look like before the kernel schedules it again.

Rules (each refusal is one line of text; None means the input may pass):
- Numbers: job ids, attempts, counts and offsets are never negative; a hold asks for at most
  MAX_HOLD_MS. Larger numbers than int64 cannot arrive (the codecs refuse them).
- Requests from workers name themselves (workerid not empty, no NUL).
- SUBMIT carries 1 to MAX_JOBS_PER_SUBMIT jobs, each with a command, an absolute directory,
  and text a process can be given: no NUL byte, no string longer than MAX_TEXT, and nothing
  that is not bytes in the operating system's encoding (lone surrogates outside the
  surrogateescape range U+DC80..U+DCFF cannot be turned back into bytes for exec).
- What a job asks for is in range: 1 to MAX_AMOUNT cpus, 0 to MAX_AMOUNT GPUs and of each named
  counter, memory 0 to 2^62 bytes, a priority that fits 32 bits; counter names are short words
  (no "=", no NUL). A worker's offer (REQUEST_WORK) obeys the same, with its GPU ids as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from goq_core.limits import MAX_AMOUNT, MAX_HOLD_MS, MAX_JOBS_PER_SUBMIT, MAX_TEXT
from goq_core.messages import Job, Kind, Message

_FROM_WORKERS = frozenset({Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.OUTPUT, Kind.RESULT})


def text_problem(s: str) -> str | None:
    """Why `s` cannot be handed to a process (argv, env, path), or None when it can."""
    if len(s) > MAX_TEXT:
        return f"a string of {len(s)} characters (at most {MAX_TEXT})"
    if "\x00" in s:
        return "a NUL byte, which no argument, environment entry or path can hold"
    if not s.isascii():
        try:
            s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return "text that is not bytes of this system's encoding (a lone surrogate)"
    return None


def job_problem(job: Job) -> str | None:
    """Why a submitted (or stored) job cannot be run, or None when it can."""
    if not job.cmd:
        return "a job has an empty command"
    d = job.dir
    if not d.startswith("/"):
        return f"a job's directory {d!r} is not an absolute path" if d else "a job has no directory"
    for what, s in (("command", job.cmd), ("directory", d)):
        why = text_problem(s)
        if why is not None:
            return f"the job's {what} holds {why}"
    for s in job.args:
        why = text_problem(s)
        if why is not None:
            return f"an argument holds {why}"
    return amounts_problem(job)


def amounts_problem(job: Job) -> str | None:
    """Why what a job asks for (or a worker offers) is out of range, or None."""
    if not 1 <= job.cpus <= MAX_AMOUNT:
        return f"cpus={job.cpus} (1 to {MAX_AMOUNT})"
    if not 0 <= job.gpus <= MAX_AMOUNT:
        return f"gpus={job.gpus} (0 to {MAX_AMOUNT})"
    if not 0 <= job.mem <= 1 << 62:
        return f"mem={job.mem} bytes (0 to 2^62)"
    if not -(1 << 31) <= job.priority < 1 << 31:
        return f"priority {job.priority} (a 32-bit integer)"
    for name, amount in job.resources.items():
        if not name or len(name) > 100 or "=" in name or "\x00" in name or "," in name:
            return f"resource name {name[:40]!r} (a short word without '=' or ',')"
        if not 0 <= amount <= MAX_AMOUNT:
            return f"{name}={amount} (0 to {MAX_AMOUNT})"
    return None


def offer_problem(offer: Job) -> str | None:
    """Why a worker's offer cannot be used, or None."""
    why = amounts_problem(offer)
    if why is not None:
        return f"the worker offers {why}"
    ids = offer.gpu_ids.split(",") if offer.gpu_ids else []
    if any(not g or len(g) > 128 or "\x00" in g for g in ids) or len(set(ids)) != len(ids):
        return f"the worker offers GPU ids {offer.gpu_ids[:60]!r} (distinct, comma-separated)"
    return None


def jobs_problems(jobs: Iterable[Job]) -> Iterator[tuple[Job, str | None]]:
    """Each job with why it cannot be run (None when it can); an environment list that jobs
    share (a batch, or jobs loaded from the store) is checked once."""
    checked: list[str] | None = None
    for job in jobs:
        why = job_problem(job)
        if why is None and job.env and job.env is not checked:
            why = env_problem(job.env)
            checked = job.env if why is None else None
        yield job, why


def env_problem(env: list[str]) -> str | None:
    """Why an environment (list of NAME=value) cannot be given to a process, or None."""
    for s in env:
        why = text_problem(s)
        if why is not None:
            return f"an environment entry holds {why}"
    return None


def request_problem(msg: Message) -> str | None:
    """Why an authenticated request must be refused before it changes anything, or None."""
    if msg.jobid < 0 or msg.attempt < 0 or msg.count < 0 or msg.offset < 0:
        return "negative job id, attempt, count or offset"
    if not 0 <= msg.wait_ms <= MAX_HOLD_MS:
        return f"a hold of {msg.wait_ms} ms (0 to {MAX_HOLD_MS})"
    kind = msg.kind
    if kind in _FROM_WORKERS:
        if not msg.workerid or "\x00" in msg.workerid or len(msg.workerid) > 1024:
            return "a worker request without a usable worker id"
        if kind == Kind.REQUEST_WORK and msg.jobs and msg.jobs[0].jobid == 0:
            return offer_problem(msg.jobs[0])
    elif kind == Kind.SUBMIT:
        n = len(msg.jobs)
        if n == 0:
            return "no job given"
        if n > MAX_JOBS_PER_SUBMIT:
            return (
                f"{n} jobs in one request (at most {MAX_JOBS_PER_SUBMIT}; goq sub splits "
                "larger batches)"
            )
        for _, why in jobs_problems(msg.jobs):
            if why is not None:
                return why
    return None
