"""goq against its peers on one machine (issue 15): the same workloads, in the same run, on goq,
task-spooler and a single-node Slurm, with ratios goq/peer. Not part of CI.

Workloads (each system on this host only; every daemon started here is stopped by PID):

- submit: wall time of one submit command, the queue idle (`goq sub /bin/true`, `tsp /bin/true`,
  `sbatch --wrap /bin/true`), median of --submits;
- dispatch: an idle runner; the job `date +%s%N > FILE` is submitted and the time it started
  read from FILE: start after the submit command was called, and after it returned; medians;
- drain: --drain `/bin/true` jobs queued while held, then released; wall time from the release
  to the last one ended, with 2 slots (goq: one `goq work --cpus 2`; task-spooler: `tsp -S 2`;
  Slurm: one node of 2 CPUs): jobs/s;
- memory: the daemon's resident memory (VmRSS) with --waiting jobs waiting (no slot free),
  less its RSS empty, per waiting job (Slurm: slurmctld; its jobs go in with one `sbatch`
  each, so --slurm-waiting caps them: submitting 20,000 takes minutes; task-spooler keeps one
  `tsp` process and connection per waiting job, whose PSS is added, and blocks at about 1,000
  waiting, so --tsp-waiting caps them, and its drain goes in rounds of 900);
- kill -9: --killed jobs waiting, the daemon SIGKILLed and started again: how many are still
  there (goq: server; task-spooler: its server process; Slurm: slurmctld).

A peer that is not installed is skipped with the line that installs it (Debian packages):

    apt-get install task-spooler              # tsp (ts on some distributions)
    apt-get install slurm-wlm munge           # slurmctld, slurmd, sbatch; munge for auth

Slurm runs from a slurm.conf made here (one node, this host at 127.0.0.1, sched/builtin,
no accounting, proctrack/linuxproc, state in the run's temporary directory), with munged
started here if none runs. Its daemons listen on ports 6817/6818 by default (--slurm-ports).

    .venv/bin/python bench/peers.py [--only goq,tsp,slurm] [--drain 2000] [--waiting 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cluster import rss_kib, stop_process, wait_for  # noqa: E402 (bench/ on sys.path above)

RESULTS = HERE / "results" / "peers.json"
INSTALL = {
    "tsp": "apt-get install task-spooler   (Debian/Ubuntu; the command is tsp, or ts elsewhere)",
    "slurm": "apt-get install slurm-wlm munge   (Debian/Ubuntu: slurmctld, slurmd, sbatch, munged)",
}


def log(text: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(argv: list[str], env: dict, cwd: str | Path, timeout: float = 60, check: bool = True):
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-800:]}")
    return done


def timed(argv: list[str], env: dict, cwd: str | Path) -> tuple[int, int, str]:
    """(call ns, return ns, stdout) of one command (wall clock, time.time_ns)."""
    t0 = time.time_ns()
    done = run(argv, env, cwd)
    return t0, time.time_ns(), done.stdout


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


class Peer:
    """One system under test. Subclasses start their daemons in `root` and stop them by PID."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir(parents=True, exist_ok=True)

    # each returns the figures of one workload
    def submit(self, n: int) -> dict:
        calls = [self._timed_submit(["/bin/true"]) for _ in range(n + 2)][2:]
        self.settle(n + 2)
        return {"n": n, "median_ms": median([(r - c) / 1e6 for c, r in calls])}

    def dispatch(self, n: int) -> dict:
        after_call, after_return = [], []
        for i in range(n + 2):
            marker = self.work / f"start.{i}"
            c, r = self._timed_submit(["sh", "-c", f"date +%s%N > {marker}"])
            wait_for(lambda m=marker: m.exists() and m.read_text().strip(), 60, "the job")
            started = int(marker.read_text().strip())
            if i >= 2:
                after_call.append((started - c) / 1e6)
                after_return.append((started - r) / 1e6)
        self.settle(n + 2)
        return {
            "n": n,
            "start_after_call_median_ms": median(after_call),
            "start_after_return_median_ms": median(after_return),
        }

    def _timed_submit(self, argv: list[str]) -> tuple[int, int]:
        c, r, _ = timed(self.submit_argv(argv), self.env, self.work)
        return c, r

    # to be defined by each peer
    env: dict = {}

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def submit_argv(self, argv: list[str]) -> list[str]: ...
    def settle(self, n: int) -> None:
        """Wait until the jobs submitted so far have all ended."""

    def drain(self, n: int) -> dict: ...
    def memory(self, n: int) -> dict: ...
    def kill9(self, n: int) -> dict: ...


