"""Sets of job ids as compact text: "1-5,8,10-12". One submission of an array, or a fan-in
on one, names thousands of consecutive ids; this form carries them in a few bytes.

Rules: ranges are "A" or "A-B" with 1 <= A <= B, separated by commas, no spaces; `parse`
accepts them in any order and with overlaps, `format` writes the sorted, merged form.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Range = tuple[int, int]  # first, last (inclusive)


def format_ids(ids: Iterable[int]) -> str:
    """The compact text of a set of positive ids (sorted, merged)."""
    return format_ranges(_runs(sorted(set(ids))))


def format_ranges(ranges: Iterable[Range]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in merge(ranges))


def parse(text: str, limit: int = 1 << 63) -> list[Range]:
    """The ranges of `text`, merged and sorted; ValueError (one line, naming the part) for
    anything else: an empty part, a non-number, an id below 1 or above `limit`, B < A."""
    if not text:
        return []
    ranges: list[Range] = []
    for part in text.split(","):
        first, sep, last = part.partition("-")
        a = _id(first, part, limit)
        b = _id(last, part, limit) if sep else a
        if b < a:
            raise ValueError(f"{part!r} is not a range of job ids (it ends before it starts)")
        ranges.append((a, b))
    return merge(ranges)


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping and adjacent ranges joined."""
    merged: list[Range] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def count(ranges: Iterable[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def ids(ranges: Iterable[Range]) -> Iterator[int]:
    for a, b in ranges:
        yield from range(a, b + 1)


def _runs(sorted_ids: list[int]) -> Iterator[Range]:
    start = prev = None
    for i in sorted_ids:
        if i < 1:
            raise ValueError(f"job id {i} is not positive")
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            yield start, prev  # type: ignore[misc]
        start = prev = i
    if start is not None:
        yield start, prev  # type: ignore[misc]


def _id(word: str, part: str, limit: int) -> int:
    if not word.isdigit() or not word.isascii():
        raise ValueError(f"{part!r} is not a job id or a range of them (like 12 or 12-15)")
    n = int(word)
    if not 1 <= n <= limit:
        raise ValueError(f"job id {n} is out of range (job ids start at 1)")
    return n
