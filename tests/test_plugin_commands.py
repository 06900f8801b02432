"""Commands from plugins (hook goq_register_commands): a package installed beside goq adds a
`goq` subcommand, listed apart in `goq --help`; built-in commands and the fast path never load
plugins; a broken plugin is one line, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = """
import pathlib, os
from goq_core.hookspecs import hookimpl

pathlib.Path(os.environ["MARKER"]).write_text("imported")

def make():
    import click

    @click.command()
    @click.argument("who", default="world")
    def hello(who):
        '''Say hello (a command from a test plugin).'''
        click.echo(f"hello, {who}")

    return hello

@hookimpl
def goq_register_commands(register):
    register("hello", make)
    register("stat", make)  # a built-in's name: ignored, with a warning
"""

BROKEN = """
import goq_no_such_module_anywhere
"""


def install(root: Path, module: str, source: str) -> None:
    """A package on `root` (to go on PYTHONPATH) with an entry point in the `goq` group."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(source))
    dist = root / f"{module}-1.0.dist-info"
    dist.mkdir()
    name = module.replace("_", "-")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[goq]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    return root


def goq(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GOQ_")}
    environ.update(
        PYTHONPATH=os.pathsep.join([str(site), os.getcwd()]),
        GOQ_HOME=str(site),
        MARKER=str(site / "imported"),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "goq_cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plugin_command_runs_and_is_listed_apart_from_the_builtins(site: Path) -> None:
    install(site, "goq_hello_test", GOOD)
    ran = goq(site, "hello", "there")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hello, there\n"
    shown = goq(site, "--help")
    assert shown.returncode == 0, shown.stderr
    builtins, _, rest = shown.stdout.partition("Plugin commands:")
    plugins = rest.split("\n\n")[0]  # the section, not the epilog after it
    assert "hello" in plugins and "Say hello" in plugins
    assert "hello" not in builtins.split("Commands:")[1]
    assert "  stat " in builtins and " stat " not in plugins
    assert "offers `stat`, a built-in: ignored" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_builtin_commands_and_the_fast_path_never_load_plugins(site: Path) -> None:
    install(site, "goq_hello_test", GOOD)
    assert goq(site, "version").returncode == 0
    goq(site, "sub", "true")  # the fast path (it fails: there is no key here)
    goq(site, "stat", "--json")  # click, a built-in
    assert not (site / "imported").exists()
    assert goq(site, "hello").returncode == 0
    assert (site / "imported").exists()


def test_a_broken_plugin_is_one_line_and_the_others_still_work(site: Path) -> None:
    install(site, "goq_broken_test", BROKEN)
    install(site, "goq_hello_test", GOOD)
    shown = goq(site, "--help")
    assert shown.returncode == 0
    warnings = [line for line in shown.stderr.splitlines() if "goq_broken_test" in line]
    assert len(warnings) == 1, shown.stderr
    assert "ModuleNotFoundError" in warnings[0] and "Traceback" not in shown.stderr
    assert goq(site, "hello").stdout == "hello, world\n"
    missing = goq(site, "nosuchcommand")
    assert missing.returncode == 1
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchcommand" in lines[0] and "goq_broken_test" in lines[0]


def test_goq_load_plugins_limits_which_commands_exist(site: Path) -> None:
    install(site, "goq_hello_test", GOOD)
    assert goq(site, "hello", GOQ_LOAD_PLUGINS="").returncode == 1
    assert goq(site, "hello", GOQ_LOAD_PLUGINS="goq_hello_test").returncode == 0
