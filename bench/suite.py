"""The goq benchmark suite: real `goq` server and worker processes on 127.0.0.1 measured against
this machine's own limits (process spawn rate, bare interpreter start), all in the same run.

Prints one JSON document on stdout (progress on stderr): dispatch latency, drain throughput,
submit cost, server scale and recovery, per transport, plus the targets of design.md §5.
Usage: python bench/suite.py [--quick] [--transports zmq,nng] [--install-venv [DIR]]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import getpass
import json
import math
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cluster import (
    BenchCluster,
    GoqInstall,
    cpu_seconds,
    hwm_kib,
    machine,
    pgid_alive,
    rss_kib,
    wait_for,
)

from goq_core.messages import Job

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path(tempfile.gettempdir()) / "goq-bench-venv"
HEARTBEAT = 1.0  # seconds, for every cluster of the suite
SCALE_BATCH = 50_000  # jobs per SUBMIT when filling the queue for the scale measures


@dataclasses.dataclass(slots=True)
class Sizes:
    latency_jobs: int
    latency_warmup: int
    drain_jobs: int
    spawn_per_proc: int
    submit_runs: int
    batch_jobs: int
    batch_runs: int
    scale_levels: tuple[int, ...]
    recovery_trials: int


FULL = Sizes(200, 10, 10_000, 2_000, 30, 10_000, 3, (100_000, 1_000_000), 5)
QUICK = Sizes(30, 3, 500, 300, 5, 2_000, 1, (10_000,), 1)


def log(text: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ statistics


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50": round(pct(values_ms, 50), 3),
        "p90": round(pct(values_ms, 90), 3),
        "p99": round(pct(values_ms, 99), 3),
        "min": round(min(values_ms), 3),
        "max": round(max(values_ms), 3),
        "mean": round(statistics.fmean(values_ms), 3),
    }


def ms(ns: int) -> float:
    return ns / 1e6


# ------------------------------------------------------------------------------ install


def make_venv(venv: Path) -> str:
    """A regular (non-editable) install of this checkout in `venv`; returns its python.
    Creates the venv the first time; later runs reinstall goq only (to pick up new code)."""
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not python.exists():
        log(f"creating {venv} with a regular install of {REPO}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([*pip, str(REPO)], check=True, timeout=900)
    else:
        log(f"reinstalling goq from {REPO} into {venv}")
        subprocess.run([*pip, "--no-deps", "--force-reinstall", str(REPO)], check=True, timeout=900)
    return str(python)


# ------------------------------------------------------------------------------ baselines

_SPAWNER = r"""
import os, subprocess, sys, tempfile, time
mode, n, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
spool = tempfile.mkdtemp(prefix="goq-bench-spawn-")
env = dict(os.environ)
while time.time() < start:
    time.sleep(0.0005)
for i in range(n):
    if mode == "plain":
        subprocess.run(["/bin/true"])
        continue
    path = os.path.join(spool, f"{i}.out")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    p = subprocess.Popen(["/bin/true"], cwd=spool, env=env, stdin=subprocess.DEVNULL,
                         stdout=fd, stderr=subprocess.STDOUT, start_new_session=True,
                         close_fds=True)
    os.close(fd)
    p.wait()
    os.unlink(path)
