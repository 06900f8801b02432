"""The options a job is submitted with, checked without click: parsers raising ValueError with
one line, and what they set on a Job (Request, Workflow), for `goq sub` and the Python API alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from goq_core import idranges
from goq_core.limits import MAX_AMOUNT, MAX_DEPENDENCIES, MAX_INT
from goq_core.messages import Job, JobState

MAX_JOB_MEM = 1 << 62  # bytes: the most memory a job may ask (the server's front door says so)
MIN_PRIORITY = -(1 << 31)
MAX_PRIORITY = (1 << 31) - 1
BUILTIN = ("cpus", "gpus", "mem")  # resource names that have their own option
AUTO = "auto"
MAX_DURATION_S = 365 * 86400  # the longest --time and --retry-delay (a year)
MAX_RETRIES = 1000
MAX_NAME = 200  # characters in a job name
# the states `goq jobs --state` takes (goq_core.records.STATES, not imported: that module is
# more than `goq` needs to start), and `all` for every one
STATES = ("waiting", "blocked", "held", "running", "finished", "failed", "cancelled", "timeout")
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only: int() takes "١" and "1_0" too
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN = re.compile(_NUMBER, re.ASCII)
_WITH_UNITS = re.compile(rf"(?:{_NUMBER}[smhd])+", re.ASCII)
_PART = re.compile(rf"({_NUMBER})([smhd])", re.ASCII)
_CLOCK = re.compile(r"([0-9]+):([0-5]?[0-9])(?::([0-5]?[0-9]))?", re.ASCII)
_DURATION_HELP = "use e.g. 90s, 10m, 2h, 1d, 1h30m, 1:30:00 (H:MM:SS), 30:00 (M:SS) or seconds"


# ----------------------------------------------------------------------------- resources


def parse_amount(
    value: object, minimum: int, maximum: int = MAX_AMOUNT, auto: bool = False
) -> int | str:
    """A whole number (an int, or its ASCII digits) from `minimum` to `maximum` (--cpus,
    --gpus); with `auto`, also the word "auto" (returned as AUTO). ValueError (one line)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip()
        if auto and text.lower() == AUTO:
            return AUTO
        if not _INTEGER.fullmatch(text):
            if re.fullmatch(r"[+-]?[0-9]+", text):  # more digits than any bound
                raise ValueError(f"{text[:20]}... is out of range")
            also = ' or "auto"' if auto else ""
            raise ValueError(f"{value!r} is not a whole number{also}")
        n = int(text)
    if n < minimum:
        raise ValueError(f"{n} is too small: at least {minimum:,}")
    if n > maximum:
        raise ValueError(f"{n} is too large: at most {maximum:,}")
    return n


def parse_priority(value: object) -> int:
    """A job's priority (--priority), a whole number that fits in 32 bits. ValueError."""
    return int(parse_amount(value, MIN_PRIORITY, MAX_PRIORITY))


def parse_retries(value: object) -> int:
    """How many times a job is retried (--retries), 0 to MAX_RETRIES. ValueError."""
    return int(parse_amount(value, 0, MAX_RETRIES))


def parse_mem(value: object, auto: bool = False, maximum: int = MAX_INT) -> int | str:
    """A memory size in bytes (--mem): an int, or 512M, 4G, 1.5T (binary units) or bytes as
    goq_core.roles.offer.parse_size reads them, at most `maximum`; with `auto`, also "auto"
    (returned as AUTO). ValueError (one line)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        text = str(value).strip()
        if auto and text.lower() == AUTO:
            return AUTO
        from goq_core.roles.offer import parse_size

        size = parse_size(text)
    if size < 0:
        raise ValueError(f"{value!r} is negative")
    if size > maximum:
        raise ValueError(f"{value!r} is too large: at most {maximum:,} bytes")
    return size


def parse_named_resource(text: str) -> tuple[str, int]:
    """A named counter, NAME=N (--resource), with N from 1 to MAX_AMOUNT and NAME none of
    BUILTIN; returns (name, N). ValueError (one line)."""
    from goq_core.roles.offer import parse_resource

    name, n = parse_resource(text)
    if name in BUILTIN:
        raise ValueError(f"{name} has its own option: use --{name}")
    if n < 1:
        raise ValueError(f"{name}={n}: the amount must be at least 1")
    if n > MAX_AMOUNT:
        raise ValueError(f"{name}={n} is too large: at most {MAX_AMOUNT:,}")
    return name, n


def resource_dict(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Named resources (pairs of parse_named_resource) as a dict; ValueError if a name is
    given twice."""
    out: dict[str, int] = {}
    for name, n in pairs:
        if name in out:
            raise ValueError(f"--resource {name} is given twice")
        out[name] = n
    return out


@dataclass(slots=True)
class Request:
    """What a job asks for, beyond its command: the Job fields that carry it."""

    cpus: int = 1
    mem: int = 0
    gpus: int = 0
    resources: dict[str, int] = field(default_factory=dict)
    priority: int = 0

    def apply(self, jobs: list[Job]) -> list[Job]:
        """Set these amounts on every job (each gets its own resources dict); returns jobs."""
        for job in jobs:
            job.cpus, job.mem, job.gpus = self.cpus, self.mem, self.gpus
            job.resources = dict(self.resources)
            job.priority = self.priority
        return jobs


# ----------------------------------------------------------------------------- workflow


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


def parse_job_id(text: str) -> int:
    """One job id (`goq show 12`). ValueError (one line) for anything else."""
    word = text.strip()
    if not (word.isascii() and word.isdigit()):
        raise ValueError(f"{text!r} is not a job id: give one number, e.g. 12")
    ranges = parse_ids(word)
    return ranges[0][0]


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
        """From the parsed options; ValueError (one line) for a combination that cannot be:
        --retry-delay without --retries, more dependencies than a job may have."""
        if retry_delay_ms is not None and retries is None:
            raise ValueError("--retry-delay needs --retries N (how many times to retry)")
        after_ranges, any_ranges = merge_ids(after), merge_ids(after_any)
        n = idranges.count(after_ranges) + idranges.count(any_ranges)
        if n > MAX_DEPENDENCIES:
            raise ValueError(
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
