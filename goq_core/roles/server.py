"""The server runtime: glues a listening transport, the wire, the store and output files to the
pure kernel, and performs the kernel's actions in the order that keeps acknowledged jobs durable.

One thread. Each turn: wait for a frame (no longer than the kernel's next deadline), take every
frame already queued (up to a batch, or a time budget), run them and the due timers through the
kernel, hand out the jobs dispatched, write outputs, then commit all store writes in one
transaction, and only then send the other replies. A batch that handed out jobs and has no other
reply waiting lingers a little for the frames that follow (the workers' RESULTs asking for the
next job) before its commit, so that under load one commit serves many jobs (see _perform).

Robustness: one request can never stop the loop. Whatever handling it raises is answered ERROR,
counted (errorCount) and logged in one line. When the store cannot commit (full disk, read-only
home) the server refuses submissions, keeps serving everything else, keeps the unsaved records
and retries until the store takes them. Only a store failure that cannot pass stops it, cleanly.

History: the kernel keeps only live jobs and a ring of recent ends; every attempt that is over
is committed with its batch, and JOBS, SHOW and FORGET are answered from the store after the
commit. Ended jobs older than GOQ_HISTORY_DAYS are pruned PRUNE_STEP at a time on quiet turns.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

from goq_core.config import Settings, settings_dir
from goq_core.drops import BAD_CODEC, BAD_SIG, GARBAGE, MISMATCH, TOO_BIG
from goq_core.errors import BadFrame, GoqError, StoreError
from goq_core.gate import Gate
from goq_core.interfaces import DEFAULT_MAX_FRAME, ServerEnd, Store
from goq_core.kernel import (
    Action,
    Forget,
    HandlerFailed,
    Kernel,
    KernelConfig,
    Notify,
    QueryJobs,
    Remember,
    Reply,
    ReplyStoredJob,
    Save,
    SaveAttempt,
    ShowJob,
    Stop,
    WriteOutput,
)
from goq_core.kernel.access import may_see_env
from goq_core.kernel.dependencies import outside as dependencies_outside
from goq_core.kernel.lifecycle import ENDED
from goq_core.kernel.validation import jobs_problems
from goq_core.messages import Job, Kind, Message
from goq_core.plugins import Plugins
from goq_core.records import Attempt, attempt_to_dict
from goq_core.roles.output import OutputFiles
from goq_core.roles.output import output_path as output_path  # re-exported (tests use it)
from goq_core.wire import Wire, error_frame

MAX_BATCH = 256  # frames taken per turn before committing and replying
TURN_BUDGET = 0.05  # seconds of handling after which a turn stops taking frames
LINGER = 0.002  # seconds a batch that handed out jobs waits for more frames (see _perform)
LINGER_BUDGET = 0.02  # seconds at most that a batch goes on lingering before its commit
DEAF_AFTER = 0.05  # seconds: a turn longer than this is time nobody could be heard (excused)
STORE_RETRY = 1.0  # seconds between attempts to commit while the store cannot take writes
PRUNE_EVERY = 1.0  # seconds between steps of pruning the history (on quiet turns)
PRUNE_STEP = 1000  # ended jobs forgotten per step at most (a few ms of the loop)
FORGET_BUDGET = 0.2  # seconds a `goq forget --before` may take of one turn (then: background)
MAX_LOOP_ERRORS = 100  # consecutive failed turns (e.g. a dead socket) before stopping
IDLE_WAKE = 0.5  # seconds: how often an idle server checks for a stop signal
OUTPUT_WRITERS = 8  # threads writing the output files of one batch side by side (by directory)
INLINE_WRITES = 8  # chunks of output a batch writes in the loop's own thread, whatever their dirs
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


_BAD_CREDENTIAL = (
    "refused: the server could not authenticate the message: this credential was not made from "
    "this cluster's root secret (the server's $GOQ_HOME/.goq/key): issued by another cluster, "
    "changed by hand, or damaged"
)


class Via(NamedTuple):
    """A peer whose request came sealed for a credential: its replies are sealed for it too."""

    raw: Hashable
    wire: Wire


@dataclass(slots=True)
class ServerOptions:
    allow_insecure: bool = False  # permit the `none` cipher (tests only)
    max_frame: int = DEFAULT_MAX_FRAME
    store: str = "sqlite"


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
        self.gate = Gate(
            self.plugins.codec(settings.codec),
            lambda secret: self.plugins.cipher(settings.cipher, secret),
            key,
            self.options.max_frame,
        )
        self.wire = self.gate.root  # the root secret's: error replies to unreadable frames
        roots = tuple(settings.output_roots.split(":")) if settings.output_roots else ()
        self.outputs = OutputFiles(settings.home, settings.odir, log=self.log, roots=roots)
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
        self.longest_turn = 0.0  # seconds: the longest the loop went without receiving
        self._heard = 0.0  # when this turn last received (lingering receives too)
        self._deaf = 0.0  # seconds: this turn's longest stretch without receiving so far
        self._pending: dict[int, Job] | None = None  # records a failed commit left unsaved
        self._pending_nonces: list[tuple[bytes, int]] = []
        self._pending_attempts: list[Attempt] = []
        self._prune_at = 0.0  # when the history is next pruned (a small step each time)
        self._forget_before = 0  # ns: a `goq forget --before` still going (see _forget)
        self._retry_at = 0.0
        self._forget_nonces_at = 0.0

    # ------------------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Take the server lock, open the store, rebuild the queues, and listen."""
        home_dir = settings_dir(self.settings.home)
        try:
            self._lock(home_dir)
        except OSError as exc:
            raise GoqError(
                f"cannot take the server lock in {home_dir}: {exc.strerror} (is $GOQ_HOME "
                "writable by this user, and was `goq init` run there?)"
            ) from None
        self.store = self.plugins.store(self.options.store, home_dir, create=False)
        stored = self.store.load()
        for jobid, why in stored.quarantined:
            self.log(f"stored job {jobid} is damaged ({why}): moved to quarantine, not run")
        jobs = self._usable(stored.jobs)
        outcomes = self.store.outcomes(dependencies_outside(jobs))
        restored = self.kernel.restore(
            jobs, stored.counters, time.time(), stored.nonces, outcomes=outcomes
        )
        saves = [a.job for a in restored if isinstance(a, Save)]
        if saves:  # jobs whose dependencies failed while they were stored: cancelled now
            self.store.save(saves, self.kernel.durable_counters())
            self.log(f"{len(saves)} stored job(s) changed state on restart (dependencies)")
        transport = self.plugins.transport(self.settings.transport)
        self.end = transport.listen(self.settings.address, self.options.max_frame + TOO_BIG_SLACK)
        self.started = time.time()

    def _usable(self, jobs: list[Job]) -> list[Job]:
        """The stored jobs the front door would have let in; the others are quarantined (a
        record written by an older goq, or by hand, must not stop the server at every start)."""
        good: list[Job] = []
        for job, why in jobs_problems(jobs):
            if why is None:
                good.append(job)
                continue
            self.log(f"stored job {job.jobid} cannot run ({why}): moved to quarantine")
            assert self.store is not None
            self.store.quarantine(job.jobid, why)
        return good

    def log(self, line: str) -> None:
        """One line on the server's stderr (its log)."""
        try:
            sys.stderr.write(f"goq server: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError, UnicodeError):
            pass

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
        """Serve until shutdown or a signal. Raises StoreError only when the store fails in a
        way that cannot pass (after stopping cleanly)."""
        assert self.end is not None, "open() first"
        failures = 0
        while not self._stop:
            try:
                if self._signalled:
                    self._perform(self.kernel.shutdown(time.time()))
                    break
                self._turn()
                failures = 0
            except StoreError as exc:
                if exc.transient:
                    continue  # _commit has kept the records; it retries
                self.log(f"stopping: the store failed: {exc}")
                self._stop_without_store()
                raise
            except Exception as exc:  # a bug or a dead socket: log, count, carry on (bounded)
                failures += 1
                self.kernel.note_error()
                self.log(f"error in the server loop: {type(exc).__name__}: {exc}")
                if failures >= MAX_LOOP_ERRORS:
                    self.log(f"stopping after {failures} failed turns in a row")
                    self._stop_without_store()
                    raise GoqError(f"the server loop failed {failures} times: {exc}") from None
                time.sleep(min(0.01 * failures, IDLE_WAKE))

    def _turn(self) -> None:
        """Wait for frames, handle what came and what is due, perform the actions."""
        end, kernel = self.end, self.kernel
        assert end is not None
        deadline = kernel.next_deadline()
        timeout = IDLE_WAKE
        if deadline is not None:
            timeout = min(IDLE_WAKE, max(0.0, deadline - time.time()))
        if self._pending is not None:
            timeout = min(timeout, max(0.0, self._retry_at - time.time()))
        got = end.recv(timeout)
        actions: list[Action] = []
        began = self._heard = time.time()
        self._deaf = 0.0
        n = 0
        if got is not None:
            while got is not None:
                self._take(got[0], got[1], began, actions)
                n += 1
                if n >= MAX_BATCH or time.time() - began > TURN_BUDGET:
                    break
                got = end.recv(0)
        now = time.time()
        deadline = kernel.next_deadline()
        if deadline is not None and deadline <= now:
            actions += kernel.tick(now)
        if actions:
            self._perform(actions, linger=n < MAX_BATCH)
        elif self._pending is not None and now >= self._retry_at:
            self._commit({}, [])
        elif got is None and self._pending is None:
            self._prune(now)  # only on a quiet turn, and only while commits succeed
        took = max(self._deaf, time.time() - self._heard)  # lingering is not deaf
        if took > self.longest_turn:
            self.longest_turn = took
        if took > DEAF_AFTER:
            kernel.excuse(took - DEAF_AFTER)

    def _stop_without_store(self) -> None:
        """Answer every held request GOING_AWAY without touching the store, and stop."""
        self._stop = True
        try:
            for a in self.kernel.shutdown(time.time()):
                if isinstance(a, Reply):
                    self._reply(a.peer, a.msg)
        except Exception as exc:  # stopping anyway
            self.log(f"while stopping: {type(exc).__name__}: {exc}")

    def _take(self, peer: Hashable, frame: bytes, now: float, actions: list[Action]) -> None:
        """Unpack one frame and hand it to the kernel; answer a bad one with an error frame,
        and a request whose handling fails with ERROR (counted and logged)."""
        try:
            msg, wire = self.gate.open(frame)
        except BadFrame as bad:
            self.kernel.note_drop(bad.reason)
            if bad.reason == MISMATCH:
                text = (
                    f"refused: {bad.detail}. Every goq of a cluster must use the same "
                    "--codec and --cipher (GOQ_CODEC, GOQ_CIPHER)"
                )
            elif bad.reason == BAD_SIG and frame[3:4] == b"C":
                text = _BAD_CREDENTIAL
            else:
                text = _REFUSALS.get(bad.reason, f"refused: {bad.reason}")
            assert self.end is not None
            self.end.reply(peer, error_frame(text))
            return
        except Exception as exc:  # a codec or cipher plugin that raised something unexpected
            self.kernel.note_drop(BAD_CODEC)
            self.log(f"frame dropped: the codec failed: {type(exc).__name__}: {exc}")
            assert self.end is not None
            self.end.reply(peer, error_frame(_REFUSALS[BAD_CODEC]))
            return
        if wire.principal is not None:  # a credential's: replies are sealed for it
            peer = Via(peer, wire)
        try:
            if msg.kind == Kind.SUBMIT:
                self._look_up_dependencies(msg)
            actions += self.kernel.handle(msg, peer, now, wire.acting)
        except HandlerFailed as failed:  # keep what it changed, answer ERROR
            actions += [a for a in failed.actions if not (isinstance(a, Reply) and a.peer == peer)]
            cause = failed.__cause__ if failed.__cause__ is not None else failed
            self._failed(peer, msg.nonce, f"{msg.kind.name} request", cause)
        except Exception as exc:
            self._failed(peer, msg.nonce, f"{msg.kind.name} request", exc)

    def _look_up_dependencies(self, msg: Message) -> None:
        """Tell the kernel how the jobs that a submission depends on ended, when they ended
        too long ago for it to remember (a store it cannot read leaves them unknown: the
        submission is refused)."""
        wanted = self.kernel.unresolved(msg)
        if wanted:
            assert self.store is not None
            try:
                self.kernel.learn(self.store.outcomes(wanted))
            except StoreError as exc:
                self.log(f"cannot read how dependencies {wanted[:5]}... ended: {exc}")

    def _failed(self, peer: Hashable, reply_to: bytes, what: str, exc: BaseException) -> None:
        """A request's handling raised: count it, log it, answer it ERROR."""
        self.kernel.note_error()
        detail = f"{type(exc).__name__}: {exc}"
        self.log(f"error handling a {what}: {detail}")
        msg = Message(Kind.ERROR, reply_to=reply_to, text=f"the server failed on this {what}")
        try:
            assert self.end is not None
            raw, wire = self._route(peer)
            self.end.reply(raw, wire.pack(msg))
        except Exception as again:
            self.log(f"could not answer it either: {type(again).__name__}: {again}")

    def _perform(self, actions: list[Action], linger: bool = False) -> None:
        """Hand out dispatched jobs, write outputs, commit, then every other reply and notify.

        With `linger` (the loop's turns), a batch that handed out jobs and holds no other
        reply (which would wait for the commit) takes the frames that come in the next LINGER
        s before committing: the workers just handed jobs answer soon (their RESULT asks for the
        next), so one commit and one pass over the output directories serve many jobs. It goes
        on while each wait brings frames and the batch still holds no other reply, up to
        LINGER_BUDGET s and MAX_BATCH frames: the acknowledgements it delays are only those of
        dispatches (sent already) and of RESULTs answered by them, as in any batch.

        An acknowledgement never precedes its commit. Outputs are written before the commit,
        so a job is never recorded finished with its output unwritten. Dispatches (JOB replies)
        alone go first, so that the worker starts its next job while this one's output and
        record are written: if the server dies before the commit, the store still has the
        dispatched job waiting and the reported one running, and both simply run again after
        the restart (at-least-once; nothing is lost or finished twice). A dispatch that cannot
        be delivered (its worker is gone) goes back to the kernel, which hands the job on.

        If the commit fails, the records stay pending (retried) and the submissions of this
        batch are undone and refused: their submitters were not told yes, so nothing runs."""
        saves: dict[int, Job] = {}
        writes: list[WriteOutput] = []
        nonces: list[tuple[bytes, int]] = []
        attempts: list[Attempt] = []
        after: list[Action] = []  # what goes after the commit, in order
        kernel = self.kernel
        job_kind = Kind.JOB
        i = 0
        began = time.time()
        frames = 0
        while True:
            dispatched = False
            # One pass sorts the actions by their exact class (the kernel's action classes
            # are final: `type(a) is` is a pointer compare, where a chain of isinstance cost
            # ~40 calls per job).
            while i < len(actions):  # undelivered dispatches append the kernel's next moves
                a = actions[i]
                i += 1
                t = type(a)
                if t is Save:
                    saves[a.job.jobid] = a.job
                elif t is Reply:
                    if a.msg.kind != job_kind:
                        after.append(a)
                    elif self._reply(a.peer, a.msg):
                        dispatched = True
                    else:
                        for job in a.msg.jobs:
                            actions += kernel.undelivered(job.jobid, job.attempt, time.time())
                elif t is WriteOutput:
                    writes.append(a)
                elif t is Remember:
                    nonces.append((a.nonce, a.sendtime_ns))
                elif t is SaveAttempt:
                    attempts.append(a.attempt)
                else:
                    after.append(a)
            if not (linger and dispatched) or after or self._pending is not None:
                break
            if frames >= MAX_BATCH or time.time() - began > LINGER_BUDGET:
                break
            frames += self._linger(actions, MAX_BATCH - frames)
            if i == len(actions):  # nothing came (or nothing to do): commit now
                break
        if writes:
            for w, changed in zip(writes, self._write_outputs(writes), strict=True):
                if changed:  # its note now says where its output went: the record is saved
                    saves[w.job.jobid] = w.job
        committed = self._commit(saves, nonces, attempts) if saves or nonces or attempts else True
        outputs = self.outputs
        for job in saves.values():
            if job.state in ENDED:
                outputs.forget(job.jobid)  # its output is complete
        if not after:
            return
        hook = self.plugins.pm.hook
        for a in after:
            t = type(a)
            if t is Reply:
                if not committed and a.msg.kind == Kind.SUBMITTED:
                    self._refuse_uncommitted(a)
                self._reply(a.peer, a.msg)
            elif t is ReplyStoredJob:
                self._reply_stored(a)
            elif t is QueryJobs or t is ShowJob or t is Forget:
                self._history(a)
            elif t is Notify:
                try:
                    getattr(hook, f"goq_job_{a.event}")(job=a.job)
                except Exception as exc:  # a plugin's bug must not stop the server
                    kernel.note_error()
                    self.log(f"plugin hook goq_job_{a.event} failed: {type(exc).__name__}: {exc}")
            elif t is Stop:
                self._stop = True

    def _linger(self, actions: list[Action], most: int) -> int:
        """Take the frames that arrive within LINGER s (then those already queued, up to
        `most`) into `actions`; how many were taken. A transport that fails here ends the
        lingering (the batch is committed; the loop meets the failure at its next recv)."""
        assert self.end is not None
        taken = 0
        try:
            self._deaf = max(self._deaf, time.time() - self._heard)
            got = self.end.recv(LINGER)
            now = self._heard = time.time()
            while got is not None:
                self._take(got[0], got[1], now, actions)
                taken += 1
                if taken >= most:
                    break
                got = self.end.recv(0)
        except Exception as exc:
            self.log(f"while taking more frames: {type(exc).__name__}: {exc}")
        return taken

    def _refuse_uncommitted(self, a: Reply) -> None:
        """Turn the SUBMITTED reply of a batch that could not be committed into a refusal, and
        undo the submission (its records leave the pending writes too)."""
        first, count = a.msg.jobid, a.msg.count
        for jobid in range(first, first + count):
            if self._pending is not None:
                self._pending.pop(jobid, None)
        undo = self.kernel.retract(first, count, time.time())
        for b in undo:
            if isinstance(b, Reply):
                self._reply(b.peer, b.msg)
        a.msg = Message(
            Kind.ERROR,
            reply_to=a.msg.reply_to,
            text=(
                f"refused: the server cannot write its store ({self.kernel.store_trouble}); "
                "nothing was submitted: try again once its disk has room"
            ),
        )

    def _commit(
        self,
        saves: dict[int, Job],
        nonces: list[tuple[bytes, int]],
        attempts: list[Attempt] | None = None,
    ) -> bool:
        """Commit these records (and any left from failed commits) in one transaction. False
        when the store cannot take them now: they stay pending and are retried, and the kernel
        refuses submissions until a commit succeeds. Raises StoreError if that cannot pass."""
        attempts = attempts or []
        if self._pending is not None:
            self._pending.update(saves)
            saves = self._pending
            nonces = self._pending_nonces + nonces
            attempts = self._pending_attempts + attempts
            if time.time() < self._retry_at:
                self._pending_nonces = nonces
                self._pending_attempts = attempts
                return False
        assert self.store is not None
        now = time.time()
        forget = 0
        if now >= self._forget_nonces_at:
            forget = int((now - self.kernel.config.skew_sec - 1) * 1e9)
            self._forget_nonces_at = now + 10
        try:
            self.store.save(
                list(saves.values()),
                self.kernel.durable_counters(),
                nonces,
                forget_nonces_before_ns=forget,
                attempts=attempts,
            )
        except StoreError as exc:
            if not exc.transient:
                raise
            if self._pending is None:
                self.log(f"cannot commit to the store: {exc}; refusing submissions meanwhile")
            self._pending = saves
            self._pending_nonces = nonces
            self._pending_attempts = attempts
            self._retry_at = now + STORE_RETRY
            self.kernel.set_store_trouble(_short(exc))
            return False
        if self._pending is not None:
            self.log(f"the store takes writes again: {len(saves)} pending record(s) committed")
            self._pending = None
            self._pending_nonces = []
            self._pending_attempts = []
            self.kernel.set_store_trouble("")
        return True

    def _reply(self, peer: Hashable, msg: Message) -> bool:
        """Send a reply; False when its peer is gone. A reply that cannot be encoded is
        answered ERROR instead (counted and logged): the loop goes on."""
        if msg.kind == Kind.STATUS:
            msg.counters["jservPid"] = os.getpid()
            msg.counters["uptimeSec"] = int(time.time() - self.started)
            msg.counters["longestTurnMs"] = int(self.longest_turn * 1000)
            msg.counters["storeTrouble"] = 1 if self.kernel.store_trouble else 0
        assert self.end is not None
        raw, wire = self._route(peer)
        try:
            frame = wire.pack(msg)
        except Exception as exc:
            self._failed(peer, msg.reply_to, f"{msg.kind.name} reply", exc)
            return True
        return self.end.reply(raw, frame)

    def _route(self, peer: Hashable) -> tuple[Hashable, Wire]:
        """The transport's peer and the wire a reply to `peer` is sealed with: the credential's
        for a Via, else the root secret's."""
        if type(peer) is Via:
            return peer.raw, peer.wire
        return peer, self.wire

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

    def _history(self, a: QueryJobs | ShowJob | Forget) -> None:
        """Answer a request about the history from the store (after this batch's commit, so
        the jobs that ended in it are there); a store that fails answers ERROR, one line."""
        assert self.store is not None
        try:
            if isinstance(a, QueryJobs):
                msg = self._query_jobs(a)
            elif isinstance(a, ShowJob):
                msg = self._show_job(a)
            else:
                msg = self._forget(a)
        except StoreError as exc:
            msg = Message(Kind.ERROR, text=f"cannot read the history: {exc}")
        msg.reply_to = a.reply_to
        self._reply(a.peer, msg)

    def _query_jobs(self, a: QueryJobs) -> Message:
        q = a.query
        found = list(a.live)
        if q.ended_states:
            assert self.store is not None
            found += self.store.history(
                states=q.ended_states,
                name=q.name,
                since_ns=q.since_ns,
                before_jobid=q.before,
                limit=q.limit,
                owner=q.owner,
            )
        found.sort(key=lambda job: job.jobid, reverse=True)
        return Message(Kind.JOB_LIST, jobs=found[: q.limit], count=min(len(found), q.limit))

    def _show_job(self, a: ShowJob) -> Message:
        assert self.store is not None
        job = a.job if a.job is not None else self.store.get_job(a.jobid)
        if job is None:
            text = f"job {a.jobid} is not known to this server (never, or forgotten)"
            return Message(Kind.NOT_KNOWN, jobid=a.jobid, text=text)
        if job.env and not may_see_env(a.viewer, job):
            job = replace(job, env=[])  # a job's environment: its owner's and admins' only
        attempts = [attempt_to_dict(x) for x in self.store.attempts(a.jobid)]
        odir, _ = self.outputs.odir_for(job)
        path = output_path(job.dir, odir, job.jobid) if job.dir else None
        extra = {"attempts": attempts, "output_path": path}
        text = json.dumps(extra, separators=(",", ":"), ensure_ascii=False)
        return Message(Kind.JOB_RECORD, jobid=a.jobid, jobs=[job], text=text)

    def _forget(self, a: Forget) -> Message:
        """FORGET: the named ended jobs at once; those ended before a time in steps (one big
        delete would stall the loop): as many as FORGET_BUDGET allows now, the rest on quiet
        turns, with the pruning of old history."""
        assert self.store is not None
        if not a.before_ns:
            count = self.store.forget(a.jobids)
            return Message(
                Kind.ACK, count=count, text=f"removed {count} ended job(s) from the history"
            )
        count, began = 0, time.monotonic()
        while True:
            step = self.store.prune(a.before_ns, PRUNE_STEP)
            count += step
            if step < PRUNE_STEP:
                text = f"removed {count} ended job(s) from the history"
                return Message(Kind.ACK, count=count, text=text)
            if time.monotonic() - began > FORGET_BUDGET:
                self._forget_before = max(self._forget_before, a.before_ns)
                self._prune_at = 0.0
                text = (
                    f"removed {count} ended job(s) from the history so far; the others that "
                    "ended before then go in the background, on quiet turns"
                )
                return Message(Kind.ACK, count=count, text=text)

    def _prune(self, now: float) -> None:
        """A small step of forgetting what ended more than GOQ_HISTORY_DAYS ago."""
        if now < self._prune_at or self.store is None:
            return
        self._prune_at = now + PRUNE_EVERY
        cutoff = max(int((now - self.settings.history_days * 86400) * 1e9), self._forget_before)
        try:
            removed = self.store.prune(cutoff, PRUNE_STEP)
        except StoreError as exc:
            self.log(f"cannot prune the history: {exc}")
            return
        if removed == PRUNE_STEP:
            self._prune_at = now  # more to do: another step at the next quiet turn
        elif self._forget_before:
            self._forget_before = 0  # a `goq forget --before` is done

    def _write_outputs(self, writes: list[WriteOutput]) -> list[bool]:
        """Write the batch's chunks of output, each at its offset (goq_core.roles.output: no
        links followed, no FIFO waited on, $GOQ_HOME fallback); for each, True when its job's
        note changed.

        Chunks are grouped by submit directory: files made in one directory are made one after
        the other by the file system anyway (it locks the directory), so one thread writes a
        directory's chunks, in order, opening the directory once. A batch of a few chunks, or of
        one directory, is written here in the loop's thread (a hand-off to a pool costs more
        than it overlaps); several directories with many chunks go to the writer pool side by
        side, one directory per task."""
        chunks = [(a.job, a.offset, a.data, a.start) for a in writes]
        if len(chunks) <= INLINE_WRITES:
            return self.outputs.write_many(chunks)
        groups: dict[object, list[int]] = {}
        for i, a in enumerate(writes):
            groups.setdefault(a.job.dir, []).append(i)
        if len(groups) == 1:
            return self.outputs.write_many(chunks)
        if self._writers is None:
            self._writers = ThreadPoolExecutor(OUTPUT_WRITERS, thread_name_prefix="goq-out")
        order = list(groups.values())
        done = self._writers.map(
            lambda idx: self.outputs.write_many([chunks[i] for i in idx]), order
        )
        noted = [False] * len(chunks)
        for idx, changed in zip(order, done, strict=True):
            for i, c in zip(idx, changed, strict=True):
                noted[i] = c
        return noted


def _short(exc: BaseException) -> str:
    """The gist of a store error for a refusal sent to clients (no file paths)."""
    text = str(exc)
    for gist in ("disk is full", "readonly", "read-only", "disk I/O error", "locked"):
        if gist in text:
            return {"readonly": "read-only"}.get(gist, gist)
    return "store error"
