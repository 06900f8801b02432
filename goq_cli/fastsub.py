"""The fast path of `goq sub`: the common form `goq [--transport/--codec/--cipher X] sub
[--shell] CMD ARGS...` handled without importing click (about 20 ms of a 50 ms budget).

Anything else (`--file`, `--help`, an unknown option, no command) returns False and the click
CLI handles it, so behaviour and messages stay those of goq_cli.main.
"""

from __future__ import annotations

import sys

_GLOBALS = ("--transport", "--codec", "--cipher")


def _globals(args: list[str]) -> tuple[dict[str, str], int] | None:
    """The global options before the command, and where the command is; None if unsure."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name, eq, value = args[i].partition("=")
        if name not in _GLOBALS:
            return None
        if not eq:
            i += 1
            if i >= len(args):
                return None
            value = args[i]
        found[name[2:]] = value
        i += 1
    return found, i


def try_fast_sub(args: list[str]) -> bool:
    """Submit one job if `args` is the simple form; True when handled (exit status set)."""
    parsed = _globals(args)
    if parsed is None:
        return False
    overrides, i = parsed
    if i >= len(args) or args[i] != "sub":
        return False
    rest = args[i + 1 :]
    shell = bool(rest) and rest[0] == "--shell"
    if shell:
        rest = rest[1:]
    if not rest or rest[0].startswith("-"):
        return False  # options or no command: the full CLI says what to do
    import os

    from goq_cli.jobspec import make_job
    from goq_core.config import load_settings
    from goq_core.errors import GoqError
    from goq_core.keys import load_key
    from goq_core.plugins import Plugins
    from goq_core.roles.client import Client

    try:
        settings = load_settings(os.environ, overrides)
        job = make_job(rest, shell)
        with Client(settings, load_key(settings.home), Plugins(lazy=True)) as client:
            first, _ = client.submit([job])
    except GoqError as exc:
        sys.stderr.write(f"goq: error: {exc}\n")
        sys.exit(1)
    sys.stdout.write(f"submitted job {first} to server at {settings.address}\n")
    return True