# ------------------------------------------------------------------------------ goq


class Goq(Peer):
    name = "goq"

    def __init__(self, root: Path, python: str) -> None:
        super().__init__(root)
        from _cluster import BenchCluster, GoqInstall

        self.install = GoqInstall.for_python(python)
        self.cluster = BenchCluster(root / "goq", self.install)
        self.env = self.cluster.env
        self.work = self.cluster.workdir
        self.worker: subprocess.Popen | None = None

    def start(self) -> None:
        self.cluster.init()
        self.cluster.start_server()
        self._start_worker()

    def _start_worker(self) -> None:
        self.worker = self.cluster.spawn("work", "--cpus", "2", log="worker.log")
        client = self.cluster.client()
        wait_for(
            lambda: client.stat(0).counters.get("waitingWorkers", 0) >= 1, 60, "the worker", 0.02
        )

    def _stop_worker(self) -> None:
        if self.worker is not None:
            self.cluster.stop(self.worker)
            self.cluster._procs.remove(self.worker)
            self.worker = None

    def stop(self) -> None:
        self.cluster.close()

    def submit_argv(self, argv: list[str]) -> list[str]:
        return [*self.install.goq, "sub", *argv]

    def counters(self) -> dict:
        return self.cluster.client().stat(0).counters

    def settle(self, n: int) -> None:
        wait_for(
            lambda: (lambda c: c.get("runningJobs", 0) + c.get("waitingJobs", 0) == 0)(
                self.counters()
            ),
            120,
            "the goq queue to empty",
            0.02,
        )

    def drain(self, n: int) -> dict:
        """With the 2-slot worker (one `goq work --cpus 2`, as tsp -S 2 and a node of 2
        CPUs), then with two `goq work` of 1 cpu (bench/suite.py's drain) for reference."""
        result = self._drain(n)
        self._stop_worker()
        twins = [self.cluster.spawn("work", log=f"single{i}.log") for i in range(2)]
        client = self.cluster.client()
        wait_for(lambda: client.stat(0).counters.get("waitingWorkers", 0) >= 2, 60, "workers", 0.02)
        result["two_workers_of_1_cpu"] = self._drain(n)
        for proc in twins:
            self.cluster.stop(proc)
            self.cluster._procs.remove(proc)
        self._start_worker()
        return result

    def _drain(self, n: int) -> dict:
        (self.work / "drain.txt").write_text("/bin/true\n" * n)
        out = self.cluster.ok("sub", "--hold", "--file", "drain.txt", timeout=120)
        first, last = out.split()[2].split("..")
        done0 = self.counters().get("finishedJobsCount", 0)
        t0 = time.perf_counter()
        self.cluster.ok("release", f"{first}-{last}")
        wait_for(
            lambda: self.counters().get("finishedJobsCount", 0) >= done0 + n, 600, "drain", 0.02
        )
        took = time.perf_counter() - t0
        return {"jobs": n, "seconds": round(took, 3), "jobs_per_s": round(n / took, 1)}

    def memory(self, n: int) -> dict:
        self._stop_worker()
        pid = self.cluster.server.pid
        time.sleep(0.3)
        empty = rss_kib(pid)
        (self.work / "mem.txt").write_text("/bin/true\n" * n)
        self.cluster.ok("sub", "--file", "mem.txt", timeout=300)
        time.sleep(0.5)
        full = rss_kib(pid)
        waiting = self.counters().get("waitingJobs", 0)
        return _memory(empty, full, waiting)

    def kill9(self, n: int) -> dict:
        # the queue holds the memory workload's jobs: cancel them first
        self.cluster.ok("kill", "--all", "--yes", timeout=120)
        self.settle(0)
        (self.work / "kill.txt").write_text("/bin/true\n" * n)
        self.cluster.ok("sub", "--file", "kill.txt")
        before = self.counters().get("waitingJobs", 0)
        server = self.cluster.server
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        self.cluster._procs.remove(server)
        t0 = time.perf_counter()
        self.cluster.start_server()
        back = time.perf_counter() - t0
        after = self.counters().get("waitingJobs", 0)
        return {"waiting_before": before, "waiting_after": after, "restart_s": round(back, 3)}


