"""The benchmark suite runs end to end: `bench/suite.py --quick` starts a real cluster and prints
one JSON document with every section filled with numbers (timings are not judged here).
"""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = Path(__file__).resolve().parent.parent / "bench" / "suite.py"
SECTIONS = ("dispatch", "drain", "submit", "scale", "recovery")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _figures(script: str, *args: str, timeout: float = 120) -> dict:
    """Run bench/SCRIPT with ARGS; the JSON document it printed (its stderr if it failed)."""
    done = subprocess.run(
        [sys.executable, str(SUITE.parent / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def report() -> dict:
    return _figures("suite.py", "--quick", timeout=240)


def test_quick_suite_reports_every_section_for_zmq(report: dict) -> None:
    assert report["meta"]["quick"] is True
    assert report["meta"]["goq"]["install"] in ("editable", "regular", "source")
    assert set(report["transports"]) == {"zmq"}
    assert set(SECTIONS) <= set(report["transports"]["zmq"])


def test_baseline_rates_are_positive_numbers(report: dict) -> None:
    base = report["baseline"]
    for name in (
        "spawn_true_per_s_1proc",
        "spawn_true_per_s_2procs",
        "spawn_worker_like_per_s_2procs",
        "python_c_pass_ms",
    ):
        assert _is_number(base[name]) and base[name] > 0, name


def test_dispatch_latencies_are_summaries_of_every_job(report: dict) -> None:
    dispatch = report["transports"]["zmq"]["dispatch"]
    n = report["meta"]["sizes"]["latency_jobs"]
    for way in ("cli", "api"):
        for measure, stats in dispatch[way].items():
            assert stats["n"] == n, (way, measure)
            assert all(_is_number(stats[k]) for k in ("p50", "p99", "min", "max")), measure
            assert stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"], measure
        # the worker stamps a start after the server accepted the job, never before
        assert dispatch[way]["start_after_accept_ms"]["min"] > 0


def test_drain_ran_every_job_and_compares_to_the_spawn_rate(report: dict) -> None:
    drain = report["transports"]["zmq"]["drain"]
    assert drain["jobs"] == report["meta"]["sizes"]["drain_jobs"]
    assert drain["workers"] == 2
    for name in ("jobs_per_s", "ratio_to_spawn_true_2procs", "server_cpu_us_per_job"):
        assert _is_number(drain[name]) and drain[name] >= 0, name
    assert drain["jobs_per_s"] > 0


def test_submit_and_scale_figures_are_numbers(report: dict) -> None:
    r = report["transports"]["zmq"]
    for name in ("goq_sub_p50_ms", "ratio_to_python_c_pass", "batch_cli_jobs_per_s"):
        assert _is_number(r["submit"][name]) and r["submit"][name] > 0, name
    levels = r["scale"]["levels"]
    assert [p["level"] for p in levels] == list(report["meta"]["sizes"]["scale_levels"])
    for point in levels:
        assert point["waiting"] >= point["level"]
        assert _is_number(point["rss_mib"]) and point["rss_mib"] > 0
        assert _is_number(point["stat_cli_ms"]) and point["stat_cli_ms"] > 0
    assert r["scale"]["after_restart"]["waiting"] == levels[-1]["waiting"]
    assert _is_number(r["scale"]["restart_s"])


def test_recovery_reran_the_job_once_after_killing_its_first_run(report: dict) -> None:
    recovery = report["transports"]["zmq"]["recovery"]
    assert recovery["trials"], "no trial"
    for trial in recovery["trials"]:
        assert _is_number(trial["rerun_after_kill_s"]) and trial["rerun_after_kill_s"] > 0
        assert trial["first_attempt_killed"] is True
        assert trial["runs_recorded"] == 2


def test_targets_name_a_value_and_a_verdict(report: dict) -> None:
    assert report["targets"]
    for row in report["targets"]:
        assert _is_number(row["value"]) and isinstance(row["met"], bool), row


def test_matching_benchmark_prints_its_figures() -> None:
    figures = _figures("matching.py", "--workers", "50", "--waiting", "500", "--steps", "300")
    assert figures["dispatched"] > 0 and figures["waiting"] == 500
    assert all(_is_number(v) for v in figures["per_dispatch_us"].values())


def test_server_cost_benchmark_drives_a_real_server_with_synthetic_workers() -> None:
    figures = _figures("server_cost.py", "--jobs", "200", "--trials", "1", "--batch", "50")
    [trial] = figures["trials"]
    assert trial["jobs"] == 200 and trial["output_files"] == 200  # every job ran its lifecycle
    assert trial["results_acked"] >= 200 - figures["meta"]["workers"]  # a last ask may be held
    for name in ("total_cpu_us_per_job", "drain_cpu_us_per_job", "drain_jobs_per_s"):
        assert _is_number(figures["summary"][name]) and figures["summary"][name] > 0, name
    assert "main" in trial["drain_threads"]


def test_server_cost_benchmark_with_slotted_workers_reports_runs_together() -> None:
    figures = _figures(
        "server_cost.py", "--jobs", "200", "--trials", "1", "--batch", "50", "--slots", "4"
    )
    [trial] = figures["trials"]
    assert trial["jobs"] == 200 and trial["output_files"] == 200
    assert figures["meta"]["slots_per_worker"] == 4
    assert _is_number(trial["fs_create_cpu_us_per_file"]) and trial["fs_create_cpu_us_per_file"] > 0
    assert _is_number(figures["summary"]["total_less_fs_create_us_per_job"])


def test_slots_drain_benchmark_prints_rates_and_cpu_per_job() -> None:
    figures = _figures("slots_drain.py", "--jobs", "200", "--trials", "1", "--cpus", "2")
    after = figures["after"]
    for key in ("one_worker_n_cpus", "n_workers_1_cpu"):
        (row,) = after["trials"][key]
        assert row["jobs_per_s"] > 0 and row["server_cpu_us_per_job"] > 0, row
        assert row["workers_cpu_us_per_job"] > 0, row
    assert after["trials"]["n_workers_1_cpu"][0]["batched_result_runs"] == 0  # nothing to batch
    assert _is_number(after["ratio"])


def test_scale_drain_benchmark_runs_each_layout_against_the_spawn_rate() -> None:
    figures = _figures(
        "scale_drain.py", "--layouts", "1x1,1x2", "--jobs", "100", "--spawn-per-loop", "50"
    )
    assert figures["spawn_true_per_s"]["rate"] > 0 and not figures["skipped"]
    rows = {(r["workers"], r["cpus_each"]): r for r in figures["layouts"]}
    assert set(rows) == {(1, 1), (1, 2)}
    for row in rows.values():
        assert row["jobs"] == 100 and row["jobs_per_s"] > 0 and row["server_cpu_us_per_job"] > 0


def test_scale_drain_refuses_a_bad_layout_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SUITE.parent / "scale_drain.py"), "--layouts", "4y4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "WORKERSxCPUS" in done.stderr