os.rmdir(spool)
print(time.time())
"""


def spawn_rate(mode: str, procs: int, n: int) -> float:
    """/bin/true processes per second that `procs` Python processes spawn and reap together,
    each spawning `n` one after the other (mode "plain": subprocess.run; "worker-like": what a
    goq worker must do at least: a spool file, a new session, the job's environment)."""
    start = time.time() + 0.5
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _SPAWNER, mode, str(n), repr(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    ends = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        ends.append(float(out.strip()))
    return procs * n / (max(ends) - start)


def wall_ms(argv: list[str], env: dict | None = None, cwd: str | None = None) -> float:
    t0 = time.perf_counter_ns()
    subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return ms(time.perf_counter_ns() - t0)


def measure_baseline(sizes: Sizes, install: GoqInstall) -> dict:
    log("baseline: process spawn rates and interpreter start")
    n = sizes.spawn_per_proc
    result = {
        "spawn_true_per_s_1proc": round(spawn_rate("plain", 1, n), 1),
        "spawn_true_per_s_2procs": round(spawn_rate("plain", 2, n), 1),
        "spawn_worker_like_per_s_1proc": round(spawn_rate("worker-like", 1, n), 1),
        "spawn_worker_like_per_s_2procs": round(spawn_rate("worker-like", 2, n), 1),
    }
    runs = sizes.submit_runs
    result["python_c_pass_ms"] = round(
        statistics.median(wall_ms([install.python, "-c", "pass"]) for _ in range(runs)), 2
    )
    result["python_S_c_pass_ms"] = round(
        statistics.median(wall_ms([install.python, "-S", "-c", "pass"]) for _ in range(runs)), 2
    )
    return result


# ------------------------------------------------------------------------------ jobs


def noop_job(workdir: Path, env: list[str] | None = None) -> Job:
    host, user = socket.gethostname(), getpass.getuser()
    return Job(cmd="/bin/true", dir=str(workdir), env=env or [], host=host, user=user)


def this_env() -> list[str]:
    return [f"{k}={v}" for k, v in os.environ.items()]


def parse_submitted(out: str) -> tuple[int, int]:
    """(first id, count) from `goq sub` output."""
    words = out.split()
    if out.startswith("submitted job "):
        return int(words[2]), 1
    first, last = words[2].split("..")
    return int(first), int(last) - int(first) + 1


# ------------------------------------------------------------------------------ 1. dispatch


def measure_dispatch(cluster: BenchCluster, sizes: Sizes) -> dict:
    """An idle worker; jobs one at a time, each after the previous has finished."""
    log(f"dispatch: {sizes.latency_jobs} jobs by `goq sub`, then by the Client API")
    client = cluster.client()
    cli: list[tuple[int, int, Job]] = []
    for i in range(sizes.latency_warmup + sizes.latency_jobs):
        t_call = time.time_ns()
        out = cluster.ok("sub", "/bin/true", timeout=30)
        t_ret = time.time_ns()
        job = client.wait(parse_submitted(out)[0], deadline=time.time() + 30)
        if job is None:
            raise RuntimeError("wait gave no job record")
        if i >= sizes.latency_warmup:
            cli.append((t_call, t_ret, job))
    env = this_env()
    api: list[tuple[int, int, Job]] = []
    for i in range(sizes.latency_warmup + sizes.latency_jobs):
        job_in = noop_job(cluster.workdir, list(env))
        t_call = time.time_ns()
        jobid, _ = client.submit([job_in])
        t_ret = time.time_ns()
        job = client.wait(jobid, deadline=time.time() + 30)
        if job is None:
            raise RuntimeError("wait gave no job record")
        if i >= sizes.latency_warmup:
            api.append((t_call, t_ret, job))

    def describe(rows: list[tuple[int, int, Job]]) -> dict:
        return {
            "start_after_return_ms": summary([ms(j.start_ns - r) for _, r, j in rows]),
            "start_after_call_ms": summary([ms(j.start_ns - c) for c, _, j in rows]),
            "start_after_accept_ms": summary([ms(j.start_ns - j.submit_ns) for _, _, j in rows]),
            "return_after_accept_ms": summary([ms(r - j.submit_ns) for _, r, j in rows]),
            "submit_call_ms": summary([ms(r - c) for c, r, _ in rows]),
            "job_spawn_to_reap_ms": summary([ms(j.end_ns - j.start_ns) for _, _, j in rows]),
        }

    return {"cli": describe(cli), "api": describe(api)}


# ------------------------------------------------------------------------------ 2. drain


def measure_drain(cluster: BenchCluster, sizes: Sizes, baseline: dict) -> dict:
    """`sizes.drain_jobs` no-op jobs in one `goq sub --file`, through 2 idle workers."""
    n = sizes.drain_jobs
    log(f"drain: {n} no-op jobs through 2 workers")
    client = cluster.client()
    jobs_file = cluster.workdir / "drain.txt"
    jobs_file.write_text("/bin/true\n" * n)
    finished0 = client.stat(0).counters["finishedJobsCount"]
    assert cluster.server is not None
    pids = [cluster.server.pid] + [w.pid for w in cluster.workers if w.poll() is None]
    cpu0 = {pid: cpu_seconds(pid) for pid in pids}
    t_call = time.time_ns()
    out = cluster.ok("sub", "--file", str(jobs_file), timeout=120)
    t_ret = time.time_ns()
    first, count = parse_submitted(out)
    last = first + count - 1
    client.wait(last, deadline=time.time() + 600)
    wait_for(
        lambda: client.stat(0).counters["finishedJobsCount"] >= finished0 + n,
        600,
        "the drain to finish",
        every=0.002,
    )
    t_done = time.time_ns()
    cpu1 = {pid: cpu_seconds(pid) for pid in pids}
    with sqlite3.connect(f"file:{cluster.db_path()}?mode=ro", uri=True) as db:
        done, min_start, max_end, min_accept = db.execute(
            "SELECT count(*), min(start_ns), max(end_ns), min(submit_ns) FROM jobs"
            " WHERE jobid BETWEEN ? AND ? AND state = 3",
            (first, last),
        ).fetchone()
    if done != n:
        raise RuntimeError(f"drain: {done} of {n} jobs finished")
    rate = n / ((max_end - min_start) / 1e9)
    server_pid = pids[0]
    worker_own = sum(cpu1[p][0] - cpu0[p][0] for p in pids[1:])
    worker_children = sum(cpu1[p][1] - cpu0[p][1] for p in pids[1:])
    spawn2 = baseline["spawn_true_per_s_2procs"]
    return {
        "jobs": n,
        "workers": len(pids) - 1,
        "jobs_per_s": round(rate, 1),
        "definition": "jobs / (last job's end - first job's start), worker clocks (job records)",
        "jobs_per_s_call_to_all_finished": round(n / ((t_done - t_call) / 1e9), 1),
        "submit_wall_ms": round(ms(t_ret - t_call), 1),
        "first_start_after_accept_ms": round(ms(min_start - min_accept), 2),
        "ratio_to_spawn_true_2procs": round(rate / spawn2, 3),
        "ratio_to_spawn_worker_like_2procs": round(
            rate / baseline["spawn_worker_like_per_s_2procs"], 3
        ),
        "server_cpu_us_per_job": round((cpu1[server_pid][0] - cpu0[server_pid][0]) / n * 1e6, 1),
        "worker_cpu_us_per_job": round(worker_own / n * 1e6, 1),
        "job_processes_cpu_us_per_job": round(worker_children / n * 1e6, 1),
    }


# ------------------------------------------------------------------------------ 3. submit


def measure_submit(cluster: BenchCluster, sizes: Sizes) -> dict:
    """`goq sub` wall time against `python -c pass` (interleaved), and batch submission."""
    log(f"submit: {sizes.submit_runs} x `goq sub` vs `python -c pass`; batch of {sizes.batch_jobs}")
    python = cluster.install.python
    sub, bare = [], []
    wd = str(cluster.workdir)
    for i in range(sizes.submit_runs + 2):
        s = wall_ms([*cluster.install.goq, "sub", "/bin/true"], env=cluster.env, cwd=wd)
        b = wall_ms([python, "-c", "pass"], env=cluster.env, cwd=wd)
        if i >= 2:
            sub.append(s)
            bare.append(b)
    jobs_file = cluster.workdir / "batch.txt"
    jobs_file.write_text("/bin/true\n" * sizes.batch_jobs)
    batch = []
    for _ in range(sizes.batch_runs):
        batch.append(
            wall_ms(
                [*cluster.install.goq, "sub", "--file", str(jobs_file)], env=cluster.env, cwd=wd
            )
        )
    client = cluster.client()
    env = this_env()
    api = []
    for _ in range(sizes.batch_runs):
        jobs = [noop_job(cluster.workdir, env if i == 0 else []) for i in range(sizes.batch_jobs)]
        t0 = time.perf_counter_ns()
        client.submit(jobs)
        api.append(ms(time.perf_counter_ns() - t0))
    sub_p50, bare_p50 = statistics.median(sub), statistics.median(bare)
    return {
        "goq_sub_ms": summary(sub),
        "python_c_pass_ms": summary(bare),
        "goq_sub_p50_ms": round(sub_p50, 2),
        "ratio_to_python_c_pass": round(sub_p50 / bare_p50, 2),
        "batch_jobs": sizes.batch_jobs,
        "batch_cli_wall_ms": round(statistics.median(batch), 1),
        "batch_cli_jobs_per_s": round(sizes.batch_jobs / statistics.median(batch) * 1e3, 1),
        "batch_api_jobs_per_s": round(sizes.batch_jobs / statistics.median(api) * 1e3, 1),
    }


# ------------------------------------------------------------------------------ 4. scale


def measure_scale(cluster: BenchCluster, sizes: Sizes) -> dict:
    """Server memory and `goq stat` with many waiting jobs (no workers), then a restart."""
    assert cluster.server is not None
    client = cluster.client()
    env = this_env()
    levels = []
    rss_empty = rss_kib(cluster.server.pid)
    for level in sizes.scale_levels:
        log(f"scale: filling the queue to {level} waiting jobs")
        waiting = client.stat(0).counters["waitingJobs"]
        t0 = time.perf_counter()
        added = 0
        while waiting + added < level:
            n = min(SCALE_BATCH, level - waiting - added)
            client.submit([noop_job(cluster.workdir, env if i == 0 else []) for i in range(n)])
            added += n
        fill_s = time.perf_counter() - t0
        time.sleep(0.5)
        levels.append(_scale_point(cluster, client, level, added, fill_s))
    result: dict = {"rss_empty_mib": round(rss_empty / 1024, 1), "levels": levels}
    if len(levels) >= 2:
        a, b = levels[0], levels[-1]
        per_job = (b["rss_mib"] - a["rss_mib"]) * 1024 * 1024 / (b["waiting"] - a["waiting"])
    else:
        per_job = (levels[0]["rss_mib"] - rss_empty / 1024) * 1024 * 1024 / levels[0]["waiting"]
    result["rss_bytes_per_waiting_job"] = round(per_job, 1)
    log(f"scale: restarting the server with {levels[-1]['waiting']} waiting jobs")
    client.close()
    result["shutdown_s"] = round(cluster.stop_server(), 3)
    result["restart_s"] = round(cluster.start_server(timeout=300), 3)
    client = cluster.client()
    time.sleep(0.5)
    after = _scale_point(cluster, client, levels[-1]["level"], 0, 0.0)
    result["after_restart"] = {k: after[k] for k in ("waiting", "rss_mib", "stat_cli_ms")}
    return result


def _scale_point(cluster: BenchCluster, client, level: int, added: int, fill_s: float) -> dict:
    assert cluster.server is not None
    counters = client.stat(0).counters
    stat_cli = [wall_ms([*cluster.install.goq, "stat"], env=cluster.env) for _ in range(5)]
    stat_api = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        client.stat(10)
        stat_api.append(ms(time.perf_counter_ns() - t0))
    return {
        "level": level,
        "waiting": counters["waitingJobs"],
        "rss_mib": round(rss_kib(cluster.server.pid) / 1024, 1),
        "hwm_mib": round(hwm_kib(cluster.server.pid) / 1024, 1),
        "stat_cli_ms": round(statistics.median(stat_cli), 2),
        "stat_api_ms": round(statistics.median(stat_api), 3),
        "fill_jobs_per_s": round(added / fill_s, 1) if added else None,
    }


# ------------------------------------------------------------------------------ 5. recovery


def measure_recovery(cluster: BenchCluster, sizes: Sizes) -> dict:
    """SIGKILL the worker running a job; time until the job's process runs again elsewhere."""
    log(f"recovery: {sizes.recovery_trials} worker kill(s), heartbeat {HEARTBEAT}s")
    rng = random.Random(6)
    trials = [
        _recovery_trial(
            cluster, cluster.workdir / f"recovery-{i}.txt", rng.uniform(0.05, HEARTBEAT)
        )
        for i in range(sizes.recovery_trials)
    ]
    reruns = [t["rerun_after_kill_s"] for t in trials]
    return {
        "heartbeat_s": HEARTBEAT,
        "rerun_after_kill_s_max": max(reruns),
        "rerun_after_kill_s_median": round(statistics.median(reruns), 3),
        "never_twice": all(t["first_attempt_killed"] and t["runs_recorded"] == 2 for t in trials),
        "trials": trials,
    }


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[1].split()[1])


def _recovery_trial(cluster: BenchCluster, marker: Path, delay: float) -> dict:
    """One job that records `pid start_ns` in `marker` each time it starts; its worker is
    SIGKILLed `delay` seconds after it started (any phase of the heartbeat)."""
    client = cluster.client()
    job = noop_job(cluster.workdir, this_env())
    job.shell = True
    job.cmd = f"echo $$ $(date +%s%N) >> {marker}; exec sleep 60"
    jobid, _ = client.submit([job])
    first = wait_for(lambda: _lines(marker), 20, "the job to start")
    victim_pid = _parent_pid(int(first[0].split()[0]))  # the worker that spawned the job
    victim = next(w for w in cluster.workers if w.pid == victim_pid)
    time.sleep(delay)
    t_kill = time.time_ns()
    os.kill(victim_pid, signal.SIGKILL)
    victim.wait(10)
    lines = wait_for(lambda: len(_lines(marker)) >= 2 and _lines(marker), 20, "a rerun")
    old_pgid, new_start = int(lines[0].split()[0]), int(lines[1].split()[1])
    old_gone = wait_for(lambda: not pgid_alive(old_pgid), 5, "the first attempt to die")
    record = [j for j in client.stat(10).jobs if j.jobid == jobid]
    client.cancel(jobid)
    client.wait(jobid, deadline=time.time() + 20)
    cluster.workers.remove(victim)
    cluster.start_worker(1)
    return {
        "kill_after_start_s": round(delay, 3),
        "rerun_after_kill_s": round((new_start - t_kill) / 1e9, 3),
        "redispatch_after_kill_s": round((record[0].start_ns - t_kill) / 1e9, 3)
        if record
        else None,
        "attempt": record[0].attempt if record else None,
        "first_attempt_killed": bool(old_gone),
        "runs_recorded": len(_lines(marker)),  # after the cancel: never a third run
    }


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


# ------------------------------------------------------------------------------ per transport


def run_transport(transport: str, install: GoqInstall, sizes: Sizes, baseline: dict) -> dict:
    log(f"=== transport {transport}")
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix=f"goq-bench-{transport}-") as tmp:
        cluster = BenchCluster(Path(tmp) / "run", install, transport, HEARTBEAT)
        try:
            cluster.init()
            cluster.start_server()
            cluster.start_worker(1)
            result["dispatch"] = measure_dispatch(cluster, sizes)
            cluster.start_worker(1)
            result["drain"] = measure_drain(cluster, sizes, baseline)
            result["recovery"] = measure_recovery(cluster, sizes)
        finally:
            cluster.close()
        cluster = BenchCluster(Path(tmp) / "queue", install, transport, HEARTBEAT)
        try:
            cluster.init()
            cluster.start_server()
            result["submit"] = measure_submit(cluster, sizes)
            result["scale"] = measure_scale(cluster, sizes)
        finally:
            cluster.close()
    return result