def _memory(empty_kib: int, full_kib: int, waiting: int) -> dict:
    return {
        "waiting": waiting,
        "rss_empty_mib": round(empty_kib / 1024, 1),
        "rss_mib": round(full_kib / 1024, 1),
        "bytes_per_waiting_job": round((full_kib - empty_kib) * 1024 / max(waiting, 1), 1),
    }


# ------------------------------------------------------------------------------ task-spooler


class TaskSpooler(Peer):
    """task-spooler: one server process per TS_SOCKET, started by the first client call; FIFO;
    each job's output in a file under TMPDIR (like goq's output files). No persistence."""

    name = "tsp"
    MAX_QUEUED = 900  # jobs queued at once (it blocks at about 1,000: one connection each)

    def __init__(self, root: Path, binary: str) -> None:
        super().__init__(root)
        self.tsp = binary
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
        self.env.update(
            TS_SOCKET=str(root / "ts.socket"),
            TMPDIR=str(self.work),
            TS_MAXFINISHED="100000",
        )
        self.last_id = -1

    def t(self, *args: str, timeout: float = 60, check: bool = True):
        return run([self.tsp, *args], self.env, self.work, timeout, check)

    def server_pid(self) -> int:
        """The task-spooler server of our socket: the process holding its listening end."""
        path = self.env["TS_SOCKET"]
        inodes = set()
        with open("/proc/net/unix") as fh:
            for line in fh.readlines()[1:]:
                f = line.split()
                if len(f) >= 8 and f[7] == path and int(f[3], 16) & 0x10000:  # __SO_ACCEPTCON
                    inodes.add(f"socket:[{f[6]}]")
        for pid in self.processes():
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                            return pid
        raise RuntimeError("no task-spooler server found")

    def processes(self) -> list[int]:
        """Every tsp process of our socket: the server and one client per queued or running
        job (task-spooler keeps each job's `tsp` process waiting until the job has run)."""
        want = f"TS_SOCKET={self.env['TS_SOCKET']}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                exe = os.readlink(f"/proc/{entry}/exe")
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    environ = fh.read().split(b"\0")
            except OSError:
                continue
            if os.path.basename(exe) in ("tsp", "ts") and want in environ:
                found.append(int(entry))
        return found

    def start(self) -> None:
        self.t("-S", "2")  # starts the server
        self.pid = self.server_pid()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.t("-K", check=False, timeout=10)
        for pid in self.processes():  # server and job clients of our socket only
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def submit_argv(self, argv: list[str]) -> list[str]:
        return [self.tsp, *argv]

    def _timed_submit(self, argv: list[str]) -> tuple[int, int]:
        c, r, out = timed(self.submit_argv(argv), self.env, self.work)
        self.last_id = int(out.strip())
        return c, r

    def settle(self, n: int) -> None:
        if self.last_id >= 0:
            self.t("-w", str(self.last_id), timeout=300, check=False)
        self.t("-C")  # forget finished jobs

    def _blocker(self, gate: Path) -> int:
        """A job occupying every slot until `gate` exists (tsp -N 2: it needs both slots)."""
        out = self.t("-N", "2", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done")
        return int(out.stdout.strip())

    def _queue(self, n: int, argv: list[str]) -> int:
        last = -1
        for _ in range(n):
            last = int(self.t(*argv).stdout.strip())
        return last

    def drain(self, n: int) -> dict:
        """In rounds of at most MAX_QUEUED (task-spooler holds about 1,000 waiting jobs: each
        keeps a connection to its server, and the next `tsp` call blocks), each queued behind
        a blocker and timed from its release; jobs/s over the rounds' total time."""
        took, left, rounds = 0.0, n, 0
        while left > 0:
            chunk = min(left, self.MAX_QUEUED)
            gate = self.work / f"gate.drain.{rounds}"
            self._blocker(gate)
            self._queue(chunk, ["/bin/true"])
            # after them, a job needing both slots: it starts once every one has ended
            end = int(self.t("-N", "2", "true").stdout.strip())
            t0 = time.perf_counter()
            gate.touch()
            self.t("-w", str(end), timeout=600, check=False)
            took += time.perf_counter() - t0
            self.t("-C")
            left -= chunk
            rounds += 1
        return {
            "jobs": n,
            "seconds": round(took, 3),
            "jobs_per_s": round(n / took, 1),
            "note": f"{rounds} rounds of <= {self.MAX_QUEUED}, each from its release to the end "
            "of a trailing 2-slot `true` job",
        }

    def memory(self, n: int) -> dict:
        empty = rss_kib(self.pid)
        gate = self.work / "gate.mem"
        self._blocker(gate)
        t0 = time.perf_counter()
        self._queue(n, ["/bin/true"])
        fill = time.perf_counter() - t0
        time.sleep(0.3)
        full = rss_kib(self.pid)
        clients = [p for p in self.processes() if p != self.pid]
        pss = sum(_pss_kib(p) for p in clients)
        result = _memory(empty, full, self._queued())
        result["server_only_bytes_per_waiting_job"] = result["bytes_per_waiting_job"]
        result["client_processes"] = len(clients)
        result["clients_pss_mib"] = round(pss / 1024, 1)
        result["bytes_per_waiting_job"] = round(
            ((full - empty) + pss) * 1024 / max(result["waiting"], 1), 1
        )
        result["fill_s"] = round(fill, 1)
        result["note"] = "server RSS growth + PSS of the one waiting tsp process per job"
        self.t("-K", check=False)  # drop the queue (kill -9 starts afresh)
        wait_for(lambda: not _alive(self.pid), 10, "tsp -K")
        gate.touch()
        wait_for(lambda: not self.processes(), 30, "the tsp clients to go")
        return result

    def kill9(self, n: int) -> dict:
        self.start()
        gate = self.work / "gate.kill"
        self._blocker(gate)
        self._queue(n, ["/bin/true"])
        before = self._queued()
        os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not _alive(self.pid), 10, "the killed tsp server")
        t0 = time.perf_counter()
        self.start()
        back = time.perf_counter() - t0
        after = self._queued()
        gate.touch()
        return {
            "waiting_before": before,
            "waiting_after": after,
            "restart_s": round(back, 3),
            "note": "task-spooler keeps its queue in memory only",
        }

    def _queued(self) -> int:
        lines = self.t("-l").stdout.splitlines()[1:]
        return sum(1 for line in lines if len(line.split()) > 1 and line.split()[1] == "queued")


