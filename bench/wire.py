"""Benchmark: STAT and SUBMIT round trips through a real goq Server (memory store) for every
transport x codec x cipher, with the bare pyzmq REQ/REP round trip of this machine as baseline.

The server runs in its own process (the memory transport: in a thread of this one); its CPU per
message is read from /proc before and after each run. Prints JSON (and, with --table, a markdown
table on stderr). Usage: python bench/wire.py [--n 4000] [--combos zmq-raw-aes-gcm,...]

`--credentials` measures what credentials cost the server (issue 13): the gate opening a frame
sealed with the root secret (what every request did before credentials) against one sealed for
a credential (cached key; and the first frame of a credential, which derives its key), plus the
kernel's role check; then STAT round trips through a real server with each, alternating.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from goq_core.config import Settings
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.principals import Secret
from goq_core.roles.client import Client
from goq_core.roles.server import Server, ServerOptions

TRANSPORTS = ("zmq", "nng")
CODECS = ("raw", "capnp")
CIPHERS = ("aes-gcm", "none")
DEFAULT = "zmq-raw-aes-gcm"
THREADS = (1, 8)
WARMUP = 200  # round trips per client thread before timing starts
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or of one of its threads) from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def combo_settings(home: str, port: int, combo: str) -> Settings:
    transport, codec, cipher = combo.split("-", 2)
    return Settings(
        home=home,
        jserv_ip="127.0.0.1",
        jserv_port=port,
        transport=transport,
        codec=codec,
        cipher=cipher,
        sendtimeout_ms=5000,
    )


def make_server(settings: Settings, key: bytes, plugins: Plugins) -> Server:
    os.makedirs(settings.dir, exist_ok=True)
    server = Server(settings, key, plugins, ServerOptions(allow_insecure=True, store="memory"))
    server.open()
    return server


# ----------------------------------------------------------------------- the measured loop


@dataclass(slots=True)
class Run:
    latencies: list[float]
    wall: float
    server_cpu: float
    client_cpu: float


def timed(
    threads: int,
    n: int,
    make_call: Callable[[], Callable[[], object]],
    server_cpu: Callable[[], float],
) -> Run:
    """`threads` threads each do WARMUP then `n` calls of their own `make_call()`; only the
    timed part is counted (server CPU and wall time are read between two barriers)."""
    ready = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)
    results: list[list[float]] = [[] for _ in range(threads)]

    def worker(i: int) -> None:
        call = make_call()
        for _ in range(WARMUP):
            call()
        ready.wait()
        clock = time.perf_counter
        out = results[i]
        for _ in range(n):
            t0 = clock()
            call()
            out.append(clock() - t0)
        done.wait()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    cpu0, mine0, t0 = server_cpu(), time.process_time(), time.perf_counter()
    done.wait()
    wall = time.perf_counter() - t0
    cpu1, mine1 = server_cpu(), time.process_time()
    for t in pool:
        t.join()
    lat = sorted(x for r in results for x in r)
    return Run(lat, wall, cpu1 - cpu0, mine1 - mine0)


def summary(run: Run, threads: int, server_in_process: bool) -> dict:
    lat, count = run.latencies, len(run.latencies)
    row = {
        "threads": threads,
        "requests": count,
        "p50_us": round(lat[count // 2] * 1e6, 1),
        "p99_us": round(lat[min(count - 1, int(count * 0.99))] * 1e6, 1),
        "msgs_per_s": round(count / run.wall),
        "server_cpu_us_per_msg": round(run.server_cpu / count * 1e6, 1),
    }
    if not server_in_process:  # else the server thread's CPU is part of this process's
        row["client_cpu_us_per_msg"] = round(run.client_cpu / count * 1e6, 1)
    return row


def goq_calls(
    settings: Settings, key: bytes | Secret, plugins: Plugins, op: str, opened: list[Client]
):
    """A factory of per-thread callables doing one `op` round trip through a goq Client (each
    Client made is added to `opened`, for the caller to close)."""
    job = Job(cmd="true", dir="/tmp", env=["PATH=/usr/bin:/bin", "HOME=/tmp"], host="h", user="u")

    def make() -> Callable[[], object]:
        client = Client(settings, key, plugins)
        opened.append(client)
        if op == "stat":
            return lambda: client.call(Message(Kind.STAT, count=1))
        return lambda: client.call(Message(Kind.SUBMIT, jobs=[Job(**_fields(job))]))

    return make


def _fields(job: Job) -> dict:
    return {f: getattr(job, f) for f in Job.__slots__}


# ----------------------------------------------------------------------- one combination


def bench_combo(combo: str, n: int, ops: list[str]) -> dict:
    key = os.urandom(32)
    home = tempfile.mkdtemp(prefix="goq-bench-")
    port = free_port()
    settings = combo_settings(home, port, combo)
    plugins = Plugins()
    rows = []
    opened: list[Client] = []
    if settings.transport == "memory":
        server = make_server(settings, key, plugins)
        tid: list[int] = []

        def loop() -> None:
            tid.append(threading.get_native_id())
            server.serve_forever()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        while not tid:
            time.sleep(0.001)
        try:
            for op in ops:
                for threads in THREADS:
                    calls = goq_calls(settings, key, plugins, op, opened)
                    run = timed(
                        threads, n // threads, calls, lambda: cpu_seconds(os.getpid(), tid[0])
                    )
                    rows.append({"op": op, **summary(run, threads, True)})
        finally:
            for client in opened:
                client.close()
            server._signalled = True  # what SIGTERM does in a server process
            thread.join(5)
            server.close()
        return {"combo": combo, "server": "thread of the bench process", "runs": rows}

    with server_process(combo, port, home, key) as proc:
        try:
            for op in ops:
                for threads in THREADS:
                    calls = goq_calls(settings, key, plugins, op, opened)
                    run = timed(threads, n // threads, calls, lambda: cpu_seconds(proc.pid))
                    rows.append({"op": op, **summary(run, threads, False)})
        finally:
            for client in opened:
                client.close()
    return {"combo": combo, "server": "subprocess", "runs": rows}


@contextlib.contextmanager
def server_process(combo: str, port: int, home: str, key: bytes) -> Iterator[subprocess.Popen]:
    """A goq server in its own process (see `serve`), stopped by SIGTERM on leaving."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", combo, str(port), home],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(key.hex() + "\n")
        proc.stdin.close()
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"server for {combo} did not start: {line!r}")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def serve(combo: str, port: int, home: str) -> None:
    """The server process: key on stdin, 'ready' on stdout, serve until SIGTERM."""
    key = bytes.fromhex(sys.stdin.readline().strip())
    server = make_server(combo_settings(home, port, combo), key, Plugins())
    server.install_signal_handlers()
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()


