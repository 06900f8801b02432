"""The workflow options of `goq sub` and the commands that act on many jobs (design.md §7,
issue 11): click parameter types for durations (`--time`, `--retry-delay`), job id lists
(`--after 12,15`, `goq wait 100-199`) and job names, and how `goq wait` on many jobs reports:
one line per job as it ends, a live "N of M done" line on a terminal, and its exit status. Also
what `goq jobs` and `goq show` take (states, `--since`, one job id), and the job ids shell
completion offers (ids_with_prefix).

The parsers, and what the options set on a Job (Workflow), are goq_core.options': each raises
ValueError with one line, which the click parameter types below turn into click's one-line
usage error (exit 1, as for --cpus and --mem).
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, TextIO

import click

from goq_core import idranges
from goq_core.messages import Job, JobState
from goq_core.options import (  # noqa: F401 (re-exported: goq_cli.main and tests import them here)
    MAX_DURATION_S,
    MAX_NAME,
    MAX_RETRIES,
    STATES,
    Workflow,
    check_job_name,
    merge_ids,
    parse_duration_ms,
    parse_ids,
    parse_job_id,
    parse_states,
)

# ----------------------------------------------------------------------------- completion


def ids_with_prefix(ranges: list[idranges.Range], prefix: str, limit: int) -> list[int]:
    """At most `limit` ids of `ranges` (merged, sorted) whose decimal text starts with
    `prefix` (every id for ""), shortest first: what shell completion offers for a job id.
    Costs O(digits x log ranges + limit), whatever the ranges hold."""
    if not ranges or limit <= 0:
        return []
    if not prefix:
        found: list[int] = []
        for a, b in ranges:
            found.extend(range(a, min(b, a + limit - len(found) - 1) + 1))
            if len(found) >= limit:
                break
        return found
    if not (prefix.isascii() and prefix.isdigit()) or prefix[0] == "0":
        return []
    ends = [b for _, b in ranges]
    top, p, found = ends[-1], int(prefix), []
    scale = 1
    while p * scale <= top and len(found) < limit:
        lo, hi = p * scale, p * scale + scale - 1
        i = bisect_left(ends, lo)  # the first range that ends at or after lo
        while i < len(ranges) and ranges[i][0] <= hi and len(found) < limit:
            a, b = max(ranges[i][0], lo), min(ranges[i][1], hi)
            found.extend(range(a, min(b, a + limit - len(found) - 1) + 1))
            i += 1
        scale *= 10
    return found


# ----------------------------------------------------------------------------- click types


class _Checked(click.ParamType):
    """A thin click type over one check of goq_core.options: a value already converted (of
    type `done`) passes; text goes through `check`, whose ValueError is click's usage error."""

    done: type | tuple[type, ...] = ()

    def check(self, text: str) -> Any:
        raise NotImplementedError

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if self.done and isinstance(value, self.done) and not isinstance(value, bool):
            return value
        try:
            return self.check(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Duration(_Checked):
    """A duration in milliseconds (see parse_duration_ms)."""

    name = "DURATION"
    done = int

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def check(self, text: str) -> int:
        return parse_duration_ms(text, self.allow_zero)


class JobIds(_Checked):
    """Job ids and ranges (see parse_ids), as a merged list of (first, last) ranges."""

    name = "IDS"
    done = list

    def check(self, text: str) -> Any:
        return parse_ids(text)


class JobId(_Checked):
    """One job id (see parse_job_id)."""

    name = "ID"
    done = int

    def check(self, text: str) -> int:
        return parse_job_id(text)


class States(_Checked):
    """Job states, comma-separated (see parse_states); completes their names."""

    name = "STATE"
    done = frozenset

    def check(self, text: str) -> Any:
        return parse_states(text)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str):
        from click.shell_completion import CompletionItem

        head, comma, word = incomplete.rpartition(",")
        return [
            CompletionItem(head + comma + state)
            for state in (*STATES, "all")
            if state.startswith(word.lower())
        ]


class Since(click.ParamType):
    """How far back `goq jobs` looks for ended jobs: a duration in milliseconds (see
    parse_duration_ms), or `all` (0: no limit)."""

    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if str(value).strip().lower() == "all":
            return 0
        try:
            return parse_duration_ms(str(value))
        except ValueError as exc:
            self.fail(f"{exc} (or all)", param, ctx)


class JobName(_Checked):
    """A job name (see check_job_name)."""

    name = "NAME"

    def check(self, text: str) -> str:
        return check_job_name(text)


class Array(click.ParamType):
    """An array, START-STOP[:STEP][%MAX] (goq_core.arrayspec.parse_array)."""

    name = "START-STOP[:STEP][%MAX]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        from goq_core.arrayspec import ArraySpec, parse_array

        if isinstance(value, ArraySpec):
            return value
        try:
            return parse_array(str(value))
        except ValueError as exc:  # its message names the option already
            raise click.UsageError(str(exc), ctx) from None


# ----------------------------------------------------------------------------- wait


def succeeded(job: Job | None) -> bool:
    """Whether a job's outcome counts as success: FINISHED with exit status 0."""
    return job is not None and job.state == JobState.FINISHED and job.exit_status == 0


def wait_exit_code(outcomes: Iterable[Job | None]) -> int:
    """`goq wait`'s exit status for the jobs it saw end: 0 if every one succeeded, 2 if any
    did not (failed, killed by a signal, cancelled, timed out, or ended with no record to say
    how). Errors (unknown id, no server) exit 1 before this is asked."""
    return 0 if all(succeeded(job) for job in outcomes) else 2


class Progress:
    """The live `N of M done` line of `goq wait` on a terminal: drawn on `stream` with \\r,
    cleared before each job line is printed and at the end. Does nothing when disabled."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = total > 1 and bool(isatty and isatty())
        self.total, self.enabled, self.shown = total, enabled, 0

    def show(self, done: int) -> None:
        if not self.enabled:
            return
        text = f"{done:,} of {self.total:,} done"
        self.stream.write("\r" + text.ljust(self.shown))
        self.stream.flush()
        self.shown = len(text)

    def clear(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0
