"""goq-web: a goq plugin that adds `goq web`, a read-only dashboard and Prometheus metrics.

Importing this module costs nothing but this file: the command is made only when `goq` needs it.
"""

from __future__ import annotations

from typing import Any

from goq_core.hookspecs import Register, hookimpl


def make_command() -> Any:
    from goq_web.command import web

    return web


@hookimpl
def goq_register_commands(register: Register) -> None:
    register("web", make_command)