# ------------------------------------------------------------------------------ targets


def targets(results: dict) -> list[dict]:
    rows = []

    def add(measure: str, transport: str, value: float, op: str, target: float) -> None:
        met = value <= target if op == "<=" else value >= target
        rows.append(
            {
                "measure": measure,
                "transport": transport,
                "value": value,
                "target": f"{op} {target}",
                "met": met,
            }
        )

    for transport, r in results.items():
        cli = r["dispatch"]["cli"]["start_after_return_ms"]
        add("dispatch p50 ms (after goq sub returns)", transport, cli["p50"], "<=", 1.5)
        add("dispatch p99 ms (after goq sub returns)", transport, cli["p99"], "<=", 5.0)
        api = r["dispatch"]["api"]["start_after_return_ms"]
        add("dispatch p50 ms (after Client.submit returns)", transport, api["p50"], "<=", 1.5)
        add("dispatch p99 ms (after Client.submit returns)", transport, api["p99"], "<=", 5.0)
        add(
            "drain / spawn rate (2 procs)",
            transport,
            r["drain"]["ratio_to_spawn_true_2procs"],
            ">=",
            0.5,
        )
        add("goq sub wall ms (median)", transport, r["submit"]["goq_sub_p50_ms"], "<=", 50.0)
        add("goq sub --file jobs/s", transport, r["submit"]["batch_cli_jobs_per_s"], ">=", 5000)
        top = r["scale"]["levels"][-1]
        if top["level"] >= 1_000_000:
            add("server RSS MiB at 1M waiting", transport, top["rss_mib"], "<=", 1024)
            add("goq stat wall ms at 1M waiting", transport, top["stat_cli_ms"], "<=", 100)
        add(
            "rerun after worker SIGKILL s (max)",
            transport,
            r["recovery"]["rerun_after_kill_s_max"],
            "<=",
            2 * HEARTBEAT + 0.5,
        )
    return rows


