"""CLI start-up benchmark (issue 15): `goq sub CMD` and `goq stat` wall time against `python3 -c
pass` measured in the same run, with a regular (non-editable) install, plus where the time goes.

The script first builds a wheel of SOURCE (default: this checkout's working tree) with
`pip wheel --no-deps`, installs it into VENV (created the first time with goq's dependencies
from the package index; later runs reinstall goq only), then runs itself again with VENV's
python, so every goq import below is the installed one. There it starts a `goq serve` (127.0.0.1,
a free port, a temporary GOQ_HOME made by `goq init`; no worker, so the submitted jobs wait) and
measures, alternating the three commands trial by trial:

- wall time of `goq sub /bin/true`, `goq stat` and `python -c pass` (VENV's python), medians;
- a shell loop of 200 single `goq sub /bin/true` calls: jobs/s;
- `python -X importtime` of both commands (median per module of several runs): the 25 imports
  with the largest cumulative time;
- cProfile of one `goq sub` in a fresh process (imports included): top functions;
- what importing each of a few modules costs alone (wall, less `python -c pass`).

JSON on stdout (with --save, also bench/results/cli_startup.json), progress on stderr.

    .venv/bin/python bench/cli_startup.py [--trials 30] [--loop 200] [--source DIR] [--venv DIR]
        [--baseline-python BEFORE/bin/python]   # a second install, timed in the same run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "cli_startup.json"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "goq-bench-regular-venv"
TARGETS = {"sub_ms": 45.0, "stat_ms": 50.0, "loop_jobs_per_s": 20.0}  # issue 15


def log(text: str) -> None:
    print(f"[cli_startup {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the install


def regular_install(source: Path, venv: Path, pip_python: str = sys.executable) -> str:
    """Build a wheel of `source` and install it (not editable) into `venv`; returns its python.
    The venv is created the first time, with goq's dependencies from the package index (or
    pip's cache); later calls reinstall goq alone. No goq module is imported here."""
    python = venv / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="goq-wheel-") as wheels:
        log(f"building a wheel of {source}")
        subprocess.run(
            [
                pip_python,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--disable-pip-version-check",
                "-w",
                wheels,
                str(source),
            ],
            check=True,
            timeout=600,
            stdout=sys.stderr,
        )
        [wheel] = Path(wheels).glob("goq-*.whl")
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if not python.exists():
            log(f"creating {venv} (goq's dependencies from the package index)")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run([*pip, str(wheel)], check=True, timeout=900, stdout=sys.stderr)
        else:
            log(f"reinstalling goq into {venv}")
            subprocess.run(
                [*pip, "--no-deps", "--force-reinstall", str(wheel)],
                check=True,
                timeout=600,
                stdout=sys.stderr,
            )
    return str(python)


# ------------------------------------------------------------------------------ measures


def wall_ms(argv: list[str], env: dict, cwd: str) -> float:
    t0 = time.perf_counter_ns()
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    took = (time.perf_counter_ns() - t0) / 1e6
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr[-500:]!r}")
    return took


