"""The `goq` console script: the fast path for a plain `goq sub`, else the click CLI (always
for shell completion, which click does).

Kept apart from goq_cli.main so that importing it costs nothing but this file.
"""

from __future__ import annotations

import codecs
import os
import sys

ESCAPE = "goq.escape"  # the error handler goq's stdout and stderr use


def escape_unencodable(exc: UnicodeError) -> tuple[str, int]:
    """Error handler for printing text the stream's encoding cannot show: a lone surrogate
    standing for an undecodable byte (surrogateescape, as in argv: U+DC80-U+DCFF) prints as
    \\xNN, that byte; anything else as backslashreplace prints it (\\uNNNN)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start : exc.end]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(out), exc.end


codecs.register_error(ESCAPE, escape_unencodable)


def escape_unencodable_output() -> None:
    """Make stdout and stderr print what their encoding cannot (job commands, paths and
    environments with undecodable bytes) escaped, with the "goq.escape" error handler,
    instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=ESCAPE)


def main() -> None:
    """Run goq, then leave without the interpreter's clean-up (about 12 ms of a 50 ms `goq
    sub`): every command has closed what it opened and flushed what it wrote by then."""
    code = 0
    try:
        escape_unencodable_output()
        from goq_cli.fastpath import try_fast_path

        # shell completion (`_GOQ_COMPLETE=bash_complete goq`, README) is click's: never the
        # fast path, whatever the arguments
        completing = "_GOQ_COMPLETE" in os.environ
        if completing or not try_fast_path(sys.argv[1:]):
            from goq_cli.main import main as click_main

            click_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write(f"{exc.code}\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`goq stat | head -1`): nothing to do
            code = code or 1
    os._exit(code)
