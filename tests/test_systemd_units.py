"""The systemd units shipped in deploy/systemd (issue 13, item 5): they parse (systemd-analyze
verify, where installed, with no complaint), restart on failure, log to the journal, and stop
the worker in the way that requeues its jobs (SIGTERM to the worker alone)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
GOQ_PATH = "/opt/goq/bin/goq"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def test_both_units_restart_on_failure_and_log_to_the_journal() -> None:
    for name in ("goq-server.service", "goq-worker@.service"):
        service = _unit(name)["Service"]
        assert service["Restart"] == "on-failure", name
        assert service["KillSignal"] == "SIGTERM", name
        assert service["StandardOutput"] == service["StandardError"] == "journal", name
        assert service["ExecStart"].startswith(GOQ_PATH), name
    assert _unit("goq-server.service")["Service"]["ExecStart"].endswith(" serve")
    worker = _unit("goq-worker@.service")["Service"]
    assert worker["ExecStart"].endswith(" work") and worker["User"] == "%i"
    assert worker["KillMode"] == "mixed"  # systemd must not SIGTERM the jobs themselves


def test_the_worker_unit_acts_with_the_credential_in_its_goq_home() -> None:
    """docs/deployment.md copies a host's work credential to /etc/goq/USER/.goq/cred, where
    `goq work` finds it by default; the unit names no key or credential of its own."""
    worker = _unit("goq-worker@.service")["Service"]
    assert worker["Environment"] == "GOQ_HOME=/etc/goq/%i"
    assert (
        "/etc/goq/research/.goq/cred"
        in (UNITS.parent.parent / "docs" / "deployment.md").read_text()
    )


def _verify(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess:
    goq = tmp_path / "goq"  # verify wants ExecStart's program to exist
    goq.write_text("#!/bin/sh\nexit 0\n")
    goq.chmod(0o755)
    path = tmp_path / name
    path.write_text(text.replace(GOQ_PATH, str(goq)))
    instance = name.replace("@.", "@alice.")
    if instance != name:
        (tmp_path / instance).symlink_to(path)
    return subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / instance)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("name", ["goq-server.service", "goq-worker@.service"])
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path, name: str) -> None:
    done = _verify(tmp_path, name, (UNITS / name).read_text())
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_check_would_catch_a_broken_unit(tmp_path: Path) -> None:
    text = (UNITS / "goq-server.service").read_text().replace("on-failure", "sometimes")
    done = _verify(tmp_path, "goq-server.service", text)
    assert "sometimes" in done.stderr