_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_times(argv: list[str], env: dict, cwd: str, runs: int) -> list[dict]:
    """`python -X importtime` of argv (argv[0] a python): per module the median self and
    cumulative ms over `runs` runs; the 25 largest cumulative, with their nesting depth."""
    per: dict[str, dict[str, list[float]]] = {}
    depth: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run(
            [argv[0], "-X", "importtime", *argv[1:]],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
        for line in done.stderr.splitlines():
            m = _IMPORT_LINE.match(line)
            if m:
                self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
                rec = per.setdefault(name, {"self": [], "cum": []})
                rec["self"].append(self_us / 1000)
                rec["cum"].append(cum_us / 1000)
                depth[name] = (indent - 1) // 2
    rows = [
        {
            "module": name,
            "depth": depth[name],
            "cumulative_ms": round(statistics.median(v["cum"]), 2),
            "self_ms": round(statistics.median(v["self"]), 2),
        }
        for name, v in per.items()
    ]
    top_level = sum(r["cumulative_ms"] for r in rows if r["depth"] == 0)
    rows.sort(key=lambda r: r["cumulative_ms"], reverse=True)
    return [{"all_imports_ms": round(top_level, 2)}, *rows[:25]]


_PROFILE_SUB = r"""
import cProfile, io, os, pstats, sys
from goq_cli.entry import escape_unencodable_output
profile = cProfile.Profile()
profile.enable()
escape_unencodable_output()
from goq_cli.fastpath import try_fast_path
handled = try_fast_path(sys.argv[1:])
profile.disable()
sys.stdout.flush()
out = io.StringIO()
stats = pstats.Stats(profile, stream=out)
stats.sort_stats("cumulative").print_stats(int(os.environ.get("TOP", "30")))
sys.stderr.write(out.getvalue())
sys.stderr.write(f"HANDLED {handled}\n")
"""


def profile_sub(python: str, env: dict, cwd: str) -> list[str]:
    """cProfile of one `goq sub /bin/true` through the fast path, in a fresh interpreter
    (imports included); the lines of pstats' top 30 by cumulative time."""
    done = subprocess.run(
        [python, "-c", _PROFILE_SUB, "sub", "/bin/true"],
        env={**env, "TOP": "30"},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "HANDLED True" not in done.stderr:
        raise RuntimeError(f"the profiled sub did not take the fast path: {done.stderr[-800:]}")
    lines = done.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "function calls" in line)
    return [line.rstrip() for line in lines[start:] if line.strip() and "HANDLED" not in line]


# What importing one module costs alone (wall, less `python -c pass`): the candidates for
# leaving the plain submit path, and what goq's own modules cost with what they pull in.
IMPORTS = (
    "re",
    "enum",
    "typing",
    "dataclasses",
    "inspect",
    "zmq",
    "pluggy",
    "click",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.bindings._rust",  # where goq_codecs.aesgcm takes AESGCM from
    "Crypto.Cipher.AES",
    "goq_core.messages",
    "goq_core.config",
    "goq_core.plugins",
    "goq_core.roles.client",
    "goq_transports.zmq_transport",
    "goq_codecs.raw",
    "goq_codecs.aesgcm",
    "goq_cli.fastpath, goq_cli.jobspec, goq_core.roles.client, goq_transports.zmq_transport, "
    "goq_codecs.raw, goq_codecs.aesgcm",
)


def import_walls(python: str, env: dict, cwd: str, runs: int) -> dict:
    """Median wall ms of `python -c "import M"` less that of `python -c pass`, per module of
    IMPORTS (trials alternate through the list)."""
    walls: dict[str, list[float]] = {m: [] for m in ("", *IMPORTS)}
    for _ in range(runs):
        for module in walls:
            code = f"import {module}" if module else "pass"
            walls[module].append(wall_ms([python, "-c", code], env, cwd))
    bare = statistics.median(walls.pop(""))
    return {
        "python_c_pass_ms": round(bare, 2),
        "extra_ms": {m: round(statistics.median(v) - bare, 2) for m, v in walls.items()},
    }


def shell_loop(goq: str, n: int, env: dict, cwd: str) -> float:
    """Seconds for a bash loop of n single `goq sub /bin/true` calls."""
    script = f'for i in $(seq {n}); do "{goq}" sub /bin/true > /dev/null || exit 1; done'
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, cwd=cwd, check=True, timeout=600)
    return time.perf_counter() - t0


