"""The examples of docs/workflows.md run as written: each ```sh block, in a fresh directory,
with `goq` on PATH and a server and a worker up; what they print is what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import Cluster, initialised, wait_for

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parent.parent / "docs" / "workflows.md"


def _blocks() -> dict[str, str]:
    """The sh blocks of the page, by the heading they are under."""
    found: dict[str, str] = {}
    heading = ""
    for m in re.finditer(r"^## ([^\n]+)$|^```sh\n(.*?)^```$", DOC.read_text(), re.M | re.S):
        if m[1]:
            heading = m[1]
        else:
            assert heading not in found, f"two examples under {heading!r}"
            found[heading] = m[2]
    return found


BLOCKS = _blocks()


def test_the_page_has_the_examples_the_issue_asks_for() -> None:
    assert {"A pipeline", "A parameter sweep", "Retries"} <= set(BLOCKS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("docs")
    bindir = root / "bin"
    bindir.mkdir()
    goq = bindir / "goq"
    goq.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m goq_cli "$@"\n')
    goq.chmod(0o755)
    with initialised(root, server=True, heartbeat=1.0) as c:
        c.env["PATH"] = f"{bindir}:{c.env.get('PATH', '/usr/bin:/bin')}"
        c.spawn("work", "--cpus", "4", log="worker.log")
        wait_for(lambda: c.stat()["waitingWorkers"] == 1, 20, "the worker to ask")
        yield c


def _run(c: Cluster, heading: str, tmp_path: Path) -> str:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", BLOCKS[heading]],
        cwd=tmp_path,
        env=c.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{heading}: {done.stderr}{done.stdout}"
    return done.stdout


def test_pipeline(cluster: Cluster, tmp_path: Path) -> None:
    out = _run(cluster, "A pipeline", tmp_path)
    assert out.splitlines()[-1] == "1"
    assert "blocked" in out.lower()


def test_parameter_sweep(cluster: Cluster, tmp_path: Path) -> None:
    out = _run(cluster, "A parameter sweep", tmp_path)
    assert out.splitlines()[-1] == "20 400"
    assert (tmp_path / "squares.txt").read_text().splitlines()[:2] == ["1 1", "2 4"]


def test_retries(cluster: Cluster, tmp_path: Path) -> None:
    out = _run(cluster, "Retries", tmp_path)
    shown = re.search(r"prints\n\n```text\n(.*?)```", DOC.read_text(), re.S)
    assert shown is not None
    assert out.endswith(shown[1]), out


def test_time_limits(cluster: Cluster, tmp_path: Path) -> None:
    out = _run(cluster, "Time limits", tmp_path)
    assert re.search(r"job \d+ timed out \(limit 2s\)", out), out
    assert out.splitlines()[-1] == "goq wait exited 2"


def test_hold_and_release(cluster: Cluster, tmp_path: Path) -> None:
    out = _run(cluster, "Hold and release", tmp_path)
    assert "held" in out.lower() and "exit status 0" in out.splitlines()[-1]


def test_waiting_for_and_killing_many(cluster: Cluster, tmp_path: Path) -> None:
    out = _run(cluster, "Waiting for and killing many jobs", tmp_path)
    assert out.count("was cancelled") == 5
    assert out.splitlines()[-1] == "goq wait exited 2"