def _pss_kib(pid: int) -> int:
    """Proportional set size of a process (its share of shared pages), KiB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------ Slurm

SLURM_CONF = """\
ClusterName=goqbench
SlurmctldHost={host}({addr})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MaxJobCount=100000
MinJobAge=2
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=2
NodeName={host} NodeAddr={addr} CPUs=2 State=UNKNOWN
PartitionName=bench Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Slurm(Peer):
    """A single-node Slurm made here: slurmctld and slurmd in the foreground (-D), stopped by
    PID; munged started here if none runs (stopped by PID too)."""

    name = "slurm"

    def __init__(self, root: Path, ports: tuple[int, int]) -> None:
        super().__init__(root)
        self.host = socket.gethostname()
        self.conf = root / "slurm.conf"
        for d in ("state", "spool"):
            (root / d).mkdir(exist_ok=True)
        self.conf.write_text(
            SLURM_CONF.format(
                host=self.host,
                addr="127.0.0.1",
                ctld_port=ports[0],
                d_port=ports[1],
                state=root / "state",
                spool=root / "spool",
                root=root,
            )
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(self.conf)
        self.procs: dict[str, subprocess.Popen] = {}
        self.last_id = 0

    def start(self) -> None:
        self._munge()
        self._ctld()
        self._daemon("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        wait_for(self._node_idle, 60, "the slurm node to be idle", 0.2)

    def _munge(self) -> None:
        if run(["munge", "-n"], self.env, self.root, check=False).returncode == 0:
            return  # a munged runs already
        sock_dir = Path("/run/munge")
        sock_dir.mkdir(exist_ok=True)
        shutil.chown(sock_dir, "munge", "munge")
        self._daemon("munged", ["munged", "-F"], user="munge")
        wait_for(
            lambda: run(["munge", "-n"], self.env, self.root, check=False).returncode == 0,
            20,
            "munged",
        )

    def _ctld(self) -> None:
        self._daemon("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        wait_for(
            lambda: run(["scontrol", "ping"], self.env, self.root, check=False).stdout.count("UP"),
            60,
            "slurmctld",
            0.2,
        )

    def _daemon(self, name: str, argv: list[str], user: str | None = None) -> None:
        with open(self.root / f"{name}.out", "ab") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=user,
                group=user,
            )

    def _node_idle(self) -> bool:
        out = run(["sinfo", "-h", "-o", "%t"], self.env, self.root, check=False).stdout
        return out.strip() == "idle"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            run(
                ["scancel", "--user", os.environ.get("USER", "root")],
                self.env,
                self.root,
                check=False,
                timeout=20,
            )
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, signal.SIGTERM, 15)

    def submit_argv(self, argv: list[str]) -> list[str]:
        line = " ".join(argv) if argv[0] != "sh" else argv[2]
        return ["sbatch", "--parsable", "-o", "/dev/null", "--wrap", line]

    def _timed_submit(self, argv: list[str]) -> tuple[int, int]:
        c, r, out = timed(self.submit_argv(argv), self.env, self.work)
        self.last_id = int(out.strip().split(";")[0])
        return c, r

    def _count(self, states: str = "") -> int:
        argv = ["squeue", "-h", "-r", "-o", "%i"] + (["-t", states] if states else [])
        return len(run(argv, self.env, self.root).stdout.split())

    def settle(self, n: int) -> None:
        wait_for(lambda: self._count() == 0, 300, "the slurm queue to empty", 0.1)

    def _sbatch_many(self, n: int, hold: bool) -> list[str]:
        extra = ["--hold"] if hold else []
        argv = ["sbatch", "--parsable", "-o", "/dev/null", *extra, "--wrap", "/bin/true"]
        return [run(argv, self.env, self.work).stdout.strip().split(";")[0] for _ in range(n)]

    def drain(self, n: int) -> dict:
        self._sbatch_many(n, hold=True)
        t0 = time.perf_counter()
        run(["scontrol", "release", ",".join(self._ids())], self.env, self.root, timeout=120)
        wait_for(lambda: self._count() == 0, 1800, "the slurm drain", 0.2)
        took = time.perf_counter() - t0
        return {
            "jobs": n,
            "seconds": round(took, 3),
            "jobs_per_s": round(n / took, 1),
            "note": "individual sbatch --hold, then one scontrol release; until squeue empty",
        }

    def _ids(self) -> list[str]:
        return run(["squeue", "-h", "-o", "%i"], self.env, self.root).stdout.split()

    def memory(self, n: int) -> dict:
        pid = self.procs["slurmctld"].pid
        empty = rss_kib(pid)
        t0 = time.perf_counter()
        self._sbatch_many(n, hold=True)
        fill = time.perf_counter() - t0
        time.sleep(1.0)
        result = _memory(empty, rss_kib(pid), self._count("PD"))
        result["fill_s"] = round(fill, 1)
        result["note"] = "slurmctld, held individual jobs (one sbatch each)"
        run(["scancel", "--state", "PENDING"], self.env, self.root, timeout=120)
        wait_for(lambda: self._count() == 0, 120, "cancel", 0.2)
        return result

    def kill9(self, n: int) -> dict:
        """Two trials: slurmctld SIGKILLed at once after the n-th sbatch returned, and 5 s
        later (it saves its state in the background, not before answering sbatch)."""
        out = {}
        for label, pause in (("at_once", 0.0), ("after_5s", 5.0)):
            time.sleep(3.0)  # earlier cancellations saved: they must not come back as waiting
            ids = set(self._sbatch_many(n, hold=True))
            time.sleep(pause)
            before = len(ids & set(self._ids()))
            proc = self.procs.pop("slurmctld")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            t0 = time.perf_counter()
            self._ctld()
            back = time.perf_counter() - t0
            after = len(ids & set(self._ids()))
            run(["scancel", *sorted(ids)], self.env, self.root, timeout=120, check=False)
            wait_for(lambda ids=ids: not ids & set(self._ids()), 120, "cancel", 0.2)
            out[label] = {
                "waiting_before": before,
                "waiting_after": after,
                "restart_s": round(back, 3),
            }
        return {
            **out["at_once"],
            "after_5s": out["after_5s"],
            "note": "waiting_after: of the n jobs, those slurmctld knew after its restart; "
            "at once after the last sbatch, and (after_5s) 5 s later",
        }


