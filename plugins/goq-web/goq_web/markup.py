"""HTML building blocks for the pages: escaping any text (job commands, names and environments
may hold markup and undecodable bytes) and the page layout every page shares.

Rule: every value reaches a page through esc(); undecodable bytes show as
\\xNN, as in the CLI.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

REFRESH_S = 5  # pages reload themselves this often (meta refresh: no JavaScript)
_SURROGATE = re.compile("[\ud800-\udfff]")

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header b{font-size:1.15em}
main{padding:1em 1.2em;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:.4em 0 1.2em;width:100%}
th,td{border-bottom:1px solid #e2e5e9;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}table.narrow{width:auto;min-width:28em}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin-bottom:1em}
.card{background:#fff;border:1px solid #e2e5e9;border-radius:6px;padding:.5em 1em;min-width:7em}
.card b{display:block;font-size:1.7em}
.s-failed,.s-timeout{color:#b3261e;font-weight:600}.s-finished{color:#1b7f3b}
.s-running,.s-busy{color:#0b57d0}.s-cancelled,.s-draining,.s-drained{color:#8a5a00}
.err{background:#fde7e9;border:1px solid #b3261e;padding:.6em 1em;border-radius:6px}
pre{background:#fff;border:1px solid #e2e5e9;padding:.6em;overflow:auto;max-height:40em}
code{font-size:.95em}.muted{color:#68707a}
"""


def visible(text: str) -> str:
    """`text` with each lone surrogate (an undecodable byte, U+DC80-U+DCFF) as \\xNN and any
    other surrogate as \\uNNNN, so that it can be sent as UTF-8."""

    def show(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(show, text)


def esc(value: object) -> str:
    """Any value as HTML text (None as an en dash)."""
    if value is None:
        return "&ndash;"
    return html.escape(visible(str(value)), quote=True)


def state(value: object) -> str:
    """A job's or a worker's state, coloured by class."""
    return f'<span class="s-{esc(value)}">{esc(value)}</span>'


def table(
    head: Iterable[str],
    rows: Iterable[Iterable[str]],
    numeric: set[int] = frozenset(),
    narrow: bool = False,
) -> str:
    """A table; `head` is escaped here, each cell of `rows` must be HTML already."""
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    css = ' class="narrow"' if narrow else ""
    return f"<table{css}><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str, server: str, refresh: bool = True) -> bytes:
    """A whole page: the navigation, `title` (escaped here) and `body` (HTML already)."""
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    nav = "".join(
        f'<a href="{href}">{name}</a>'
        for href, name in (
            ("/", "Overview"),
            ("/workers", "Workers"),
            ("/jobs", "Jobs"),
            ("/metrics", "Metrics"),
            ("/api/status", "API"),
        )
    )
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"{meta}<title>{esc(title)} &middot; goq</title><style>{STYLE}</style></head>"
        f"<body><header><b>goq</b>{nav}<span class=muted>{esc(server)}</span></header>"
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return text.encode("utf-8")
