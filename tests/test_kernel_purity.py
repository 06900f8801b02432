"""The kernel is pure: no module it is made of imports I/O, clocks, threads or randomness."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

FORBIDDEN = {
    "socket", "asyncio", "threading", "time", "os", "random", "secrets", "subprocess",
    "select", "selectors", "signal", "multiprocessing", "sqlite3", "io", "pathlib",
    "datetime", "uuid", "pynng", "zmq", "capnp", "Crypto", "cryptography",
    "goq_transports", "goq_codecs", "goq_cli",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    """What a module imports when it runs (imports under `if TYPE_CHECKING:` never do)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _kernel_closure() -> dict[str, set[str]]:
    """Every goq module the kernel package pulls in, with what each imports."""
    todo = ["goq_core.kernel"] + [
        f"goq_core.kernel.{p.stem}"
        for p in Path(importlib.util.find_spec("goq_core.kernel").origin).parent.glob("*.py")
    ]
    seen: dict[str, set[str]] = {}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        origin = importlib.util.find_spec(mod).origin
        seen[mod] = _imports(Path(origin))
        todo += [m for m in seen[mod] if m.startswith("goq_")]
        parent = mod.rpartition(".")[0]
        if parent.startswith("goq_"):
            todo.append(parent)
    return seen


def test_kernel_modules_import_no_io_clock_thread_random_or_plugin_library() -> None:
    closure = _kernel_closure()
    assert "goq_core.kernel.kernel" in closure and "goq_core.messages" in closure
    for mod, imported in closure.items():
        bad = {name for name in imported if name.split(".")[0] in FORBIDDEN}
        assert not bad, f"{mod} imports {sorted(bad)}"


def test_kernel_pulls_in_only_pure_goq_modules() -> None:
    allowed_prefixes = (
        "goq_core.kernel",
        "goq_core.messages",
        "goq_core.drops",
        "goq_core.limits",
        "goq_core.idranges",  # job ids as text: pure
        "goq_core.arrayspec",  # arrays as text: pure
        "goq_core.jobquery",  # goq jobs queries as JSON text: pure
        "goq_core.attempts",  # records of attempts: pure
        "goq_core.principals",  # who sends a request (role, name): pure data
    )
    for mod in _kernel_closure():
        assert mod == "goq_core" or mod.startswith(allowed_prefixes), mod
