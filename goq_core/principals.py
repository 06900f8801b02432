"""Who sends a request: a principal is a role, a name, when its credential was issued and when it
expires; a Secret is the key a sender seals with and the principal it stands for. Pure data and
its wire text; the rules of what each role may do are kernel/access.py.

The cluster's root secret (the key `goq init` makes) acts as ROOT, an admin named "admin", so a
single-key cluster keeps working as before. Credentials (goq_core/credentials.py) carry others.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN = "admin"  # everything
SUBMIT = "submit"  # submit, and see, wait on, hold and cancel its own jobs
WORK = "work"  # take work and report it, as the worker its name says
ROLES = (ADMIN, SUBMIT, WORK)
MAX_NAME = 64
# a principal's name: letters, digits and these; no ":" (the wire text's separator, and the
# separator of a work credential's worker names: node17 may run workers node17 and node17:gpu0)
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    name: str
    issued_ns: int = 0  # when its credential was issued (revocation refuses those before)
    expires_ns: int = 0  # 0: never

    def text(self) -> str:
        """What travels in a frame's header (authenticated, not secret)."""
        return f"{self.role}:{self.name}:{self.issued_ns}:{self.expires_ns}"

    def __str__(self) -> str:
        return f"{self.role}: {self.name}"

    def may_act_as_worker(self, workerid: str) -> bool:
        """A work credential acts only as the workers its name names: NAME or NAME:anything."""
        if self.role != WORK:
            return self.role == ADMIN
        name = self.name
        return workerid == name or (workerid.startswith(name) and workerid[len(name)] == ":")


ROOT = Principal(ADMIN, "admin")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a principal, or None."""
    if not name:
        return "a credential needs a name"
    if len(name) > MAX_NAME:
        return f"a credential's name has at most {MAX_NAME} characters"
    bad = sorted(set(name) - NAME_CHARS)
    if bad:
        return f"a credential's name may hold letters, digits and . _ @ - only, not {bad[0]!r}"
    return None


def parse(text: str) -> Principal | None:
    """The principal a frame's header names, or None if the text is not one."""
    parts = text.split(":")
    if len(parts) != 4:
        return None
    role, name, issued, expires = parts
    if role not in ROLES or name_problem(name) is not None:
        return None
    times = []
    for digits in (issued, expires):
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
            return None
        times.append(int(digits))
    if max(times) >= 1 << 63:  # ns since the epoch, as int64
        return None
    return Principal(role, name, times[0], times[1])


@dataclass(frozen=True, slots=True)
class Secret:
    """What a command seals its messages with: a key, and the principal it stands for (None:
    the cluster's root secret itself, which acts as ROOT)."""

    key: bytes
    principal: Principal | None = None

    @property
    def acting(self) -> Principal:
        return self.principal if self.principal is not None else ROOT