# ------------------------------------------------------------------------------ report


def markdown(doc: dict) -> str:
    """The targets of a suite run as a markdown table (one column per transport)."""
    transports = list(doc["transports"])
    measures: dict[str, dict] = {}
    for row in doc["targets"]:
        measures.setdefault(row["measure"], {"target": row["target"]})[row["transport"]] = row
    head = "| measure | " + " | ".join(transports) + " | target |"
    lines = [head, "|---|" + "---:|" * len(transports) + "---|"]
    for measure, cells in measures.items():
        values = []
        for t in transports:
            row = cells.get(t)
            values.append(f"{row['value']:g} {'✓' if row['met'] else '✗'}" if row else "")
        lines.append(f"| {measure} | " + " | ".join(values) + f" | {cells['target']} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def _commit() -> str:
    """The checkout's commit, with "+dirty" when its tracked files have changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, zmq only (CI smoke test)")
    ap.add_argument("--transports", help="comma-separated (default: zmq,nng; --quick: zmq)")
    ap.add_argument(
        "--install-venv",
        nargs="?",
        const=str(DEFAULT_VENV),
        metavar="DIR",
        help=f"run goq from a regular (non-editable) install in DIR (default {DEFAULT_VENV}), "
        "created or refreshed first",
    )
    ap.add_argument("--python", help="run goq processes with this interpreter's goq")
    ap.add_argument("--table-from", metavar="JSON", help="print the targets table of a saved run")
    args = ap.parse_args(argv)
    if args.table_from:
        with open(args.table_from) as fh:
            print(markdown(json.load(fh)))
        return 0
    sizes = QUICK if args.quick else FULL
    transports = (args.transports or ("zmq" if args.quick else "zmq,nng")).split(",")
    if args.install_venv:
        python = make_venv(Path(args.install_venv))
    else:
        python = args.python or sys.executable
    install = GoqInstall.for_python(python)
    log(f"goq processes: {' '.join(install.goq)} ({install.install} install)")
    t0 = time.monotonic()
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": _commit(),
        "goq": dataclasses.asdict(install),
        "plugins": {"codec": "raw", "cipher": "aes-gcm", "store": "sqlite"},
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "heartbeat_s": HEARTBEAT,
    }
    baseline = measure_baseline(sizes, install)
    results = {t: run_transport(t, install, sizes, baseline) for t in transports}
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    doc = {"meta": meta, "baseline": baseline, "transports": results, "targets": targets(results)}
    json.dump(doc, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
