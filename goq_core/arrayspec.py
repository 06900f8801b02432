"""Job arrays as text: "START-STOP[:STEP][%MAX]", one job per index START, START+STEP, ... up
to STOP, at most MAX of them running at once. The CLI parses what users type; the server parses
the canonical "START-STOP:STEP" a SUBMIT carries.

Rules: 0 <= START <= STOP, STEP >= 1, MAX >= 1, at most MAX_ARRAY indexes in one array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from goq_core.limits import MAX_AMOUNT, MAX_ARRAY

_SPEC = re.compile(r"(\d+)(?:-(\d+))?(?::(\d+))?(?:%(\d+))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class ArraySpec:
    start: int
    stop: int
    step: int = 1
    max_running: int = 0  # 0: no cap

    def __len__(self) -> int:
        return (self.stop - self.start) // self.step + 1

    def indexes(self) -> range:
        return range(self.start, self.stop + 1, self.step)

    def wire(self) -> str:
        """The canonical form a SUBMIT carries (the cap travels in the job's array_max)."""
        return f"{self.start}-{self.stop}:{self.step}"

    def describe(self) -> str:
        """As a user would type it (for messages)."""
        text = f"{self.start}-{self.stop}" if self.stop != self.start else str(self.start)
        if self.step != 1:
            text += f":{self.step}"
        return text + (f"%{self.max_running}" if self.max_running else "")


def parse_array(text: str) -> ArraySpec:
    """The array `text` describes; ValueError (one line saying what is wrong) otherwise."""
    m = _SPEC.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"--array {text!r}: expected START-STOP[:STEP][%MAX], e.g. 1-100, 0-99:10 or 1-1000%50"
        )
    start = int(m[1])
    stop = int(m[2]) if m[2] is not None else start
    step = int(m[3]) if m[3] is not None else 1
    cap = int(m[4]) if m[4] is not None else 0
    if stop < start:
        raise ValueError(f"--array {text!r}: the range ends ({stop}) before it starts ({start})")
    if step < 1:
        raise ValueError(f"--array {text!r}: the step must be at least 1")
    if m[4] is not None and not 1 <= cap <= MAX_AMOUNT:
        raise ValueError(f"--array {text!r}: %MAX must be between 1 and {MAX_AMOUNT}")
    if stop > MAX_AMOUNT:
        raise ValueError(f"--array {text!r}: indexes go up to {MAX_AMOUNT}")
    spec = ArraySpec(start, stop, step, cap)
    if len(spec) > MAX_ARRAY:
        raise ValueError(
            f"--array {text!r}: {len(spec):,} jobs; one array holds at most {MAX_ARRAY:,}"
        )
    return spec
