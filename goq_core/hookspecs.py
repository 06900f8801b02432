"""The hooks a goq plugin can implement (pluggy project name "goq").

Registration hooks are called once per plugin manager; event hooks by the server as jobs move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from goq_core.messages import Job

hookspec = pluggy.HookspecMarker("goq")
hookimpl = pluggy.HookimplMarker("goq")

Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def goq_register_transports(register: Register) -> None:
    """Offer transports. Called once when the plugin manager first needs a transport.

    Call ``register(name, factory)`` for each; ``factory()`` takes no arguments and returns an
    object meeting ``goq_core.interfaces.Transport``. It is called at most once per plugin
    manager (the result is reused), so import heavy libraries inside it, not at module level.
    """


@hookspec
def goq_register_codecs(register: Register) -> None:
    """Offer codecs: ``register(name, factory)`` with ``factory() -> Codec``."""


@hookspec
def goq_register_ciphers(register: Register) -> None:
    """Offer ciphers: ``register(name, factory)`` with ``factory(key: bytes) -> Cipher``."""


@hookspec
def goq_register_stores(register: Register) -> None:
    """Offer stores: ``register(name, factory)`` with ``factory(path, create) -> Store``."""


@hookspec
def goq_register_commands(register: Register) -> None:
    """Offer `goq` subcommands: ``register(name, factory)`` with ``factory() -> click.Command``.

    Called by the click CLI only (never on the fast path of `goq sub` and `goq stat`), and only
    when a name is not a built-in command or when every command is listed (`goq --help`, shell
    completion). A name that is a built-in is ignored. `goq --help` lists these commands under
    "Plugin commands". Import what the command needs inside its function, not at module level.
    """


@hookspec
def goq_job_submitted(job: Job) -> None:
    """The server accepted ``job`` (its id is set; it is durable). Called in the server process,
    after the store commit. Must not block: the server loop waits for it."""


@hookspec
def goq_job_started(job: Job) -> None:
    """The server handed ``job`` to worker ``job.workerid`` (``job.attempt`` is this run)."""


@hookspec
def goq_job_finished(job: Job) -> None:
    """``job`` ended, exactly once: ``job.state`` is FINISHED or CANCELLED, with its outcome."""
