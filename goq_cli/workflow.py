"""The workflow options of `goq sub` and the commands that act on many jobs (design.md §7,
issue 11): durations (`--time`, `--retry-delay`), job id lists (`--after 12,15`, `goq wait
100-199`), job names, what they set on a Job, and how `goq wait` on many jobs reports: one line
per job as it ends, a live "N of M done" line on a terminal, and its exit status. Also what
`goq jobs` and `goq show` take (states, `--since`, one job id), and the job ids shell
completion offers (ids_with_prefix).

Each parser raises ValueError with one line saying what is wrong; the click parameter types
below turn that into click's one-line usage error (exit 1, as for --cpus and --mem).
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

from goq_core import idranges
from goq_core.limits import MAX_DEPENDENCIES, MAX_INT
from goq_core.messages import Job, JobState

MAX_DURATION_S = 365 * 86400  # the longest --time and --retry-delay (a year)
MAX_RETRIES = 1000
MAX_NAME = 200  # characters in a job name
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN = re.compile(_NUMBER, re.ASCII)
_WITH_UNITS = re.compile(rf"(?:{_NUMBER}[smhd])+", re.ASCII)
_PART = re.compile(rf"({_NUMBER})([smhd])", re.ASCII)
_CLOCK = re.compile(r"([0-9]+):([0-5]?[0-9])(?::([0-5]?[0-9]))?", re.ASCII)
_DURATION_HELP = "use e.g. 90s, 10m, 2h, 1d, 1h30m, 1:30:00 (H:MM:SS), 30:00 (M:SS) or seconds"
# the states `goq jobs --state` takes (goq_core.records.STATES), and `all` for every one
STATES = ("waiting", "blocked", "held", "running", "finished", "failed", "cancelled", "timeout")


# ----------------------------------------------------------------------------- parsers


def parse_duration_ms(text: str, allow_zero: bool = False) -> int:
    """Milliseconds of a duration as users type it: `90s`, `10m`, `2h`, `1d`, `1h30m`,
    `1:30:00` (H:MM:SS), `30:00` (M:SS), or a plain number of seconds (`45`, `2.5`). More than
    zero (or zero, with allow_zero), at most a year. ValueError (one line) for anything else."""
    word = text.strip().lower()
    if _PLAIN.fullmatch(word):
        seconds = float(word)
    elif _WITH_UNITS.fullmatch(word):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(word))
    elif m := _CLOCK.fullmatch(word):
        if m[3] is None:  # M:SS
            seconds = int(m[1]) * 60 + int(m[2])
        else:  # H:MM:SS
            seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    else:
        raise ValueError(f"{text!r} is not a duration: {_DURATION_HELP}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{text!r} is too long: at most 365 days (365d)")
    ms = round(seconds * 1000)
    if ms <= 0 and not (allow_zero and seconds == 0):
        raise ValueError(f"{text!r} is too short: it must be more than 0 (at least 1ms)")
    return ms


def parse_ids(text: str) -> list[idranges.Range]:
    """Job ids as users type them: `12`, `12,15`, `100-199`, `1-5,8` (spaces after commas
    are fine); merged ranges. ValueError (one line) for an empty list, a word that is not an id
    or a range, an id below 1 or beyond int64, a range that ends before it starts."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ValueError("no job id given: use e.g. 12, 12,15 or 100-199")
    try:
        return idranges.parse(",".join(parts), MAX_INT)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def merge_ids(lists: Iterable[list[idranges.Range]]) -> list[idranges.Range]:
    """Several id lists (repeated options, several arguments) as one merged list."""
    return idranges.merge(r for ranges in lists for r in ranges)


