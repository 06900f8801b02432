"""The fast paths of the two commands people run most, without importing click (about 20-40 ms):
`goq [--transport/--codec/--cipher/--cred X] sub [--shell] CMD ARGS...` and `goq [...] stat [N]`.

Anything else (`--file`, `--help`, `--json`, an unknown option, no command, an N that is not a
plain number up to MAX_STAT_LIST) returns False and the click CLI handles it, so behaviour and
messages stay those of goq_cli.main. This is a thin subset of it, never a second CLI. (`goq sub
CMD --json` is a job whose command has the argument --json: options go before CMD.)
"""

from __future__ import annotations

import sys

_GLOBALS = ("--transport", "--codec", "--cipher", "--cred")


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


def try_fast_path(args: list[str]) -> bool:
    """Run `sub` or `stat` if `args` is their simple form; True when handled."""
    parsed = _globals(args)
    if parsed is None:
        return False
    overrides, i = parsed
    command, rest = (args[i], args[i + 1 :]) if i < len(args) else ("", [])
    if command == "sub":
        shell = bool(rest) and rest[0] == "--shell"
        if shell:
            rest = rest[1:]
        if not rest or rest[0].startswith("-"):
            return False  # options or no command: the full CLI says what to do
        _run(overrides, lambda client: _sub(client, rest, shell))
        return True
    if command == "stat" and (not rest or (len(rest) == 1 and _small_count(rest[0]))):
        count = int(rest[0]) if rest else 10
        _run(overrides, lambda client: _stat(client, count))
        return True
    return False


def _small_count(word: str) -> bool:
    """A count the fast `stat` takes as it is: ASCII digits, at most MAX_STAT_LIST (click
    refuses or caps the others, with its own messages)."""
    from goq_core.limits import MAX_STAT_LIST

    return word.isascii() and word.isdigit() and int(word) <= MAX_STAT_LIST


def _sub(client, argv: list[str], shell: bool) -> str:
    from goq_cli.jobspec import make_job

    [(first, _)] = client.submit_many([make_job(argv, shell)])
    return f"submitted job {first} to server at {client.settings.address}"


def _stat(client, count: int) -> str:
    from goq_cli.report import format_status

    return format_status(client.stat(count), count)


def _run(overrides: dict[str, str], command) -> None:
    """Make a client from the settings and key, run `command` with it, print what it says;
    a GoqError is one line on stderr and exit status 1."""
    import os

    from goq_core.config import load_settings
    from goq_core.credentials import load_secret
    from goq_core.errors import GoqError
    from goq_core.plugins import Plugins
    from goq_core.roles.client import Client

    try:
        settings = load_settings(os.environ, overrides)
        with Client(settings, load_secret(settings), Plugins(lazy=True)) as client:
            said = command(client)
    except GoqError as exc:
        sys.stderr.write(f"goq: error: {exc}\n")
        sys.exit(1)
    sys.stdout.write(said + "\n")
