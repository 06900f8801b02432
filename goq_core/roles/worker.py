"""The worker runtime: asks the server for work, runs one job at a time, sends its output and
result back, and keeps a heartbeat going while a job runs. Reconnects by itself.

Two connections: the main thread's (REQUEST_WORK, OUTPUT, RESULT) and the heartbeat thread's,
whose held HEARTBEAT is where the server delivers KILL (cancel) and EXIT (immolate) at once.
A result is kept (spooled on disk) and re-sent until the server has it, across server restarts.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

from goq_core.config import Settings
from goq_core.errors import BadFrame, GoqError, TransportError
from goq_core.interfaces import ClientEnd
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.roles.guardian import Guardian
from goq_core.roles.jobrun import JobRun
from goq_core.wire import Wire, error_text

CHUNK = 1 << 20  # bytes of output per message
FIRST_HEARTBEAT = 0.2  # seconds into a job before its first heartbeat (short jobs need none)
MAX_BACKOFF = 2.0  # seconds between retries while the server is away
SPOOL_NAME = "job.out"  # one job at a time, so one spool file, kept until its result is delivered


class _Stopped(Exception):
    """The worker was told to stop (signal, EXIT, or oneshot done)."""


@dataclass(slots=True)
class _Running:
    run: JobRun
    kill: bool = False


class Worker:
    def __init__(
        self,
        settings: Settings,
        key: bytes,
        plugins: Plugins | None = None,
        oneshot: bool = False,
        log=print,
    ) -> None:
        self.settings = settings
        self.plugins = plugins or Plugins()
        self.wire = Wire(
            self.plugins.codec(settings.codec), self.plugins.cipher(settings.cipher, key)
        )
        self.oneshot = oneshot
        self.home = os.path.abspath(settings.home)  # jobs move the worker's own directory
        self.log = log
        self.host = socket.gethostname()
        self.workerid = f"{self.host}:{os.getpid()}:{os.urandom(3).hex()}"
        self.hold_ms = max(1, int(settings.heartbeat_sec * 1000))
        self.send_timeout = settings.sendtimeout_ms / 1000
        self.current: _Running | None = None
        self.jobs_done = 0
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._exit_reason = ""
        self._guardian = Guardian()
        self._spool = ""
        self._transport = None
        self._conn: ClientEnd | None = None
        self._hb_conn: ClientEnd | None = None

    # ------------------------------------------------------------------------------ lifecycle

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT: kill the running job (it will be requeued) and exit."""

        def on_signal(signum: int, frame: object) -> None:
            self.stop(f"signal {signal.Signals(signum).name}")
            if self.current is None and threading.current_thread() is threading.main_thread():
                raise _Stopped  # idle: leave a blocking request at once

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def stop(self, reason: str) -> None:
        """Ask the worker to stop (thread- and signal-safe)."""
        if not self._exit_reason:
            self._exit_reason = reason
        self._stopping.set()
        with self._lock:
            if self.current is not None:
                self.current.kill = True
        self._wake()

    def run(self) -> str:
        """Serve jobs until stopped; returns why it stopped."""
        transport = self._transport = self.plugins.transport(self.settings.transport)
        beat = threading.Thread(target=self._heartbeats, name="goq-heartbeat", daemon=True)
        try:
            self._guardian.start()
            self._spool = tempfile.mkdtemp(prefix=f"goq-worker-{os.getpid()}-")
            self._conn = transport.dial(self.settings.address)
            self._hb_conn = transport.dial(self.settings.address)
            beat.start()
            self._serve()
        except _Stopped:
            pass
        finally:
            self._stopping.set()
            self._wake()
            with self._lock:
                running = self.current
            if running is not None and running.run.pgid:  # stopped mid-job: it gets requeued
                running.run.kill()
                self._guardian.unwatch(running.run.pgid)
            if beat.is_alive():
                beat.join(timeout=0.2)
            self._guardian.close()
            # a heartbeat still held at the server is left to the process exit, not waited for
            conns = (self._conn,) if beat.is_alive() else (self._conn, self._hb_conn)
            for conn in conns:
                if conn is not None:
                    conn.close()
            if self._spool:
                shutil.rmtree(self._spool, ignore_errors=True)
            os.close(self._wake_r)
            os.close(self._wake_w)
        return self._exit_reason or "stopped"

    # ------------------------------------------------------------------------------ main loop

    def _serve(self) -> None:
        ask = self._ask_for_work()
        delivered: JobRun | None = None  # whose result `ask` carries
        while True:
            reply = self._call(ask, hold=ask.wait_ms > 0)
            if delivered is not None:  # any answer means the server has the result
                delivered = None  # (its spool file is reused by the next job)
                self.jobs_done += 1
                if self.oneshot:
                    self._exit_reason = "oneshot: one job done"
                    raise _Stopped
            kind = reply.kind
            if kind == Kind.JOB:
                job = reply.jobs[0]
                job.attempt = reply.attempt
                delivered = self._run(job)
                ask = self._result(delivered)  # and, unless oneshot, ask for the next job
            elif kind == Kind.EXIT:
                self._exit_reason = "told to exit by the server (immolateworkers)"
                raise _Stopped
            elif kind in (Kind.GOING_AWAY, Kind.ERROR):
                if kind == Kind.ERROR:
                    self.log(f"goq worker: server refused a request: {reply.text}")
                self._pause(0.5)
                ask = self._ask_for_work()
            else:  # NOTHING_YET, or ACK of a result: ask again
                ask = self._ask_for_work()

    def _ask_for_work(self) -> Message:
        return Message(
            Kind.REQUEST_WORK, workerid=self.workerid, host=self.host, wait_ms=self.hold_ms
        )

    def _run(self, job: Job) -> JobRun:
        """Run one job to its end (or until killed); its output stays spooled until delivered."""
        run = JobRun.start(job, self.home, self._spool, SPOOL_NAME)
        running = _Running(run)
        if run.pgid:
            self._guardian.watch(run.pgid)
        with self._lock:
            self.current = running
        try:
            self._wait_job(running)
        finally:
            if run.pgid:
                run.kill(grace=0.2)  # clears anything the job left running in its group
                self._guardian.unwatch(run.pgid)
            with self._lock:
                self.current = None
        return run

    def _wait_job(self, running: _Running) -> None:
        run = running.run
        pidfd = run.fileno()
        while run.poll() is None:
            if running.kill:
                run.kill()
                return
            if pidfd >= 0:
                select.select([pidfd, self._wake_r], [], [], 1.0)
            else:
                select.select([self._wake_r], [], [], 0.05)
            self._drain_wake()

    def _result(self, run: JobRun) -> Message:
        """Send all but the last chunk of output; return the RESULT carrying the last chunk
        (which also asks for the next job unless oneshot)."""
        job = run.job
        size = run.output_size()
        offset = 0
        while size - offset > CHUNK:
            chunk = run.read_output(offset, CHUNK)
            reply = self._call(self._about(job, Kind.OUTPUT, offset=offset, data=chunk), False)
            offset += len(chunk)
            if reply.text == "stale":
                offset = size  # the server does not want this run's output
                break
        last = run.read_output(offset, CHUNK) if offset < size else b""
        outcome = run.outcome()
        outcome.env = []
        outcome.args = []
        wait_ms = 0 if self.oneshot else self.hold_ms
        return self._about(
            job, Kind.RESULT, offset=offset, data=last, jobs=[outcome], wait_ms=wait_ms
        )

    def _about(self, job: Job, kind: Kind, **fields) -> Message:
        """A message from this worker about its run of `job` (OUTPUT, RESULT, HEARTBEAT)."""
        return Message(
            kind,
            workerid=self.workerid,
            host=self.host,
            jobid=job.jobid,
            attempt=job.attempt,
            **fields,
        )

    # ------------------------------------------------------------------------------ heartbeats

    def _heartbeats(self) -> None:
        """While a job runs: a held HEARTBEAT at all times after the first FIRST_HEARTBEAT s."""
        hold = self.hold_ms / 1000
        while not self._stopping.is_set():
            with self._lock:
                running = self.current
            if running is None:
                self._stopping.wait(0.05)
                continue
            job = running.run.job
            started = time.monotonic()
            while time.monotonic() - started < FIRST_HEARTBEAT:
                if self._stopping.wait(0.02) or self.current is not running:
                    break
            # exit_status, not poll(): only the main thread reaps the job (poll() closes the
            # pidfd the main thread is waiting on in select)
            if self.current is not running or running.run.exit_status is not None:
                continue
            beat = self._about(job, Kind.HEARTBEAT, wait_ms=self.hold_ms)
            try:
                reply = self._request(self._hb_conn, beat, hold + self.send_timeout)
            except TransportError:
                # server away (the job keeps running); a fresh connection avoids waiting out
                # TCP's retransmit back-off on a link that was cut
                self._hb_conn = self._redial(self._hb_conn)
                self._stopping.wait(0.2)
                continue
            except GoqError as exc:
                self.log(f"goq worker: heartbeat refused: {exc}")
                self._stopping.wait(1.0)
                continue
            if reply.kind == Kind.KILL and reply.jobid == job.jobid:
                running.kill = True
                self._wake()
            elif reply.kind == Kind.EXIT:
                self.stop("told to exit by the server (immolateworkers)")
            elif reply.kind in (Kind.GOING_AWAY, Kind.ERROR):
                self._stopping.wait(0.5)

    # ------------------------------------------------------------------------------ requests

    def _call(self, msg: Message, hold: bool) -> Message:
        """Send on the main connection until answered, backing off while the server is away;
        a stop ends the wait. After a timeout the connection is made afresh, so that copies
        queued on a dead link are dropped rather than delivered in a burst when it heals."""
        backoff = 0.05
        timeout = self.send_timeout + (self.hold_ms / 1000 if hold else 0)
        warned = False
        while True:
            if self._stopping.is_set():
                raise _Stopped
            try:
                return self._request(self._conn, msg, timeout)
            except TransportError as exc:
                self._conn = self._redial(self._conn)
                if not warned:
                    where = self.settings.address
                    self.log(f"goq worker: server at {where} not answering ({exc}); retrying")
                    warned = True
                self._pause(backoff)
                # at most a quarter heartbeat apart: a restarted server gives the jobs it finds
                # running 2 heartbeats to be heard of, and this may be a finished job's result
                backoff = min(backoff * 2, MAX_BACKOFF, self.hold_ms / 4000)

    def _redial(self, conn: ClientEnd) -> ClientEnd:
        conn.close()
        return self._transport.dial(self.settings.address)

    def _request(self, conn: ClientEnd, msg: Message, timeout: float) -> Message:
        frame = conn.request(self.wire.pack(msg), timeout)
        text = error_text(frame)
        if text is not None:
            raise GoqError(text)
        try:
            reply = self.wire.unpack(frame)
        except BadFrame as bad:
            raise GoqError(f"unreadable reply from the server: {bad}") from None
        if reply.reply_to != msg.nonce:
            raise TransportError("reply does not answer our request")
        return reply

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            return

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            return
