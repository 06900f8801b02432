"""goq's core: the pure scheduling kernel, the plugin system, config and keys, and the role runtimes.

Nothing here imports a transport, codec or cipher library; those come in as plugins.

The Python API is re-exported here: `from goq_core import Client` (docs/python-api.md). It is
imported on first use only (a module __getattr__), so `import goq_core` stays as cheap as the
CLI's fast path needs.
"""

__version__ = "0.1.0"

# name -> the module that defines it, imported when the name is first asked for
_LAZY = {
    "Client": "goq_core.api",
    "InvalidValue": "goq_core.api",
    "WaitTimeout": "goq_core.api",
    "JobRecord": "goq_core.records",
    "AttemptRecord": "goq_core.records",
    "GoqError": "goq_core.errors",
}

__all__ = [
    "__version__",
    "Client",
    "InvalidValue",
    "WaitTimeout",
    "JobRecord",
    "AttemptRecord",
    "GoqError",
]

TYPE_CHECKING = False  # typing costs 3 ms to import; only type checkers need these
if TYPE_CHECKING:
    from goq_core.api import Client, InvalidValue, WaitTimeout
    from goq_core.errors import GoqError
    from goq_core.records import AttemptRecord, JobRecord


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
