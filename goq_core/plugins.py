"""The plugin manager: loads third-party plugins from the ``goq`` entry-point group, then the
built-ins exactly the same way, and looks up transports, codecs, ciphers and stores by name.

``GOQ_LOAD_PLUGINS`` (comma-separated entry-point names, empty for none) limits which
third-party plugins load: useful in tests and for a fast CLI start.

The fast start of `goq sub` and `goq stat` (``Plugins(lazy=True)``) imports no pluggy (10-20 ms):
while only built-in names are asked for and GOQ_LOAD_PLUGINS names no plugin, it calls the
built-in client plugins' register hooks (CLIENT_PLUGINS) itself, the very functions pluggy calls
for them; any other name, GOQ_LOAD_PLUGINS naming a plugin, and stores take the plugin manager.
The built-in transports' and codecs' hooks are plain functions for that reason (a `@hookimpl`
would import pluggy): `register_builtin` marks them when it registers their modules.
"""

from __future__ import annotations

import importlib
import os

from goq_core.errors import PluginNotFound

TYPE_CHECKING = False  # typing and the interfaces cost the fast path; only type checkers need them
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import pluggy

    from goq_core.interfaces import Cipher, Codec, Store, Transport

DEFAULT_PLUGINS: tuple[str, ...] = (
    "goq_transports.plugin",
    "goq_codecs.plugin",
    "goq_core.stores.plugin",
)
# The built-ins among DEFAULT_PLUGINS that offer what a client needs (transports, codecs,
# ciphers): the ones `Plugins(lazy=True)` calls directly.
CLIENT_PLUGINS: tuple[str, ...] = ("goq_transports.plugin", "goq_codecs.plugin")

_KINDS = ("transport", "codec", "cipher", "store")
_CLIENT_KINDS = ("transport", "codec", "cipher")


