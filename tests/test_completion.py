"""Issue 12, shell completion through click's own mechanism: the bash, zsh and fish scripts,
commands, options and states, and job ids from the server's live jobs (bounded, silent and
quick when there is no server).

As a shell does it: `_GOQ_COMPLETE=bash_source goq` prints the script; the script runs
`COMP_WORDS="goq k" COMP_CWORD=1 _GOQ_COMPLETE=bash_complete goq` and reads `type,value` lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.shell_completion import BashComplete

from goq_cli import main as cli_main
from goq_core.messages import Kind, Message
from tests.test_cli_workflow import ScriptedClient

GOQ = [sys.executable, "-m", "goq_cli"]


def shell(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    """`goq` run as a shell's completion runs it (no arguments; all in the environment)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOQ_", "_GOQ", "COMP_"))}
    return subprocess.run(GOQ, env={**base, **env}, capture_output=True, text=True, timeout=timeout)


def bash_complete(line: str, env: dict[str, str] | None = None) -> tuple[list[str], float]:
    """What bash completion offers for `line` (the last word is completed), and how long
    it took."""
    words = line.split(" ")
    start = time.perf_counter()
    done = shell(
        {
            "_GOQ_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            **(env or {}),
        }
    )
    took = time.perf_counter() - start
    assert done.returncode == 0 and done.stderr == "", done
    return [row.split(",", 1)[1] for row in done.stdout.splitlines() if row], took


def offered(args: list[str], incomplete: str) -> list[str]:
    """In-process: the values click offers after `goq ARGS` for the word `incomplete`."""
    comp = BashComplete(cli_main.cli, {}, "goq", "_GOQ_COMPLETE")
    return [item.value for item in comp.get_completions(args, incomplete)]


@pytest.mark.parametrize("sh", ["bash", "zsh", "fish"])
def test_the_source_scripts(sh: str) -> None:
    done = shell({"_GOQ_COMPLETE": f"{sh}_source"})
    assert done.returncode == 0 and done.stderr == ""
    assert "goq" in done.stdout and f"_GOQ_COMPLETE={sh}_complete" in done.stdout


def test_commands_and_options() -> None:
    assert bash_complete("goq k")[0] == ["kill"]
    assert bash_complete("goq sub --ti")[0] == ["--time"]
    assert bash_complete("goq --cod")[0] == ["--codec"]
    assert {"jobs", "show", "forget"} <= set(bash_complete("goq ")[0])
    assert "--json" in offered(["stat"], "--j")


def test_commands_in_process() -> None:
    assert offered([], "k") == ["kill"]
    assert offered(["sub"], "--ti") == ["--time"]
    assert offered([], "sh") == ["show", "shutdown"]
    assert set(offered(["jobs"], "--")) >= {"--state", "--since", "--limit", "--name", "--json"}


def test_states() -> None:
    assert offered(["jobs", "--state"], "f") == ["finished", "failed"]
    assert offered(["jobs", "--state"], "failed,ti") == ["failed,timeout"]
    assert offered(["jobs", "--state"], "a") == ["all"]


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch):
    """The server's live jobs are these id ranges (SELECT of every job not ended)."""

    def install(text: str) -> ScriptedClient:
        def answer(msg: Message) -> Message:
            assert msg.kind == Kind.SELECT and msg.count == 1 and msg.text == ""
            return Message(Kind.JOB_IDS, text=text)

        client = ScriptedClient(answer)
        client.timeout = 1.0
        monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
        return client

    return install


def test_job_ids_of_live_jobs(live) -> None:
    live("7-9,12,100-105")
    for command in ("kill", "wait", "show", "hold", "release"):
        assert offered([command], "") == [
            "7",
            "8",
            "9",
            "12",
            "100",
            "101",
            "102",
            "103",
            "104",
            "105",
        ]
        assert offered([command], "10") == ["100", "101", "102", "103", "104", "105"]
    assert offered(["kill", "7"], "1") == ["12", "100", "101", "102", "103", "104", "105"]
    assert offered(["kill"], "7,1") == [
        "7,12",
        "7,100",
        "7,101",
        "7,102",
        "7,103",
        "7,104",
        "7,105",
    ]
    assert offered(["hold"], "100-10") == [f"100-{i}" for i in range(100, 106)]
    assert offered(["kill"], "x") == [] and offered(["wait"], "3") == []


def test_job_ids_are_bounded(live) -> None:
    live("1-1000000000")
    start = time.perf_counter()
    assert len(offered(["kill"], "")) == cli_main.COMPLETE_IDS
    got = offered(["kill"], "99")
    assert len(got) == cli_main.COMPLETE_IDS and got[:3] == ["99", "990", "991"]
    assert time.perf_counter() - start < 0.5


def test_job_ids_give_nothing_when_the_client_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self):
        raise RuntimeError("no key")  # anything at all: completion offers nothing

    monkeypatch.setattr(cli_main._Ctx, "client", fail)
    assert offered(["kill"], "") == []


def test_job_ids_give_up_on_a_slow_server(monkeypatch: pytest.MonkeyPatch) -> None:
    class Slow(ScriptedClient):
        def call(self, msg: Message, hold_ms: int = 0) -> Message:
            time.sleep(5)
            return Message(Kind.JOB_IDS, text="1-3")

    client = Slow(lambda msg: msg)
    client.timeout = 10.0
    monkeypatch.setattr(cli_main._Ctx, "client", lambda self: client)
    start = time.perf_counter()
    assert offered(["show"], "") == []
    assert time.perf_counter() - start < 1.5


def test_job_ids_without_a_server_are_quiet_and_quick(tmp_path: Path) -> None:
    """A real `goq` with a key but no server: nothing offered, nothing on stderr, ~1 s."""
    from tests.support import free_port

    env = {
        "GOQ_HOME": str(tmp_path),
        "GOQ_JSERV_IP": "127.0.0.1",
        "GOQ_JSERV_PORT": str(free_port()),
        "GOQ_SENDTIMEOUT_MSEC": "60000",  # completion does not wait that long
    }
    done = subprocess.run(
        [*GOQ, "init"], env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done
    got, took = bash_complete("goq kill ", env)
    assert got == [] and took < 2.5  # interpreter start-up included
    got, _ = bash_complete("goq show 1", {})  # no GOQ_HOME at all
    assert got == []


@pytest.mark.slow
def test_job_ids_from_a_real_server(tmp_path: Path) -> None:
    from tests.cluster import initialised

    with initialised(tmp_path, server=True) as c:
        first = c.sub("--hold", "true")
        second = c.sub("true")
        env = {k: v for k, v in c.env.items() if k.startswith("GOQ_")}
        got, took = bash_complete("goq kill ", env)
        assert got == [str(first), str(second)] and took < 2.5
        assert bash_complete(f"goq release {first}", env)[0] == [str(first)]
