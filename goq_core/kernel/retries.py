"""Retries (design.md §7): what happens when a run ends, and where each attempt's output goes.

Rules:
- A run that ended with a non-zero exit status or a signal runs again while the job has retries
  left (`retried` < `retries`), after `retry_delay_ms`. A run killed at its time limit ends the
  job TIMEOUT and is not retried; a cancelled job is not either. A worker's death is not the
  job's failure: the kernel requeues that run without using a retry.
- The output file holds every attempt of a job that may retry, each after a line
  "--- goq: attempt K of M ---"; attempt K starts at `out_base`, the bytes of the ones before
  it, and a requeued attempt writes over its own partial output from there.
"""

from __future__ import annotations

from goq_core.messages import Job, JobState


def retries_left(job: Job, outcome: Job) -> bool:
    """Whether this run's end calls for another attempt."""
    return (
        outcome.exit_status != 0 and outcome.state != JobState.TIMEOUT and job.retried < job.retries
    )


def header(job: Job) -> bytes:
    """The line before the current attempt's output (nothing for a job that never retries)."""
    if not job.retries:
        return b""
    return f"--- goq: attempt {job.retried + 1} of {job.retries + 1} ---\n".encode()


def place(job: Job, offset: int, data: bytes) -> tuple[int, bytes]:
    """Where in the output file a chunk at `offset` of the current attempt's output goes, and
    what to write there (the attempt's first chunk carries its header line)."""
    line = header(job)
    if offset == 0:
        return job.out_base, line + data
    return job.out_base + len(line) + offset, data


def attempt_bytes(job: Job, outcome: Job) -> int:
    """The output file's size once this attempt's output (outcome.out_bytes) is in."""
    return job.out_base + len(header(job)) + outcome.out_bytes
