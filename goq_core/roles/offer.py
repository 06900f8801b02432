"""What a worker offers (design.md §7, Resources): parsing `goq work` and `goq sub` amounts, and
finding what this host has when asked for `auto`.

Pure functions with injectable inputs (the environment, the command runner, the meminfo path),
so that tests need no real GPU. Every parse error is a ValueError whose text is one clear line
meant for the user (the CLI prints it as it is).

GPU ids are what a job is given as `CUDA_VISIBLE_DEVICES`: a job's environment is its
submitter's, not the worker's, so the ids must name devices as seen with no
`CUDA_VISIBLE_DEVICES` at all: physical indices ("0", "3"), or a MIG instance's UUID where the
worker's `CUDA_VISIBLE_DEVICES` names one. A worker's own `CUDA_VISIBLE_DEVICES` (indices or
UUIDs) only limits which devices `auto` offers.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation

from goq_core.messages import Job

MAX_SIZE = (1 << 63) - 1  # bytes: what an int64 field carries
MAX_COUNT = (1 << 31) - 1  # cpus, gpus and named counters
MAX_GPUS = 1024  # `--gpus N` makes N ids: keep that list sane
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader")
NVIDIA_SMI_TIMEOUT = 10.0  # seconds

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)\s*([KMGT]?)(I?B)?\s*", re.I)
_RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_GPU_ID = re.compile(r"[0-9]+|(?:GPU|MIG)-[A-Za-z0-9_/:.-]+")
_SIZE_HELP = "use a number of bytes with an optional unit K, M, G or T (1K = 1024), e.g. 512M or 4G"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def parse_size(text: str) -> int:
    """A size in bytes from "1024", "512M", "4G", "1.5T", "4GB", "4GiB" (units K, M, G, T are
    binary and case-insensitive; a trailing "B" or "iB" is allowed). Fractions of a unit are
    rounded down to whole bytes. ValueError for anything else, a negative size, or one of
    2^63 bytes or more."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad size {text!r}: {_SIZE_HELP}")
    number, unit, suffix = match.groups()
    if suffix and suffix.upper() == "IB" and not unit:
        raise ValueError(f"bad size {text!r}: {_SIZE_HELP}")
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"bad size {text!r}: {_SIZE_HELP}") from None
    if value < 0:
        raise ValueError(f"bad size {text!r}: a size cannot be negative")
    size = int(value * _UNITS[unit.upper()])
    if size > MAX_SIZE:
        raise ValueError(f"bad size {text!r}: larger than the largest size, 2^63-1 bytes")
    return size


def parse_count(text: str, what: str = "count", minimum: int = 0) -> int:
    """A whole number from `minimum` to 2^31-1 (cpus, gpus, a counter's amount); ValueError
    naming `what` otherwise."""
    value = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise ValueError(f"bad {what} {text!r}: give a whole number")
    number = int(value)
    if number < minimum:
        raise ValueError(f"bad {what} {text!r}: must be at least {minimum}")
    if number > MAX_COUNT:
        raise ValueError(f"bad {what} {text!r}: must be at most {MAX_COUNT} (2^31-1)")
    return number


def parse_resource(text: str) -> tuple[str, int]:
    """A named counter "NAME=N" (e.g. "license=4") as (name, amount). NAME starts with a letter
    or "_" and has letters, digits, "_", "." or "-"; N is a whole number from 0 to 2^31-1.
    ValueError otherwise ("x", "x=", "=3", "x=-1", "x=1.5")."""
    name, sep, amount = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"bad resource {text!r}: write NAME=N, e.g. license=4")
    if not _RESOURCE_NAME.fullmatch(name):
        raise ValueError(
            f"bad resource {text!r}: the name must start with a letter or '_' and have only "
            "letters, digits, '_', '.' or '-' (e.g. license=4)"
        )
    if not amount.strip():
        raise ValueError(f"bad resource {text!r}: say how many after '=', e.g. {name}=4")
    try:
        return name, parse_count(amount, f"amount of {name}")
    except ValueError as exc:
        raise ValueError(f"bad resource {text!r}: {exc}") from None


def parse_resources(texts: Iterable[str]) -> dict[str, int]:
    """Several "NAME=N" as a dict; ValueError for a bad one or a name given twice."""
    resources: dict[str, int] = {}
    for text in texts:
        name, amount = parse_resource(text)
        if name in resources:
            raise ValueError(f"bad resource {text!r}: {name} is given twice")
        resources[name] = amount
    return resources


# ------------------------------------------------------------------------------ detection


def detect_cpus() -> int:
    """How many cpus this process may run on (its CPU affinity; at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def detect_mem(meminfo: str = "/proc/meminfo") -> int:
    """This host's memory in bytes (MemTotal of /proc/meminfo); 0 when it cannot be read."""
    try:
        with open(meminfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name == "MemTotal":
                    fields = rest.split()
                    unit = fields[1].lower() if len(fields) > 1 else "b"
                    scale = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}.get(unit, 0)
                    return int(fields[0]) * scale
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def detect_gpus(env: Mapping[str, str] = os.environ, run: Runner = subprocess.run) -> list[str]:
    """The GPU ids this host offers: the devices `nvidia-smi --query-gpu=index,uuid
    --format=csv,noheader` lists (none if it is missing, fails, times out or says something
    unreadable), limited to those `CUDA_VISIBLE_DEVICES` names when it is set (indices, or
    UUIDs or unique UUID prefixes as CUDA takes them; "" or "-1": none). Ids are physical
    indices, in the order given; a MIG UUID in `CUDA_VISIBLE_DEVICES` is kept as it is."""
    devices = _nvidia_smi(run)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [index for index, _ in devices]
    ids: list[str] = []
    for entry in (e.strip() for e in visible.split(",")):
        if not entry:
            continue
        found = _match_device(entry, devices)
        if found is None:
            break  # CUDA ignores an invalid entry and everything after it
        if found not in ids:
            ids.append(found)
    return ids


