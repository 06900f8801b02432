"""Benchmark: how much memory a keyless peer can make a real `goq serve` hold.

For each transport it starts `goq serve` in a temporary GOQ_HOME on 127.0.0.1 and floods it
from raw TCP sockets that never hold the key (they speak only the transport's framing):

- partial: N connections each complete the transport's handshake (zmq: ZMTP 3.0 greeting and
  READY as a DEALER; nng: the SP header as a Pair1 peer), announce one frame of the largest size
  the transport takes, send `--partial` of it, and then go silent, holding the connection open
  for `--hold` seconds. It notes how many of them the server dropped (idle timeout) by then.
- full: M connections each send one complete frame of the largest size (garbage: the server
  refuses it as not a goq frame), all at once, then wait a moment for the refusal.

While the flood runs it samples the server's RSS (/proc/PID/status VmRSS; VmHWM is reset between
phases through /proc/PID/clear_refs) and asks the server for `stat` with the real key, timing
the answer. Prints one JSON document: per transport and phase, baseline / peak / after RSS (KiB),
the keyed stat latencies, and whether the server stayed up.

Usage: python bench/keyless_flood.py [--transports zmq,nng] [--conns 100] [--frames 30]
       [--partial 0.9] [--hold 10] [--frame-bytes N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _cluster import BenchCluster, GoqInstall, hwm_kib, rss_kib

from goq_core.interfaces import DEFAULT_MAX_FRAME
from goq_core.roles.server import TOO_BIG_SLACK

REQID_LEN = 8
SAMPLE_EVERY = 0.02  # seconds between RSS samples
CHUNK = 1 << 20  # bytes per sendall of a flood frame


# ------------------------------------------------------------------------------ wire framing


def zmq_handshake() -> bytes:
    """A ZMTP 3.0 greeting (NULL mechanism, as client) and the READY command of a DEALER."""
    greeting = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
    greeting += b"\x00" + bytes(31)
    name, value = b"Socket-Type", b"DEALER"
    body = b"\x05READY" + bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value
    return greeting + b"\x04" + bytes([len(body)]) + body


def zmq_frame_header(size: int) -> bytes:
    """A long, last message frame of `size` bytes."""
    return b"\x02" + size.to_bytes(8, "big")


def nng_handshake() -> bytes:
    """The SP/TCP header of a Pair1 peer (protocol 0x11)."""
    return b"\x00SP\x00" + (0x11).to_bytes(2, "big") + b"\x00\x00"


def nng_frame_header(size: int) -> bytes:
    return size.to_bytes(8, "big")


def largest_frame(kind: str, max_frame: int) -> int:
    """The largest frame (bytes on the wire, after the length header) the server's transport
    takes: the server listens with max_frame + TOO_BIG_SLACK."""
    limit = max_frame + TOO_BIG_SLACK
    return limit + REQID_LEN if kind == "nng" else limit


def open_flood_socket(kind: str, port: int, frame: int, send: int) -> socket.socket:
    """Connect, handshake, announce a frame of `frame` bytes and send `send` bytes of it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if kind == "zmq":
        s.sendall(zmq_handshake() + zmq_frame_header(frame))
    else:
        s.sendall(nng_handshake() + nng_frame_header(frame))
    junk = bytes(4) + os.urandom(CHUNK - 4)  # nng: a Pair1 hop count of 0 first
    left = send
    while left > 0:
        n = min(left, CHUNK)
        s.sendall(junk[:n])
        left -= n
    return s


def dropped_by_peer(s: socket.socket) -> bool:
    """True when the server closed (or reset) this connection; drains what it sent."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


# ------------------------------------------------------------------------------ sampling


class Sampler:
    """Samples a process's VmRSS in a thread; max_kib is the largest sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.max_kib = max(self.max_kib, rss_kib(self.pid))
            self._stop.wait(SAMPLE_EVERY)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.max_kib


