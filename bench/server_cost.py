"""Server-only benchmark (issue 15): what one job costs the goq server, in CPU, through its whole
lifecycle, with no job process anywhere.

A real `goq serve` (real transport, codec, cipher and sqlite store; 127.0.0.1, a free port, a
temporary GOQ_HOME made by `goq init`) is driven by synthetic workers: child processes of this
script that speak the real wire through goq_core's own classes (settings and key loading,
Plugins, Wire, the transport's ClientEnd, Message, make_offer) and send exactly what a 1-cpu
`goq work` sends for a job that ends at once: REQUEST_WORK (offer) -> JOB; then per job one
RESULT (its outcome as JobRun.outcome makes it, a few bytes of output in `data`, rusage
counters, and wait_ms > 0: the RESULT is the ask for the next job) -> JOB or NOTHING_YET. A run
is held for microseconds, far under the worker's FIRST_HEARTBEAT, so a real worker would send
no HEARTBEAT either. With --slots N each synthetic worker offers N cpus, is handed up to N jobs
per JOB reply, and reports them all in one RESULT (as `goq work --cpus N` reports the runs that
ended together; goq_core.messages); --unbatched sends one RESULT per run instead, the last one
asking for more (how workers with slots reported before they batched).

Each trial also times the file system alone: creating and writing 2,000 files as the server
creates output files, in a fresh directory beside the trial's, just after the drain
(fs_create_cpu_us_per_file); the summary's total_less_fs_create_us_per_job is goq's part. On
this VM's ext4 (no journal) that cost moves from ~25 to ~550 µs per file with the files deleted
in the last minutes (ext4 skips each recently deleted inode one by one), so a run keeps its
trials' files until it ends, and --tmpfs gives the figure that depends on goq alone.

Each trial: a fresh server; N jobs `/bin/true` submitted in batches by Client.submit_many (the
submit phase); then the synthetic workers are told to go and the script polls STAT until the
server counts N finished (the drain phase: dispatch, RESULT, the job's output file created and
written, the commit). The server's CPU comes from /proc/PID/stat (utime+stime) before and after
each phase, per thread from /proc/PID/task (main loop, ZMQbg/IO, output writers; user vs
system). Trials are repeated and medians reported; JSON on stdout (and with --save, in
bench/results/server_cost.json), progress on stderr.

    .venv/bin/python bench/server_cost.py [--jobs 10000] [--trials 3] [--workers 2] [--tmpfs]
    .venv/bin/python bench/server_cost.py --slots 4 [--unbatched]   # workers of 4 cpus
    .venv/bin/python bench/server_cost.py --profile    # one more trial under cProfile

--profile runs the server of that extra trial under cProfile (every thread: the output writer
pool too), stops it with SIGTERM (the profile is written on its clean exit), prints the top
functions by cumulative and by own time, and the time grouped by what it is spent on (output
files, sqlite commit, codec, cipher, transport, kernel...), converted to microseconds per job
with the unprofiled median of the same run (cProfile's own overhead inflates small Python
calls: the shares are indicative).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import getpass
import json
import os
import pstats
import resource
import select
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

RESULTS = HERE / "results" / "server_cost.json"
TARGET_US_PER_JOB = 200.0  # issue 15
LAST_PROFILE_US_PER_JOB = 555.0  # the "last profile" (bench/suite.py drain, 2026-11-24)
OUTPUT = b"synthetic job output\n"  # what each synthetic job "printed"
_TICK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(f"[server_cost {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ /proc


def proc_cpu(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process, seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return int(rest[11]) / _TICK, int(rest[12]) / _TICK


def thread_cpu(pid: int) -> dict[str, list[float]]:
    """{thread name: [utime, stime]} of a process's threads, seconds (same names summed)."""
    out: dict[str, list[float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        if tid == str(pid):
            name = "main"
        elif not name.startswith(("ZMQbg", "nng")):
            name = "python threads (output writer pool)"  # they show the process's name
        else:
            name = name.rstrip("0123456789_")
        rest = raw.rsplit(")", 1)[1].split()
        acc = out.setdefault(name, [0.0, 0.0])
        acc[0] += int(rest[11]) / _TICK
        acc[1] += int(rest[12]) / _TICK
    return out


def thread_delta(before: dict, after: dict, jobs: int) -> dict[str, dict[str, float]]:
    """Per thread name: user and system µs per job between two thread_cpu snapshots."""
    out = {}
    for name, (u1, s1) in after.items():
        u0, s0 = before.get(name, (0.0, 0.0))
        out[name] = {
            "user_us_per_job": round((u1 - u0) / jobs * 1e6, 1),
            "sys_us_per_job": round((s1 - s0) / jobs * 1e6, 1),
        }
    return out


# ------------------------------------------------------------------------------ synthetic worker


def worker_child(ident: int, slots: int = 1, batched: bool = True) -> None:
    """A synthetic worker of `slots` cpus (run as a child process, GOQ_* settings in its
    environment). Prints "ready" once set up, starts when a line arrives on stdin, runs until
    SIGTERM. The jobs of one JOB reply all end at once: one RESULT reports them together, as a
    worker with slots reports runs that ended together (one run: as a 1-cpu worker does); not
    `batched`: one RESULT each, the last one asking for more (as workers did before)."""
    from dataclasses import replace

    from goq_core.config import load_settings
    from goq_core.errors import GoqError
    from goq_core.keys import load_key
    from goq_core.messages import Job, JobState, Kind, Message
    from goq_core.plugins import Plugins
    from goq_core.roles.jobrun import MAX_RSS_KIB, STIME_US, UTIME_US
    from goq_core.roles.offer import make_offer, new_token
    from goq_core.wire import Wire, error_text

    try:
        from goq_core.messages import batch_counters
    except ImportError:  # an install older than batching (--baseline-python): it never batches
        batch_counters = None

    settings = load_settings(os.environ)
    plugins = Plugins(lazy=True)
    wire = Wire(
        plugins.codec(settings.codec),
        plugins.cipher(settings.cipher, load_key(settings.home)),
    )
    conn = plugins.transport(settings.transport).dial(settings.address)
    host = socket.gethostname()
    name = f"synthetic-{ident}-{os.getpid()}"
    offer = replace(make_offer(cpus=slots), jobid=0)
    offer.workerid = new_token()
    hold_ms = max(1, int(settings.heartbeat_sec * 1000))
    timeout = settings.sendtimeout_ms / 1000 + hold_ms / 1000
    done = 0

    def on_term(signum: int, frame: object) -> None:
        sys.stdout.write(json.dumps({"worker": ident, "results_acked": done}) + "\n")
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)

    def request(msg: Message) -> Message:
        frame = conn.request(wire.pack(msg), timeout)
        text = error_text(frame)
        if text is not None:
            raise GoqError(text)
        reply = wire.unpack(frame)
        if reply.reply_to != msg.nonce:
            raise GoqError("reply does not answer our request")
        return reply

    def ask() -> Message:
        return Message(
            Kind.REQUEST_WORK, workerid=name, host=host, wait_ms=hold_ms, jobs=[offer], count=0
        )

    print("ready", flush=True)
    sys.stdin.readline()
    reply = request(ask())
    while True:
        if reply.kind != Kind.JOB:  # NOTHING_YET (a hold ran out), GOING_AWAY, ERROR...
            if reply.kind in (Kind.GOING_AWAY, Kind.ERROR, Kind.EXIT):
                time.sleep(0.2)
            reply = request(ask())
            continue
        jobs = reply.jobs
        if len(jobs) == 1 and not jobs[0].attempt:
            jobs[0].attempt = reply.attempt  # as Worker._take does
        now = time.time_ns()
        outcomes = [  # as JobRun.outcome makes them
            Job(
                jobid=job.jobid,
                attempt=job.attempt,
                state=JobState.FINISHED,
                pid=100000 + done + i,
                start_ns=now,
                end_ns=now,
                exit_status=0,
                out_bytes=len(OUTPUT),
            )
            for i, job in enumerate(jobs)
        ]
        usage = {MAX_RSS_KIB: 1200, UTIME_US: 150, STIME_US: 300}
        # several runs in one RESULT only for a server that says it takes them (older: 0)
        limit = max(1, reply.count) if batched else 1
        groups = [outcomes[i : i + limit] for i in range(0, len(outcomes), limit)]
        for i, group in enumerate(groups):
            last = i == len(groups) - 1
            counters = usage
            if len(group) > 1:  # only for a server that said so: never an older install
                assert batch_counters is not None
                counters = batch_counters([usage] * len(group))
            result = Message(
                Kind.RESULT,
                workerid=name,
                host=host,
                jobid=group[0].jobid,
                attempt=group[0].attempt,
                offset=0,
                data=OUTPUT * len(group),
                jobs=group,
                wait_ms=hold_ms if last else 0,  # the last RESULT is the ask for more
                count=0,
                counters=counters,
            )
            reply = request(result)
            done += len(group)
            if not last and reply.kind != Kind.ACK:
                raise GoqError(f"a RESULT that did not ask was answered {reply.kind.name}")


# ------------------------------------------------------------------------------ one trial


def fs_create_cost(where: Path, files: int = 2000) -> float:
    """CPU µs per file (user + system) that this process spends creating and writing `files`
    new files as the server creates output files (O_CREAT | O_EXCL | O_NOFOLLOW, a few bytes,
    close) in a fresh directory beside the trial's output: what the file system itself costs
    per output file just then (on this VM's ext4 it moves with the files recently deleted)."""
    where.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(files):
        fd = os.open(where / f"out.{i:05d}", flags, 0o644)
        os.write(fd, OUTPUT)
        os.close(fd)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return round(cpu / files * 1e6, 1)


def this_env() -> list[str]:
    return [f"{k}={v}" for k, v in os.environ.items()]


def start_workers(
    cluster, count: int, slots: int = 1, batched: bool = True
) -> list[subprocess.Popen]:
    procs = []
    me = str(Path(__file__).resolve())
    for i in range(count):
        procs.append(
            subprocess.Popen(
                [cluster.install.python, me, "--_worker", str(i), "--slots", str(slots)]
                + ([] if batched else ["--unbatched"]),
                env=cluster.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        line = p.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise RuntimeError(f"synthetic worker did not start (said {line!r})")
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> int:
    """SIGTERM each by PID; returns the RESULTs they had acknowledged."""
    acked = 0
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=10)
        for line in (out or "").splitlines():
            with contextlib.suppress(ValueError):
                acked += json.loads(line).get("results_acked", 0)
    return acked


def trial(
    install,
    jobs: int,
    workers: int,
    batch: int,
    transport: str,
    tmpfs: bool,
    profile: str = "",
    sampler: Sampler | None = None,
    slots: int = 1,
    batched: bool = True,
    keep_in: str | None = None,
) -> dict:
    """One fresh server, N jobs submitted in batches, drained by synthetic workers. With
    `keep_in` the trial's directory is made there and left for the caller to remove later."""
    from _cluster import BenchCluster, wait_for

    from goq_core.messages import Job

    base = "/dev/shm" if tmpfs else None
    if keep_in is not None:
        where = contextlib.nullcontext(tempfile.mkdtemp(prefix="trial-", dir=keep_in))
    else:
        where = tempfile.TemporaryDirectory(prefix="goq-server-cost-", dir=base)
    with where as tmp:
        cluster = BenchCluster(Path(tmp), install, transport=transport)
        procs: list[subprocess.Popen] = []
        try:
            cluster.init()
            if profile:
                cluster.server = _spawn_profiled(cluster, profile)
                wait_for(cluster._server_up, 120, "the profiled server to answer STAT", 0.01)
            else:
                cluster.start_server()
            pid = cluster.server.pid
            client = cluster.client()
            host, user, env = socket.gethostname(), getpass.getuser(), this_env()
            todo = [
                Job(cmd="/bin/true", dir=str(cluster.workdir), env=env, host=host, user=user)
                for _ in range(jobs)
            ]
            if sampler is not None:
                sampler.start(pid)
            c0, t0 = proc_cpu(pid), time.perf_counter()
            client.submit_many(todo, chunk=batch)
            c1, t1 = proc_cpu(pid), time.perf_counter()
            procs = start_workers(cluster, workers, slots, batched)
            polls = 0
            th0, c2, t2 = thread_cpu(pid), proc_cpu(pid), time.perf_counter()
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()

            def finished() -> bool:
                nonlocal polls
                polls += 1
                return client.stat(0).counters.get("finishedJobsCount", 0) >= jobs

            wait_for(finished, 600, "the synthetic drain to finish", every=0.05)
            th1, c3, t3 = thread_cpu(pid), proc_cpu(pid), time.perf_counter()
            if sampler is not None:
                sampler.stop()
            acked = stop_workers(procs)
            procs = []
            out_dir = cluster.workdir / "o"
            files = len(os.listdir(out_dir)) if out_dir.is_dir() else 0
            fs_us = fs_create_cost(Path(tmp) / "fs-calibration")
            submit_cpu = sum(c1) - sum(c0)
            drain_cpu = sum(c3) - sum(c2)
            result = {
                "jobs": jobs,
                "output_files": files,
                "results_acked": acked,
                "stat_polls_during_drain": polls,
                "submit_wall_s": round(t1 - t0, 3),
                "submit_jobs_per_s": round(jobs / (t1 - t0), 1),
                "submit_cpu_us_per_job": round(submit_cpu / jobs * 1e6, 1),
                "drain_wall_s": round(t3 - t2, 3),
                "drain_jobs_per_s": round(jobs / (t3 - t2), 1),
                "drain_cpu_us_per_job": round(drain_cpu / jobs * 1e6, 1),
                "drain_user_us_per_job": round((c3[0] - c2[0]) / jobs * 1e6, 1),
                "drain_sys_us_per_job": round((c3[1] - c2[1]) / jobs * 1e6, 1),
                "total_cpu_us_per_job": round((submit_cpu + drain_cpu) / jobs * 1e6, 1),
                "drain_threads": thread_delta(th0, th1, jobs),
                "fs_create_cpu_us_per_file": fs_us,
            }
            if files != jobs:
                raise RuntimeError(f"{files} output files for {jobs} jobs")
            return result
        finally:
            if sampler is not None:
                sampler.stop()
            stop_workers(procs)
            cluster.close()


# ------------------------------------------------------------------------------ profiling

_PROFILED_SERVE = r"""
import cProfile, sys, threading, time
out = sys.argv[1]
profiles = []

def _boot(frame, event, arg):  # first event of a new thread: give it its own profiler
    sys.setprofile(None)
    p = cProfile.Profile(time.thread_time)  # CPU time of this thread: blocking waits cost 0
    profiles.append(p)
    p.enable()

threading.setprofile(_boot)
main_profile = cProfile.Profile(time.thread_time)
profiles.append(main_profile)
from goq_cli.main import main
main_profile.enable()
try:
    main(["serve"])
except SystemExit:
    pass
finally:
    main_profile.disable()
    import pstats
    stats = None
    for p in profiles:
        try:
            p.disable()
        except Exception:
            pass
        try:
            p.create_stats()
        except Exception:
            continue
        if stats is None:
            stats = pstats.Stats(p)
        else:
            stats.add(p)
    stats.dump_stats(out)
"""


def _spawn_profiled(cluster, out: str) -> subprocess.Popen:
    """`goq serve` of the cluster's install under cProfile (all threads), writing `out` when it
    stops (SIGTERM)."""
    return cluster.spawn_argv([cluster.install.python, "-c", _PROFILED_SERVE, out], "server.log")


class Sampler:
    """py-spy sampling the unprofiled server (no cProfile overhead: unbiased shares), from
    before the submit to the end of the drain; raw (collapsed) stacks of Python frames (a
    builtin such as os.open shows as the line calling it), idle (blocked) samples left out, so
    the samples are meant to be CPU; but py-spy takes threads blocked in a queue or condition
    wait for busy, so samples whose leaf is such a wait (IDLE_LEAVES) are dropped too.
    --nonblocking: the server is never paused (pausing it at each sample halved its drain
    rate and doubled its system time). SIGINT stops it (it then writes)."""

    def __init__(self, py_spy: str, out: str, rate: int = 500, blocking: bool = False) -> None:
        self.py_spy, self.out, self.rate = py_spy, out, rate
        self.extra = [] if blocking else ["--nonblocking"]
        self.proc: subprocess.Popen | None = None

    def start(self, pid: int) -> None:
        self.proc = subprocess.Popen(
            [
                self.py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                self.out,
                "--threads",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # let it attach

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
        if not os.path.exists(self.out):
            log(f"py-spy wrote nothing: {err[-500:]}")


# Leaf frames that are a thread blocked, not running: the output pool's workers waiting for
# work (`_worker`: work_queue.get), the main thread waiting for their futures (Condition.wait).
IDLE_LEAVES = (
    "_worker",
    "Condition.wait",
    "Event.wait",
    "Thread.join",
    "Thread._wait_for_tstate_lock",
)

# Where sampled server time goes: the deepest frame of a stack matching one of these (file
# fragment, function or "" for any) names its group.
SAMPLE_GROUPS = [
    ("output files (open/create, write)", "roles/output.py", ""),
    ("sqlite commit (store.save)", "stores/sqlite.py", ""),
    ("codec encode/decode", "goq_codecs/raw.py", ""),
    ("codec encode/decode", "goq_codecs/capnp", ""),
    ("cipher seal/open", "goq_codecs/aesgcm.py", ""),
    ("cipher seal/open", "cryptography", ""),
    ("transport recv (incl. waking)", "goq_transports/", "recv"),  # any transport's server end
    ("transport reply (send)", "goq_transports/", "reply"),
    ("goq kernel (scheduling, pure)", "goq_core/kernel/", ""),
    ("wire pack/unpack glue", "goq_core/wire.py", ""),
    ("output writer pool hand-off", "concurrent/futures", ""),
]


def analyse_samples(path: str, jobs: int, python_us_per_job: float) -> dict:
    """Group py-spy's raw stacks (CPU samples of the server's threads) as SAMPLE_GROUPS."""
    counts: dict[str, int] = {}
    native_leaf: dict[str, int] = {}
    total = idle = 0
    with open(path) as fh:
        for line in fh:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            count = int(n)
            frames = stack.split(";")
            if frames[-1].split(" (")[0] in IDLE_LEAVES:
                idle += count
                continue
            total += count
            group = "rest (server loop, actions, other Python)"
            if not any(".py:" in f for f in frames):
                group = "native threads (no Python frame)"
            for frame in reversed(frames):
                func = frame.split(" (", 1)[0]  # "Class.method (file:line)"
                hit = next(
                    (
                        g
                        for g, frag, fn in SAMPLE_GROUPS
                        if frag in frame and (not fn or func == fn or func.endswith("." + fn))
                    ),
                    None,
                )
                if hit:
                    group = hit
                    break
            counts[group] = counts.get(group, 0) + count
            leaf = frames[-1].split(" (")[0]
            native_leaf[leaf] = native_leaf.get(leaf, 0) + count
    total = max(total, 1)
    groups = [
        {
            "group": g,
            "samples": c,
            "share": round(c / total, 3),
            "est_us_per_job": round(c / total * python_us_per_job, 1),
        }
        for g, c in sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
    ]
    leaves = sorted(native_leaf.items(), key=lambda kv: kv[1], reverse=True)[:20]
    return {
        "samples": total,
        "samples_dropped_as_blocked": idle,
        "groups": groups,
        "top_leaf_frames": [{"frame": k, "share": round(v / total, 3)} for k, v in leaves],
    }


# What server time is spent on: (group, file fragment, function name or "" for any); a group's
# time is the cumulative time of its entry points (nested entries of one group not recounted).
GROUPS = [
    ("output files (open/create, write)", "roles/output.py", "write"),
    ("output files (open/create, write)", "roles/output.py", "write_many"),
    ("sqlite commit (store.save)", "stores/sqlite", "save"),
    ("codec encode/decode", "goq_codecs/raw", "encode"),
    ("codec encode/decode", "goq_codecs/raw", "decode"),
    ("codec encode/decode", "goq_codecs/capnp", "encode"),
    ("codec encode/decode", "goq_codecs/capnp", "decode"),
    ("cipher seal/open", "goq_codecs/aesgcm", "seal"),
    ("cipher seal/open", "goq_codecs/aesgcm", "open"),
    ("transport recv", "goq_transports/", "recv"),
    ("transport reply (send)", "goq_transports/", "reply"),
    ("kernel (handle, tick)", "kernel/kernel.py", "handle"),
    ("kernel (handle, tick)", "kernel/kernel.py", "tick"),
    ("kernel (handle, tick)", "kernel/kernel.py", "durable_counters"),
    ("plugin hooks (notify)", "pluggy/", "__call__"),
]


def analyse_profile(path: str, jobs: int, top: int = 25) -> dict:
    """Top functions and the grouped breakdown of a dumped server profile."""
    stats = pstats.Stats(path)
    entries = stats.stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    busy = max(sum(v[2] for v in entries.values()), 1e-9)  # CPU time of the Python threads

    def fn_name(key: tuple) -> str:
        file, line, func = key
        short = file
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            if marker in file:
                short = file.split(marker, 1)[1]
        return f"{short}:{line}({func})" if line else func

    def rows(index: int) -> list[dict]:
        ordered = sorted(entries.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
        return [
            {
                "function": fn_name(k),
                "calls": v[1],
                "own_us_per_job": round(v[2] / jobs * 1e6, 1),
                "cum_us_per_job": round(v[3] / jobs * 1e6, 1),
            }
            for k, v in ordered
        ]

    groups: dict[str, float] = {}
    for group, fragment, func in GROUPS:
        for (file, _, name), v in entries.items():
            if fragment in file and name == func:
                groups[group] = groups.get(group, 0.0) + v[3]
    # builtins that matter, by their own time (kernel work under them: syscalls)
    builtins: dict[str, float] = {}
    for (file, _, func), v in entries.items():
        if file == "~":
            builtins[func] = builtins.get(func, 0.0) + v[2]
    top_builtins = sorted(builtins.items(), key=lambda kv: kv[1], reverse=True)[:15]
    accounted = sum(groups.values())
    breakdown = [
        {
            "group": g,
            "profiled_us_per_job": round(t / jobs * 1e6, 1),
            "share_of_profiled": round(t / busy, 3),
        }
        for g, t in sorted(groups.items(), key=lambda kv: kv[1], reverse=True)
    ]
    breakdown.append(
        {
            "group": "rest (server loop, actions, Python glue)",
            "profiled_us_per_job": round((busy - accounted) / jobs * 1e6, 1),
            "share_of_profiled": round((busy - accounted) / busy, 3),
        }
    )
    return {
        "profiled_cpu_us_per_job": round(busy / jobs * 1e6, 1),
        "groups": breakdown,
        "top_builtins_own_us_per_job": [
            {"function": k, "own_us_per_job": round(v / jobs * 1e6, 1)} for k, v in top_builtins
        ],
        "top_cumulative": rows(3),
        "top_own": rows(2),
    }


# ------------------------------------------------------------------------------ main


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 1)


def _summary(runs: list[dict]) -> dict:
    summary: dict = {
        key: _median(runs, key)
        for key in (
            "total_cpu_us_per_job",
            "submit_cpu_us_per_job",
            "drain_cpu_us_per_job",
            "drain_user_us_per_job",
            "drain_sys_us_per_job",
            "drain_jobs_per_s",
            "submit_jobs_per_s",
            "fs_create_cpu_us_per_file",
        )
    }
    threads: dict[str, dict[str, float]] = {}
    for name in {n for r in runs for n in r["drain_threads"]}:
        threads[name] = {
            col: round(
                statistics.median(r["drain_threads"].get(name, {}).get(col, 0.0) for r in runs), 1
            )
            for col in ("user_us_per_job", "sys_us_per_job")
        }
    summary["drain_threads_median"] = threads
    total = summary["total_cpu_us_per_job"]
    summary["target_us_per_job"] = TARGET_US_PER_JOB
    summary["met"] = total <= TARGET_US_PER_JOB
    summary["ratio_to_target"] = round(total / TARGET_US_PER_JOB, 2)
    # what is left once the file system's own cost of creating the output file (measured in
    # the same trials, just after each drain) is taken out: goq's part of the cost
    summary["total_less_fs_create_us_per_job"] = round(
        statistics.median(r["total_cpu_us_per_job"] - r["fs_create_cpu_us_per_file"] for r in runs),
        1,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="synthetic workers")
    ap.add_argument(
        "--slots",
        type=int,
        default=1,
        help="cpus of each synthetic worker: the jobs of a JOB reply end together and one "
        "RESULT reports them all (default 1: a worker of one cpu, one job per RESULT)",
    )
    ap.add_argument(
        "--unbatched",
        action="store_true",
        help="with --slots: one RESULT per run, the last asking for more (as before batching)",
    )
    ap.add_argument("--batch", type=int, default=5000, help="jobs per SUBMIT (goq sub --file's)")
    ap.add_argument("--transport", default="zmq")
    ap.add_argument("--tmpfs", action="store_true", help="submit directory on /dev/shm")
    ap.add_argument("--profile", action="store_true", help="one more trial under cProfile")
    ap.add_argument("--python", default=sys.executable, help="the goq install to measure")
    ap.add_argument(
        "--baseline-python",
        metavar="PY",
        help="also measure the goq install of this interpreter (e.g. a regular install of a "
        "`git archive HEAD` snapshot), trials alternating with --python's, in the same run",
    )
    ap.add_argument("--py-spy", help="py-spy binary for --profile's sampled trial (default: PATH)")
    ap.add_argument(
        "--real-drain",
        type=int,
        default=0,
        metavar="TRIALS",
        help="also bench/suite.py's drain through 2 real `goq work` vs the 2-process spawn rate",
    )
    ap.add_argument("--real-drain-jobs", type=int, default=10_000)
    ap.add_argument("--keep-profiles", metavar="DIR", help="keep --profile's raw files here")
    ap.add_argument("--save", action="store_true", help=f"also write {RESULTS}")
    ap.add_argument("--out", metavar="FILE", help="with --save: write FILE instead")
    ap.add_argument("--_worker", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker >= 0:
        worker_child(args._worker, args.slots, not args.unbatched)
        return 0
    from _cluster import GoqInstall, machine

    install = GoqInstall.for_python(args.python)
    began = time.time()
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "goq": {"python": install.python, "install": install.install},
        "transport": args.transport,
        "jobs": args.jobs,
        "workers": args.workers,
        "slots_per_worker": args.slots,
        "results": "one per run" if args.unbatched else "the runs of a JOB reply in one",
        "submit_batch": args.batch,
        "trials": args.trials,
        "output_dir_fs": "tmpfs" if args.tmpfs else "same as /tmp",
    }
    baseline = GoqInstall.for_python(args.baseline_python) if args.baseline_python else None
    if baseline is not None:
        meta["baseline"] = {"python": baseline.python, "install": baseline.install}
    runs: list[dict] = []
    base_runs: list[dict] = []
    # Every trial's files stay until the run ends: on an ext4 without a journal (this VM's),
    # creating a file skips, one by one, the inodes deleted in the last minutes
    # (recently_deleted in ext4's find_inode_bit), so a trial that follows the deletion of the
    # last one's 10,000 output files pays ~50-550 µs per file instead of ~25: the benchmark
    # would measure its own clean-up (fs_create_cpu_us_per_file shows the state it found).
    kept = tempfile.TemporaryDirectory(
        prefix="goq-server-cost-", dir="/dev/shm" if args.tmpfs else None
    )
    for i in range(args.trials):
        # with a baseline: alternate which goes first, so that a drifting machine (this file
        # system's create cost moves from trial to trial) weighs on both alike
        order = [(install, runs, "")]
        if baseline is not None:
            order.append((baseline, base_runs, "baseline "))
            if i % 2 == 0:
                order.reverse()
        for inst, into, what in order:
            r = trial(
                inst,
                args.jobs,
                args.workers,
                args.batch,
                args.transport,
                args.tmpfs,
                slots=args.slots,
                batched=not args.unbatched,
                keep_in=kept.name,
            )
            into.append(r)
            log(
                f"{what}trial {i + 1}: total {r['total_cpu_us_per_job']} µs/job (submit "
                f"{r['submit_cpu_us_per_job']}, drain {r['drain_cpu_us_per_job']}), "
                f"drain {r['drain_jobs_per_s']} jobs/s; the file system alone "
                f"{r['fs_create_cpu_us_per_file']} µs per file created"
            )
    summary = _summary(runs)
    doc: dict = {"meta": meta, "summary": summary, "trials": runs}
    if baseline is not None:
        before = _summary(base_runs)
        doc["baseline"] = {"summary": before, "trials": base_runs}
        doc["after_over_before"] = {
            key: round(summary[key] / before[key], 3) if before[key] else None
            for key in ("total_cpu_us_per_job", "drain_cpu_us_per_job", "drain_jobs_per_s")
        }
        log(
            f"before {before['total_cpu_us_per_job']} µs/job, after "
            f"{summary['total_cpu_us_per_job']} µs/job (medians, same run, alternating)"
        )
    if args.profile:
        doc["profile"] = profile_run(install, args, runs)
    if args.real_drain:
        doc["real_drain"] = real_drain(install, args.real_drain, args.real_drain_jobs, baseline)
    kept.cleanup()  # last: the real drain must not pay for these files either
    doc["meta"]["elapsed_s"] = round(time.time() - began, 1)
    text = json.dumps(doc, indent=2)
    print(text)
    if args.save:
        out = Path(args.out) if args.out else RESULTS
        out.parent.mkdir(exist_ok=True)
        out.write_text(text + "\n")
    return 0


def profile_run(install, args: argparse.Namespace, runs: list[dict]) -> dict:
    """A trial sampled by py-spy (when found) and one under cProfile; both analysed."""
    sizes = (install, args.jobs, args.workers, args.batch, args.transport, args.tmpfs)
    batched = not args.unbatched
    python_us = python_threads_us(runs)
    out: dict = {"python_threads_cpu_us_per_job": python_us}
    py_spy = args.py_spy or shutil.which("py-spy")
    with tempfile.TemporaryDirectory(prefix="goq-server-prof-") as pdir:
        if py_spy:
            raw = os.path.join(pdir, "server.raw")
            log(f"sampled trial (py-spy {py_spy}, unprofiled server)")
            r = trial(*sizes, sampler=Sampler(py_spy, raw), slots=args.slots, batched=batched)
            if os.path.exists(raw):
                out["sampled"] = analyse_samples(raw, args.jobs, python_us)
                out["sampled"]["trial"] = r
        else:
            out["sampled"] = "skipped: no py-spy (pip install py-spy, or --py-spy PATH)"
        prof = os.path.join(pdir, "server.prof")
        log("profiled trial (cProfile with each thread's CPU clock, every server thread)")
        r = trial(*sizes, profile=prof, slots=args.slots, batched=batched)
        wait_for_file(prof)
        out["cprofile"] = analyse_profile(prof, args.jobs)
        out["cprofile"]["trial"] = r
        if args.keep_profiles:
            os.makedirs(args.keep_profiles, exist_ok=True)
            for name in os.listdir(pdir):
                shutil.copy(os.path.join(pdir, name), args.keep_profiles)
    print_profile(out)
    return out


def real_drain(install, trials: int, jobs: int, before=None) -> dict:
    """bench/suite.py's drain (N `/bin/true` in one `goq sub --file`, 2 idle `goq work`, jobs/s
    from the job records) against its baseline, the rate at which 2 Python processes spawn
    `/bin/true` (and the "worker-like" rate), measured just before each trial. With `before`
    (another install), each trial drains with both, in alternating order, each after its own
    spawn measure."""
    import suite
    from _cluster import BenchCluster

    sizes = dataclasses.replace(suite.FULL, drain_jobs=jobs)
    rows: list[dict] = []
    before_rows: list[dict] = []
    kept = tempfile.TemporaryDirectory(prefix="goq-real-drain-")  # see main(): no clean-up
    for i in range(trials):  # between trials, or each would pay for the last one's
        order = [(install, rows, "")]
        if before is not None:
            order.append((before, before_rows, "baseline "))
            if i % 2 == 0:
                order.reverse()
        for inst, into, what in order:
            baseline = {
                "spawn_true_per_s_2procs": round(suite.spawn_rate("plain", 2, 2000), 1),
                "spawn_worker_like_per_s_2procs": round(
                    suite.spawn_rate("worker-like", 2, 2000), 1
                ),
            }
            root = Path(tempfile.mkdtemp(dir=kept.name))
            cluster = BenchCluster(root, inst, "zmq", suite.HEARTBEAT)
            try:
                cluster.init()
                cluster.start_server()
                cluster.start_worker(2)
                latency = api_latency(cluster, suite)
                drain = suite.measure_drain(cluster, sizes, baseline)
                drain["dispatch_ms"] = latency
            finally:
                cluster.close()
            into.append({**baseline, **drain})
            log(
                f"{what}real drain {i + 1}: dispatch latency "
                f"{latency['start_after_call_ms_median']} ms; {drain['jobs_per_s']} jobs/s = "
                f"{drain['ratio_to_spawn_true_2procs']} x spawn rate "
                f"{baseline['spawn_true_per_s_2procs']}"
            )
    kept.cleanup()
    out = _drain_summary(rows, jobs)
    if before is not None:
        out["baseline"] = _drain_summary(before_rows, jobs)
    return out


def api_latency(cluster, suite, jobs: int = 30, warmup: int = 5) -> dict:
    """Single-job dispatch latency with idle workers: one job at a time by the Client API,
    each after the previous ended; ms from the submit call to the job's start on the worker
    (its record's start_ns), and from the server's accepting it (submit_ns)."""
    client = cluster.client()
    env = this_env()
    call, accept = [], []
    for i in range(warmup + jobs):
        t_call = time.time_ns()
        jobid, _ = client.submit([suite.noop_job(cluster.workdir, list(env))])
        job = client.wait(jobid, deadline=time.time() + 30)
        if job is None:
            raise RuntimeError("wait gave no job record")
        if i >= warmup:
            call.append((job.start_ns - t_call) / 1e6)
            accept.append((job.start_ns - job.submit_ns) / 1e6)
    return {
        "jobs": jobs,
        "start_after_call_ms_median": round(statistics.median(call), 2),
        "start_after_call_ms_p90": round(sorted(call)[int(0.9 * len(call))], 2),
        "start_after_accept_ms_median": round(statistics.median(accept), 2),
    }


def _drain_summary(rows: list[dict], jobs: int) -> dict:
    keys = (
        "jobs_per_s",
        "spawn_true_per_s_2procs",
        "ratio_to_spawn_true_2procs",
        "ratio_to_spawn_worker_like_2procs",
        "server_cpu_us_per_job",
        "worker_cpu_us_per_job",
        "job_processes_cpu_us_per_job",
    )
    ratio = statistics.median(r["ratio_to_spawn_true_2procs"] for r in rows)
    median = {k: round(statistics.median(r[k] for r in rows), 3) for k in keys}
    median["dispatch_start_after_call_ms"] = round(
        statistics.median(r["dispatch_ms"]["start_after_call_ms_median"] for r in rows), 2
    )
    return {
        "jobs": jobs,
        "workers": 2,
        "median": median,
        "target_ratio": 0.5,
        "met": ratio >= 0.5,
        "trials": rows,
    }


def python_threads_us(runs: list[dict]) -> float:
    """Median server CPU per job (submit + drain) less its native transport threads (ZMQbg/*,
    nng:*), which cProfile cannot see: what the profile's Python threads are scaled to."""
    values = []
    for r in runs:
        native = sum(
            t["user_us_per_job"] + t["sys_us_per_job"]
            for name, t in r["drain_threads"].items()
            if name.startswith(("ZMQbg", "nng"))
        )
        values.append(r["total_cpu_us_per_job"] - native)
    return round(statistics.median(values), 1)


def wait_for_file(path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(path):
        raise RuntimeError("the profiled server wrote no profile")


def print_profile(out: dict) -> None:
    """The profiles' tables, readable, on stderr (the JSON on stdout has them too)."""
    w = sys.stderr.write
    sampled = out.get("sampled")
    if isinstance(sampled, dict):
        w(
            f"\npy-spy, {sampled['samples']} CPU samples of the server's Python threads; "
            f"µs/job = share x {out['python_threads_cpu_us_per_job']} (the median CPU per job of "
            "the unprofiled trials less the native ZMQ threads)\n"
        )
        w(f"{'group':45} {'share':>7} {'µs/job':>8}\n")
        for g in sampled["groups"]:
            w(f"{g['group']:45} {g['share']:7.1%} {g['est_us_per_job']:8}\n")
        w("\nleaf frames (the Python line running, or calling a builtin)\n")
        for row in sampled["top_leaf_frames"]:
            w(f"{row['share']:7.1%}  {row['frame']}\n")
    prof = out["cprofile"]
    w(
        f"\ncProfile (thread CPU clocks; its per-call overhead inflates Python-heavy groups): "
        f"{prof['profiled_cpu_us_per_job']} µs/job profiled\n"
    )
    w(f"{'group':45} {'µs/job':>8} {'share':>7}\n")
    for g in prof["groups"]:
        w(f"{g['group']:45} {g['profiled_us_per_job']:8} {g['share_of_profiled']:7.1%}\n")
    for title, key, col in (
        ("by cumulative time", "top_cumulative", "cum_us_per_job"),
        ("by own time", "top_own", "own_us_per_job"),
    ):
        w(f"\ntop functions {title} (µs/job, profiled)\n")
        for row in prof[key]:
            w(f"{row[col]:10} {row['calls']:>9}  {row['function']}\n")
    w("\n")


if __name__ == "__main__":
    sys.exit(main())
