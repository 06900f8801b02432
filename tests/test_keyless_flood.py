"""A real `goq serve` flooded by peers without the key (issue 9, item 7), for nng and zmq.

Runs bench/keyless_flood.py small: 30 raw connections each announce a frame of the largest size
the server's transport takes and send 99% of it, holding on; then 10 such frames are sent whole.
The server must stay up, answer a keyed `stat` during and after the flood, and its peak RSS must
grow by no more than the documented bound: one frame in progress per connection, that is
connections x (MAX_FRAME + TOO_BIG_SLACK), plus FLOOD_MARGIN_KIB for the rest (measured growth is
that product within a few MiB; with the old 64 MiB frames it was 7 times the bound).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from goq_core.limits import MAX_FRAME
from goq_core.roles.server import TOO_BIG_SLACK

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "bench" / "keyless_flood.py"
CONNS = 30
FRAMES = 10
FLOOD_MARGIN_KIB = 96 * 1024  # allocator slack, the server's own work, sampling
RELEASED_KIB = 48 * 1024  # RSS once half-sent frames' connections close: this close to baseline


@pytest.fixture(scope="module")
def report() -> dict:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH),
            f"--conns={CONNS}",
            f"--frames={FRAMES}",
            "--partial=0.99",
            "--hold=2",
            "--settle=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: stopped whole if it overruns
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out)


def _frame_kib(kind: str) -> float:
    return (MAX_FRAME + TOO_BIG_SLACK + (8 if kind == "nng" else 0)) / 1024


@pytest.mark.parametrize("kind", ["nng", "zmq"])
def test_server_survives_and_serves_keyed_stat_through_the_flood(report: dict, kind: str) -> None:
    got = report["transports"][kind]
    assert got["server_alive"] and got["cli_stat_after_ok"]
    for phase in ("partial", "full"):
        assert got[phase]["server_alive"]
        assert got[phase]["connect_errors"] == 0
        assert all(ms is not None for ms in got[phase]["keyed_stat_ms"]), got[phase]


@pytest.mark.parametrize("kind", ["nng", "zmq"])
def test_frames_larger_than_max_frame_are_not_taken(report: dict, kind: str) -> None:
    assert report["meta"]["max_frame"] == MAX_FRAME
    assert report["transports"][kind]["frame_bytes"] == _frame_kib(kind) * 1024


@pytest.mark.parametrize("kind", ["nng", "zmq"])
@pytest.mark.parametrize("phase", ["partial", "full"])
def test_peak_rss_growth_is_within_one_frame_per_connection(
    report: dict, kind: str, phase: str
) -> None:
    got = report["transports"][kind][phase]
    bound = got["connections"] * _frame_kib(kind) + FLOOD_MARGIN_KIB
    assert got["peak_growth_kib"] <= bound, (got, bound)
    kept = got["after_rss_kib"] - got["baseline_rss_kib"]
    # Half-sent frames never reach Python: closing their connections gives the memory back.
    # Whole frames are copied into Python objects, and the C allocator may keep some of that
    # heap for reuse (up to a few frames, measured), so only the peak bound applies there.
    assert kept <= (RELEASED_KIB if phase == "partial" else bound), got
