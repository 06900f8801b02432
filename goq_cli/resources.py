"""The resource options of `goq sub` and `goq work` (design.md §7, Resources and Order): click
parameter types that turn what was typed into checked amounts, with one clear line for bad
input, and what a job asks for as the Job fields that carry it.

Sizes (`--mem`), named resources (`--resource NAME=N`) and GPU lists are read by
goq_core.roles.offer (parse_size, parse_resource, parse_gpus), so a worker and a submitter
understand them alike; this module adds the bounds a request must keep (an amount fits in 31
bits, a priority in 32) and the names a resource cannot take.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import click

from goq_core.errors import GoqError
from goq_core.limits import MAX_AMOUNT, MAX_INT
from goq_core.messages import Job

MAX_JOB_MEM = 1 << 62  # bytes: the most memory a job may ask (the server's front door says so)
MIN_PRIORITY = -(1 << 31)
MAX_PRIORITY = (1 << 31) - 1
BUILTIN = ("cpus", "gpus", "mem")  # resource names that have their own option
AUTO = "auto"
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only: int() takes "١" and "1_0" too
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")


class Amount(click.ParamType):
    """A whole number from `minimum` to `maximum`; with `auto`, also the word "auto"."""

    def __init__(self, minimum: int, maximum: int = MAX_AMOUNT, auto: bool = False) -> None:
        self.minimum, self.maximum, self.auto = minimum, maximum, auto
        self.name = "N|auto" if auto else "N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            text = str(value).strip()
            if self.auto and text.lower() == AUTO:
                return AUTO
            if not _INTEGER.fullmatch(text):
                if re.fullmatch(r"[+-]?[0-9]+", text):  # more digits than any bound
                    self.fail(f"{text[:20]}... is out of range", param, ctx)
                also = ' or "auto"' if self.auto else ""
                self.fail(f"{value!r} is not a whole number{also}", param, ctx)
            n = int(text)
        if n < self.minimum:
            self.fail(f"{n} is too small: at least {self.minimum:,}", param, ctx)
        if n > self.maximum:
            self.fail(f"{n} is too large: at most {self.maximum:,}", param, ctx)
        return n


class Size(click.ParamType):
    """A memory size in bytes: 512M, 4G, 1.5T (binary units), or bytes; with `auto`, "auto"."""

    def __init__(self, auto: bool = False, maximum: int = MAX_INT) -> None:
        self.auto, self.maximum = auto, maximum
        self.name = "SIZE|auto" if auto else "SIZE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if self.auto and text.lower() == AUTO:
            return AUTO
        from goq_core.roles.offer import parse_size

        try:
            size = parse_size(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        if size > self.maximum:
            self.fail(f"{value!r} is too large: at most {self.maximum:,} bytes", param, ctx)
        return size


class Resource(click.ParamType):
    """A named counter, NAME=N with N from 1 to MAX_AMOUNT; returns (name, N)."""

    name = "NAME=N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, tuple):
            return value
        from goq_core.roles.offer import parse_resource

        try:
            name, n = parse_resource(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if name in BUILTIN:
            self.fail(f"{name} has its own option: use --{name}", param, ctx)
        if n < 1:
            self.fail(f"{name}={n}: the amount must be at least 1", param, ctx)
        if n > MAX_AMOUNT:
            self.fail(f"{name}={n} is too large: at most {MAX_AMOUNT:,}", param, ctx)
        return name, n


class Priority(Amount):
    def __init__(self) -> None:
        super().__init__(MIN_PRIORITY, MAX_PRIORITY)
        self.name = "P"


def resource_dict(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The --resource options as a dict; UsageError if a name is given twice."""
    out: dict[str, int] = {}
    for name, n in pairs:
        if name in out:
            raise click.UsageError(f"--resource {name} is given twice")
        out[name] = n
    return out


def check_worker_name(name: str | None) -> str | None:
    """A worker name as given to `goq work --name` (None: the default); UsageError if it is not
    1 to 128 of letters, digits and . _ : @ + - (starting with a letter or digit)."""
    if name is not None and not _NAME.fullmatch(name):
        raise click.UsageError(
            f"--name {name!r}: a worker name is 1 to 128 letters, digits and . _ : @ + -, "
            "starting with a letter or digit"
        )
    return name


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


def build_offer(
    cpus: int | str, gpus: str | None, mem: int | str | None, resources: dict[str, int]
) -> Job:
    """What `goq work` offers, from its options: "auto" detects this host's cpus or memory,
    `gpus` is "auto", a count or a list of ids (None: no GPUs), as goq_core.roles.offer reads
    them. UsageError for a bad --gpus; GoqError for an offer make_offer refuses."""
    from goq_core.roles import offer

    n_cpus = offer.detect_cpus() if cpus == AUTO else int(cpus)
    size = offer.detect_mem() if mem == AUTO else int(mem or 0)
    gpu_ids: list[str] = []
    if gpus is not None:
        try:
            gpu_ids = offer.parse_gpus(gpus)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--gpus'") from None
    try:
        return offer.make_offer(n_cpus, size, gpu_ids, resources)
    except ValueError as exc:
        raise GoqError(f"cannot offer this: {exc}") from None


def format_offer(offer: Job, bind: bool = False) -> str:
    """An offer in one line: "cpus=4 mem=16G gpus=0,1 license=2" (only what it has)."""
    from goq_cli.report import format_size

    parts = [f"cpus={offer.cpus}" + (" (bound)" if bind else "")]
    if offer.mem:
        parts.append(f"mem={format_size(offer.mem)}")
    if offer.gpu_ids:
        parts.append(f"gpus={offer.gpu_ids}")
    parts += [f"{name}={n}" for name, n in sorted(offer.resources.items())]
    return " ".join(parts)
