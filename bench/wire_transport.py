"""Benchmark: request/reply round trip of each transport, echo server in its own process.

Prints one JSON object: per transport and client-thread count, p50/p99 latency (µs) and msgs/s.
The memory transport cannot cross processes, so its server runs in a thread (marked so).
Usage: python bench/wire_transport.py [--transports nng,zmq,memory] [--n 5000] [--size 200]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

from goq_transports.plugin import memory_transport, nng_transport, zmq_transport

FACTORIES = {"memory": memory_transport, "nng": nng_transport, "zmq": zmq_transport}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(kind: str, address: str, stop: threading.Event | None = None) -> None:
    """Echo every request at once until stopped (or, in a subprocess, until killed)."""
    transport = FACTORIES[kind]()
    server = transport.listen(address)
    print("ready", flush=True)
    try:
        while stop is None or not stop.is_set():
            got = server.recv(0.2)
            if got is not None:
                server.reply(got[0], got[1])
    finally:
        server.close()


def client_run(transport, address: str, n: int, payload: bytes, out: list[float]) -> None:
    client = transport.dial(address)
    try:
        for _ in range(200):  # warm up: connect, caches
            client.request(payload, 5.0)
        clock = time.perf_counter
        for _ in range(n):
            t0 = clock()
            client.request(payload, 5.0)
            out.append(clock() - t0)
    finally:
        client.close()


def measure(transport, address: str, threads: int, n: int, payload: bytes) -> dict:
    results: list[list[float]] = [[] for _ in range(threads)]
    workers = [
        threading.Thread(target=client_run, args=(transport, address, n, payload, results[i]))
        for i in range(threads)
    ]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    lat = sorted(x for r in results for x in r)
    return {
        "threads": threads,
        "requests": len(lat),
        "p50_us": round(lat[len(lat) // 2] * 1e6, 1),
        "p99_us": round(lat[int(len(lat) * 0.99)] * 1e6, 1),
        "msgs_per_s": round(len(lat) / wall),
    }


def bench(kind: str, n: int, size: int) -> dict:
    payload = os.urandom(size)
    if kind == "memory":
        address, stop = "memory://bench", threading.Event()
        transport = FACTORIES["memory"]()
        listener = threading.Thread(target=_serve_on, args=(transport, address, stop))
        listener.start()
        time.sleep(0.1)
        try:
            runs = [measure(transport, address, t, n, payload) for t in (1, 8)]
        finally:
            stop.set()
            listener.join()
        return {"server": "thread (same process)", "runs": runs}
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, address],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        transport = FACTORIES[kind]()
        runs = [measure(transport, address, t, n, payload) for t in (1, 8)]
    finally:
        proc.terminate()
        proc.wait(5)
    return {"server": f"subprocess pid {proc.pid}", "runs": runs}


def _serve_on(transport, address: str, stop: threading.Event) -> None:
    server = transport.listen(address)
    try:
        while not stop.is_set():
            got = server.recv(0.1)
            if got is not None:
                server.reply(got[0], got[1])
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--transports", default="zmq,nng,memory")
    ap.add_argument("--n", type=int, default=5000, help="requests per client thread")
    ap.add_argument("--size", type=int, default=200, help="payload bytes")
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "ADDRESS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    out = {
        "payload_bytes": args.size,
        "per_thread_requests": args.n,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "transports": {k: bench(k, args.n, args.size) for k in args.transports.split(",")},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
