"""Registers the built-in transports (memory, nng, zmq) with goq's plugin manager.

Cheap to import: pynng and pyzmq are imported only when a server listens (clients speak SP and
ZMTP themselves, see goq_transports.stream_client). The hook is a plain
function, not marked `@hookimpl` (that would import pluggy on the CLI's fast path):
`goq_core.plugins.register_builtin` marks it when it registers this module, and
`Plugins(lazy=True)` calls it directly (see goq_core.plugins).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from goq_core.hookspecs import Register
    from goq_core.interfaces import Transport


def memory_transport() -> Transport:
    from goq_transports.memory import MemoryTransport

    return MemoryTransport()


def nng_transport() -> Transport:
    from goq_transports.nng_transport import NngTransport

    return NngTransport()


def zmq_transport() -> Transport:
    from goq_transports.zmq_transport import ZmqTransport

    return ZmqTransport()


def goq_register_transports(register: Register) -> None:
    register("memory", memory_transport)
    register("nng", nng_transport)
    register("zmq", zmq_transport)
