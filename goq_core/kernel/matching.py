"""The matching rules: what a worker has, what a job needs, whether one fits the other, which
GPUs a run gets, and why a job that fits no worker waits.

Rules (design.md §7, Resources):
- A worker offers cpus (at least 1), memory in bytes, a list of concrete GPU ids and named
  counters. A job needs cpus (default 1), memory (default 0), a number of GPUs (default 0) and
  amounts of named counters. It fits when every amount it needs is free on the worker; memory
  and counters a worker does not offer are 0 there.
- A run takes the lowest free GPU ids in the order the worker offered them, and gives them back
  when it ends: two runs never hold the same GPU.
- A job that fits no worker ever seen (by its whole offer, not its free part) waits, and says
  which amount no worker has ("needs gpus=4; the largest worker offers 2").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from goq_core.messages import Job


@dataclass(slots=True)
class Capacity:
    """An amount of each resource: a worker's whole offer, or what of it is free now."""

    cpus: int = 1
    mem: int = 0
    gpus: list[str] = field(default_factory=list)  # concrete ids, in the worker's order
    named: dict[str, int] = field(default_factory=dict)

    def copy(self) -> Capacity:
        return Capacity(self.cpus, self.mem, list(self.gpus), dict(self.named))

    def describe(self) -> dict:
        """As the WORKER_LIST document shows it."""
        return {
            "cpus": self.cpus,
            "mem": self.mem,
            "gpus": list(self.gpus),
            "resources": self.named,
        }


Shape = tuple[int, int, int, tuple[tuple[str, int], ...]]


def shape(job: Job) -> Shape:
    """What a job needs, as a hashable key: jobs of one shape fit exactly the same workers."""
    res = job.resources
    return (job.cpus, job.mem, job.gpus, tuple(sorted(res.items())) if res else ())


def offer_of(job: Job | None) -> Capacity:
    """A worker's offer from the Job it sent it in (None: one cpu, nothing else)."""
    if job is None:
        return Capacity()
    gpus = [g for g in job.gpu_ids.split(",") if g] if job.gpu_ids else []
    return Capacity(max(1, job.cpus), max(0, job.mem), gpus, dict(job.resources))


def fits(need: Shape, free: Capacity) -> bool:
    """True when a job of this shape fits in `free`."""
    cpus, mem, gpus, named = need
    if cpus > free.cpus or mem > free.mem or gpus > len(free.gpus):
        return False
    if named:
        have = free.named
        for name, amount in named:
            if amount > have.get(name, 0):
                return False
    return True


def minus(free: Capacity, need: Shape) -> Capacity:
    """What is left of `free` once a job of this shape took its part (GPUs by count)."""
    cpus, mem, gpus, named = need
    left = Capacity(free.cpus - cpus, free.mem - mem, free.gpus[gpus:], dict(free.named))
    for name, amount in named:
        left.named[name] = left.named.get(name, 0) - amount
    return left


def take(job: Job, free: Capacity) -> str:
    """Take the job's part of `free` (which must fit); return the GPU ids it gets."""
    free.cpus -= job.cpus
    free.mem -= job.mem
    ids = ""
    if job.gpus:
        ids = ",".join(free.gpus[: job.gpus])
        del free.gpus[: job.gpus]
    for name, amount in job.resources.items():
        free.named[name] = free.named.get(name, 0) - amount
    return ids


def give_back(job: Job, free: Capacity, offer: Capacity) -> None:
    """Return a run's part to `free` (GPUs back in the offer's order)."""
    free.cpus += job.cpus
    free.mem += job.mem
    if job.gpu_ids:
        order = {g: i for i, g in enumerate(offer.gpus)}
        back = [g for g in job.gpu_ids.split(",") if g in order and g not in free.gpus]
        free.gpus = sorted(free.gpus + back, key=lambda g: order.get(g, len(order)))
    for name, amount in job.resources.items():
        free.named[name] = free.named.get(name, 0) + amount


def free_after(offer: Capacity, runs: list[Job]) -> Capacity:
    """What of `offer` is free while these runs hold their parts (used after a restart)."""
    free = offer.copy()
    for job in runs:
        free.cpus -= job.cpus
        free.mem -= job.mem
        held = set(job.gpu_ids.split(",")) if job.gpu_ids else set()
        free.gpus = [g for g in free.gpus if g not in held]
        for name, amount in job.resources.items():
            free.named[name] = free.named.get(name, 0) - amount
    return free


def describe_need(need: Shape) -> str:
    """A job's request as `goq stat` shows it: only what differs from the default."""
    cpus, mem, gpus, named = need
    parts = [f"cpus={cpus}"] if cpus != 1 else []
    if gpus:
        parts.append(f"gpus={gpus}")
    if mem:
        parts.append(f"mem={_size(mem)}")
    parts += [f"{name}={amount}" for name, amount in named]
    return " ".join(parts)


def why_nowhere(need: Shape, offers: list[Capacity]) -> str | None:
    """Why a job of this shape fits none of these offers (None when one fits, or when no
    worker was ever seen: then it simply waits for one)."""
    if not offers or any(fits(need, o) for o in offers):
        return None
    cpus, mem, gpus, named = need
    if cpus > max(o.cpus for o in offers):
        return f"needs cpus={cpus}; the largest worker offers {max(o.cpus for o in offers)}"
    if gpus > max(len(o.gpus) for o in offers):
        return f"needs gpus={gpus}; the largest worker offers {max(len(o.gpus) for o in offers)}"
    if mem > max(o.mem for o in offers):
        most = max(o.mem for o in offers)
        return f"needs mem={_size(mem)}; the largest worker offers {_size(most)}"
    for name, amount in named:
        most = max(o.named.get(name, 0) for o in offers)
        if amount > most:
            return f"needs {name}={amount}; the largest worker offers {most}"
    return f"needs {describe_need(need)} on one worker; no worker offers all of it"


def _size(n: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(n)
