"""The CLI's fast path (`goq sub CMD`, `goq stat`) stays light: it imports neither pluggy nor
click nor cryptography's cipher packages, and still does the whole job. A plugin named in
GOQ_LOAD_PLUGINS, or a transport, codec or cipher that is not built in, takes the full pluggy path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import Cluster, initialised

# What the fast path must not import (issue 15): the plugin manager, the click CLI, the
# cryptography packages beyond the AES-GCM class it seals with, pyzmq and pynng (the client ends
# speak ZMTP and SP themselves), and the socket and threading wrappers of _socket and _thread.
NEVER = (
    "pluggy",
    "click",
    "goq_core.hookspecs",
    "goq_cli.main",
    "cryptography.hazmat.primitives",
    "zmq",
    "pynng",
    "socket",
    "threading",
)

# Runs the console script's fast path (goq_cli.entry.main without its os._exit), then lists
# the modules loaded, on stderr after a marker line.
HARNESS = """
import sys
from goq_cli.entry import escape_unencodable_output
escape_unencodable_output()
from goq_cli.fastpath import try_fast_path
code = 0
try:
    handled = try_fast_path(sys.argv[1:])
except SystemExit as exc:
    handled, code = True, exc.code
sys.stdout.flush()
sys.stderr.write("HANDLED %s %s\\nMODULES %s\\n" % (handled, code, " ".join(sorted(sys.modules))))
"""


def fast(c: Cluster, *args: str, **env: str) -> tuple[str, set[str]]:
    """Run `goq ARGS` through the fast path; its stdout and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, *args],
        env={**c.env, **env},
        cwd=c.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.splitlines()
    assert "HANDLED True 0" in lines, done.stderr
    modules = set(next(x for x in lines if x.startswith("MODULES ")).split()[1:])
    return done.stdout, modules


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


@pytest.fixture(params=["zmq", "nng"])
def running(tmp_path: Path, request):
    with initialised(
        tmp_path, server=True, transport=request.param, extra_env={"GOQ_LOAD_PLUGINS": ""}
    ) as c:
        yield c


def test_sub_and_stat_on_the_fast_path_import_no_pluggy_click_or_cipher_packages(
    running: Cluster,
) -> None:
    out, modules = fast(running, "sub", "/bin/true")
    assert out.startswith("submitted job 1 to server at tcp://127.0.0.1:")
    out2, modules2 = fast(running, "stat")
    assert "waitingJobs: 1" in out2
    for name in NEVER:
        assert not loaded(modules, name), f"`goq sub` imported {name}"
        assert not loaded(modules2, name), f"`goq stat` imported {name}"
    client = "zmtp_client" if running.env["GOQ_TRANSPORT"] == "zmq" else "sp_client"
    assert f"goq_transports.{client}" in modules and "goq_codecs.aesgcm" in modules


def test_a_plugin_named_in_goq_load_plugins_takes_the_pluggy_path(running: Cluster) -> None:
    out, modules = fast(running, "sub", "/bin/true", GOQ_LOAD_PLUGINS="goq_no_such_plugin")
    assert out.startswith("submitted job 1 ")
    assert loaded(modules, "pluggy") and not loaded(modules, "click")


def test_a_name_not_built_in_takes_the_pluggy_path_and_fails_in_one_line(
    running: Cluster,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", "--codec", "no-such-codec", "sub", "/bin/true"],
        env=running.env,
        cwd=running.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == "goq: error: no codec named 'no-such-codec'; available: capnp, raw\n"