def reset_hwm(pid: int) -> bool:
    """Reset the peak RSS (VmHWM) of a process of ours; False where the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def keyed_stat_ms(cluster: BenchCluster, timeout_ms: int = 10_000) -> float | None:
    """Milliseconds for a STAT with the real key; None when it failed."""
    client = cluster.client(sendtimeout_ms=timeout_ms)
    t0 = time.perf_counter()
    try:
        client.stat(0)
    except Exception:
        return None
    finally:
        client.close()
    return round((time.perf_counter() - t0) * 1000, 1)


# ------------------------------------------------------------------------------ phases


def phase(
    cluster: BenchCluster,
    kind: str,
    conns: int,
    frame: int,
    send: int,
    hold: float,
    settle: float,
) -> dict:
    """Open `conns` flood connections sending `send` of a `frame`-byte frame; hold; close."""
    assert cluster.server is not None
    pid = cluster.server.pid
    time.sleep(0.3)
    baseline = rss_kib(pid)
    hwm_reset = reset_hwm(pid)
    sampler = Sampler(pid)
    t0 = time.monotonic()
    socks: list[socket.socket] = []
    errors = 0
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(open_flood_socket, kind, cluster.port, frame, send) for _ in range(conns)
        ]
        for f in futures:
            try:
                socks.append(f.result(timeout=120))
            except Exception:
                errors += 1
    sent_s = time.monotonic() - t0
    stats = [keyed_stat_ms(cluster)]
    dropped_at: dict[int, float] = {}
    hold_until = time.monotonic() + hold
    while time.monotonic() < hold_until:
        for i, s in enumerate(socks):
            if i not in dropped_at and dropped_by_peer(s):
                dropped_at[i] = time.monotonic() - t0
        time.sleep(0.1)
    stats.append(keyed_stat_ms(cluster))
    peak_sampled = sampler.stop()
    peak_hwm = hwm_kib(pid)
    for s in socks:
        s.close()
    time.sleep(settle)
    after = rss_kib(pid)
    stats.append(keyed_stat_ms(cluster))
    return {
        "connections": conns,
        "connect_errors": errors,
        "frame_bytes": frame,
        "sent_per_connection": send,
        "seconds_to_send": round(sent_s, 2),
        "dropped_by_server": len(dropped_at),
        "first_drop_s": round(min(dropped_at.values()), 1) if dropped_at else None,
        "last_drop_s": round(max(dropped_at.values()), 1) if dropped_at else None,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak_hwm if hwm_reset else peak_sampled,
        "peak_sampled_rss_kib": peak_sampled,
        "peak_growth_kib": (peak_hwm if hwm_reset else peak_sampled) - baseline,
        "after_rss_kib": after,
        "keyed_stat_ms": stats,
        "server_alive": cluster.server.poll() is None,
    }


def run_transport(kind: str, args: argparse.Namespace, install: GoqInstall) -> dict:
    frame = args.frame_bytes or largest_frame(kind, DEFAULT_MAX_FRAME)
    with tempfile.TemporaryDirectory(prefix="goq-flood-") as tmp:
        cluster = BenchCluster(Path(tmp), install, transport=kind)
        try:
            cluster.init()
            cluster.start_server()
            assert cluster.server is not None
            out: dict = {"server_pid": cluster.server.pid, "frame_bytes": frame}
            out["partial"] = phase(
                cluster, kind, args.conns, frame, int(frame * args.partial), args.hold, args.settle
            )
            out["full"] = phase(cluster, kind, args.frames, frame, frame, 1.0, args.settle)
            stat = cluster.goq("stat", "0", timeout=30)
            out["cli_stat_after_ok"] = stat.returncode == 0
            out["server_alive"] = cluster.server.poll() is None
            return out
        finally:
            cluster.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transports", default="zmq,nng")
    p.add_argument("--conns", type=int, default=100, help="connections of the partial phase")
    p.add_argument("--frames", type=int, default=30, help="complete frames of the full phase")
    p.add_argument("--partial", type=float, default=0.9, help="fraction of a frame sent")
    p.add_argument("--hold", type=float, default=40.0, help="seconds partial conns stay open")
    p.add_argument("--settle", type=float, default=1.0, help="seconds before 'after' RSS")
    p.add_argument("--frame-bytes", type=int, default=0, help="frame size (0: the largest)")
    args = p.parse_args(argv)
    install = GoqInstall.for_python(sys.executable)
    report: dict = {
        "meta": {
            "max_frame": DEFAULT_MAX_FRAME,
            "too_big_slack": TOO_BIG_SLACK,
            "conns": args.conns,
            "frames": args.frames,
            "partial": args.partial,
            "hold_s": args.hold,
        },
        "transports": {},
    }
    for kind in args.transports.split(","):
        report["transports"][kind] = run_transport(kind, args, install)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
