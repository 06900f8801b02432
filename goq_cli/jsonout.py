"""What `--json` prints: one JSON document per command, built here from what the server said.

Every document is goq_core.records.document(kind, ...): {"schema": 1, "kind": KIND, ...}; a job
in any document is a goq_core.records.JobRecord (the same fields as the Python API's records).
docs/json.md lists every document and every field, with its type; tests/test_cli_json.py checks
real documents against it. Rules: lists are arrays, times RFC 3339 UTC strings, durations
seconds; a field that is not known is null, never left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from goq_core.messages import Job, Message
from goq_core.records import Attempt, JobRecord, document


def emit(doc: dict[str, Any]) -> None:
    """Print one document (indented; non-ASCII text escaped, so any terminal shows it)."""
    click.echo(json.dumps(doc, indent=2))


def job_records(jobs: Iterable[Job]) -> list[dict[str, Any]]:
    return [JobRecord.from_job(job).to_json() for job in jobs]


def submitted(ranges: list[tuple[int, int]], server: str, array: str | None) -> dict[str, Any]:
    """`goq sub --json`: the ids given, as first/last/count and as [first, last] ranges
    (several when other submitters interleaved with a large batch)."""
    first = ranges[0][0]
    last = ranges[-1][0] + ranges[-1][1] - 1
    return document(
        "submitted",
        first=first,
        last=last,
        count=sum(n for _, n in ranges),
        ranges=[[a, a + n - 1] for a, n in ranges],
        array=array,
        server=server,
    )


def status(reply: Message) -> dict[str, Any]:
    """`goq stat --json`: the server's counters (their original names) and the jobs listed."""
    return document("status", counters=dict(reply.counters), jobs=job_records(reply.jobs))


def jobs(found: list[Job]) -> dict[str, Any]:
    """`goq jobs --json`: the jobs found, newest first."""
    return document("jobs", jobs=job_records(found))


def job(found: Job, attempts: list[Attempt], output_path: str | None) -> dict[str, Any]:
    """`goq show --json`: the job's record with its attempts, and its environment."""
    record = JobRecord.from_job(found, attempts, output_path).to_json()
    return document("job", job=record, environment=list(found.env))


def ended(outcomes: dict[int, Job | None], all_succeeded: bool) -> dict[str, Any]:
    """`goq wait --json`: the jobs that ended (by id), and those whose record the server no
    longer held (they ended, but how is not known)."""
    recorded = [outcomes[i] for i in sorted(outcomes) if outcomes[i] is not None]
    unrecorded = [i for i in sorted(outcomes) if outcomes[i] is None]
    return document(
        "ended",
        jobs=job_records(j for j in recorded if j is not None),
        unrecorded=unrecorded,
        all_succeeded=all_succeeded,
    )


def acted(kind: str, count: int, message: str) -> dict[str, Any]:
    """`goq kill`, `hold`, `release`, `forget --json`: how many jobs, and what was said."""
    return document(kind, count=count, message=message)


def workers(doc: dict[str, Any]) -> dict[str, Any]:
    """`goq workers --json`: the server's document with schema and kind."""
    return document("workers", workers=doc["workers"])


def version(text: str) -> dict[str, Any]:
    return document("version", version=text)
