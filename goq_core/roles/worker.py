"""The worker runtime: offers what it has (cpus, GPUs, memory, named counters), runs at once every
job the server hands it, sends each run's output and result back, and keeps one heartbeat going
for all its runs. Reconnects by itself.

The ask: the worker has at most one ask for work outstanding at a time (`_asking`), and asks
only while it has free capacity by its own count (its offer less the runs it holds; every job
needs a cpu, so a worker whose cpus are all held is full). In the common case a job costs the
server two messages: the RESULT of the run that ended asks for the next job (wait_ms > 0) and
is answered JOB; a REQUEST_WORK goes out only when no RESULT can carry the ask.

Threads (see goq_core.messages for the protocol):
- the dispatcher sends REQUEST_WORK when the worker has free capacity and no ask is
  outstanding, and otherwise waits to be woken. It carries the offer and every run the worker
  holds (running, or finished with its RESULT not yet acknowledged), so that the server can
  tell a JOB reply that was lost (it hands the same runs again) from runs under way. The server
  holds it while nothing fits the free capacity, and answers JOB with one or more jobs: each is
  registered as held, then started, before anything asks again.
- one runner thread per run at a time spawns the job (its own session and process group,
  watched by the guardian), waits for it (one with a time limit gets SIGTERM to its group at
  the limit, measured from its spawn on this host's monotonic clock, then SIGKILL after
  GOQ_KILL_GRACE s, and its RESULT says state TIMEOUT; one killed before its limit, for a KILL
  or a stop, is not a TIMEOUT), then sends its OUTPUT chunks, if its output needs more than
  one, and puts its report (outcome, last output, rusage counters: maxRssKib, utimeUs and
  stimeUs, see goq_core.roles.jobrun) in the outbox. Unless another runner is reporting, it
  reports: sends the outbox as RESULTs, the runs that ended meanwhile together in one
  (goq_core.messages), each until the server answers, across server restarts. When no ask is
  outstanding the RESULT that empties the outbox is the ask (wait_ms = the hold): the server
  holds it until jobs fit, and the runner takes its reply as the dispatcher would (JOB:
  registers the jobs and runs the first itself; NOTHING_YET: the ask is over, the dispatcher
  asks anew with the runs list).
  Senders take a connection from a small pool: a ClientEnd carries one request at a time.
- the heartbeat thread, once a run has been held FIRST_HEARTBEAT s, keeps one HEARTBEAT held at
  the server, listing every run held; its answer is where KILL (runs cancelled or no longer
  current) and EXIT (immolate) arrive at once.
- the thread that called `run` waits for a stop (signal, EXIT, oneshot done), then kills every
  run still going (the server requeues them) and cleans up.

A job runs with GOQ_CPUS (and GOQ_GPUS, CUDA_VISIBLE_DEVICES) added to its environment; a job of
an array (array_id > 0) also with GOQ_ARRAY_ID and GOQ_ARRAY_INDEX. These win over its own.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from goq_core.config import Settings
from goq_core.errors import BadFrame, GoqError, TransportError
from goq_core.interfaces import ClientEnd, Transport
from goq_core.limits import MAX_RUNS_PER_RESULT
from goq_core.messages import Job, Kind, Message, batch_counters
from goq_core.plugins import Plugins
from goq_core.principals import WORK, Secret
from goq_core.roles.guardian import Guardian
from goq_core.roles.jobrun import DEFAULT_GRACE, JobRun
from goq_core.roles.offer import make_offer, new_token
from goq_core.wire import Wire, error_text

CHUNK = 1 << 20  # bytes of output per message
FIRST_HEARTBEAT = 0.2  # seconds a run is held before heartbeats start (short jobs need none)
MAX_BACKOFF = 2.0  # seconds between retries while the server is away
PAUSE = 0.5  # seconds to wait after GOING_AWAY or ERROR before asking again
RESULT_REFUSALS = 3  # ERROR replies to one RESULT before the worker gives up on it

RunKey = tuple[int, int]  # (jobid, attempt)


class _Stopped(Exception):
    """The worker was told to stop (signal, EXIT, or oneshot done)."""


class _Waker:
    """A descriptor that polls readable once `set()` is called (an eventfd, else a pipe)."""

    __slots__ = ("_r", "_w", "_armed")

    def __init__(self) -> None:
        self._armed = False
        if hasattr(os, "eventfd"):
            self._r = self._w = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        else:
            self._r, self._w = os.pipe()
            os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def set(self) -> None:
        self._armed = True
        try:
            os.write(self._w, (1).to_bytes(8, "little"))
        except (BlockingIOError, OSError):
            return  # already readable

    def clear(self) -> None:
        if not self._armed:
            return
        self._armed = False
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            return

    def close(self) -> None:
        os.close(self._r)
        if self._w != self._r:
            os.close(self._w)


class _Run:
    """A run the worker holds: from the JOB reply that handed it until the server has
    acknowledged its RESULT."""

    __slots__ = ("job", "cores", "run", "kill", "held_since", "lock", "_waker")

    def __init__(self, job: Job, cores: tuple[int, ...]) -> None:
        self.job = job  # as handed: jobid, attempt, cpus, gpus, gpu_ids...
        self.cores = cores  # pinned to these (goq work --bind), else ()
        self.run: JobRun | None = None
        self.kill = False
        self.held_since = time.monotonic()
        self.lock = threading.Lock()  # spawn vs. kill vs. the waker coming and going
        self._waker: _Waker | None = None  # its runner thread's, while one runs it

    @property
    def key(self) -> RunKey:
        return (self.job.jobid, self.job.attempt)

    def request_kill(self) -> None:
        """Make the run's thread kill the job's process group (SIGTERM, then SIGKILL after a
        grace) now; only that thread signals and reaps its job."""
        with self.lock:
            self.kill = True
            if self._waker is not None:
                self._waker.set()

    def attach(self, waker: _Waker | None) -> None:
        """The runner thread that runs it wakes on `waker` (None: it is done with it)."""
        with self.lock:
            self._waker = waker
            if waker is not None and self.kill:
                waker.set()  # asked before the runner took it


class _Report:
    """A run that ended, as its RESULT will report it: the outcome, its output from `offset`
    on (`data`: all of it unless it took OUTPUT chunks) and its rusage counters."""

    __slots__ = ("held", "outcome", "offset", "data", "usage")

    def __init__(
        self, held: _Run, outcome: Job, offset: int, data: bytes, usage: dict[str, int]
    ) -> None:
        self.held = held
        self.outcome = outcome
        self.offset = offset
        self.data = data
        self.usage = usage


class Worker:
    """A goq worker. `offer` is what it has (None: 1 cpu, nothing else; see
    goq_core.roles.offer.make_offer); `name` is what the server and `goq workers` know it by
    (default: a work credential's name, else host plus 4 hex digits); `bind` pins each run to
    its own cores."""

    def __init__(
        self,
        settings: Settings,
        key: bytes | Secret,
        plugins: Plugins | None = None,
        oneshot: bool = False,
        log: Callable[[str], object] = print,
        offer: Job | None = None,
        name: str | None = None,
        bind: bool = False,
    ) -> None:
        self.settings = settings
        self.plugins = plugins or Plugins()
        self.wire = Wire.sealing(
            self.plugins.codec(settings.codec),
            lambda k: self.plugins.cipher(settings.cipher, k),
            key,
        )
        self.principal = self.wire.acting  # who this end acts as (ROOT for the root secret)
        self.oneshot = oneshot
        self.home = os.path.abspath(settings.home)
        self.log = log
        self.host = socket.gethostname()
        if not name and self.principal.role == WORK:
            name = self.principal.name  # a work credential acts only under its own name
        self.name = name or f"{self.host}-{os.urandom(2).hex()}"
        self.workerid = self.name  # msg.workerid on every message
        self.token = new_token()  # unique to this process: tells a restarted worker apart
        self.offer = replace(offer if offer is not None else make_offer(), jobid=0)
        self.offer.workerid = self.token
        self.bind = bind
        self.hold_ms = max(1, int(settings.heartbeat_sec * 1000))
        self.send_timeout = settings.sendtimeout_ms / 1000
        self.kill_grace = settings.kill_grace_sec  # a time limit's SIGTERM to SIGKILL
        self.jobs_done = 0
        self.denied = False  # the server refused this worker's credential: it stopped
        self._cores = sorted(os.sched_getaffinity(0)) if bind else []
        self._free_cores = list(self._cores)
        if bind and self.offer.cpus > len(self._cores):
            log(
                f"goq worker: offers {self.offer.cpus} cpus but may run on {len(self._cores)} "
                "cores: with --bind, a run gets fewer cores than it asked when none are free"
            )
        self._runs: dict[RunKey, _Run] = {}  # held, in the order handed
        self._lock = threading.Lock()
        self._woken = threading.Condition(self._lock)  # the dispatcher waits here while it
        # may not ask (full, or an ask outstanding)
        self._asking = False  # an ask for work is outstanding (REQUEST_WORK or a RESULT)
        self._outbox: deque[_Report] = deque()  # runs ended, their RESULT not yet sent
        self._reporting = False  # a runner is sending the outbox (_report)
        self._batch_limit = 1  # runs one RESULT may report: what the server said it takes
        self._cpus_held = 0  # cpus of the runs held
        self._busy = threading.Event()  # set when a run is added; the heartbeat clears it
        self._queue: queue.SimpleQueue[_Run | None] = queue.SimpleQueue()  # runs to start
        self._runners: list[threading.Thread] = []
        self._idle_runners = 0  # runner threads waiting on the queue, less runs queued
        self._stopping = threading.Event()
        self._exit_reason = ""
        self._error: BaseException | None = None
        self._got_job = False
        self._away = False  # a "not answering" line was logged and not yet followed by an answer
        self._guardian = Guardian()
        self._spool = ""
        self._transport: Transport | None = None
        self._conn: ClientEnd | None = None  # the dispatcher's
        self._hb_conn: ClientEnd | None = None
        self._pool: list[ClientEnd] = []  # idle connections for OUTPUT and RESULT
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------------------ lifecycle

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT: kill the runs (they will be requeued) and exit."""

        def on_signal(signum: int, frame: object) -> None:
            self.stop(f"signal {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def stop(self, reason: str) -> None:
        """Ask the worker to stop (thread- and signal-safe: takes no lock). The thread in
        `run` then kills the runs still going and returns."""
        if not self._exit_reason:
            self._exit_reason = reason
        self._stopping.set()

    def _deny(self, why: str) -> None:
        """The server refuses this worker's credential (revoked, expired, or not allowed this
        worker name): stop, killing the runs (the server hands them to other workers)."""
        self.denied = True
        self.log(f"goq worker: the server refused this worker: {why}")
        self.stop(f"the server refused this worker: {why}")

    def held(self) -> list[RunKey]:
        """(jobid, attempt) of every run held now, in the order they were handed."""
        with self._lock:
            return list(self._runs)

    def run(self) -> str:
        """Serve jobs until stopped; returns why it stopped (raises GoqError if the server
        cannot be talked to at all, e.g. a codec or cipher mismatch)."""
        transport = self._transport = self.plugins.transport(self.settings.transport)
        beat = threading.Thread(target=self._heartbeats, name="goq-heartbeat", daemon=True)
        dispatcher = threading.Thread(target=self._dispatch, name="goq-dispatch", daemon=True)
        try:
            self._guardian.start()
            self._spool = tempfile.mkdtemp(prefix=f"goq-worker-{os.getpid()}-")
            self._conn = transport.dial(self.settings.address)
            self._hb_conn = transport.dial(self.settings.address)
            beat.start()
            dispatcher.start()
            while not self._stopping.wait(1.0):
                pass
        finally:
            self._stopping.set()
            self._busy.set()
            with self._lock:
                runs = list(self._runs.values())
                runners = list(self._runners)
                self._woken.notify_all()
            for held in runs:  # stopped mid-run: the server requeues them
                held.request_kill()
            for _ in runners:
                self._queue.put(None)
            deadline = time.monotonic() + DEFAULT_GRACE + 1.5
            for runner in runners:
                runner.join(max(0.0, deadline - time.monotonic()))
            beat.join(timeout=0.2)
            self._guardian.close()  # takes down any group a run thread did not
            # requests still held at the server are left to the process exit, not waited for
            with self._pool_lock:
                conns, self._pool = self._pool, []
            if not beat.is_alive():
                conns.append(self._hb_conn)
            if not dispatcher.is_alive():
                conns.append(self._conn)
            for conn in conns:
                if conn is not None:
                    conn.close()
            if self._spool:
                shutil.rmtree(self._spool, ignore_errors=True)
        if self._error is not None:
            raise self._error
        return self._exit_reason or "stopped"

    def _fail(self, exc: BaseException) -> None:
        """A thread met an error the worker cannot go on after: `run` raises it."""
        if self._error is None:
            self._error = exc
        self.stop(f"error: {exc}")

    # ------------------------------------------------------------------------------ dispatcher

    def _dispatch(self) -> None:
        try:
            self._serve()
        except _Stopped:
            return
        except BaseException as exc:  # handed to the thread in run()
            self._fail(exc)

    def _serve(self) -> None:
        """Send REQUEST_WORK while the worker has room and no ask is outstanding; start what
        it hands. Otherwise wait to be woken (a run let go, an ask over, a stop)."""
        backoff = 0.05
        hold = self.hold_ms / 1000
        while not self._stopping.is_set():
            if self.oneshot and self._got_job:
                return  # asks for nothing more; run() returns once its result is delivered
            with self._lock:
                if self._asking or not self._room():
                    self._woken.wait(1.0)
                    continue
                self._asking = True
                ask = self._ask_for_work()
            try:
                reply = self._request(self._conn, ask, hold + self.send_timeout)
            except TransportError as exc:
                self._asked()
                if self._stopping.is_set():
                    return
                self._conn = self._redial(self._conn)
                self._warn_away(exc)
                self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF, self.hold_ms / 4000)
                continue
            except BaseException:
                self._asked()
                raise
            backoff = 0.05
            self._away = False
            kind = reply.kind
            self._heard_limit(reply)
            if kind == Kind.JOB:
                self._take(reply)  # registered before the ask is over
            self._asked()
            if kind == Kind.EXIT:
                self.stop("told to exit by the server (immolateworkers)")
            elif kind == Kind.DENIED:
                self._deny(reply.text)
            elif kind in (Kind.GOING_AWAY, Kind.ERROR):
                if kind == Kind.ERROR:
                    self.log(f"goq worker: server refused a request: {reply.text}")
                self._pause(PAUSE)
            # else NOTHING_YET: ask again

    def _room(self, leaving: int = 0) -> bool:
        """Whether this worker has free capacity by its own count (caller holds the lock): its
        offer less the runs it holds, less `leaving` cpus (of runs whose RESULT is going out).
        Every job needs at least one cpu while it may need no memory, GPU or named counter, so
        some job can fit exactly when a cpu is free."""
        return max(1, self.offer.cpus) - (self._cpus_held - leaving) >= 1

    def _asked(self) -> None:
        """The outstanding ask is over (answered, or given up): the dispatcher may ask, and is
        woken for it when the worker has room (when it has none, the run that ends wakes it:
        not waking it for nothing saves a thread switch per job in a drain)."""
        with self._lock:
            self._asking = False
            if self._room():
                self._woken.notify()

    def _ask_for_work(self) -> Message:
        """The REQUEST_WORK listing every run held (caller holds the lock)."""
        runs = [Job(jobid=jobid, attempt=attempt) for jobid, attempt in self._runs]
        return Message(
            Kind.REQUEST_WORK,
            workerid=self.name,
            host=self.host,
            wait_ms=self.hold_ms,
            jobs=[self.offer, *runs],
            count=1 if self.oneshot else 0,
        )

    def _take(self, reply: Message, keep_first: bool = False) -> _Run | None:
        """Register each job handed as held, then start it (before anything asks again). With
        `keep_first` (a runner thread took the reply) the first is returned for the caller to
        run rather than handed to a runner."""
        jobs = reply.jobs
        if len(jobs) == 1 and not jobs[0].attempt:
            jobs[0].attempt = reply.attempt  # a server that sets only the message's attempt
        kept: _Run | None = None
        for job in jobs:
            runner: threading.Thread | None = None
            with self._lock:
                if self._stopping.is_set():
                    return kept  # not started: the server requeues it
                if (job.jobid, job.attempt) in self._runs:
                    continue  # handed again while it runs here: keep the one we have
                held = _Run(job, self._take_cores(job.cpus))
                self._runs[held.key] = held
                self._cpus_held += job.cpus
                if not self._busy.is_set():
                    self._busy.set()
                if keep_first and kept is None:
                    kept = held
                    self._got_job = True
                    continue
                if self._idle_runners > 0:
                    self._idle_runners -= 1
                else:
                    runner = threading.Thread(
                        target=self._runner,
                        args=(len(self._runners),),
                        name=f"goq-run-{len(self._runners)}",
                        daemon=True,
                    )
                    self._runners.append(runner)
            self._got_job = True
            self._queue.put(held)
            if runner is not None:
                runner.start()
        return kept

    def _take_cores(self, count: int) -> tuple[int, ...]:
        """Cores for a run of `count` cpus (goq work --bind), from those free; caller holds
        the lock. Fewer when fewer are free (the offer exceeds the cores this worker may use)."""
        if not self.bind or count <= 0:
            return ()
        cores, self._free_cores = self._free_cores[:count], self._free_cores[count:]
        return tuple(cores)

    # ------------------------------------------------------------------------------ one run

    def _runner(self, index: int) -> None:
        """A runner thread: runs one run after another from the queue. Threads are kept, not
        made per run, and each reuses one spool file: a thread start, or a file created and
        deleted, costs more than a short job's whole turn on the worker."""
        waker = _Waker()
        spool_name = f"run{index}.out"
        try:
            held: _Run | None = None
            while True:
                if held is None:
                    held = self._queue.get()
                    if held is None:
                        return
                held.attach(waker)
                try:
                    nxt = self._run_one(held, waker, spool_name)
                finally:
                    held.attach(None)
                    waker.clear()
                held = nxt  # a job its RESULT's ask was handed: this thread runs it next
                if held is None:
                    with self._lock:
                        self._idle_runners += 1
        finally:
            waker.close()

    def _run_one(self, held: _Run, waker: _Waker, spool_name: str) -> _Run | None:
        """Run `held` and deliver its result; returns a run its RESULT's ask was handed, which
        the caller runs next."""
        try:
            run = self._start(held, spool_name)
            if run is None:
                return None
            self._wait(held, run, waker)
            if self._stopping.is_set():
                return None  # killed because the worker stops: the server requeues it
            return self._deliver(held, run)
        except _Stopped:
            return None
        except GoqError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave a run held for ever
            self._fail(GoqError(f"worker failed running job {held.job.jobid}: {exc!r}"))
        return None

    def _start(self, held: _Run, spool_name: str) -> JobRun | None:
        job = held.job
        with held.lock:
            if self._stopping.is_set():
                return None
            run = JobRun.start(
                job,
                self.home,
                self._spool,
                spool_name,
                env_extra=self._job_env(job),
                affinity=held.cores,
            )
            held.run = run
        if run.pgid:
            self._guardian.watch(run.pgid)
        return run

    def _job_env(self, job: Job) -> dict[str, str]:
        """What goq adds to a job's environment: GOQ_CPUS; GOQ_GPUS and CUDA_VISIBLE_DEVICES,
        its GPUs when it asked for some, and empty when this worker manages GPUs and it asked
        for none (so that it cannot use a GPU another job holds); GOQ_ARRAY_ID and
        GOQ_ARRAY_INDEX for a job of an array."""
        env = {"GOQ_CPUS": str(job.cpus)}
        if job.gpus > 0:
            env["GOQ_GPUS"] = env["CUDA_VISIBLE_DEVICES"] = job.gpu_ids
        elif self.offer.gpus > 0:
            env["GOQ_GPUS"] = env["CUDA_VISIBLE_DEVICES"] = ""
        if job.array_id > 0:
            env["GOQ_ARRAY_ID"] = str(job.array_id)
            env["GOQ_ARRAY_INDEX"] = str(job.array_index)
        return env

    def _wait(self, held: _Run, run: JobRun, waker: _Waker) -> None:
        """Until the job's main process ends (at its time limit: SIGTERM to its group, SIGKILL
        after the grace), or a kill is asked for; then clear its group."""
        try:
            if not run.wait_limited(self.kill_grace, waker.fileno(), lambda: held.kill):
                run.kill()  # KILL from the server, or the worker stops
        finally:
            if run.pgid:
                run.kill(grace=0.2)  # clears anything the job left running in its group
                self._guardian.unwatch(run.pgid)

    def _deliver(self, held: _Run, run: JobRun) -> _Run | None:
        """Send the output past its last chunk as OUTPUT, then put the run's report in the
        outbox; unless another runner is reporting (it takes this one with its next batch),
        send the reports (`_report`). Returns a run that a report's ask was handed, for this
        thread to run next."""
        job = held.job
        size = run.output_size()
        offset = 0
        if size > CHUNK:
            conn = self._borrow()
            try:
                while size - offset > CHUNK:
                    chunk = run.read_output(offset, CHUNK)
                    msg = self._about(job, Kind.OUTPUT, offset=offset, data=chunk)
                    reply, conn = self._send(conn, msg)
                    offset += len(chunk)
                    if reply.text == "stale":
                        offset = size  # the server does not want this run's output
                        break
            finally:
                self._give_back(conn)
        last = run.read_output(offset, CHUNK) if offset < size else b""
        if size > CHUNK:
            run.discard_output()  # a small one is left to be truncated by the next run
        report = _Report(held, run.outcome(size), offset, last, run.usage_counters())
        with self._lock:
            self._outbox.append(report)
            if self._reporting:
                return None  # the runner reporting now sends it with its next batch
            self._reporting = True
        return self._report()

    def _report(self) -> _Run | None:
        """Send the outbox's reports as RESULTs until it is empty, each batch until the server
        answers (then its runs are no longer held). A batch is what ended while the previous
        one was on its way: several small runs, or one whose output took OUTPUT chunks. When it
        empties the outbox, no ask is outstanding and the worker is left with room, the batch is
        the ask (wait_ms > 0): its JOB reply is registered and the first job handed returned,
        for this thread to run next. A batch that asks may be held at the server, so its sender
        stops reporting when it sends it (nothing is left in the outbox then): the reports of
        runs that end meanwhile are sent by their own runners."""
        conn = self._borrow()
        reporting = True
        try:
            while True:
                with self._lock:
                    batch = self._batch()
                    if not batch:
                        self._reporting = False
                        return None
                    leaving = sum(r.held.job.cpus for r in batch)
                    asks = (
                        not self._outbox  # the last batch: whoever asks stops reporting
                        and not self._asking
                        and not self.oneshot
                        and not self._stopping.is_set()
                        and self._room(leaving)
                    )
                    if asks:
                        self._asking = True
                        self._reporting = reporting = False
                reply, conn = self._send_result(conn, batch, asks)
                self._heard_limit(reply)
                with self._lock:
                    for r in batch:
                        held = r.held
                        del self._runs[held.key]
                        self._cpus_held -= held.job.cpus
                        if held.cores:
                            self._free_cores = sorted((*self._free_cores, *held.cores))
                        self.jobs_done += 1
                    left = len(self._runs)
                    if not asks:
                        self._woken.notify()  # room for the dispatcher to ask, unless an ask is out
                if self.oneshot and not left:
                    self.stop("oneshot: one job done")
                if asks:  # no longer the reporter: whoever ends a run next sends its report
                    kept = None
                    if reply.kind == Kind.JOB:
                        kept = self._take(reply, keep_first=True)  # before the ask is over
                    elif reply.kind == Kind.EXIT:
                        self.stop("told to exit by the server (immolateworkers)")
                    self._asked()  # NOTHING_YET (or ACK, ERROR): the dispatcher asks anew
                    return kept
        except BaseException:
            if reporting:
                with self._lock:
                    self._reporting = False
            raise
        finally:
            self._give_back(conn)

    def _heard_limit(self, reply: Message) -> None:
        """Keep how many runs the server takes in one RESULT, from its answer to an ask or a
        RESULT (JOB, NOTHING_YET, ACK: `count`; 0 from a server older than batching: one)."""
        if reply.kind in (Kind.JOB, Kind.NOTHING_YET, Kind.ACK):
            self._batch_limit = max(1, min(reply.count, MAX_RUNS_PER_RESULT))

    def _batch(self) -> list[_Report]:
        """The next reports to send together (caller holds the lock): the oldest and, when it
        is small (offset 0), every other small one while their outputs fit one chunk and the
        batch the server's limit; the rest stay, in order, for the next batches."""
        box = self._outbox
        if not box:
            return []
        first = box.popleft()
        if first.offset:
            return [first]
        batch = [first]
        size = len(first.data)
        skipped: list[_Report] = []
        limit = self._batch_limit
        while box and len(batch) < limit:
            report = box.popleft()
            if report.offset or size + len(report.data) > CHUNK:
                skipped.append(report)
                continue
            size += len(report.data)
            batch.append(report)
        box.extendleft(reversed(skipped))
        return batch

    def _send_result(
        self, conn: ClientEnd, batch: list[_Report], asks: bool
    ) -> tuple[Message, ClientEnd]:
        """Send one RESULT for `batch` until the server answers it (ERROR: a few times, then
        it is given up rather than held for ever); the reply and the connection in use."""
        first = batch[0]
        if len(batch) == 1:
            data, counters = first.data, first.usage
        else:
            data = b"".join(r.data for r in batch)
            counters = batch_counters([r.usage for r in batch])
        result = self._about(
            first.held.job,
            Kind.RESULT,
            offset=first.offset,
            data=data,
            jobs=[r.outcome for r in batch],
            wait_ms=self.hold_ms if asks else 0,
            count=1 if self.oneshot else 0,
            counters=counters,  # none when the command could not start
        )
        # an ask is held at the server up to the hold: wait that long for the answer
        timeout = self.send_timeout + (self.hold_ms / 1000 if asks else 0.0)
        refusals = 0
        while True:
            reply, conn = self._send(conn, result, timeout)
            if reply.kind == Kind.DENIED:
                self._deny(reply.text)
            if reply.kind != Kind.ERROR:
                return reply, conn
            refusals += 1
            ids = ", ".join(str(r.held.job.jobid) for r in batch[:5])
            self.log(f"goq worker: server refused the result of job(s) {ids}: {reply.text}")
            if refusals >= RESULT_REFUSALS:
                return reply, conn  # give up on it rather than hold the runs for ever
            self._pause(PAUSE)

    def _about(self, job: Job, kind: Kind, **fields) -> Message:
        """A message from this worker about its run of `job` (OUTPUT, RESULT)."""
        return Message(
            kind,
            workerid=self.name,
            host=self.host,
            jobid=job.jobid,
            attempt=job.attempt,
            **fields,
        )

    # ------------------------------------------------------------------------------ heartbeats

    def _heartbeats(self) -> None:
        """While a run has been held FIRST_HEARTBEAT s: one HEARTBEAT held at all times,
        listing every run held."""
        hold = self.hold_ms / 1000
        while not self._stopping.is_set():
            with self._lock:
                if not self._runs:
                    self._busy.clear()  # _take sets it again, under the lock
                    runs = []
                else:
                    due = min(h.held_since for h in self._runs.values()) + FIRST_HEARTBEAT
                    runs = [Job(jobid=jobid, attempt=attempt) for jobid, attempt in self._runs]
            if not runs:
                self._busy.wait()
                continue
            wait = due - time.monotonic()
            if wait > 0:
                self._stopping.wait(wait)  # and look again: the runs may be gone by then
                continue
            beat = Message(
                Kind.HEARTBEAT,
                workerid=self.name,
                host=self.host,
                jobid=runs[0].jobid,
                attempt=runs[0].attempt,
                wait_ms=self.hold_ms,
                jobs=runs,
            )
            try:
                reply = self._request(self._hb_conn, beat, hold + self.send_timeout)
            except TransportError:
                # server away (the jobs keep running); a fresh connection avoids waiting out
                # TCP's retransmit back-off on a link that was cut
                self._hb_conn = self._redial(self._hb_conn)
                self._stopping.wait(0.2)
                continue
            except GoqError as exc:
                self.log(f"goq worker: heartbeat refused: {exc}")
                self._stopping.wait(1.0)
                continue
            if reply.kind == Kind.KILL:
                self._kill(reply)
            elif reply.kind == Kind.EXIT:
                self.stop("told to exit by the server (immolateworkers)")
            elif reply.kind == Kind.DENIED:
                self._deny(reply.text)
            elif reply.kind in (Kind.GOING_AWAY, Kind.ERROR):
                self._stopping.wait(PAUSE)

    def _kill(self, reply: Message) -> None:
        """KILL: the runs named in `jobs` (or by jobid, attempt; attempt 0: any attempt)."""
        targets = reply.jobs or [Job(jobid=reply.jobid, attempt=reply.attempt)]
        with self._lock:
            runs = list(self._runs.values())
        for target in targets:
            for held in runs:
                job = held.job
                if job.jobid == target.jobid and target.attempt in (0, job.attempt):
                    held.request_kill()

    # ------------------------------------------------------------------------------ requests

    def _send(
        self, conn: ClientEnd, msg: Message, timeout: float | None = None
    ) -> tuple[Message, ClientEnd]:
        """Send `msg` on `conn` until a server answers (GOING_AWAY is no answer: the next
        server gets it), backing off while it is away; a stop ends the wait. Each try waits
        `timeout` s (default: the send timeout). After a timeout the connection is made
        afresh, so that copies queued on a dead link are dropped rather than delivered in a
        burst when it heals. Returns the reply and the connection now in use."""
        backoff = 0.05
        wait = self.send_timeout if timeout is None else timeout
        while True:
            if self._stopping.is_set():
                raise _Stopped
            try:
                reply = self._request(conn, msg, wait)
            except TransportError as exc:
                conn = self._redial(conn)
                self._warn_away(exc)
                self._pause(backoff)
                # at most a quarter heartbeat apart: a restarted server gives the jobs it finds
                # running 2 heartbeats to be heard of, and this may be a finished job's result
                backoff = min(backoff * 2, MAX_BACKOFF, self.hold_ms / 4000)
                continue
            self._away = False
            if reply.kind == Kind.GOING_AWAY:
                self._pause(PAUSE)
                continue
            return reply, conn

    def _warn_away(self, exc: Exception) -> None:
        if not self._away:
            self._away = True
            where = self.settings.address
            self.log(f"goq worker: server at {where} not answering ({exc}); retrying")

    def _borrow(self) -> ClientEnd:
        with self._pool_lock:
            if self._pool:
                return self._pool.pop()
        assert self._transport is not None
        return self._transport.dial(self.settings.address)

    def _give_back(self, conn: ClientEnd) -> None:
        with self._pool_lock:
            if not self._stopping.is_set():
                self._pool.append(conn)
                return
        conn.close()

    def _redial(self, conn: ClientEnd | None) -> ClientEnd:
        if conn is not None:
            conn.close()
        assert self._transport is not None
        return self._transport.dial(self.settings.address)

    def _request(self, conn: ClientEnd | None, msg: Message, timeout: float) -> Message:
        assert conn is not None
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
