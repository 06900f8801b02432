"""Makes a worker's job processes die with the worker, even when the worker is SIGKILLed.

A worker starts one guardian process (`Guardian.start`) in a session of its own, and tells it
over a pipe to the guardian's stdin which job process groups are live ("+PGID\\n") and which
have ended ("-PGID\\n"). When the worker goes away, however it goes, the kernel closes the
pipe's write end; the guardian reads EOF, SIGKILLs every group still registered, and exits.
The guardian ignores SIGINT, SIGTERM and SIGHUP, so it outlives any signal that killed the
worker. Run as `python -m goq_core.roles.guardian`; the process part imports only os, signal,
sys and time, to start fast.

The guardian reads at most every GATHER s (it sleeps after each read): lines wait in the pipe
meanwhile, so a worker running hundreds of short jobs a second wakes it tens of times a second,
not twice per job (each wake-up cost the guardian ~30 us of CPU and the worker's write as much
again). Nothing is lost by the wait, since the lines stay in the pipe; the groups of a dead
worker are killed at most GATHER s later than they would be otherwise.

Known gap: a job that starts and whose worker dies before the worker's `watch` call (a few
microseconds later) is not guarded.

`Guardian` is thread-safe: a worker with several slots watches and unwatches from one thread per
run (one lock; each line is one short write).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

TYPE_CHECKING = False  # the guardian process imports as little as it can
if TYPE_CHECKING:
    import subprocess

READY = b"ready\n"  # what the guardian writes to its stdout once it is listening
GATHER = 0.02  # seconds the guardian lets lines gather in the pipe after each read


def serve(fd: int = 0, gather: float = GATHER) -> set[int]:
    """Read "+PGID"/"-PGID" lines from `fd` until EOF, then SIGKILL every group still
    registered. Returns the groups it killed (the guardian process's whole job). Sleeps
    `gather` s after each read that got lines (see the module docstring)."""
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            _apply(groups, line)
        if gather > 0:
            time.sleep(gather)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            continue  # already gone (or, never ours to kill)
    return groups


def _apply(groups: set[int], line: bytes) -> None:
    if len(line) < 2 or not line[1:].isdigit():
        return  # not a line of ours: ignore it rather than die and leave jobs unguarded
    pgid = int(line[1:])
    if pgid <= 1:
        return  # killpg(0) or killpg(1) would hit the wrong processes
    if line[:1] == b"+":
        groups.add(pgid)
    elif line[:1] == b"-":
        groups.discard(pgid)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _say_ready()
    serve(0)


def _say_ready() -> bool:
    """Tell the worker (on stdout) that the guardian listens; False if nobody is waiting."""
    try:
        os.write(1, READY)
    except OSError:
        return False
    return True


class Guardian:
    """The worker's end: start the guardian, register and unregister job process groups.

    `close()` (or leaving a `with` block) ends the guardian and with it every group still
    watched, so unwatch a job's group once the job has ended.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._groups: set[int] = set()
        self._lock = threading.RLock()  # start() runs under it too, from _restart()

    @property
    def pid(self) -> int:
        """The guardian process's pid (0 when not started)."""
        return self._proc.pid if self._proc is not None else 0

    def start(self, timeout: float = 5.0) -> Guardian:
        """Start the guardian process and wait until it listens. GoqError if it does not."""
        with self._lock:
            return self._start(timeout)

    def _start(self, timeout: float) -> Guardian:
        import select
        import subprocess

        from goq_core.errors import GoqError

        if self._proc is not None:
            return self
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (pkg_root, env.get("PYTHONPATH"))))
        proc = subprocess.Popen(
            [sys.executable, "-m", "goq_core.roles.guardian"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd="/",  # hold no job's or user's directory
            env=env,
            start_new_session=True,  # out of reach of the terminal's Ctrl-C and hangup
            close_fds=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        said = os.read(proc.stdout.fileno(), len(READY)) if ready else b""
        proc.stdout.close()
        if said != READY:
            proc.kill()
            proc.wait()
            raise GoqError(
                f"the worker's guardian process did not start (it said {said!r}); "
                "jobs would outlive a crashed worker, so not running any"
            )
        self._proc = proc
        self._fd = proc.stdin.fileno()
        for pgid in self._groups:  # after a restart: hand over what the last one watched
            self._send(b"+%d\n" % pgid)
        return self

    def watch(self, pgid: int) -> None:
        """Kill group `pgid` if this worker dies before `unwatch(pgid)`. Ignores pgid 0
        (a job that never started)."""
        if pgid <= 1:
            return
        with self._lock:
            self._groups.add(pgid)
            self._send(b"+%d\n" % pgid)

    def unwatch(self, pgid: int) -> None:
        """Stop guarding group `pgid` (its job has ended)."""
        with self._lock:
            if pgid not in self._groups:
                return
            self._groups.discard(pgid)
            self._send(b"-%d\n" % pgid)

    def close(self, timeout: float = 2.0) -> None:
        """End the guardian; it kills the groups still watched. Waits for it to exit."""
        with self._lock:
            proc, self._proc, self._fd = self._proc, None, -1
            self._groups.clear()
        if proc is None:
            return
        assert proc.stdin is not None
        try:
            proc.stdin.close()
        except OSError:
            proc.kill()  # closing can only fail if the pipe is already broken
        import subprocess

        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _send(self, line: bytes) -> None:
        if self._proc is None:
            raise RuntimeError("Guardian.start() has not been called")
        try:
            os.write(self._fd, line)  # shorter than PIPE_BUF: written whole or not at all
        except BrokenPipeError:
            self._restart()

    def _restart(self) -> None:
        """The guardian died (someone killed it): reap it and start another."""
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    proc.kill()
            proc.wait()
        self._proc = None
        self.start()

    def __enter__(self) -> Guardian:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main()
