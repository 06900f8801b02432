"""Running one job on a worker host: spawn it as its own session and process group, capture its
stdout and stderr together in a spool file, wait for it, and kill its whole process tree.

Spawning goes through `os.posix_spawn` (vfork and exec), never a bare fork: a forked copy of a
worker that holds nng/zmq sockets must not run Python code. A job inherits no descriptor of the
worker but its stdin, stdout and stderr: every other one is made non-inheritable just before
each spawn (one close_range call). argv, environment and directory are str with lone
surrogates for undecodable bytes (surrogateescape, as Python reads them from Linux); they reach
the job as the original bytes (os.fsencode). A command that cannot be started does not raise:
the job ends at once with the shell's exit status for it (127 not found, 126 cannot execute)
and a line in its output saying why.

Several jobs may be started at once from different threads (a worker with several slots):
spawning moves the whole process into the job's directory for an instant, so spawns take turns
(a lock; a spawn takes about 100 us). A worker that pins jobs to cores (`goq work --bind`) passes
`affinity`: the spawning thread takes that CPU mask just for the spawn, and the job inherits it
from its first instruction (no window in which it runs, or forks, on other cores).

Time limits: a job with time_limit_ms > 0 is measured from its spawn on this host's monotonic
clock; at the limit its process group gets SIGTERM, then SIGKILL `grace` s later if anything of
it is still alive (`wait_limited`), and its outcome says state TIMEOUT (exit status: what its
main process died of, e.g. -15 or -9). A run killed otherwise (`kill`) is not a TIMEOUT.

Resource use: the main process is reaped with wait4 (never through the worker-wide
RUSAGE_CHILDREN, which mixes the jobs of a worker's slots), so each run has the rusage of its main
process plus every descendant that was waited for (a process left orphaned is not counted):
user and system CPU time, and max RSS, which is that of the largest single process among them,
not a sum (`max_rss_kib`, `utime_us`, `stime_us`; `usage_counters` for a RESULT's counters).
Max RSS has a floor: Linux records, at exec, the peak RSS of the memory the child had before
(the worker's, even through vfork), so a small job reports about the worker's own RSS (~30 MB);
a job using more reports its own peak. Spawning from a small helper process, or reading the
job's cgroup memory.peak, would remove the floor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping

from goq_core.messages import Job, JobState

NOT_FOUND = 127  # exit status of a command that does not exist (as in sh)
CANNOT_EXECUTE = 126  # exit status of a command that exists but cannot be run
DEFAULT_GRACE = 0.5  # seconds between SIGTERM and SIGKILL
# Signals Python sets to "ignore" that a job must get back at their defaults (as Popen does).
_RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
_POLL = 0.005  # seconds between checks that a killed group is gone
_GROUP_POLL = 0.05  # seconds between checks, in a time limit's grace, that the group is gone
_SAFETY_WAKE = 1.0  # seconds: longest a wait blocks without looking again (pidfd)
_NO_PIDFD_POLL = 0.05  # seconds between checks of the main process where there is no pidfd
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
_CLOSE_RANGE_CLOEXEC = 4  # linux/close_range.h
_close_range: Callable[[int, int, int], int] | bool | None = None  # found on first use
_SPAWN_LOCK = threading.Lock()  # spawns take turns: each moves the process's directory
# a RESULT's counters for a run's rusage (see usage_counters)
MAX_RSS_KIB = "maxRssKib"
UTIME_US = "utimeUs"
STIME_US = "stimeUs"
_MAXRSS_BYTES = sys.platform == "darwin"  # ru_maxrss is in bytes there, in KiB on Linux


class JobRun:
    """One attempt of one job on this host. Create with `JobRun.start`."""

    __slots__ = (
        "job",
        "output_path",
        "pid",
        "pgid",
        "start_ns",
        "end_ns",
        "exit_status",
        "started",
        "timed_out",
        "max_rss_kib",
        "utime_us",
        "stime_us",
        "_kill_at",
        "_proc",
        "_pidfd",
    )

    def __init__(self, job: Job, output_path: str) -> None:
        self.job = job
        self.output_path = output_path
        self.pid = 0  # 0 when the command could not be started
        self.pgid = 0
        self.start_ns = 0
        self.end_ns = 0
        self.exit_status: int | None = None  # exit code, or -N for death by signal N
        self.started = 0.0  # time.monotonic() when its process was spawned (0: not started)
        self.timed_out = False  # its time limit was reached while it ran: it got SIGTERM
        # rusage of the main process and its waited-for descendants, once it is reaped (None:
        # not measured); max RSS is the largest single process's
        self.max_rss_kib: int | None = None
        self.utime_us: int | None = None  # user CPU time, microseconds
        self.stime_us: int | None = None  # system CPU time, microseconds
        self._kill_at: float | None = None  # when SIGKILL is due (a time limit's grace)
        self._proc: _Child | None = None
        self._pidfd = -1

    @classmethod
    def start(
        cls,
        job: Job,
        home: str,
        spool_dir: str,
        spool_name: str = "",
        env_extra: Mapping[str, str] | None = None,
        affinity: Collection[int] | None = None,
    ) -> JobRun:
        """Start `job` (attempt `job.attempt`) with its output in `spool_dir/<spool_name>`
        (default `<jobid>.<attempt>.out`, unique among the runs a worker holds).

        Runs in job.dir, or in `home` when that is not a directory here; with exactly the job's
        environment, plus `env_extra` (which wins: GOQ_CPUS, CUDA_VISIBLE_DEVICES...); pinned
        to the cores in `affinity` when given (see the module docstring); stdin from
        /dev/null. Never raises for a command that cannot run. Thread-safe.
        """
        name = spool_name or f"{job.jobid}.{job.attempt}.out"
        run = cls(job, os.path.join(spool_dir, name))
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            out = os.open(run.output_path, flags, 0o600)
        except FileNotFoundError:  # first job: make the spool directory
            os.makedirs(spool_dir, mode=0o700, exist_ok=True)
            out = os.open(run.output_path, flags, 0o600)
        try:
            run._spawn(home, out, env_extra, affinity)
        finally:
            os.close(out)
        return run

    def _spawn(
        self,
        home: str,
        out: int,
        env_extra: Mapping[str, str] | None,
        affinity: Collection[int] | None,
    ) -> None:
        job = self.job
        argv = ["/bin/sh", "-c", job.cmd] if job.shell else [job.cmd, *job.args]
        env = _env_dict(job.env)
        if env_extra:
            env.update(env_extra)
        cwd = job.dir if job.dir and os.path.isdir(job.dir) else home
        self.start_ns = time.time_ns()
        try:
            if not job.cmd:
                raise FileNotFoundError(errno.ENOENT, "empty command")
            try:
                proc = self._start_process(argv, cwd, env, out, affinity)
            except OSError as e:
                if cwd == home or e.filename != cwd:
                    raise
                # job.dir exists but is not enterable: run in home
                proc = self._start_process(argv, home, env, out, affinity)
        except (OSError, ValueError) as e:
            self._not_started(out, argv[0], e)
            return
        self.started = time.monotonic()  # the time limit counts from here
        self._proc = proc
        self.pid = self.pgid = proc.pid  # a new session's leader leads its process group too
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self._pidfd = -1  # no pidfd here: wait() falls back to Popen's polling

    @staticmethod
    def _start_process(
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        out: int,
        affinity: Collection[int] | None = None,
    ) -> _Child:
        """Start the job's process with posix_spawn (vfork and exec, no Python in between: about
        half the parent's CPU of subprocess.Popen). Python 3.11's posix_spawn cannot set the
        child's directory, so the worker itself moves to it first, one spawn at a time (the
        worker uses absolute paths only). With `affinity`, this thread takes that CPU mask for
        the spawn (on Linux sched_setaffinity(0) is per thread) and the child inherits it."""
        with _SPAWN_LOCK:
            os.chdir(cwd)
            try:
                path = _find_program(argv[0], env)
                _no_inheritable_fds()
                with _pinned(affinity):
                    pid = os.posix_spawn(
                        path,
                        argv,
                        env,
                        file_actions=[
                            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                            (os.POSIX_SPAWN_DUP2, out, 1),
                            (os.POSIX_SPAWN_DUP2, out, 2),
                        ],
                        setsid=True,
                        setsigdef=_RESTORED_SIGNALS,  # Python ignores SIGPIPE; the job must not
                    )
            finally:
                os.chdir("/")  # hold no job's directory (an unmount, a removal) between jobs
        return _Child(pid)

    def _not_started(self, out: int, cmd: str, e: OSError | ValueError) -> None:
        """Finish at once, as sh would for a command it cannot run, saying why in the output."""
        if isinstance(e, OSError):
            code = NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) else CANNOT_EXECUTE
            why = e.strerror or str(e)
            if e.filename is not None and e.filename != cmd:
                why += f": {e.filename}"
        else:
            code, why = CANNOT_EXECUTE, str(e)
        line = f"goq: cannot run {cmd!r}: {why} (exit status {code})\n"
        os.write(out, line.encode("utf-8", "backslashreplace"))
        self.exit_status = code
        self.end_ns = time.time_ns()

    # --- waiting -----------------------------------------------------------------------------

    def poll(self) -> int | None:
        """The exit status if the job's main process has ended, else None. Never blocks."""
        if self.exit_status is None and self._proc is not None:
            code = self._proc.poll()
            if code is not None:
                self._finished(code)
        return self.exit_status

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds (None: for ever) for the job's main process to end;
        returns its exit status, or None if it is still running."""
        if self.exit_status is not None or self._proc is None:
            return self.exit_status
        if timeout is None:
            self._finished(self._proc.wait())
        elif self._pidfd >= 0:
            ready, _, _ = select.select([self._pidfd], [], [], max(timeout, 0.0))
            if ready:
                self._finished(self._proc.wait())
        else:
            try:
                self._finished(self._proc.wait(timeout))
            except subprocess.TimeoutExpired:
                return None
        return self.exit_status

    # --- time limit --------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """When (time.monotonic()) the job reaches its time limit; None: no limit, or it did
        not start."""
        if self.job.time_limit_ms <= 0 or self._proc is None:
            return None
        return self.started + self.job.time_limit_ms / 1000

    def enforce_limit(self, grace: float, now: float | None = None) -> float | None:
        """Apply the time limit at `now` (default: time.monotonic()) without blocking: at the
        limit, SIGTERM to the job's process group (SIGKILL at once when `grace` <= 0) and
        `timed_out` set; `grace` s later, SIGKILL to the group if anything of it is alive.

        Returns in how many seconds it must be called again (the pidfd wakes a waiter sooner
        when the main process ends); None when it has nothing more to do (no limit, the job
        ended within it, or the group is gone or SIGKILLed)."""
        deadline = self.deadline
        if deadline is None:
            return None
        now = time.monotonic() if now is None else now
        if not self.timed_out:
            if self.poll() is not None:
                return None  # ended within its limit
            if now < deadline:
                return deadline - now
            self.timed_out = True
            if grace > 0 and _signal_group(self.pgid, signal.SIGTERM):
                self._kill_at = now + grace
            else:
                _signal_group(self.pgid, signal.SIGKILL)
                return None
        if self._kill_at is None:
            return None  # SIGKILLed already
        ended = self.poll() is not None
        if now >= self._kill_at:
            self._kill_at = None
            if not ended or group_alive(self.pgid):
                _signal_group(self.pgid, signal.SIGKILL)
            return None
        if not ended:
            return self._kill_at - now  # the pidfd says when it ends before that
        if not group_alive(self.pgid):
            self._kill_at = None
            return None  # all of it ended on SIGTERM
        return min(_GROUP_POLL, self._kill_at - now)  # what it left behind: look again soon

    def wait_limited(
        self,
        grace: float,
        wake: int = -1,
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait until the job's main process has ended, enforcing its time limit (see
        `enforce_limit`): after a time-limit kill, also until its group is gone or SIGKILLed.
        Blocks on the pidfd and on `wake` (a descriptor that polls readable once `stop()` may
        have become true), never past the time limit's next step. Returns False when it
        returned because `stop()` was true (the job may still run: kill it), else True."""
        look = self._pidfd < 0  # with a pidfd, the first look is select's (one wait4 less)
        while True:
            if stop is not None and stop():
                return False
            step = self.enforce_limit(grace)
            if step is None and look and self.poll() is not None:
                return True
            look = True
            fds = [fd for fd in (wake, self._pidfd) if fd >= 0]
            timeout = _SAFETY_WAKE if self._pidfd >= 0 else _NO_PIDFD_POLL
            if step is not None:
                timeout = min(timeout, step)
            if fds:
                select.select(fds, [], [], timeout)
            else:
                time.sleep(timeout)

    def fileno(self) -> int:
        """A descriptor that polls readable once the job's main process has ended (a pidfd),
        for a worker's event loop; -1 when there is none (finished, or not on Linux)."""
        return self._pidfd

    def _finished(self, code: int) -> None:
        self.exit_status = code  # death by signal N is reported as -N
        self.end_ns = time.time_ns()
        usage = self._proc.rusage if self._proc is not None else None
        if usage is not None:
            rss = usage.ru_maxrss
            self.max_rss_kib = rss // 1024 if _MAXRSS_BYTES else rss
            self.utime_us = round(usage.ru_utime * 1_000_000)
            self.stime_us = round(usage.ru_stime * 1_000_000)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    # --- killing -----------------------------------------------------------------------------

    def kill(self, grace: float = DEFAULT_GRACE) -> int | None:
        """Kill the job's whole process group: SIGTERM, then SIGKILL if anything of it is still
        alive after `grace` seconds. Reaps the main process and returns the exit status.

        Also works after the main process has ended, to clear processes it left behind.
        """
        if self._proc is None:
            return self.exit_status
        if not _signal_group(self.pgid, signal.SIGTERM):
            return self.wait()  # the group is already gone
        deadline = time.monotonic() + grace
        if self._gone_by(deadline):
            return self.exit_status
        _signal_group(self.pgid, signal.SIGKILL)
        self._gone_by(time.monotonic() + 1.0)
        return self.exit_status

    def _gone_by(self, deadline: float) -> bool:
        """Wait until the main process is reaped and the group has no live process, or the
        deadline passes; True if it is gone."""
        while self.wait(max(0.0, deadline - time.monotonic())) is None:
            if time.monotonic() >= deadline:
                return False
        while group_alive(self.pgid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    # --- output ------------------------------------------------------------------------------

    def output_size(self) -> int:
        """How many bytes of output the job has written so far."""
        return os.stat(self.output_path).st_size

    def read_output(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes of output from byte `offset` (fewer at the end)."""
        with open(self.output_path, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    def iter_output(self, chunk_size: int = 1 << 20, offset: int = 0) -> Iterator[bytes]:
        """The output from `offset` to its current end in chunks of at most `chunk_size` bytes,
        without holding more than one chunk in memory."""
        with open(self.output_path, "rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(chunk_size):
                yield chunk

    def discard_output(self) -> None:
        """Delete the spool file (once the server has the whole output)."""
        try:
            os.unlink(self.output_path)
        except FileNotFoundError:
            return

    def usage_counters(self) -> dict[str, int]:
        """The run's rusage as a RESULT's counters: maxRssKib (KiB), utimeUs and stimeUs
        (microseconds); empty when not measured (the command could not start, or its main
        process has not been reaped)."""
        if self.max_rss_kib is None or self.utime_us is None or self.stime_us is None:
            return {}
        return {MAX_RSS_KIB: self.max_rss_kib, UTIME_US: self.utime_us, STIME_US: self.stime_us}

    def outcome(self, out_bytes: int | None = None) -> Job:
        """How this run went, as a RESULT reports it: the job's id and attempt with the pid,
        times, exit status, output size (`out_bytes` when the caller has it, else looked up), and
        state TIMEOUT when it was killed at its time limit, else FINISHED. Nothing of what it
        ran: the server has that, and a RESULT is smaller without it."""
        job = self.job
        return Job(
            jobid=job.jobid,
            attempt=job.attempt,
            state=JobState.TIMEOUT if self.timed_out else JobState.FINISHED,
            pid=self.pid,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            exit_status=self.exit_status if self.exit_status is not None else 0,
            out_bytes=self.output_size() if out_bytes is None else out_bytes,
        )


class _Child:
    """A spawned job process: the little of subprocess.Popen that JobRun uses. Reaped with
    wait4, which gives its rusage (with that of the descendants it waited for) in `rusage`."""

    __slots__ = ("pid", "returncode", "rusage")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.rusage: resource.struct_rusage | None = None  # once reaped

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.returncode

    def _reaped(self, status: int, usage: resource.struct_rusage) -> None:
        self.rusage = usage
        self.returncode = os.waitstatus_to_exitcode(status)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is None:
                _, status, usage = os.wait4(self.pid, 0)
                self._reaped(status, usage)
            else:
                deadline = time.monotonic() + timeout
                while self.poll() is None:
                    if time.monotonic() >= deadline:
                        raise subprocess.TimeoutExpired(str(self.pid), timeout)
                    time.sleep(_POLL)
        assert self.returncode is not None
        return self.returncode


@contextlib.contextmanager
def _pinned(affinity: Collection[int] | None) -> Iterator[None]:
    """While inside: this thread runs only on the cores in `affinity` (nothing when None or
    empty, or where the OS has no sched_setaffinity); the thread's own mask is put back after.
    """
    if not affinity or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, affinity)
    except OSError:  # cores not allowed here (cgroup changed under us): run unpinned
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _find_program(name: str, env: dict[str, str]) -> str:
    """Where `name` is, found as execvp would (the job's own PATH); OSError as exec would give."""
    if "/" in name:
        return name
    denied: str | None = None
    for directory in os.get_exec_path(env):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = denied or candidate
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _no_inheritable_fds() -> None:
    """Make every descriptor of this process above 2 non-inheritable, so that a job gets none
    of the worker's (a socket, a pipe, whatever the worker's own parent left open).

    Python 3.11's posix_spawn cannot close a range of descriptors in the child, so this marks
    them close-on-exec in the worker: with one close_range(3, ~0, CLOSE_RANGE_CLOEXEC) call
    where the kernel has it (Linux 5.11; about 1 us), else by listing /proc/self/fd and
    checking each (about 1 us a descriptor more, plus 15 us for the listing).
    """
    global _close_range
    if _close_range is None:
        _close_range = _find_close_range()
    if _close_range and _close_range(3, 0xFFFFFFFF, _CLOSE_RANGE_CLOEXEC) == 0:
        return
    _close_range = False  # refused here (an old kernel, a seccomp filter): scan from now on
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return  # no /proc here: nothing to scan
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                continue  # closed since the listing (the listing's own descriptor, too)


def _find_close_range() -> Callable[[int, int, int], int] | bool:
    """libc's close_range, or False where libc has none (glibc before 2.34, not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).close_range
    except (ImportError, OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _env_dict(entries: list[str]) -> dict[str, str]:
    """ "NAME=value" entries as a dict; entries without a name are skipped."""
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if sep and name:
            env[name] = value
    return env


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while process group `pgid` has a process that is not a zombie.

    kill(-pgid, 0) also succeeds for zombies, which linger wherever init does not reap orphans
    (some containers), so on Linux a yes from it is checked against /proc.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False
