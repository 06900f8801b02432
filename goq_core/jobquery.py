"""A query for `goq jobs` (the JOBS request): which states, which name, whose, since when, how
many.
The client writes it as JSON text; the server's front door reads it back with `parse`.

Rules: states are names of goq_core.records.STATES (default: all but none ended longer ago than
`since_ns`); limit 1 to MAX_LIST; `before` pages backwards (ids below it); `owner` keeps the
jobs of one principal (its name: `goq jobs --mine`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MAX_LIST = 10_000  # jobs in one JOBS reply
DEFAULT_LIMIT = 50
_STATES = ("waiting", "blocked", "held", "running", "finished", "failed", "cancelled", "timeout")
ENDED = frozenset({"finished", "failed", "cancelled", "timeout"})


@dataclass(frozen=True, slots=True)
class JobQuery:
    states: frozenset[str] = field(default_factory=lambda: frozenset(_STATES))
    name: str | None = None
    since_ns: int = 0  # ended jobs only if they ended at or after this (0: any time)
    before: int | None = None  # only job ids below this
    limit: int = DEFAULT_LIMIT
    owner: str | None = None  # only the jobs this principal submitted (None: anyone's)

    def to_text(self) -> str:
        return json.dumps(
            {
                "states": sorted(self.states),
                "name": self.name,
                "since_ns": self.since_ns,
                "before": self.before,
                "limit": self.limit,
                "owner": self.owner,
            },
            separators=(",", ":"),
        )

    @property
    def live_states(self) -> frozenset[str]:
        return self.states - ENDED

    @property
    def ended_states(self) -> frozenset[str]:
        return self.states & ENDED


def parse(text: str) -> JobQuery:
    """The query `text` holds; ValueError (one line) when it is not one."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("a JOBS query that is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("a JOBS query that is not a JSON object")
    states = doc.get("states", list(_STATES))
    if not isinstance(states, list) or not all(s in _STATES for s in states):
        raise ValueError(f"JOBS states must be among {', '.join(_STATES)}")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name or len(name) > 1024):
        raise ValueError("a JOBS name must be text of 1 to 1024 characters")
    owner = doc.get("owner")
    if owner is not None and (not isinstance(owner, str) or not owner or len(owner) > 1024):
        raise ValueError("a JOBS owner must be text of 1 to 1024 characters")
    since, before, limit = doc.get("since_ns", 0), doc.get("before"), doc.get("limit", 50)
    if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since < 1 << 63:
        raise ValueError("JOBS since_ns must be a number of ns since the epoch")
    if before is not None and (not isinstance(before, int) or not 1 <= before < 1 << 63):
        raise ValueError("JOBS before must be a job id")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
        raise ValueError(f"JOBS limit must be 1 to {MAX_LIST}")
    return JobQuery(frozenset(states), name, since, before, limit, owner)
