"""The resource options of `goq sub` and `goq work` (design.md §7, Resources and Order): click
parameter types over goq_core.options, which checks what was typed (one clear line for bad
input) and holds what a job asks for as the Job fields that carry it (Request); and what
`goq work` offers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import click

from goq_core.errors import GoqError
from goq_core.limits import MAX_AMOUNT, MAX_INT
from goq_core.messages import Job
from goq_core.options import (  # noqa: F401 (re-exported: goq_cli.main imports them from here)
    AUTO,
    BUILTIN,
    MAX_JOB_MEM,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Request,
    parse_amount,
    parse_mem,
    parse_named_resource,
)
from goq_core.options import resource_dict as _resource_dict

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")


class Amount(click.ParamType):
    """A whole number from `minimum` to `maximum`; with `auto`, also the word "auto"
    (goq_core.options.parse_amount)."""

    def __init__(self, minimum: int, maximum: int = MAX_AMOUNT, auto: bool = False) -> None:
        self.minimum, self.maximum, self.auto = minimum, maximum, auto
        self.name = "N|auto" if auto else "N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        try:
            return parse_amount(value, self.minimum, self.maximum, self.auto)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Size(click.ParamType):
    """A memory size in bytes: 512M, 4G, 1.5T (binary units), or bytes; with `auto`, "auto"
    (goq_core.options.parse_mem)."""

    def __init__(self, auto: bool = False, maximum: int = MAX_INT) -> None:
        self.auto, self.maximum = auto, maximum
        self.name = "SIZE|auto" if auto else "SIZE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        try:
            return parse_mem(value, self.auto, self.maximum)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Resource(click.ParamType):
    """A named counter, NAME=N with N from 1 to MAX_AMOUNT; returns (name, N)
    (goq_core.options.parse_named_resource)."""

    name = "NAME=N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_named_resource(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Priority(Amount):
    def __init__(self) -> None:
        super().__init__(MIN_PRIORITY, MAX_PRIORITY)
        self.name = "P"


def resource_dict(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The --resource options as a dict; UsageError if a name is given twice."""
    try:
        return _resource_dict(pairs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def check_worker_name(name: str | None) -> str | None:
    """A worker name as given to `goq work --name` (None: the default); UsageError if it is not
    1 to 128 of letters, digits and . _ : @ + - (starting with a letter or digit)."""
    if name is not None and not _NAME.fullmatch(name):
        raise click.UsageError(
            f"--name {name!r}: a worker name is 1 to 128 letters, digits and . _ : @ + -, "
            "starting with a letter or digit"
        )
    return name


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
