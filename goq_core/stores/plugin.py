"""Registers the built-in stores (sqlite, memory) with goq's plugin manager.

Cheap to import: sqlite3 is imported only when the sqlite factory runs.
"""

from __future__ import annotations

from goq_core.hookspecs import Register, hookimpl
from goq_core.interfaces import Store


def sqlite_store(path: str, create: bool) -> Store:
    from goq_core.stores.sqlite import open_sqlite_store

    return open_sqlite_store(path, create)


@hookimpl
def goq_register_stores(register: Register) -> None:
    register("sqlite", sqlite_store)
    # one factory per registration: stores it opens at the same path share their records, so a
    # server restarted in-process finds its jobs again (nothing outlives the plugin manager)
    made: list = []  # the one MemoryStoreFactory of this registration, made when first used

    def memory_store(path: str, create: bool) -> Store:
        if not made:
            from goq_core.stores.memory import MemoryStoreFactory

            made.append(MemoryStoreFactory())
        return made[0](path, create)

    register("memory", memory_store)