def measure(args: argparse.Namespace) -> dict:
    """Run inside the regular install's venv (sys.executable is its python)."""
    sys.path.insert(0, str(HERE))
    from _cluster import BenchCluster, GoqInstall, machine

    install = GoqInstall.for_python(sys.executable)
    if install.install != "regular":
        log(f"warning: goq is a {install.install} install here, not a regular one")
    goq = install.goq[0]
    began = time.time()
    base = GoqInstall.for_python(args.baseline_python) if args.baseline_python else None
    with tempfile.TemporaryDirectory(prefix="goq-cli-startup-") as tmp:
        cluster = BenchCluster(Path(tmp) / "after", install, transport=args.transport)
        # the baseline install (if any) gets a server of its own; its trials alternate with ours
        base_cluster = (
            BenchCluster(Path(tmp) / "before", base, transport=args.transport)
            if base is not None
            else None
        )
        try:
            cluster.init()
            cluster.start_server()
            env, cwd = cluster.env, str(cluster.workdir)
            runs = {
                "goq_sub": ([goq, "sub", "/bin/true"], cluster),
                "goq_stat": ([goq, "stat"], cluster),
                "python_c_pass": ([sys.executable, "-c", "pass"], cluster),
            }
            if base_cluster is not None and base is not None:
                base_cluster.init()
                base_cluster.start_server()
                runs["baseline_goq_sub"] = ([base.goq[0], "sub", "/bin/true"], base_cluster)
                runs["baseline_goq_stat"] = ([base.goq[0], "stat"], base_cluster)
            times: dict[str, list[float]] = {k: [] for k in runs}
            log(f"{args.trials} alternating trials of {', '.join(runs)}")
            for i in range(args.trials + 3):  # 3 warm-up rounds, not counted
                order = list(runs) if i % 2 == 0 else list(reversed(runs))
                for name in order:
                    argv, where = runs[name]
                    took = wall_ms(argv, where.env, str(where.workdir))
                    if i >= 3:
                        times[name].append(took)
            log(f"shell loop of {args.loop} single `goq sub`")
            loop_s = shell_loop(goq, args.loop, env, cwd)
            base_loop_s = None
            if base_cluster is not None and base is not None:
                log(f"shell loop of {args.loop} single `goq sub`, baseline install")
                base_loop_s = shell_loop(
                    base.goq[0], args.loop, base_cluster.env, str(base_cluster.workdir)
                )
            log("python -X importtime, cProfile of one sub")
            imports = {
                "goq_sub": import_times([sys.executable, goq, "sub", "/bin/true"], env, cwd, 7),
                "goq_stat": import_times([sys.executable, goq, "stat"], env, cwd, 7),
            }
            profile = profile_sub(sys.executable, env, cwd)
            log("wall cost of single imports")
            alone = import_walls(sys.executable, env, cwd, 11)
        finally:
            cluster.close()
            if base_cluster is not None:
                base_cluster.close()
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    bare = med["python_c_pass"]
    loop_rate = round(args.loop / loop_s, 1)
    baseline = None
    if base is not None and base_loop_s is not None:
        baseline = {
            "python": base.python,
            "install": base.install,
            "median_ms": {k: med[f"baseline_{k}"] for k in ("goq_sub", "goq_stat")},
            "ratio_to_python_c_pass": {
                k: round(med[f"baseline_{k}"] / bare, 2) for k in ("goq_sub", "goq_stat")
            },
            "loop": {
                "calls": args.loop,
                "seconds": round(base_loop_s, 2),
                "jobs_per_s": round(args.loop / base_loop_s, 1),
            },
        }
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "goq": {"python": install.python, "goq": goq, "install": install.install},
            "source": args.source,
            "trials": args.trials,
            "transport": args.transport,
            "elapsed_s": round(time.time() - began, 1),
        },
        "median_ms": med,
        "ratio_to_python_c_pass": {
            "goq_sub": round(med["goq_sub"] / bare, 2),
            "goq_stat": round(med["goq_stat"] / bare, 2),
        },
        "p10_p90_ms": {k: [round(_pct(v, 10), 2), round(_pct(v, 90), 2)] for k, v in times.items()},
        "loop": {"calls": args.loop, "seconds": round(loop_s, 2), "jobs_per_s": loop_rate},
        "targets": [
            _target("goq sub median ms", med["goq_sub"], "<=", TARGETS["sub_ms"]),
            _target("goq stat median ms", med["goq_stat"], "<=", TARGETS["stat_ms"]),
            _target("loop of single goq sub, jobs/s", loop_rate, ">=", TARGETS["loop_jobs_per_s"]),
        ],
        "baseline": baseline,
        "importtime_top25": imports,
        "import_alone_ms": alone,
        "cprofile_one_sub_top": profile,
    }


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _target(what: str, value: float, op: str, target: float) -> dict:
    met = value <= target if op == "<=" else value >= target
    return {"measure": what, "value": value, "target": f"{op} {target}", "met": met}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--loop", type=int, default=200, help="single `goq sub` calls in a loop")
    ap.add_argument("--source", default=str(REPO), help="the goq source tree to build")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="where to install it")
    ap.add_argument("--no-install", action="store_true", help="use --venv as it is")
    ap.add_argument(
        "--baseline-python",
        metavar="PY",
        help="also time `goq sub`/`goq stat` of the goq installed for this interpreter (e.g. a "
        "regular install of a `git archive REV` snapshot), trials alternating, same run",
    )
    ap.add_argument("--transport", default="zmq", help="the cluster's transport (zmq, nng)")
    ap.add_argument("--save", action="store_true", help=f"also write {RESULTS}")
    ap.add_argument("--out", metavar="FILE", help="with --save: write FILE instead")
    ap.add_argument("--_in_venv", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args._in_venv:
        venv = Path(args.venv)
        if args.no_install:
            python = str(venv / "bin" / "python")
        else:
            python = regular_install(Path(args.source), venv)
        rest = [a for a in (argv if argv is not None else sys.argv[1:])]
        os.execv(python, [python, str(Path(__file__).resolve()), *rest, "--_in_venv"])
    doc = measure(args)
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    print(text)
    if args.save:
        out = Path(args.out) if args.out else RESULTS
        out.parent.mkdir(exist_ok=True)
        out.write_text(text + "\n")
    for t in doc["targets"]:
        log(
            f"{t['measure']}: {t['value']} (target {t['target']}) {'met' if t['met'] else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
