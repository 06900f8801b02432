"""The server runtime: glues a listening transport, the wire, the store and output files to the
pure kernel, and performs the kernel's actions in the order that keeps acknowledged jobs durable.

One thread. Each turn: wait for a frame (no longer than the kernel's next deadline), take every
frame already queued (up to a batch), run them and the due timers through the kernel, then commit
all store writes in one transaction, write outputs, and only then send the replies.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from goq_core.config import Settings, settings_dir
from goq_core.drops import BAD_CODEC, BAD_SIG, GARBAGE, MISMATCH, TOO_BIG
from goq_core.errors import BadFrame, GoqError, StoreError
from goq_core.interfaces import DEFAULT_MAX_FRAME, ServerEnd, Store
from goq_core.kernel import (
    Action,
    Kernel,
    KernelConfig,
    Notify,
    Reply,
    ReplyStoredJob,
    Save,
    Stop,
    WriteOutput,
)
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.wire import Wire, error_frame

MAX_BATCH = 256  # frames taken per turn before committing and replying
IDLE_WAKE = 0.5  # seconds: how often an idle server checks for a stop signal
OUTPUT_WRITERS = 8  # threads writing the output files of one batch side by side
CLOSE_GRACE = 0.2  # seconds between the last replies and closing the socket, at shutdown
# The transport takes frames up to this much over max_frame, so that the wire sees a frame that is
# too big, counts it and refuses it with a clear error; a larger one the transport cuts off itself
# (the peer is disconnected and times out), uncounted.
TOO_BIG_SLACK = 1 << 20

_REFUSALS = {
    TOO_BIG: "refused: frame larger than the server's limit",
    GARBAGE: "refused: not a goq frame (another program, or another --transport?)",
    BAD_SIG: (
        "refused: the server could not authenticate the message: this host's key "
        "($GOQ_HOME/.goq/key) differs from the server's"
    ),
    BAD_CODEC: "refused: the message did not decode (corrupt, or a goq of another version?)",
}


@dataclass(slots=True)
class ServerOptions:
    allow_insecure: bool = False  # permit the `none` cipher (tests only)
    max_frame: int = DEFAULT_MAX_FRAME
    store: str = "sqlite"


def output_path(base: str, odir: str, jobid: int) -> str:
    """Where a job's output goes: BASE/ODIR/out.NNNNN (zero-padded to 5 digits, more if larger)."""
    return os.path.join(base, odir, f"out.{jobid:05d}")