def check_job_name(name: str) -> str:
    """A job name as `--name` takes it: 1 to 200 characters, no control characters (a name
    prints on one line of `goq stat`). ValueError (one line) otherwise."""
    if not name:
        raise ValueError("a job name cannot be empty")
    if len(name) > MAX_NAME:
        raise ValueError(f"a job name has at most {MAX_NAME} characters, not {len(name):,}")
    bad = next((ch for ch in name if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise ValueError(f"a job name cannot hold a control character ({bad!r})")
    return name


def parse_states(text: str) -> frozenset[str]:
    """States as `goq jobs --state` takes them: names of STATES or `all`, comma-separated
    (`running`, `failed,timeout`). ValueError (one line) for anything else."""
    words = [word.strip().lower() for word in text.split(",")]
    if not any(words):
        raise ValueError(f"no state given: use one of {', '.join(STATES)} or all")
    found: set[str] = set()
    for word in words:
        if word == "all":
            found.update(STATES)
        elif word in STATES:
            found.add(word)
        else:
            raise ValueError(f"{word!r} is not a job state: use {', '.join(STATES)} or all")
    return frozenset(found)


def parse_job_id(text: str) -> int:
    """One job id (`goq show 12`). ValueError (one line) for anything else."""
    word = text.strip()
    if not (word.isascii() and word.isdigit()):
        raise ValueError(f"{text!r} is not a job id: give one number, e.g. 12")
    ranges = parse_ids(word)
    return ranges[0][0]


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


class Duration(click.ParamType):
    """A duration in milliseconds (see parse_duration_ms)."""

    name = "DURATION"

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return parse_duration_ms(str(value), self.allow_zero)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class JobIds(click.ParamType):
    """Job ids and ranges (see parse_ids), as a merged list of (first, last) ranges."""

    name = "IDS"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, list):
            return value
        try:
            return parse_ids(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class JobId(click.ParamType):
    """One job id (see parse_job_id)."""

    name = "ID"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return parse_job_id(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class States(click.ParamType):
    """Job states, comma-separated (see parse_states); completes their names."""

    name = "STATE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, frozenset):
            return value
        try:
            return parse_states(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

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


class JobName(click.ParamType):
    """A job name (see check_job_name)."""

    name = "NAME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        try:
            return check_job_name(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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


# ----------------------------------------------------------------------------- sub


@dataclass(slots=True)
class Workflow:
    """What `goq sub`'s workflow options set on each job: dependencies, retries, time limit,
    name, and whether it starts held."""

    after: list[int] = field(default_factory=list)
    after_any: list[int] = field(default_factory=list)
    retries: int = 0
    retry_delay_ms: int = 0
    time_limit_ms: int = 0
    name: str = ""
    hold: bool = False

    @classmethod
    def from_options(
        cls,
        after: Iterable[list[idranges.Range]] = (),
        after_any: Iterable[list[idranges.Range]] = (),
        retries: int | None = None,
        retry_delay_ms: int | None = None,
        time_limit_ms: int | None = None,
        name: str | None = None,
        hold: bool = False,
    ) -> Workflow:
        """From the parsed options; click.UsageError (one line) for a combination that
        cannot be: --retry-delay without --retries, more dependencies than a job may have."""
        if retry_delay_ms is not None and retries is None:
            raise click.UsageError("--retry-delay needs --retries N (how many times to retry)")
        after_ranges, any_ranges = merge_ids(after), merge_ids(after_any)
        n = idranges.count(after_ranges) + idranges.count(any_ranges)
        if n > MAX_DEPENDENCIES:
            raise click.UsageError(
                f"--after and --after-any name {n:,} jobs; a job may depend on at most "
                f"{MAX_DEPENDENCIES:,}"
            )
        return cls(
            after=list(idranges.ids(after_ranges)),
            after_any=list(idranges.ids(any_ranges)),
            retries=retries or 0,
            retry_delay_ms=retry_delay_ms or 0,
            time_limit_ms=time_limit_ms or 0,
            name=name or "",
            hold=hold,
        )

    def apply(self, jobs: list[Job]) -> list[Job]:
        """Set these fields on every job; returns jobs. The dependency lists are shared by
        the jobs (a batch of thousands need not hold thousands of copies): do not mutate them."""
        for job in jobs:
            job.after, job.after_any = self.after, self.after_any
            job.retries, job.retry_delay_ms = self.retries, self.retry_delay_ms
            job.time_limit_ms, job.name = self.time_limit_ms, self.name
            if self.hold:
                job.state = JobState.HELD
        return jobs


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