# ------------------------------------------------------------------------------ main


def measure(peer: Peer, args: argparse.Namespace, waiting: int, drain: int) -> dict:
    out: dict = {}
    peer.start()
    try:
        for name, call in (
            ("submit", lambda: peer.submit(args.submits)),
            ("dispatch", lambda: peer.dispatch(args.dispatches)),
            ("drain", lambda: peer.drain(drain)),
            ("memory", lambda: peer.memory(waiting)),
            ("kill9", lambda: peer.kill9(args.killed)),
        ):
            log(f"{peer.name}: {name}")
            try:
                out[name] = call()
            except Exception as exc:  # one workload failing must not lose the others
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"{peer.name}: {name} failed: {exc}")
            log(f"{peer.name}: {name}: {json.dumps(out[name])}")
    finally:
        peer.stop()
    return out


RATIOS = [  # (workload, figure, "lower" or "higher" is better)
    ("submit", "median_ms", "lower"),
    ("dispatch", "start_after_call_median_ms", "lower"),
    ("dispatch", "start_after_return_median_ms", "lower"),
    ("drain", "jobs_per_s", "higher"),
    ("memory", "bytes_per_waiting_job", "lower"),
    ("kill9", "waiting_after", "higher"),
]


def ratios(results: dict) -> dict:
    """goq's figure / the peer's, per workload (and which way is better)."""
    goq = results.get("goq", {})
    out: dict = {}
    for peer, figures in results.items():
        if peer == "goq" or not isinstance(figures, dict) or "skipped" in figures:
            continue
        row = {}
        for workload, figure, better in RATIOS:
            a = goq.get(workload, {}).get(figure)
            b = figures.get(workload, {}).get(figure)
            if isinstance(a, int | float) and isinstance(b, int | float) and b:
                row[f"{workload}.{figure}"] = {"goq_over_peer": round(a / b, 3), "better": better}
        out[peer] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="goq,tsp,slurm")
    ap.add_argument("--python", default=sys.executable, help="the goq install to measure")
    ap.add_argument("--submits", type=int, default=20)
    ap.add_argument("--dispatches", type=int, default=20)
    ap.add_argument("--drain", type=int, default=2000)
    ap.add_argument("--waiting", type=int, default=20_000)
    ap.add_argument("--slurm-waiting", type=int, default=2000, help="Slurm's memory workload")
    ap.add_argument(
        "--slurm-drain", type=int, default=200, help="Slurm's drain (it runs 2-3 jobs/s here)"
    )
    ap.add_argument(
        "--tsp-waiting",
        type=int,
        default=TaskSpooler.MAX_QUEUED,
        help="tsp's memory workload (one process and connection per waiting job: at most ~1,000)",
    )
    ap.add_argument("--killed", type=int, default=100)
    ap.add_argument("--slurm-ports", default="6817,6818")
    ap.add_argument(
        "--no-netns",
        dest="netns",
        action="store_false",
        help="run Slurm in this network namespace (default, as root: a new one with only "
        "loopback, so its daemons, which listen on every address, are reachable from nowhere)",
    )
    ap.add_argument("--_in_netns", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save", action="store_true", help=f"also write {RESULTS}")
    args = ap.parse_args(argv)
    wanted = args.only.split(",")
    began = time.time()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="goq-peers-") as tmp:
        root = Path(tmp)
        for name in wanted:
            peer: Peer | None = None
            waiting, drain = args.waiting, args.drain
            if name == "goq":
                peer = Goq(root / "goq", args.python)
            elif name == "tsp":
                binary = shutil.which("tsp") or shutil.which("ts")
                if binary is None or "task" not in _version(binary):
                    results[name] = {"skipped": f"not installed: {INSTALL['tsp']}"}
                else:
                    peer = TaskSpooler(root / "tsp", binary)
                    waiting = args.tsp_waiting
            elif name == "slurm":
                missing = [
                    c
                    for c in ("slurmctld", "slurmd", "sbatch", "munged")
                    if shutil.which(c) is None
                ]
                if missing:
                    results[name] = {
                        "skipped": f"not installed ({', '.join(missing)}): {INSTALL['slurm']}"
                    }
                elif args.netns and not args._in_netns and (got := slurm_in_netns(args)):
                    results[name] = got  # measured by this script run in a namespace of its own
                else:
                    ports = tuple(int(p) for p in args.slurm_ports.split(","))
                    peer = Slurm(root / "slurm", ports)  # type: ignore[arg-type]
                    waiting, drain = args.slurm_waiting, args.slurm_drain
            else:
                raise SystemExit(f"unknown system {name!r} (goq, tsp, slurm)")
            if peer is None:
                if "skipped" in results[name]:
                    log(f"{name}: skipped: {results[name]['skipped']}")
                continue
            try:
                results[name] = measure(peer, args, waiting, drain)
            except Exception as exc:
                results[name] = {"skipped": f"failed to start: {type(exc).__name__}: {exc}"}
                log(f"{name}: failed: {exc}")
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
                "python": platform.python_version(),
                "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            },
            "sizes": {
                "submits": args.submits,
                "dispatches": args.dispatches,
                "drain": args.drain,
                "waiting": args.waiting,
                "slurm_waiting": args.slurm_waiting,
                "tsp_waiting": args.tsp_waiting,
                "killed": args.killed,
            },
            "elapsed_s": round(time.time() - began, 1),
        },
        "results": results,
        "ratios_goq_over_peer": ratios(results),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text + "\n")
    return 0


