"""Registers the built-in transports (memory, nng, zmq) with goq's plugin manager.

Cheap to import: pynng and pyzmq are imported only when a factory runs.
"""

from __future__ import annotations

from goq_core.hookspecs import Register, hookimpl
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


@hookimpl
def goq_register_transports(register: Register) -> None:
    register("memory", memory_transport)
    register("nng", nng_transport)
    register("zmq", zmq_transport)