def make_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the third-party (entry point) and built-in plugins."""
    import pluggy

    from goq_core import hookspecs

    pm = pluggy.PluginManager("goq")
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        load_entrypoint_plugins(pm)
    for modname in DEFAULT_PLUGINS:
        mod = importlib.import_module(modname)
        if not pm.is_registered(mod):
            register_builtin(pm, mod, name=modname)
    return pm


def register_builtin(pm: pluggy.PluginManager, module: Any, name: str | None = None) -> None:
    """Register a built-in plugin module with `pm`, first marking its hook functions (those
    named as a goq hook, not marked yet) as a `@hookimpl` on each would have: the built-in
    client plugins' hooks are plain functions (see the module's doc)."""
    from goq_core import hookspecs

    marker = hookspecs.hookimpl
    mark = f"{marker.project_name}_impl"
    for attr, value in vars(module).items():
        hook = attr.startswith("goq_") and hasattr(hookspecs, attr) and callable(value)
        if hook and getattr(value, mark, None) is None:
            marker(value)
    pm.register(module, name=name)


def _wanted_plugins() -> tuple[str, ...] | None:
    """The entry points GOQ_LOAD_PLUGINS names, in order (None: it is unset, so all of them)."""
    wanted = os.environ.get("GOQ_LOAD_PLUGINS")
    if wanted is None:
        return None
    return tuple(filter(None, (n.strip() for n in wanted.split(","))))


def load_entrypoint_plugins(pm: pluggy.PluginManager) -> None:
    """Register the plugins of the `goq` entry-point group (as limited by GOQ_LOAD_PLUGINS)."""
    names = _wanted_plugins()
    if names is None:
        pm.load_setuptools_entrypoints("goq")
    else:
        for name in names:
            pm.load_setuptools_entrypoints("goq", name=name)


def load_entrypoints_one_by_one(pm: pluggy.PluginManager) -> list[str]:
    """Register the `goq` entry points (as limited by GOQ_LOAD_PLUGINS) one at a time, so that
    one which fails to import or register leaves the others loaded; a line for each failure."""
    from importlib.metadata import entry_points

    names = _wanted_plugins()
    problems: list[str] = []
    for ep in entry_points(group="goq"):
        if names is not None and ep.name not in names:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # noqa: BLE001 (someone else's code: say what, go on)
            problems.append(f"plugin {_origin(ep)} is broken: {_why(exc)}")
    return problems


CommandFactory = "Callable[[], Any]"  # (a string: typing stays off the fast path)


def command_factories(
    pm: pluggy.PluginManager,
) -> tuple[dict[str, tuple[str, CommandFactory]], list[str]]:
    """Every command the plugins offer through goq_register_commands: name -> (plugin name,
    factory), and a line for each plugin whose hook failed (the others still count)."""
    found: dict[str, tuple[str, CommandFactory]] = {}
    problems: list[str] = []
    for impl in pm.hook.goq_register_commands.get_hookimpls():

        def register(name: str, factory: CommandFactory, _who: str = impl.plugin_name) -> None:
            found.setdefault(name, (_who, factory))

        try:
            impl.function(register=register)
        except Exception as exc:  # noqa: BLE001
            problems.append(
                f"plugin {impl.plugin_name!r} failed to offer its commands: {_why(exc)}"
            )
    return found, problems


def _origin(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.name!r} (from {dist.name})" if dist is not None else repr(ep.name)


def _why(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Plugins:
    """Name -> implementation lookups over one plugin manager. Factories run at most once each
    (transports, codecs, stores' factories are cached; ciphers are made per key)."""

    def __init__(self, pm: pluggy.PluginManager | None = None, lazy: bool = False) -> None:
        """With `lazy`, third-party plugins are loaded only when a name is not among the
        built-ins or GOQ_LOAD_PLUGINS names one (a fast start for `goq sub`: no pluggy until
        then, see the module's doc); otherwise `pm` (default: everything) is used."""
        if pm is None and lazy and _wanted_plugins():
            lazy = False  # plugins asked for by name: load them, as the full CLI would
        self._scan_on_miss = pm is None and lazy
        self._direct = pm is None and lazy  # built-in client plugins called without pluggy
        self._pm = pm if pm is not None or lazy else make_plugin_manager()
        self._factories: dict[str, dict[str, Callable[..., Any]]] = {}
        self._made: dict[tuple[str, str], Any] = {}

    @property
    def pm(self) -> pluggy.PluginManager:
        """The plugin manager (made on first use by a lazy Plugins: the built-ins only)."""
        if self._pm is None:
            self._pm = make_plugin_manager(load_entrypoints=False)
        return self._pm

    def factories(self, kind: str) -> dict[str, Callable[..., Any]]:
        """Every registered factory of one kind ("transport", "codec", "cipher", "store")."""
        if kind not in _KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}")
        found = self._factories.get(kind)
        if found is None:
            found = {}

            def register(name: str, factory: Callable[..., Any]) -> None:
                found[name] = factory

            hook = f"goq_register_{kind}s"
            if self._direct and kind in _CLIENT_KINDS:
                # what pluggy does with the built-ins alone: each module's hook, last first
                for modname in reversed(CLIENT_PLUGINS):
                    impl = getattr(importlib.import_module(modname), hook, None)
                    if impl is not None:
                        impl(register=register)
            else:
                getattr(self.pm.hook, hook)(register=register)
            self._factories[kind] = found
        return found

    def names(self, kind: str) -> list[str]:
        return sorted(self.factories(kind))

    def _factory(self, kind: str, name: str) -> Callable[..., Any]:
        table = self.factories(kind)
        if name not in table and self._scan_on_miss:
            self._scan_on_miss = self._direct = False
            load_entrypoint_plugins(self.pm)
            self._factories.clear()
            table = self.factories(kind)
        try:
            return table[name]
        except KeyError:
            available = ", ".join(sorted(table)) or "none"
            raise PluginNotFound(f"no {kind} named {name!r}; available: {available}") from None

    def _cached(self, kind: str, name: str, *args: Any) -> Any:
        key = (kind, name)
        if key not in self._made:
            self._made[key] = self._factory(kind, name)(*args)
        return self._made[key]

    def transport(self, name: str) -> Transport:
        return self._cached("transport", name)

    def codec(self, name: str) -> Codec:
        return self._cached("codec", name)

    def cipher(self, name: str, key: bytes) -> Cipher:
        return self._factory("cipher", name)(key)

    def store(self, name: str, path: str, create: bool = True) -> Store:
        return self._factory("store", name)(path, create)