def slurm_in_netns(args: argparse.Namespace) -> dict:
    """Run the Slurm part of this script in a new network namespace holding only loopback
    (unshare -n, as root): nothing outside this host can reach its daemons. Its figures, or
    why it was skipped; {} when no namespace can be made (then it runs here)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        log("slurm: not root or no unshare/ip: its daemons run in this network namespace")
        args.netns = False
        return {}
    argv = [sys.executable, str(Path(__file__).resolve()), "--only", "slurm", "--_in_netns"]
    for flag in ("submits", "dispatches", "killed", "slurm_waiting", "slurm_drain"):
        argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    argv += ["--slurm-ports", args.slurm_ports, "--python", args.python]
    # loopback up, plus an address of its own: without a non-loopback address getaddrinfo
    # (AI_ADDRCONFIG) finds no address family and slurmctld cannot bind
    inner = "ip link set lo up && ip addr add 10.254.254.1/32 dev lo && exec " + " ".join(
        _quote(a) for a in argv
    )
    done = subprocess.run(
        ["unshare", "-n", "--", "sh", "-c", inner],
        stdout=subprocess.PIPE,
        text=True,
        timeout=3600,
    )
    try:
        return json.loads(done.stdout)["results"]["slurm"]
    except (ValueError, KeyError):
        return {"skipped": f"the run in its network namespace failed (exit {done.returncode})"}


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def _version(binary: str) -> str:
    """What `binary -V` says (task-spooler names itself; moreutils' ts does not)."""
    done = subprocess.run(
        [binary, "-V"],
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TS_SOCKET": "/nonexistent"},
    )
    return (done.stdout + done.stderr).lower()


if __name__ == "__main__":
    sys.exit(main())
