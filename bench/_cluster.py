"""Processes for the benchmark suite: a goq server and workers on 127.0.0.1 in a temporary
GOQ_HOME, run with a chosen `goq` command and stopped by PID; plus small /proc readers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from goq_core.config import Settings, load_settings
from goq_core.keys import load_key
from goq_core.plugins import Plugins
from goq_core.roles.client import Client

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.01):
    """Poll until predicate() is truthy (returning it); RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS), KiB."""
    return _status_field(pid, "VmRSS")


def hwm_kib(pid: int) -> int:
    """Peak resident set size of a process (VmHWM), KiB."""
    return _status_field(pid, "VmHWM")


def _status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Send `sig` to a process still running, wait up to `timeout` s, then SIGKILL it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) of a live process, seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    own = (int(rest[11]) + int(rest[12])) / _TICK
    children = (int(rest[13]) + int(rest[14])) / _TICK
    return own, children


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


@dataclasses.dataclass(slots=True)
class GoqInstall:
    """Which interpreter and `goq` command the cluster's processes run, and how goq is
    installed there ("editable", "regular" or "source")."""

    python: str
    goq: list[str]
    install: str

    @classmethod
    def for_python(cls, python: str) -> GoqInstall:
        script = Path(python).parent / "goq"
        goq = [str(script)] if script.exists() else [python, "-m", "goq_cli.main"]
        probe = (
            "import importlib.metadata as m, json\n"
            "try:\n"
            "    d = json.loads(m.distribution('goq').read_text('direct_url.json') or '{}')\n"
            "    print('editable' if d.get('dir_info', {}).get('editable') else 'regular')\n"
            "except m.PackageNotFoundError:\n"
            "    print('source')\n"
        )
        done = subprocess.run(
            [python, "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd="/",  # not a checkout, whose goq.egg-info would answer instead
        )
        return cls(python, goq, done.stdout.strip())


class BenchCluster:
    """One goq server and its workers, all `goq` processes of `install`, on a free port."""

    def __init__(
        self,
        root: Path,
        install: GoqInstall,
        transport: str = "zmq",
        heartbeat: float = 1.0,
    ) -> None:
        self.root = root
        self.install = install
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir = root / "work"
        self.workdir.mkdir(exist_ok=True)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GOQ_")}
        self.env.update(
            GOQ_HOME=str(self.home),
            GOQ_JSERV_IP="127.0.0.1",
            GOQ_JSERV_PORT=str(self.port),
            GOQ_TRANSPORT=transport,
            GOQ_HEARTBEAT_SEC=str(heartbeat),
            PYTHONUNBUFFERED="1",
        )
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._procs: list[subprocess.Popen] = []
        self._clients: list[Client] = []

    # ------------------------------------------------------------------ one-shot commands

    def goq(self, *args: str, timeout: float = 60, env: dict | None = None):
        return subprocess.run(
            [*self.install.goq, *args],
            cwd=self.workdir,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str, timeout: float = 60, env: dict | None = None) -> str:
        done = self.goq(*args, timeout=timeout, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"goq {' '.join(args)} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def init(self) -> None:
        self.ok("init")

    # ------------------------------------------------------------------ in-process client

    def settings(self, sendtimeout_ms: int = 60_000) -> Settings:
        return dataclasses.replace(load_settings(self.env), sendtimeout_ms=sendtimeout_ms)

    def client(self, sendtimeout_ms: int = 60_000) -> Client:
        """A Client in this process (closed by close() if not before)."""
        settings = self.settings(sendtimeout_ms)
        client = Client(settings, load_key(settings.home), Plugins(lazy=True))
        self._clients.append(client)
        return client

    def db_path(self) -> str:
        return str(self.home / ".goq" / "goq.db")

    # ------------------------------------------------------------------ long-running roles

    def spawn(self, *args: str, log: str) -> subprocess.Popen:
        """`goq ARGS` of this install, output appended to `log`; stopped by close()."""
        return self.spawn_argv([*self.install.goq, *args], log)

    def spawn_argv(self, argv: list[str], log: str) -> subprocess.Popen:
        """Any command in the cluster's environment and directory (e.g. a profiled server),
        output appended to `log`; stopped by close()."""
        with open(self.root / log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._procs.append(proc)
        return proc

    def start_server(self, timeout: float = 120) -> float:
        """Start `goq serve`; returns seconds from spawn to its first answer to a STAT."""
        t0 = time.monotonic()
        self.server = self.spawn("serve", log="server.log")
        wait_for(self._server_up, timeout, "the server to answer STAT", every=0.005)
        return time.monotonic() - t0

    def _server_up(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise RuntimeError(f"server exited: {self.log('server.log')[-2000:]}")
        settings = self.settings(sendtimeout_ms=200)
        try:
            with Client(settings, load_key(settings.home), Plugins(lazy=True)) as client:
                client.stat(0)
        except Exception:
            return False
        return True

    def stop_server(self, timeout: float = 60) -> float:
        """SIGTERM the server and wait for it to exit; returns the seconds that took."""
        assert self.server is not None
        t0 = time.monotonic()
        self.stop(self.server, signal.SIGTERM, timeout)
        self.server = None
        return time.monotonic() - t0

    def start_worker(self, n: int = 1) -> list[subprocess.Popen]:
        """Start n `goq work` processes and wait until the server holds a request from each."""
        client = self.client()
        before = client.stat(0).counters.get("waitingWorkers", 0)
        new = [self.spawn("work", log=f"worker{len(self.workers) + i}.log") for i in range(n)]
        self.workers += new
        wait_for(
            lambda: client.stat(0).counters.get("waitingWorkers", 0) >= before + n,
            60,
            f"{n} worker(s) to ask for work",
            every=0.02,
        )
        return new

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        stop_process(proc, sig, timeout)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        for proc in reversed(self._procs):
            self.stop(proc, signal.SIGTERM, timeout=10)

    def logs_tail(self) -> str:
        return json.dumps({p.name: self.log(p.name)[-500:] for p in self.root.glob("*.log")})


def machine() -> dict:
    """What the figures were measured on (for the JSON of every benchmark)."""
    import platform

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def true_drain(install: GoqInstall, root: Path, worker_cpus: list[int], jobs: int) -> dict:
    """`jobs` x `/bin/true` in one `goq sub --file` through a fresh cluster in `root` with one
    `goq work --cpus C` per entry of `worker_cpus`, every worker asking before the jobs arrive:
    jobs/s from the first job's start to the last one's end (the store's clocks) and from the
    submit to the last finished; the server's and the workers' own CPU per job (not the
    jobs'); the runs reported in a RESULT with others. `root` is left for the caller to remove
    (on a journal-less ext4 a removal just before a drain slows its file creation)."""
    import sqlite3

    c = BenchCluster(root, install)
    try:
        c.init()
        c.start_server()
        assert c.server is not None
        client = c.client()
        procs = [
            c.spawn("work", "--cpus", str(cpus), log=f"worker{i}.log")
            for i, cpus in enumerate(worker_cpus)
        ]
        wait_for(
            lambda: client.stat(0).counters.get("waitingWorkers", 0) >= len(procs),
            120,
            f"{len(procs)} workers to ask for work",
        )
        pids = [c.server.pid] + [p.pid for p in procs]
        cpu0 = {pid: cpu_seconds(pid)[0] for pid in pids}
        (c.workdir / "jobs.txt").write_text("/bin/true\n" * jobs)
        t0 = time.monotonic()
        c.ok("sub", "--file", "jobs.txt", timeout=300)
        wait_for(
            lambda: client.stat(0).counters.get("finishedJobsCount", 0) >= jobs,
            900,
            "the drain to finish",
            every=0.05,
        )
        wall = time.monotonic() - t0
        cpu1 = {pid: cpu_seconds(pid)[0] for pid in pids}
        batched = client.stat(0).counters.get("batchedResultRunCount", 0)
        with sqlite3.connect(c.db_path()) as db:
            first, last = db.execute("SELECT min(start_ns), max(end_ns) FROM jobs").fetchone()
        db.close()
        server = pids[0]
        return {
            "jobs": jobs,
            "jobs_per_s": round(jobs / ((last - first) / 1e9), 1),
            "jobs_per_s_submit_to_all_finished": round(jobs / wall, 1),
            "server_cpu_us_per_job": round((cpu1[server] - cpu0[server]) / jobs * 1e6, 1),
            "workers_cpu_us_per_job": round(
                sum(cpu1[p] - cpu0[p] for p in pids[1:]) / jobs * 1e6, 1
            ),
            "batched_result_runs": batched,
        }
    finally:
        c.close()
