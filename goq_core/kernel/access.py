"""Who may do what (design.md §7, Roles): every request is checked against the role of the
credential that sent it before the kernel acts on it; a refusal is one line naming both.

Rules:
- admin: every request (the cluster's root secret acts as the admin named "admin").
- submit: SUBMIT, and the reads (STAT, WAIT, SELECT, JOBS, SHOW, WORKERS); CANCEL, HOLD and
  RELEASE change only the jobs it submitted (others' are named and left alone).
- work: REQUEST_WORK, HEARTBEAT, OUTPUT, RESULT, and only as a worker its name names (NAME, or
  NAME:anything): claiming another worker's name is refused. The jobs it reports must be runs
  the kernel gave that worker (anything else is counted stale, as before).
- A credential past its expiry, or issued before its name was revoked, is refused whatever it
  asks; revocations are durable (counters `revoked/NAME` = when) and take effect at once: the
  requests its workers have held at the server are answered DENIED and their runs requeued,
  and a worker whose credential expires while it waits gets DENIED instead of a job.
- A job's environment goes only to the worker that runs it, and is shown only to its owner
  and admins.
"""

from __future__ import annotations

from goq_core.messages import Job, Kind, Message
from goq_core.principals import ADMIN, SUBMIT, WORK, Principal

REVOKED = "revoked/"  # durable counter name prefix: revoked/NAME = ns it was revoked at

_READS = frozenset({Kind.STAT, Kind.WAIT, Kind.SELECT, Kind.JOBS, Kind.SHOW, Kind.WORKERS})
_OWN_JOBS = frozenset({Kind.CANCEL, Kind.HOLD, Kind.RELEASE})
ALLOWED: dict[str, frozenset[Kind]] = {
    SUBMIT: _READS | _OWN_JOBS | {Kind.SUBMIT},
    WORK: frozenset({Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.OUTPUT, Kind.RESULT}),
}
_WORKER_KINDS = ALLOWED[WORK]

_WHAT = {
    Kind.SUBMIT: "submit jobs",
    Kind.REQUEST_WORK: "take work",
    Kind.HEARTBEAT: "report as a worker",
    Kind.OUTPUT: "report job output",
    Kind.RESULT: "report job results",
    Kind.CANCEL: "cancel jobs",
    Kind.WAIT: "wait on jobs",
    Kind.STAT: "read the server's state",
    Kind.SHUTDOWN: "shut the server down",
    Kind.IMMOLATE: "stop the workers",
    Kind.DRAIN: "drain workers",
    Kind.RESUME: "resume workers",
    Kind.WORKERS: "list the workers",
    Kind.HOLD: "hold jobs",
    Kind.RELEASE: "release jobs",
    Kind.SELECT: "look jobs up",
    Kind.JOBS: "list jobs",
    Kind.SHOW: "show jobs",
    Kind.FORGET: "forget jobs",
    Kind.REVOKE: "revoke credentials",
}


def refusal(principal: Principal, msg: Message, now_ns: int, revoked: dict[str, int]) -> str | None:
    """Why `principal` may not make request `msg` now, or None when it may."""
    why = lapsed(principal, now_ns, revoked)
    if why is not None:
        return why
    role = principal.role
    if role == ADMIN:
        return None
    if msg.kind not in ALLOWED[role]:
        return may_not(principal, _WHAT.get(msg.kind, msg.kind.name))
    if msg.kind in _WORKER_KINDS and not principal.may_act_as_worker(msg.workerid):
        return (
            f"this credential ({principal}) may act only as worker {principal.name!r} "
            f"(or {principal.name}:SUFFIX), not as {msg.workerid!r}"
        )
    return None


def may_not(principal: Principal, what: str) -> str:
    """The one line a refusal says: "this credential (submit: alice) may not cancel job 3..."."""
    return f"this credential ({principal}) may not {what}"


def lapsed(principal: Principal, now_ns: int, revoked: dict[str, int]) -> str | None:
    """Why `principal`'s credential no longer counts (expired, or revoked), or None. Checked on
    every request, and on a worker's held request whenever a job could go to it."""
    if principal.expires_ns and now_ns >= principal.expires_ns:
        return (
            f"this credential ({principal}) expired at {utc_text(principal.expires_ns)}: "
            "ask an admin for a new one (goq cred issue)"
        )
    at = revoked.get(principal.name)
    if at is not None and principal.issued_ns <= at:
        return f"this credential ({principal}) was revoked at {utc_text(at)}"
    return None


def may_change(principal: Principal, job: Job) -> bool:
    """Whether `principal` may cancel, hold or release `job`: its owner, or an admin."""
    return principal.role == ADMIN or job.owner == principal.name


def may_see_env(principal: Principal, job: Job) -> bool:
    """Whether `principal` may see `job`'s environment (SHOW): its owner, or an admin."""
    return principal.role == ADMIN or job.owner == principal.name


def utc_text(ns: int) -> str:
    """`ns` since the epoch as an RFC 3339 UTC time to the second (pure: no datetime here)."""
    secs = ns // 1_000_000_000
    days, rest = divmod(secs, 86400)
    # days since 1970-01-01 to a civil date (the proleptic Gregorian calendar)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{h:02d}:{m:02d}:{s:02d}Z"
