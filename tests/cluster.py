"""A goq cluster made of real processes on 127.0.0.1 for end-to-end tests: a GOQ_HOME in a
temporary directory, a free port, and `goq` subprocesses that are all stopped by PID at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port, wait_for  # noqa: F401 (re-exported)

GOQ = [sys.executable, "-m", "goq_cli"]


def pgid_alive(pgid: int) -> bool:
    """True while a process group has a live (non-zombie) member."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


class Cluster:
    def __init__(
        self,
        root: Path,
        transport: str = "zmq",
        heartbeat: float = 1.0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir = root / "work"
        self.workdir.mkdir(exist_ok=True)
        self.port = free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("GOQ_") or k == "GOQ_LOAD_PLUGINS"
        }
        self.env.update(
            GOQ_HOME=str(self.home),
            GOQ_JSERV_IP="127.0.0.1",
            GOQ_JSERV_PORT=str(self.port),
            GOQ_TRANSPORT=transport,
            GOQ_HEARTBEAT_SEC=str(heartbeat),
            GOQ_SENDTIMEOUT_MSEC="1000",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(extra_env or {})
        self.procs: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None

    # ------------------------------------------------------------------ one-shot commands

    def argv(self, args: tuple[str, ...], host: str = "") -> list[str]:
        """The command line that runs `goq ARGS` (on `host`, where a subclass has hosts)."""
        assert not host, "this cluster has one host"
        return [*GOQ, *args]

    def goq(
        self,
        *args: str,
        cwd: Path | None = None,
        timeout: float = 30,
        env=None,
        input: str | None = None,
        host: str = "",
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(args, host),
            cwd=cwd or self.workdir,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def ok(self, *args: str, **kw) -> str:
        done = self.goq(*args, **kw)
        assert done.returncode == 0, f"goq {' '.join(args)} failed: {done.stderr}{done.stdout}"
        return done.stdout

    def init(self) -> None:
        self.ok("init")

    def sub(self, *argv: str, cwd: Path | None = None) -> int:
        out = self.ok("sub", *argv, cwd=cwd)
        assert out.startswith("submitted job "), out
        return int(out.split()[2])

    def stat(self) -> dict[str, int]:
        out = self.ok("stat", "0")
        counters = {}
        for line in out.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                counters[name.strip()] = int(value)
        return counters

    # ------------------------------------------------------------------ long-running roles

    def spawn(self, *args: str, log: str, env=None, host: str = "") -> subprocess.Popen:
        with open(self.root / log, "ab") as out:
            proc = subprocess.Popen(
                self.argv(args, host),
                cwd=self.workdir,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def start_server(self, *extra: str) -> subprocess.Popen:
        self.server = self.spawn("serve", *extra, log="server.log")
        wait_for(self._server_up, 20, "the server to answer `goq stat`", every=0.05)
        return self.server

    def _server_up(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            raise AssertionError(f"server exited: {self.log('server.log')}")
        return self.goq("stat", "0", timeout=10).returncode == 0

    def start_worker(self, mode: str = "forever", log: str = "worker.log") -> subprocess.Popen:
        return self.spawn("work", mode, log=log)

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def output(self, jobid: int, cwd: Path | None = None) -> str:
        return ((cwd or self.workdir) / "o" / f"out.{jobid:05d}").read_text()

    def wait_output(self, jobid: int, timeout: float = 20, cwd: Path | None = None) -> str:
        path = (cwd or self.workdir) / "o" / f"out.{jobid:05d}"
        wait_for(path.exists, timeout, f"output of job {jobid}")
        return path.read_text()

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc, signal.SIGTERM, timeout=5)


@contextmanager
def initialised(root: Path, *, server: bool = False, **options) -> Iterator[Cluster]:
    """A Cluster(root, **options) with `goq init` run (and its server up if `server`), stopped
    at the end; then no log of its processes may hold a Python traceback (one crashed)."""
    c = Cluster(root, **options)
    try:
        c.init()
        if server:
            c.start_server()
        yield c
    finally:
        c.close()
    crashed = [p.name for p in root.glob("*.log") if "Traceback" in p.read_text(errors="replace")]
    assert not crashed, f"a goq process crashed: see {crashed} in {root}"