class Server:
    def __init__(
        self,
        settings: Settings,
        key: bytes,
        plugins: Plugins | None = None,
        options: ServerOptions | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or ServerOptions()
        self.plugins = plugins or Plugins()
        cipher = self.plugins.cipher(settings.cipher, key)
        if getattr(cipher, "insecure", False) and not self.options.allow_insecure:
            raise GoqError(
                f"refusing to serve with cipher {settings.cipher!r}: it does not encrypt or "
                "authenticate; use aes-gcm (for tests: goq serve --allow-insecure)"
            )
        self.wire = Wire(self.plugins.codec(settings.codec), cipher, self.options.max_frame)
        hooks = self.plugins.pm.hook
        observed = any(
            getattr(hooks, name).get_hookimpls()
            for name in ("goq_job_submitted", "goq_job_started", "goq_job_finished")
        )
        hb = settings.heartbeat_sec
        self.kernel = Kernel(KernelConfig(heartbeat_sec=hb, max_hold_sec=hb, notify=observed))
        self.store: Store | None = None
        self.end: ServerEnd | None = None
        self._lock_fd = -1
        self._writers: ThreadPoolExecutor | None = None
        self._stop = False
        self._signalled = False
        self.started = 0.0

    # ------------------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Take the server lock, open the store, rebuild the queues, and listen."""
        home_dir = settings_dir(self.settings.home)
        self._lock(home_dir)
        self.store = self.plugins.store(self.options.store, home_dir, create=False)
        stored = self.store.load()
        self.kernel.restore(stored.jobs, stored.counters, time.time())
        transport = self.plugins.transport(self.settings.transport)
        self.end = transport.listen(self.settings.address, self.options.max_frame + TOO_BIG_SLACK)
        self.started = time.time()

    def close(self) -> None:
        if self.end is not None:
            if self._stop or self._signalled:
                # Replies just sent (the ack of `goq shutdown`, GOING_AWAY to held requests)
                # can be lost if the socket closes under them: give them a moment to leave.
                time.sleep(CLOSE_GRACE)
            self.end.close()
            self.end = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._writers is not None:
            self._writers.shutdown()
            self._writers = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _lock(self, home_dir: str) -> None:
        path = os.path.join(home_dir, "serve.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GoqError(
                f"another goq server is already running on this GOQ_HOME (lock {path} is held)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the server cleanly at its next turn."""

        def on_signal(signum: int, frame: object) -> None:
            self._signalled = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # ------------------------------------------------------------------------------ the loop

    def serve_forever(self) -> None:
        assert self.end is not None, "open() first"
        end, kernel = self.end, self.kernel
        while not self._stop:
            if self._signalled:
                self._perform(kernel.shutdown(time.time()))
                break
            deadline = kernel.next_deadline()
            timeout = IDLE_WAKE
            if deadline is not None:
                timeout = min(IDLE_WAKE, max(0.0, deadline - time.time()))
            got = end.recv(timeout)
            actions: list[Action] = []
            if got is not None:
                now = time.time()
                n = 0
                while got is not None:
                    self._take(got[0], got[1], now, actions)
                    n += 1
                    if n >= MAX_BATCH:
                        break
                    got = end.recv(0)
            now = time.time()
            deadline = kernel.next_deadline()
            if deadline is not None and deadline <= now:
                actions += kernel.tick(now)
            if actions:
                self._perform(actions)

    def _take(self, peer: Hashable, frame: bytes, now: float, actions: list[Action]) -> None:
        """Unpack one frame and hand it to the kernel; answer a bad one with an error frame."""
        try:
            msg = self.wire.unpack(frame)
        except BadFrame as bad:
            self.kernel.note_drop(bad.reason)
            if bad.reason == MISMATCH:
                text = (
                    f"refused: {bad.detail}. Every goq of a cluster must use the same "
                    "--codec and --cipher (GOQ_CODEC, GOQ_CIPHER)"
                )
            else:
                text = _REFUSALS.get(bad.reason, f"refused: {bad.reason}")
            assert self.end is not None
            self.end.reply(peer, error_frame(text))
            return
        actions += self.kernel.handle(msg, peer, now)

    def _perform(self, actions: list[Action]) -> None:
        """Hand out dispatched jobs, write outputs, commit, then every other reply and notify.

        An acknowledgement never precedes its commit. Outputs are written before the commit,
        so a job is never recorded finished with its output unwritten. Dispatches (JOB replies)
        alone go first, so that the worker starts its next job while this one's output and
        record are written: if the server dies before the commit, the store still has the
        dispatched job waiting and the reported one running, and both simply run again after
        the restart (at-least-once; nothing is lost or finished twice)."""
        saves: dict[int, Job] = {}
        writes: list[WriteOutput] = []
        for a in actions:
            if isinstance(a, Save):
                saves[a.job.jobid] = a.job
            elif isinstance(a, WriteOutput):
                writes.append(a)
            elif isinstance(a, Reply) and a.msg.kind == Kind.JOB:
                self._reply(a.peer, a.msg)
        if len(writes) == 1:
            self._write_output(writes[0])
        elif writes:  # several jobs' outputs (several files): creating files is slow, overlap it
            if self._writers is None:
                self._writers = ThreadPoolExecutor(OUTPUT_WRITERS, thread_name_prefix="goq-out")
            for _ in self._writers.map(self._write_output, writes):
                pass
        if saves:
            assert self.store is not None
            self.store.save(list(saves.values()), self.kernel.durable_counters())
        assert self.end is not None
        hook = self.plugins.pm.hook
        for a in actions:
            if isinstance(a, Reply):
                if a.msg.kind != Kind.JOB:
                    self._reply(a.peer, a.msg)
            elif isinstance(a, ReplyStoredJob):
                self._reply_stored(a)
            elif isinstance(a, Notify):
                getattr(hook, f"goq_job_{a.event}")(job=a.job)
            elif isinstance(a, Stop):
                self._stop = True

    def _reply(self, peer: Hashable, msg: Message) -> None:
        if msg.kind == Kind.STATUS:
            msg.counters["jservPid"] = os.getpid()
            msg.counters["uptimeSec"] = int(time.time() - self.started)
        assert self.end is not None
        self.end.reply(peer, self.wire.pack(msg))

    def _reply_stored(self, a: ReplyStoredJob) -> None:
        assert self.store is not None
        try:
            job = self.store.get_job(a.jobid)
        except StoreError as exc:  # a damaged old record must not take the server down
            msg = Message(Kind.ERROR, text=f"cannot read job {a.jobid} from the store: {exc}")
            msg.reply_to = a.reply_to
            self._reply(a.peer, msg)
            return
        if job is None:
            msg = Message(Kind.NOT_KNOWN, jobid=a.jobid, text=f"job {a.jobid} is not known")
        else:
            job.env = []
            msg = Message(Kind.FINISHED, jobid=a.jobid, jobs=[job])
        msg.reply_to = a.reply_to
        self._reply(a.peer, msg)

    def _write_output(self, a: WriteOutput) -> None:
        """Write a chunk of output at its offset; fall back to $GOQ_HOME when the submit
        directory is not writable from here."""
        for base in (a.job.dir, self.settings.home):
            path = output_path(base, self.settings.odir, a.job.jobid)
            try:
                _write_at(path, a.offset, a.data)
                return
            except OSError:
                continue
        # neither is writable: the job's record still ends; its output is lost: log it
        print(
            f"goq server: cannot write output of job {a.job.jobid} under {a.job.dir} or $GOQ_HOME",
            file=sys.stderr,
            flush=True,
        )


def _write_at(path: str, offset: int, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if offset == 0 else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        odir = os.path.dirname(path)
        if os.path.isdir(odir) or not os.path.isdir(os.path.dirname(odir)):
            raise
        os.mkdir(odir)  # only the output directory: a vanished submit dir is not recreated
        fd = os.open(path, flags, 0o644)
    try:
        if data:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
