"""The front door's rules: what an authenticated request must look like before the kernel acts
on it, and what a stored job must look like before the kernel schedules it again.

Rules (each refusal is one line of text; None means the input may pass):
- Numbers: job ids, attempts, counts and offsets are never negative; a hold asks for at most
  MAX_HOLD_MS. Larger numbers than int64 cannot arrive (the codecs refuse them).
- Requests from workers name themselves (workerid not empty, no NUL). A RESULT reporting several
  runs names each (job id, attempt), at most MAX_RUNS_PER_RESULT, at offset 0, and their output
  sizes add up to its data.
- SUBMIT carries 1 to MAX_JOBS_PER_SUBMIT jobs, each with a command, an absolute directory,
  and text a process can be given: no NUL byte, no string longer than MAX_TEXT, and nothing
  that is not bytes in the operating system's encoding (lone surrogates outside the
  surrogateescape range U+DC80..U+DCFF cannot be turned back into bytes for exec).
- What a job asks for is in range: 1 to MAX_AMOUNT cpus, 0 to MAX_AMOUNT GPUs and of each named
  counter, memory 0 to 2^62 bytes, a priority that fits 32 bits; counter names are short words
  (no "=", no NUL). A worker's offer (REQUEST_WORK) obeys the same, with its GPU ids as text.
- Workflow fields (design.md §7): a name is short text; a job names at most MAX_DEPENDENCIES
  dependencies, each a positive id (whether it is a known job is the kernel's submit rule);
  retries 0 to MAX_RETRIES, delays and time limits 0 to MAX_DURATION_MS, an array cap in range.
  An array SUBMIT carries exactly one job and "START-STOP:STEP" of at most MAX_ARRAY jobs.
- HOLD, RELEASE, FORGET (unless it gives a time), and CANCEL or WAIT about many jobs (job id
  0) name them as id ranges (idranges.py); SELECT names a job name, or every job; JOBS carries
  a query jobquery.parse accepts; SHOW names a job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from goq_core import idranges
from goq_core.jobquery import parse as parse_query
from goq_core.limits import (
    MAX_AMOUNT,
    MAX_ARRAY,
    MAX_DEPENDENCIES,
    MAX_DURATION_MS,
    MAX_HOLD_MS,
    MAX_JOBS_PER_SUBMIT,
    MAX_NAME,
    MAX_RETRIES,
    MAX_RUNS_PER_RESULT,
    MAX_TEXT,
)
from goq_core.messages import Job, Kind, Message
from goq_core.principals import name_problem

_FROM_WORKERS = frozenset({Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.OUTPUT, Kind.RESULT})
_MANY = frozenset({Kind.CANCEL, Kind.WAIT})  # with job id 0: about the jobs in `text`


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
    return amounts_problem(job) or workflow_problem(job)


def workflow_problem(job: Job) -> str | None:
    """Why a job's name, dependencies, retries, time limit or array fields are out of range."""
    if job.name and (len(job.name) > MAX_NAME or text_problem(job.name) is not None):
        return f"a job name must be text of at most {MAX_NAME} characters, without NUL"
    if job.after or job.after_any:
        if len(job.after) + len(job.after_any) > MAX_DEPENDENCIES:
            return f"a job may depend on at most {MAX_DEPENDENCIES:,} jobs"
        if min(job.after or job.after_any) < 1 or min(job.after_any or job.after) < 1:
            return "a dependency must be a job id (1 or more)"
    if not 0 <= job.retries <= MAX_RETRIES or job.retried < 0:
        return f"retries={job.retries} (0 to {MAX_RETRIES})"
    for what, ms in (("retry delay", job.retry_delay_ms), ("time limit", job.time_limit_ms)):
        if not 0 <= ms <= MAX_DURATION_MS:
            return f"a {what} of {ms} ms (0 to {MAX_DURATION_MS})"
    if not 0 <= job.array_max <= MAX_AMOUNT or job.array_id < 0 or job.array_index < 0:
        return f"an array cap of {job.array_max} (0 to {MAX_AMOUNT})"
    if job.out_base < 0:
        return "a negative output size"
    return None


def array_problem(text: str) -> str | None:
    """Why an array SUBMIT's "START-STOP:STEP" cannot be made, or None."""
    span, colon, step = text.partition(":")
    start, dash, stop = span.partition("-")
    if not (colon and dash) or not all(w.isascii() and w.isdigit() for w in (start, stop, step)):
        return f"array {text[:40]!r} (START-STOP:STEP)"
    a, b, k = int(start), int(stop), int(step)
    if b < a or k < 1 or b > MAX_AMOUNT:
        return f"array {text[:40]!r}: empty, a step below 1, or indexes beyond {MAX_AMOUNT}"
    if (b - a) // k + 1 > MAX_ARRAY:
        return f"an array of more than {MAX_ARRAY:,} jobs"
    return None


def ids_problem(text: str) -> str | None:
    """Why a request's job ids (id ranges) cannot be read, or None."""
    if not text:
        return "no job id given"
    if len(text) > MAX_TEXT:
        return "a list of job ids too long"
    try:
        idranges.parse(text)
    except ValueError as exc:
        return str(exc)
    return None


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


def results_problem(msg: Message) -> str | None:
    """Why a RESULT reporting several runs cannot be read, or None (goq_core.messages: each
    run's whole output in `data`, one after the other, each its outcome's out_bytes long)."""
    runs = msg.jobs
    if len(runs) > MAX_RUNS_PER_RESULT:
        return f"a RESULT of {len(runs)} runs (at most {MAX_RUNS_PER_RESULT})"
    if msg.offset != 0:
        return "a RESULT of several runs carries their whole outputs (offset 0)"
    total = 0
    for run in runs:
        if run.jobid <= 0 or run.attempt <= 0 or run.out_bytes < 0:
            return "a RESULT's run without a job id and attempt, or of negative output size"
        total += run.out_bytes
    if total != len(msg.data):
        return f"a RESULT's runs have {total} bytes of output, its data {len(msg.data)}"
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
        if kind == Kind.RESULT and len(msg.jobs) > 1:
            return results_problem(msg)
    elif kind == Kind.SUBMIT:
        n = len(msg.jobs)
        if n == 0:
            return "no job given"
        if n > MAX_JOBS_PER_SUBMIT:
            return (
                f"{n} jobs in one request (at most {MAX_JOBS_PER_SUBMIT}; goq sub splits "
                "larger batches)"
            )
        if msg.text:
            if n != 1:
                return "an array submission carries exactly one job"
            why = array_problem(msg.text)
            if why is not None:
                return why
        for _, why in jobs_problems(msg.jobs):
            if why is not None:
                return why
    elif kind in (Kind.HOLD, Kind.RELEASE) or (kind in _MANY and msg.jobid == 0):
        return ids_problem(msg.text)
    elif kind == Kind.JOBS:
        try:
            parse_query(msg.text)
        except ValueError as exc:
            return str(exc)
    elif kind == Kind.FORGET and msg.offset == 0:
        return ids_problem(msg.text)
    elif kind == Kind.SHOW and msg.jobid == 0:
        return "SHOW names a job id"
    elif kind == Kind.REVOKE and msg.text:
        return name_problem(msg.text)
    elif kind == Kind.SELECT:
        if len(msg.text) > MAX_NAME or "\x00" in msg.text:
            return f"a job name of more than {MAX_NAME} characters, or with NUL"
        if not msg.text and msg.count != 1:
            return "SELECT names a job name, or every job (count 1)"
    return None