# ----------------------------------------------------------------------- baseline: bare pyzmq


def zmq_echo(port: int) -> None:
    import zmq

    sock = zmq.Context().socket(zmq.REP)
    sock.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    while True:
        sock.send(sock.recv())


def bench_zmq_baseline(n: int, size: int) -> dict:
    import zmq

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--zmq-echo", str(port)], stdout=subprocess.PIPE, text=True
    )
    ctx = zmq.Context()
    payload = os.urandom(size)
    rows = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for threads in THREADS:

            def make() -> Callable[[], object]:
                sock = ctx.socket(zmq.REQ)
                sock.connect(f"tcp://127.0.0.1:{port}")

                def call() -> bytes:
                    sock.send(payload)
                    return sock.recv()

                return call

            run = timed(threads, n // threads, make, lambda: cpu_seconds(proc.pid))
            rows.append(summary(run, threads, False))
    finally:
        proc.kill()
        proc.wait(5)
        ctx.destroy(0)
    return {"what": f"bare pyzmq REQ/REP echo, {size}-byte payload", "runs": rows}


# ----------------------------------------------------------------------- output


def table(out: dict) -> str:
    lines = [
        "| combination | op | threads | p50 µs | p99 µs | msgs/s | server CPU µs/msg |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in out["baseline"]["runs"]:
        lines.append(
            f"| bare pyzmq REQ/REP | echo | {r['threads']} | {r['p50_us']} | {r['p99_us']} "
            f"| {r['msgs_per_s']} | {r['server_cpu_us_per_msg']} |"
        )
    for c in out["combos"]:
        name = f"**{c['combo']}**" if c["combo"] == DEFAULT else c["combo"]
        for r in c["runs"]:
            lines.append(
                f"| {name} | {r['op']} | {r['threads']} | {r['p50_us']} | {r['p99_us']} "
                f"| {r['msgs_per_s']} | {r['server_cpu_us_per_msg']} |"
            )
    return "\n".join(lines)


def _median_us(fn: Callable[[], object], n: int, rounds: int = 5) -> list[float]:
    """µs per call of `fn` in each of `rounds` rounds of `n` calls."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n * 1e6)
    return out


def bench_credentials(n: int) -> dict:
    """In-process micro figures, then round trips through a server process (root vs cred)."""
    from statistics import median

    from goq_core.credentials import issue
    from goq_core.gate import Gate
    from goq_core.kernel.access import refusal
    from goq_core.wire import Wire

    plugins = Plugins()
    codec = plugins.codec("raw")

    def cipher(k: bytes):
        return plugins.cipher("aes-gcm", k)

    root = os.urandom(32)
    alice = issue(root, "submit", "alice", time.time_ns() - 1)
    gate = Gate(codec, cipher, root)
    stat = Message(Kind.STAT, count=1)
    root_frame = Wire(codec, cipher(root)).pack(stat)
    cred_wire = Wire(codec, cipher(alice.key), principal=alice.principal)
    cred_frame = cred_wire.pack(Message(Kind.STAT, count=1))
    gate.open(cred_frame)
    micro: dict[str, list[float]] = {"root": [], "credential": [], "first_frame": [], "check": []}
    now_ns = time.time_ns()
    for _ in range(3):  # alternate, so that drift of a shared machine hits both alike
        micro["root"] += _median_us(lambda: gate.open(root_frame), n)
        micro["credential"] += _median_us(lambda: gate.open(cred_frame), n)

        def cold() -> None:
            gate._wires.clear()
            gate.open(cred_frame)

        micro["first_frame"] += _median_us(cold, max(1, n // 10))
        micro["check"] += _median_us(lambda: refusal(alice.acting, stat, now_ns, {}), n)
    figures = {name: round(median(v), 2) for name, v in micro.items()}
    added = round(figures["credential"] - figures["root"] + figures["check"], 2)

    home = tempfile.mkdtemp(prefix="goq-bench-")
    port = free_port()
    settings = combo_settings(home, port, DEFAULT)
    trips: dict[str, list[float]] = {"root": [], "credential": []}
    opened: list[Client] = []
    with server_process(DEFAULT, port, home, root) as proc:
        try:
            for _ in range(3):
                for mode, secret in (("root", root), ("credential", alice)):
                    calls = goq_calls(settings, secret, plugins, "stat", opened)
                    run = timed(1, n // 4, calls, lambda: cpu_seconds(proc.pid))
                    trips[mode].append(run.server_cpu / len(run.latencies) * 1e6)
        finally:
            for client in opened:
                client.close()
    return {
        "gate_open_us": {
            "root_secret_frame": figures["root"],
            "credential_frame_cached": figures["credential"],
            "credential_first_frame": figures["first_frame"],
        },
        "role_check_us": figures["check"],
        "added_per_request_us": added,
        "target_us": 5.0,
        "stat_round_trip_server_cpu_us": {mode: round(median(v), 1) for mode, v in trips.items()},
        "stat_round_trip_runs": {mode: [round(x, 1) for x in v] for mode, v in trips.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    combos = ["-".join(c) for c in itertools.product(TRANSPORTS, CODECS, CIPHERS)]
    combos.append("memory-raw-aes-gcm")
    ap.add_argument("--combos", default=",".join(combos))
    ap.add_argument("--ops", default="stat,submit")
    ap.add_argument("--n", type=int, default=4000, help="timed round trips per run")
    ap.add_argument("--table", action="store_true", help="also print a markdown table on stderr")
    ap.add_argument("--serve", nargs=3, metavar=("COMBO", "PORT", "HOME"), help=argparse.SUPPRESS)
    ap.add_argument("--zmq-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument(
        "--credentials", action="store_true", help="what credentials cost the server (only)"
    )
    args = ap.parse_args()
    if args.credentials:
        doc = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
        doc |= bench_credentials(args.n)
        print(json.dumps(doc, indent=2))
        return
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    if args.zmq_echo:
        zmq_echo(args.zmq_echo)
        return
    ops = args.ops.split(",")
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "timed_round_trips_per_run": args.n,
        "default": DEFAULT,
        "baseline": bench_zmq_baseline(args.n, 200),
        "combos": [bench_combo(c, args.n, ops) for c in args.combos.split(",")],
    }
    print(json.dumps(out, indent=2))
    if args.table:
        print(table(out), file=sys.stderr)


if __name__ == "__main__":
    main()
