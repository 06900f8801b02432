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
    ordered = sorted(set(ids))
    text = format_ascending(ordered)
    if text is None:
        raise ValueError(f"job id {ordered[0]!r} is not a positive whole number")
    return text


def format_ascending(ids: list[int]) -> str | None:
    """The compact text of ids already strictly ascending (as the kernel keeps a job's
    dependencies): one pass, no sort; None when they are not so, or not all whole numbers >= 1
    (a bool or 3.0 is not)."""
    if not ids:
        return ""
    first = prev = ids[0]
    if type(first) is not int or first < 1:
        return None
    ranges: list[str] = []
    add = ranges.append
    for i in ids[1:]:
        if type(i) is not int:
            return None
        if i != prev + 1:
            if i <= prev:
                return None
            add(f"{first}-{prev}" if first != prev else str(first))
            first = i
        prev = i
    add(f"{first}-{prev}" if first != prev else str(first))
    return ",".join(ranges)


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


def _id(word: str, part: str, limit: int) -> int:
    if not word.isdigit() or not word.isascii():
        raise ValueError(f"{part!r} is not a job id or a range of them (like 12 or 12-15)")
    n = int(word)
    if not 1 <= n <= limit:
        raise ValueError(f"job id {n} is out of range (job ids start at 1)")
    return n