def _nvidia_smi(run: Runner) -> list[tuple[str, str]]:
    """(index, uuid) of every GPU nvidia-smi lists; [] when it cannot tell."""
    try:
        done = run(
            list(NVIDIA_SMI),
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    if done.returncode != 0 or not isinstance(done.stdout, str):
        return []
    devices: list[tuple[str, str]] = []
    for line in done.stdout.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1]:
            return []  # not what we asked for: trust none of it
        devices.append((str(int(fields[0])), fields[1]))
    return devices


def _match_device(entry: str, devices: list[tuple[str, str]]) -> str | None:
    if entry.upper().startswith("MIG-"):
        return entry  # a MIG instance: only its UUID names it
    if re.fullmatch(r"[0-9]+", entry):
        index = str(int(entry))
        return index if any(index == i for i, _ in devices) else None
    wanted = entry if entry.upper().startswith("GPU-") else f"GPU-{entry}"
    hits = [i for i, uuid in devices if uuid.upper().startswith(wanted.upper())]
    return hits[0] if len(hits) == 1 else None


def parse_cpus(text: str) -> int:
    """`--cpus`: "auto" (this process's CPU affinity) or a whole number from 1 to 2^31-1."""
    if text.strip().lower() == "auto":
        return detect_cpus()
    return parse_count(text, "cpu count", minimum=1)


def parse_mem(text: str, meminfo: str = "/proc/meminfo") -> int:
    """`--mem`: "auto" (this host's MemTotal) or a size (see parse_size)."""
    if text.strip().lower() == "auto":
        return detect_mem(meminfo)
    return parse_size(text)


def parse_gpus(
    text: str, env: Mapping[str, str] = os.environ, run: Runner = subprocess.run
) -> list[str]:
    """`--gpus`: "auto" (see detect_gpus), "N" (indices 0..N-1; "0" offers none) or a list of
    ids "0,2,5" (indices or GPU-/MIG- UUIDs; a single id is written with a comma: "3,").
    Returns the ids; ValueError for anything else, a negative N or an id given twice."""
    value = text.strip()
    if value.lower() == "auto":
        return detect_gpus(env, run)
    if "," not in value:
        count = parse_count(value, "GPU count")
        if count > MAX_GPUS:
            raise ValueError(f"bad GPU count {text!r}: at most {MAX_GPUS}")
        return [str(i) for i in range(count)]
    parts = value.split(",")
    if not parts[-1].strip():
        parts.pop()  # "3,": one id
    ids: list[str] = []
    for part in parts:
        gpu = part.strip()
        if not gpu:
            raise ValueError(f"bad GPU list {text!r}: an empty id")
        if not _GPU_ID.fullmatch(gpu):
            raise ValueError(
                f"bad GPU list {text!r}: {gpu!r} is not a device index or a GPU-/MIG- UUID"
            )
        if gpu.isdigit():
            gpu = str(int(gpu))
        if gpu in ids:
            raise ValueError(f"bad GPU list {text!r}: {gpu} is given twice")
        ids.append(gpu)
    if len(ids) > MAX_GPUS:
        raise ValueError(f"bad GPU list {text!r}: at most {MAX_GPUS} ids")
    return ids


def make_offer(
    cpus: int = 1,
    mem: int = 0,
    gpu_ids: Iterable[str] = (),
    resources: Mapping[str, int] | None = None,
    token: str = "",
) -> Job:
    """A worker's offer, as its REQUEST_WORK carries it first in `jobs` (see goq_core.messages):
    jobid 0, what it has in all, and in `workerid` a token unique to this worker process
    (default: a fresh one; the Worker stamps its own). ValueError for impossible amounts."""
    ids = [str(g) for g in gpu_ids]
    if not 1 <= cpus <= MAX_COUNT:
        raise ValueError(f"a worker offers from 1 to {MAX_COUNT} cpus, not {cpus}")
    if not 0 <= mem <= MAX_SIZE:
        raise ValueError(f"a worker's memory is from 0 to 2^63-1 bytes, not {mem}")
    if len(set(ids)) != len(ids) or any(not g or "," in g for g in ids):
        raise ValueError(f"bad GPU ids {ids!r}: each once, none empty, none with a comma")
    counters = dict(resources or {})
    for name, amount in counters.items():
        if not _RESOURCE_NAME.fullmatch(name) or not 0 <= amount <= MAX_COUNT:
            raise ValueError(f"bad resource {name}={amount}")
    return Job(
        jobid=0,
        cpus=cpus,
        mem=mem,
        gpus=len(ids),
        gpu_ids=",".join(ids),
        resources=counters,
        workerid=token or new_token(),
    )


def new_token() -> str:
    """A token unique to this worker process: its pid and 8 random hex digits."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"
