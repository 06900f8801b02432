"""The scheduling kernel: every decision the server makes, as a pure function of its inputs.

Rules of this file:
- Inputs are `handle(msg, peer, now)` (an authenticated, decoded request) and `tick(now)` (time
  passed); outputs are lists of actions (goq_core.kernel.actions). Nothing here touches a socket,
  clock, file, thread or random source: ids come from the counter, nonces and times from outside.
- It does not know how bytes travel. `peer` is an opaque handle the runtime gave us; a reply to it
  may be deferred ("held") and is always given exactly once: by an event, or with NOTHING_YET
  (or ALIVE) when the hold's deadline passes.
- Job states change only through lifecycle.advance (the table in lifecycle.py).

Theory of operation (design.md §3, §7):
- SUBMIT puts jobs in `waiting` (waitq.py: highest priority first, then oldest). A worker keeps
  one REQUEST_WORK held (`ask`) while it is up, busy or not; `_fill` answers it with every job
  that fits its free capacity (matching.py), in queue order, the moment there is one.
- The head of the queue is never starved: when it fits no worker's free capacity now, its need
  is reserved on one worker that could run it, and that worker takes other jobs only from what
  would be left over (`_reservation`).
- A busy worker keeps one HEARTBEAT held (`beat`) covering all its runs; that hold is where
  KILL (cancel) or EXIT (immolate) is delivered at once. A worker not heard from for
  2 heartbeats is dead: all its runs go back to the head of their priority, as new attempts.
- RESULT ends the job if it is for the job's current attempt, else it is counted stale and
  changes nothing (each run of a RESULT that reports several alike). So every job ends exactly
  once in the record.
- WAIT is held until the job ends. STAT answers at once. SHUTDOWN answers every hold GOING_AWAY.
- Every request passes the front door first (validation.py): a malformed one is refused with
  one line and changes nothing. While the runtime cannot commit to its store, SUBMIT is refused.
- Silence is judged on time the server could hear: the runtime `excuse`s the time it spent deaf
  (busy with a long turn), so a stall of the server never makes a live worker look dead.
- A JOB that could not be delivered (the worker's connection is gone) puts its jobs back at the
  head at once (`undelivered`).
- DRAIN stops a worker getting new jobs (its runs go on); RESUME undoes it. Drained names are
  durable (counters `drained/NAME`).
- Workflows (design.md §7) have a module of rules each: dependencies.py (BLOCKED until the jobs
  named in after/after-any end; a failed `after` cancels down the chain; a job made ready is
  not saved as WAITING: restore finds it ready again from its dependencies, which keeps a
  10,000-job fan-out's release to one commit of one record), arrays.py (one
  submission, many jobs; a cap on how many of an array run at once), retries.py (a failed run
  runs again while retries last; every attempt's output in one file). HOLD keeps jobs that have
  not started out of the queue until RELEASE. Only WAITING jobs are in the wait queue: blocked,
  held and retry-delayed jobs are kept beside it.
"""

from __future__ import annotations

import heapq
import json
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from itertools import count, islice

from goq_core import idranges
from goq_core.arrayspec import ArraySpec
from goq_core.attempts import (
    ATTEMPT_CANCELLED,
    ATTEMPT_FINISHED,
    ATTEMPT_REQUEUED,
    ATTEMPT_TIMEOUT,
    ATTEMPT_UNDELIVERED,
    Attempt,
    state_name,
)
from goq_core.drops import REPLAY
from goq_core.jobquery import parse as parse_query
from goq_core.kernel.access import REVOKED, lapsed, may_change, may_not, refusal
from goq_core.kernel.actions import (
    Action,
    Forget,
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
from goq_core.kernel.arrays import ArrayCaps, expand
from goq_core.kernel.dependencies import GONE, Dependencies, outcome_of
from goq_core.kernel.lifecycle import (
    BLOCKED,
    ENDED,
    HELD,
    NEW,
    RUNNING,
    TIMEOUT,
    WAITING,
    advance,
)
from goq_core.kernel.matching import (
    Capacity,
    Shape,
    fits,
    free_after,
    give_back,
    minus,
    offer_of,
    shape,
    take,
    why_nowhere,
)
from goq_core.kernel.replay import ReplayGuard
from goq_core.kernel.retries import attempt_bytes, place, retries_left
from goq_core.kernel.validation import request_problem
from goq_core.kernel.waitq import WaitQueue
from goq_core.limits import MAX_RUNS_PER_RESULT, MAX_STAT_LIST
from goq_core.messages import Job, JobState, Kind, Message, runs_counters
from goq_core.principals import ADMIN, ROOT, Principal

_NS = 1_000_000_000
_INTERN_LIMIT = 16384
_NEVER = float("inf")
_INT_MAX = 1 << 63
# requests whose replay after a restart would do harm: their nonces are kept durably
_REMEMBERED = frozenset(
    {
        Kind.SUBMIT,
        Kind.CANCEL,
        Kind.SHUTDOWN,
        Kind.IMMOLATE,
        Kind.DRAIN,
        Kind.RESUME,
        Kind.HOLD,
        Kind.RELEASE,
        Kind.FORGET,
        Kind.REVOKE,
    }
)
_KNOWN_OUTCOMES = 100_000  # outcomes learned from the store kept at most (then forgotten)
_WAIT_BRIEFS = 200  # ended jobs listed in one reply to a WAIT on many
_SHOW_DEPS = 60  # characters of "waits for ..." in stat
DRAINED = "drained/"  # durable counter name prefix: drained/NAME = 1 while NAME is drained


class HandlerFailed(Exception):
    """A request's handler raised (a kernel bug) after it had changed some state: `actions` are
    what it asked for until then, which the runtime must still perform (saves above all) so that
    the store stays in step with the kernel's memory. The cause is the exception's __cause__."""

    def __init__(self, actions: list[Action]) -> None:
        super().__init__("a request's handler failed")
        self.actions = actions


@dataclass(slots=True)
class KernelConfig:
    heartbeat_sec: float = 5.0
    max_hold_sec: float = 5.0  # longest a hold lasts (capped at heartbeat_sec: see _watch)
    skew_sec: float = 30.0  # replay guard window
    max_nonces: int = 1_000_000
    ended_ring: int = 1000  # ended jobs kept in memory for stat and wait
    notify: bool = True  # emit Notify actions (off when no plugin observes events)


@dataclass(slots=True)
class Held:
    """A request whose reply is deferred."""

    peer: Hashable
    reply_to: bytes
    kind: Kind  # what was asked: REQUEST_WORK, HEARTBEAT or WAIT
    deadline: float
    jobid: int = 0  # WAIT: the job it is about (0: a WAIT on many, see `ranges`)
    ranges: list[tuple[int, int]] | None = None  # WAIT on many: the ids it waits for
    workerid: str = ""  # REQUEST_WORK, HEARTBEAT: who asked
    answered: bool = False
    max_jobs: int = 0  # REQUEST_WORK: at most this many jobs (0: as many as fit)


@dataclass(slots=True)
class Delay:
    """A failed job waits until `at` before its retry joins the queue."""

    jobid: int
    at: float


@dataclass(slots=True)
class Worker:
    workerid: str  # its name
    host: str
    last_heard: float
    token: str = ""  # names the worker process (from its offer): one live process per name
    offer: Capacity | None = None  # None until it tells (a worker restored from the store)
    free: Capacity | None = None
    runs: dict[int, int] = field(default_factory=dict)  # jobid -> attempt it holds
    ask: Held | None = None  # its held REQUEST_WORK
    beat: Held | None = None  # its held HEARTBEAT
    doomed: bool = False  # immolated: tell it EXIT at next contact
    check_at: float = _NEVER  # when its pending liveness timer fires
    deaf_at: float = 0.0  # the kernel's `deaf` total when it was last heard
    principal: Principal = ROOT  # the credential it last spoke with (kernel/access.py)


@dataclass(slots=True)
class Counters:
    finished: int = 0
    cancelled: int = 0
    requeued: int = 0
    stale_results: int = 0
    duplicate_results: int = 0
    stale_output: int = 0
    refused: int = 0  # requests refused at the front door (malformed, or store unwritable)
    errors: int = 0  # requests whose handling failed unexpectedly (see the server's log)
    undelivered: int = 0  # dispatches whose worker was gone: put back at once
    denied: int = 0  # requests refused because the credential's role may not make them
    timed_out: int = 0  # jobs killed at their time limit
    retried: int = 0  # failed runs run again
    batched_runs: int = 0  # runs reported in a RESULT with others (workers with slots)
    drops: dict[str, int] = field(default_factory=dict)


class Kernel:
    def __init__(self, config: KernelConfig | None = None) -> None:
        self.config = config or KernelConfig()
        # A worker re-asks at least once per hold, so 2 heartbeats of silence means dead for
        # idle and busy workers alike as long as a hold is no longer than a heartbeat.
        self._hold_cap = min(self.config.max_hold_sec, self.config.heartbeat_sec)
        self._silence = 2 * self.config.heartbeat_sec
        self._notify = self.config.notify
        self.next_jobid = 1
        self.waiting = WaitQueue()
        self.running: dict[int, Job] = {}
        self.blocked: dict[int, Job] = {}  # waiting for dependencies
        self.held: dict[int, Job] = {}  # until released
        self.delayed: dict[int, Job] = {}  # WAITING for a retry delay to pass
        self.deps = Dependencies()
        self.caps = ArrayCaps()
        self.multi_waiters: list[Held] = []  # WAITs on many jobs
        self._known: dict[int, int] = {}  # jobid -> how it ended, learned from the store
        self._kick = False  # jobs became ready: match again at the end of this input
        self.workers: dict[str, Worker] = {}
        self.idle: OrderedDict[str, Worker] = OrderedDict()  # workers holding REQUEST_WORK
        self.waiters: dict[int, list[Held]] = {}
        self.ended: OrderedDict[int, Job] = OrderedDict()  # the last few ended jobs
        self.drained: set[str] = set()  # worker names that get no new jobs (durable)
        self._drain_changed: dict[str, int] = {}  # drained/NAME counters to save (1 or 0)
        self.revoked: dict[str, int] = {}  # credential name -> ns revoked at (durable)
        self._principal = ROOT  # who sent the request being handled (set by handle)
        self.offers_seen: dict[str, Capacity] = {}  # every worker's offer since start
        self._nowhere: dict[Shape, str | None] = {}  # shape -> why it fits no worker (cache)
        self._reservation: tuple[int, str] | None = None  # (head jobid, worker keeping room)
        self.counters = Counters()
        self.replay = ReplayGuard(self.config.skew_sec, self.config.max_nonces)
        self.stopping = False
        self.store_trouble = ""  # why the store cannot commit now ("" when it can)
        self.deaf = 0.0  # seconds the runtime has said it could not hear (see excuse)
        self._timers: list[tuple[float, int, Held | Worker | Delay]] = []
        self._seq = count()
        self._interned: dict = {}  # see _intern_fields
        self._last_env: tuple[list[str] | None, list[str]] = (None, [])
        self._no_ids: list[int] = []  # see _intern_fields
        self._no_args: list[str] = []
        self._no_resources: dict[str, int] = {}

    # ----------------------------------------------------------------- restore and durable state

    def restore(
        self,
        jobs: Iterable[Job],
        counters: dict[str, int],
        now: float,
        nonces: Iterable[tuple[bytes, int]] = (),
        outcomes: dict[int, tuple[JobState, int]] | None = None,
    ) -> list[Action]:
        """Rebuild the queues from the store at start: waiting jobs wait again in order; running
        jobs stay running, their workers given 3 heartbeats from now to report (the usual 2,
        plus one for a request they sent while we were away to time out before they re-ask).
        Blocked and held jobs wait as they did, counting their dependencies again: `outcomes`
        says how the dependencies that are not among `jobs` ended (see dependencies.outside;
        one the store no longer has counts as gone). `nonces` are the remembered requests:
        their replays stay refused. Returns what to save (jobs doomed meanwhile)."""
        out: list[Action] = []
        now_ns = int(now * _NS)
        for nonce, sendtime_ns in nonces:
            self.replay.remember(nonce, sendtime_ns, now_ns)
        c = self.counters
        self.next_jobid = max(self.next_jobid, counters.get("nextJobId", 1))
        c.finished = counters.get("finishedJobsCount", 0)
        c.cancelled = counters.get("cancelledJobsCount", 0)
        c.requeued = counters.get("requeuedJobsCount", 0)
        c.timed_out = counters.get("timedOutJobsCount", 0)
        c.retried = counters.get("retriedCount", 0)
        self.drained = {
            k[len(DRAINED) :] for k, v in counters.items() if k.startswith(DRAINED) and v
        }
        self.revoked = {
            k[len(REVOKED) :]: v for k, v in counters.items() if k.startswith(REVOKED) and v
        }
        for jobid, (state, exit_status) in (outcomes or {}).items():
            self._known[jobid] = outcome_of(state, exit_status)
        for job in jobs:
            self._intern_fields(job)
            self.next_jobid = max(self.next_jobid, job.jobid + 1)
            if job.state == RUNNING:
                self.running[job.jobid] = job
                self.caps.started(job)
                worker = self._worker(job.workerid, job.workerhost, now)
                worker.runs[job.jobid] = job.attempt
                worker.last_heard = now + self.config.heartbeat_sec  # the grace of a restart
                worker.deaf_at = self.deaf
                worker.check_at = _NEVER
                self._watch(worker, now)
                continue
            if job.after or job.after_any:
                doomed = self.deps.register(job, self._restored_end)
                if doomed is not None:
                    job.note = doomed
                    job.end_ns = now_ns
                    self._end(job, "cancel", now, out)
                    continue
            if job.state == HELD:
                self.held[job.jobid] = job
            elif self.deps.blocked(job.jobid):
                if job.state == WAITING:  # a record out of step with its dependencies:
                    job.state = BLOCKED  # restore rebuilds states; the dependencies win
                self.blocked[job.jobid] = job
            else:
                if job.state == BLOCKED:  # its dependencies succeeded (see _end)
                    advance(job, "unblock")
                at = job.end_ns / _NS + job.retry_delay_ms / 1000 if job.retried else 0.0
                if at > now and job.retry_delay_ms:
                    self._delay(job, at)
                else:
                    self.waiting.push(job)
        self._known.clear()
        return out

    def _restored_end(self, dep: int) -> int | None:
        how = self._ended_how(dep)
        return GONE if how == -1 else how

    def durable_counters(self) -> dict[str, int]:
        """The counters the store keeps (saved with each batch of job records)."""
        c = self.counters
        counters = {
            "nextJobId": self.next_jobid,
            "finishedJobsCount": c.finished,
            "cancelledJobsCount": c.cancelled,
            "requeuedJobsCount": c.requeued,
            "timedOutJobsCount": c.timed_out,
            "retriedCount": c.retried,
        }
        if self._drain_changed:
            counters.update((DRAINED + k, v) for k, v in self._drain_changed.items())
        if self.revoked:
            counters.update((REVOKED + k, v) for k, v in self.revoked.items())
        return counters

    # ----------------------------------------------------------------------------- inputs

    def handle(
        self, msg: Message, peer: Hashable, now: float, principal: Principal = ROOT
    ) -> list[Action]:
        """Process one authenticated request from `principal`; return what to do."""
        out: list[Action] = []
        now_ns = int(now * _NS)
        if not self.replay.admit(msg.nonce, msg.sendtime_ns, now_ns):
            self.note_drop(REPLAY)
            text = "message dropped: replayed, or sent more than the allowed clock skew away"
            out.append(Reply(peer, Message(Kind.ERROR, reply_to=msg.nonce, text=text)))
            return out
        if principal is not ROOT:
            denied = refusal(principal, msg, now_ns, self.revoked)
            if denied is not None:
                self.counters.denied += 1
                out.append(Reply(peer, Message(Kind.DENIED, reply_to=msg.nonce, text=denied)))
                return out
        if self.stopping:
            out.append(Reply(peer, Message(Kind.GOING_AWAY, reply_to=msg.nonce)))
            return out
        handler = self._handlers.get(msg.kind)
        why = f"{msg.kind.name} is not a request" if handler is None else request_problem(msg)
        if why is not None:
            self._refuse(msg, peer, why, out)
            return out
        self._principal = principal
        if msg.kind in _REMEMBERED:
            out.append(Remember(msg.nonce, msg.sendtime_ns))
        try:
            handler(self, msg, peer, now, out)
        except Exception as exc:  # a kernel bug: what changed so far must still be saved
            self._kick = False
            raise HandlerFailed(out) from exc
        if self._kick:
            self._kick = False
            self._dispatch(now, out)
        return out

    def tick(self, now: float) -> list[Action]:
        """Time has passed: answer expired holds, requeue the jobs of dead workers."""
        out: list[Action] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, item = heapq.heappop(timers)
            if isinstance(item, Held):
                if not item.answered:
                    self._expire(item, out)
            elif isinstance(item, Delay):
                job = self.delayed.get(item.jobid)
                if job is not None:  # else held or cancelled meanwhile
                    del self.delayed[item.jobid]
                    self.waiting.push_front(job)
                    self._kick = True
            elif item.check_at == at:  # else a later timer superseded this one
                self._check_alive(item, now, out)
        if self._kick:
            self._kick = False
            self._dispatch(now, out)
        return out

    def next_deadline(self) -> float | None:
        """When tick should next be called (None: only when a message comes)."""
        return self._timers[0][0] if self._timers else None

    def note_drop(self, reason: str) -> None:
        """Count a frame the runtime dropped before it reached us (bad seal, garbage...)."""
        drops = self.counters.drops
        drops[reason] = drops.get(reason, 0) + 1

    def note_error(self) -> None:
        """Count a request whose handling failed in the runtime or here (it was answered ERROR)."""
        self.counters.errors += 1

    def excuse(self, seconds: float) -> None:
        """The runtime could not hear anyone for `seconds` (a long turn): that silence is ours,
        not the workers', and does not count towards declaring them dead."""
        if seconds > 0:
            self.deaf += seconds

    def set_store_trouble(self, why: str) -> None:
        """The runtime cannot commit (why), or can again (""): refuse submissions meanwhile."""
        self.store_trouble = why

    def undelivered(self, jobid: int, attempt: int, now: float) -> list[Action]:
        """A JOB reply could not be delivered: its worker's connection is gone, so the run never
        started. Put the job back at the head of its priority (not counted as a requeue: it
        never ran) and hand it on at once; a worker left with no runs is forgotten."""
        out: list[Action] = []
        job = self.running.get(jobid)
        if job is None or job.attempt != attempt:
            return out
        self.counters.undelivered += 1
        worker = self.workers.get(job.workerid)
        if worker is not None and worker.runs.get(jobid) == attempt:
            self._requeue_run(worker, jobid, now, out, count=False)
            if not worker.runs:
                self._forget(worker)
        self._dispatch(now, out)
        return out

    def retract(self, first: int, count: int, now: float) -> list[Action]:
        """Undo a submission whose commit failed (its submitter is told it was refused): the
        jobs leave the queues as if never submitted; a dispatched one is killed on its worker."""
        out: list[Action] = []
        for jobid in range(first, first + count):
            self.deps.forget(jobid)
            if self.waiting.pop(jobid) is not None:
                continue
            if self.blocked.pop(jobid, None) or self.held.pop(jobid, None):
                continue
            if self.delayed.pop(jobid, None) is not None:
                continue
            job = self.running.get(jobid)
            if job is None:
                continue
            self._unrun(job)
            worker = self.workers.get(job.workerid)
            if worker is not None and jobid in worker.runs:
                self._release_run(worker, job)
                self._kill_runs(worker, [job], out)
        return out

    # ----------------------------------------------------------------------------- requests

    def _on_submit(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        if self.store_trouble:  # the jobs could not be made durable: refuse them now
            why = f"the server cannot write its store ({self.store_trouble}); nothing was "
            self._refuse(msg, peer, why + "submitted: try again once its disk has room", out)
            return
        first = self.next_jobid
        unknown = self._unknown_dependency(msg.jobs)
        if unknown is not None:
            why = f"job {unknown} is not known to this server (--after and --after-any name "
            self._refuse(msg, peer, why + "jobs submitted before); nothing was submitted", out)
            return
        jobs = msg.jobs
        if msg.text:  # an array: one job made once per index (the front door checked it)
            template = jobs[0]
            self._intern_fields(template)
            template.submit_ns = int(now * _NS)
            template.owner = self._principal.name
            if template.state != HELD and not (template.after or template.after_any):
                template.state = NEW
                template.attempt = template.retried = template.out_base = 0
                template.workerid = template.gpu_ids = template.note = ""
                jobs = expand(template, _wire_array(msg.text), first)
                self._submit_array(jobs, now, out)
                reply = Message(Kind.SUBMITTED, reply_to=msg.nonce, jobid=first, count=len(jobs))
                out.append(Reply(peer, reply))
                self._dispatch(now, out)
                return
            jobs = expand(template, _wire_array(msg.text), first)
        env: list[str] = []
        now_ns = int(now * _NS)
        owner = self._principal.name
        for job in jobs:  # a job with no env inherits the one before it (batches share one)
            if not msg.text:
                if job.env:
                    env = job.env
                job.env = env
                self._intern_fields(job)
                env = job.env
                job.array_id = job.array_index = job.array_max = 0
            job.jobid = self.next_jobid
            self.next_jobid += 1
            hold = job.state == HELD
            job.state = NEW  # whatever else the client said
            job.attempt = job.retried = job.out_base = 0
            job.workerid = ""
            job.gpu_ids = ""
            job.note = ""
            job.submit_ns = now_ns
            job.owner = owner
            self._admit(job, hold, now, out)
            if self._notify:
                out.append(Notify("submitted", job))
        reply = Message(Kind.SUBMITTED, reply_to=msg.nonce, jobid=first, count=len(jobs))
        out.append(Reply(peer, reply))
        self._dispatch(now, out)

    def _submit_array(self, jobs: list[Job], now: float, out: list[Action]) -> None:
        """The jobs of an array that neither waits for others nor is held: all join the queue
        at once (one group; the same rules as _admit, without the per-job checks)."""
        notify = self._notify
        for job in jobs:  # each a copy of the submitted job, its fields set as _on_submit does
            advance(job, "submit")
            out.append(Save(job))
            if notify:
                out.append(Notify("submitted", job))
        self.next_jobid = jobs[-1].jobid + 1
        self.waiting.extend(jobs)

    def _refuse(self, msg: Message, peer: Hashable, why: str, out: list[Action]) -> None:
        self.counters.refused += 1
        out.append(Reply(peer, Message(Kind.ERROR, reply_to=msg.nonce, text=f"refused: {why}")))

    def _admit(self, job: Job, hold: bool, now: float, out: list[Action]) -> None:
        """A new job waits, is blocked on its dependencies, is held, or (a dependency it needs
        has failed already) is cancelled at once with the reason."""
        if job.after or job.after_any:
            doomed = self.deps.register(job, self._ended_how)
            if doomed is not None:
                job.note = doomed
                job.end_ns = int(now * _NS)
                self._end(job, "cancel", now, out)
                return
        if hold:
            advance(job, "hold")
            self.held[job.jobid] = job
        elif self.deps.blocked(job.jobid):
            advance(job, "block")
            self.blocked[job.jobid] = job
        else:
            advance(job, "submit")
            self.waiting.push(job)
        out.append(Save(job))

    def _ended_how(self, jobid: int) -> int | None:
        """How a job ended (dependencies.SUCCEEDED...), None while it has not, -1 if this
        server does not know (see `unresolved`)."""
        if self._live(jobid) is not None:
            return None
        job = self.ended.get(jobid)
        if job is not None:
            return outcome_of(job.state, job.exit_status)
        return self._known.get(jobid, -1)

    def _unknown_dependency(self, jobs: list[Job]) -> int | None:
        """The first dependency named by these new jobs that is not a job this server knows."""
        for job in jobs:
            for dep in (*job.after, *job.after_any) if job.after or job.after_any else ():
                if not 0 < dep < self.next_jobid or self._ended_how(dep) == -1:
                    return dep
        return None

    def unresolved(self, msg: Message) -> list[int]:
        """The dependencies a SUBMIT names that ended too long ago for the kernel to remember
        how: the runtime looks them up in the store and passes them to `learn` before handing
        the SUBMIT in (else they count as unknown, and the SUBMIT is refused)."""
        if msg.kind != Kind.SUBMIT:
            return []
        wanted: set[int] = set()
        for job in msg.jobs:
            if job.after or job.after_any:
                for dep in (*job.after, *job.after_any):
                    if 0 < dep < self.next_jobid and self._ended_how(dep) == -1:
                        wanted.add(dep)
        return sorted(wanted)

    def learn(self, outcomes: dict[int, tuple[JobState, int]]) -> None:
        """How these jobs ended, from the store (see `unresolved`)."""
        if len(self._known) + len(outcomes) > _KNOWN_OUTCOMES:
            self._known.clear()
        for jobid, (state, exit_status) in outcomes.items():
            self._known[jobid] = outcome_of(state, exit_status)

    def _on_request_work(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        offer = msg.jobs[0] if msg.jobs and msg.jobs[0].jobid == 0 else None
        worker = self.workers.get(msg.workerid)
        if (
            worker is not None
            and offer is not None
            and worker.token
            and offer.workerid != worker.token  # another process under this name
        ):
            if worker.host != msg.host:
                text = (
                    f"refused: worker name {msg.workerid!r} is taken by a live worker on "
                    f"{worker.host}; choose another with --name"
                )
                out.append(Reply(peer, Message(Kind.ERROR, reply_to=msg.nonce, text=text)))
                return
            self._requeue_all(worker, now, out)  # the same host restarted it: the old
            self._forget(worker)  # process is gone, and its runs with it
        worker = self._worker(msg.workerid, msg.host, now)
        worker.principal = self._principal
        if worker.doomed:
            self._exit(worker, peer, msg.nonce, out)
            return
        if offer is not None or worker.offer is None:
            self._set_offer(worker, offer)
        self._release(worker, "ask", out)
        held_runs = {j.jobid for j in msg.jobs if j.jobid}
        lost = [
            self.running[j]
            for j, a in worker.runs.items()
            if j not in held_runs and j in self.running and self.running[j].attempt == a
        ]
        if lost:  # our JOB reply went to a request it gave up on: hand the same runs again
            out.append(Reply(peer, self._job_message(lost, msg.nonce)))
            return
        self._ask(worker, msg, peer, now, out)

    def _ask(self, worker: Worker, msg: Message, peer: Hashable, now: float, out: list) -> None:
        """Make this request the worker's held ask for work and fill it with what fits now."""
        held = self._hold(peer, msg, Kind.REQUEST_WORK, now)
        held.workerid = worker.workerid
        held.max_jobs = msg.count
        worker.ask = held
        self.idle[worker.workerid] = worker
        self._fill(worker, now, out)

    def _on_heartbeat(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        worker = self._worker(msg.workerid, msg.host, now)
        worker.principal = self._principal
        if worker.doomed:
            self._exit(worker, peer, msg.nonce, out)
            return
        listed = [(j.jobid, j.attempt) for j in msg.jobs] or [(msg.jobid, msg.attempt)]
        stale = []
        for jobid, attempt in listed:
            job = self.running.get(jobid)
            if job is None or job.attempt != attempt or job.workerid != worker.workerid:
                # cancelled, requeued after a missed heartbeat, or not this worker's: kill it
                stale.append(Job(jobid=jobid, attempt=attempt))
            elif worker.runs.get(jobid) != attempt:  # e.g. after a restart it tells us
                worker.runs[jobid] = attempt
        self._release(worker, "beat", out)
        if stale:
            reply = Message(Kind.KILL, reply_to=msg.nonce, jobid=stale[0].jobid, jobs=stale)
            out.append(Reply(peer, reply))
            return
        held = self._hold(peer, msg, Kind.HEARTBEAT, now)
        held.workerid = worker.workerid
        worker.beat = held

    def _on_output(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        worker = self._worker(msg.workerid, msg.host, now)
        job = self._current_run(msg, worker)
        if job is None:
            self.counters.stale_output += 1
            out.append(Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, text="stale")))
            return
        at, data = place(job, msg.offset, msg.data)
        out.append(WriteOutput(job, at, data, msg.offset == 0))
        out.append(Reply(peer, Message(Kind.ACK, reply_to=msg.nonce)))

    def _on_result(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        worker = self._worker(msg.workerid, msg.host, now)
        runs = msg.jobs
        if len(runs) > 1:  # a worker's batch: each run's whole output, one after the other
            self.counters.batched_runs += len(runs)
            data, at = msg.data, 0
            for outcome, usage in zip(runs, runs_counters(msg), strict=True):
                end = at + outcome.out_bytes
                part = data[at:end]
                self._run_over(
                    worker, outcome.jobid, outcome.attempt, outcome, 0, part, usage, now, out
                )
                at = end
        else:
            outcome = runs[0] if runs else None
            self._run_over(
                worker,
                msg.jobid,
                msg.attempt,
                outcome,
                msg.offset,
                msg.data,
                msg.counters,
                now,
                out,
            )
        if not worker.runs:
            self._release(worker, "beat", out, Kind.ACK)  # nothing left to beat for
        if msg.wait_ms > 0:  # and it wants more work: this is its ask now (a RESULT lists no
            if worker.doomed:  # runs: a lost dispatch shows in its next REQUEST_WORK)
                self._exit(worker, peer, msg.nonce, out)
                return
            if worker.offer is None:
                self._set_offer(worker, None)
            self._release(worker, "ask", out)
            self._ask(worker, msg, peer, now, out)
        else:
            ack = Message(Kind.ACK, reply_to=msg.nonce, count=MAX_RUNS_PER_RESULT)
            out.append(Reply(peer, ack))
            self._fill(worker, now, out)

    def _run_over(
        self,
        worker: Worker,
        jobid: int,
        attempt: int,
        outcome: Job | None,
        offset: int,
        data: bytes,
        usage: dict[str, int],
        now: float,
        out: list[Action],
    ) -> None:
        """One run a RESULT reports: it ends the job's current attempt (`data`, its last output
        at `offset`), or it is counted a duplicate (a re-sent copy of one already in) or stale."""
        job = self.running.get(jobid)
        if (
            outcome is None
            or job is None
            or job.attempt != attempt
            or job.workerid != worker.workerid
        ):
            ended = self.ended.get(jobid)
            if ended is not None and (ended.attempt, ended.workerid) == (attempt, worker.workerid):
                self.counters.duplicate_results += 1
            else:
                self.counters.stale_results += 1
            return
        if data or offset == 0:
            at, chunk = place(job, offset, data)
            out.append(WriteOutput(job, at, chunk, offset == 0))
        job.pid = outcome.pid
        job.exit_status = outcome.exit_status
        job.start_ns = outcome.start_ns
        job.end_ns = outcome.end_ns
        job.out_bytes = attempt_bytes(job, outcome)
        job.workerhost = worker.host
        how = ATTEMPT_TIMEOUT if outcome.state == TIMEOUT else ATTEMPT_FINISHED
        self._attempt_over(job, how, outcome.end_ns, out, usage)
        self._unrun(job)
        self._release_run(worker, job)
        if retries_left(job, outcome):
            self._retry(job, now, out)
        else:
            self._end(job, "timeout" if outcome.state == TIMEOUT else "finish", now, out)

    def _on_cancel(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        if msg.jobid == 0:
            self._cancel_many(msg, peer, now, out)
            return
        jobid = msg.jobid
        job = self._live(jobid)
        if job is None:
            self._about_ended(msg, peer, out, "job %d has already ended")
            return
        if not may_change(self._principal, job):
            self._deny(msg, peer, f"cancel job {jobid}: it belongs to {job.owner}", out)
            return
        was = "running" if job.state == RUNNING else job.state.name.lower()
        self._cancel(job, "by goq kill", now, out)
        text = f"cancelled {was} job {jobid}"
        if was == "running":
            text += "; its worker is killing it"
        reply = Message(Kind.ACK, reply_to=msg.nonce, jobid=jobid, count=1, text=text)
        out.append(Reply(peer, reply))

    def _cancel_many(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        ranges = idranges.parse(msg.text)
        jobs = [job for job in self._live_in(ranges) if job.state not in ENDED]
        jobs, others = self._own(jobs)
        if others and not jobs:
            self._deny_others(msg, peer, "cancel", others, out)
            return
        cancelled = 0
        for job in jobs:
            if job.state not in ENDED:  # else cancelled meanwhile: it depended on one before
                self._cancel(job, "by goq kill", now, out)
                cancelled += 1
        asked = idranges.count(ranges)
        text = f"cancelled {cancelled} job(s)"
        if len(jobs) > cancelled:
            text += f" and, with them, {len(jobs) - cancelled} that depended on them"
        if asked > len(jobs) + len(others):
            gone = asked - len(jobs) - len(others)
            text += f"; {gone} of those named had ended or were never jobs"
        if others:
            text += f"; not yours, so left alone: {_some(others)}"
        reply = Message(Kind.ACK, reply_to=msg.nonce, count=len(jobs), text=text)
        out.append(Reply(peer, reply))

    def _cancel(self, job: Job, why: str, now: float, out: list[Action]) -> None:
        """End a job that has not ended, wherever it is; a run is killed on its worker."""
        jobid = job.jobid
        if job.state == RUNNING:
            self._unrun(job)
            self._attempt_over(job, ATTEMPT_CANCELLED, int(now * _NS), out)
            worker = self.workers.get(job.workerid)
            if worker is not None and jobid in worker.runs:
                self._release_run(worker, job)
                self._kill_runs(worker, [job], out)
                self._fill(worker, now, out)
        else:
            for where in (self.waiting, self.delayed, self.blocked, self.held):
                if where.pop(jobid, None) is not None:
                    break
        self.deps.forget(jobid)
        job.note = why
        job.end_ns = int(now * _NS)
        self._end(job, "cancel", now, out)

    def _on_wait(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        jobid = msg.jobid
        if jobid == 0:
            self._wait_many(msg, peer, now, out)
            return
        if self._live(jobid) is not None:
            held = self._hold(peer, msg, Kind.WAIT, now)
            held.jobid = jobid
            self.waiters.setdefault(jobid, []).append(held)
            return
        self._about_ended(msg, peer, out, None)

    def _wait_many(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        """Answer with the named jobs that have ended, or hold until one does."""
        ranges = idranges.parse(msg.text)
        if ranges[-1][1] >= self.next_jobid:
            unknown = max(ranges[-1][0], self.next_jobid)
            text = f"job {unknown} is not known to this server"
            out.append(Reply(peer, Message(Kind.NOT_KNOWN, reply_to=msg.nonce, text=text)))
            return
        briefs: list[Job] = []
        elsewhere: list[int] = []
        live = set(j.jobid for j in self._live_in(ranges))
        for jobid in idranges.ids(ranges):
            if jobid in live:
                continue
            job = self.ended.get(jobid)
            if job is None:
                elsewhere.append(jobid)
            elif len(briefs) < _WAIT_BRIEFS:
                briefs.append(_brief(job))
        if briefs or elsewhere:
            text = idranges.format_ids(elsewhere)
            reply = Message(Kind.FINISHED, reply_to=msg.nonce, jobs=briefs, text=text)
            out.append(Reply(peer, reply))
            return
        held = self._hold(peer, msg, Kind.WAIT, now)
        held.ranges = ranges
        self.multi_waiters.append(held)

    def _on_hold(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        moved, running = 0, []
        jobs, others = self._own(self._live_in(idranges.parse(msg.text)))
        if others and not jobs:
            self._deny_others(msg, peer, "hold", others, out)
            return
        for job in jobs:
            jobid = job.jobid
            if job.state == HELD:
                continue
            if job.state == RUNNING:
                running.append(jobid)
                continue
            if self.waiting.pop(jobid) is None and self.delayed.pop(jobid, None) is None:
                del self.blocked[jobid]
            advance(job, "hold")
            self.held[jobid] = job
            out.append(Save(job))
            moved += 1
        text = f"held {moved} job(s)"
        if running:
            text += f"; running, so not held: {_some(running)}"
        if others:
            text += f"; not yours, so left alone: {_some(others)}"
        out.append(Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, count=moved, text=text)))

    def _on_release(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        moved = 0
        jobs, others = self._own(self._live_in(idranges.parse(msg.text)))
        if others and not jobs:
            self._deny_others(msg, peer, "release", others, out)
            return
        for job in jobs:
            if job.state != HELD:
                continue
            del self.held[job.jobid]
            if self.deps.blocked(job.jobid):
                advance(job, "block")
                self.blocked[job.jobid] = job
            else:
                advance(job, "release")
                self.waiting.push(job)
                self._kick = True
            out.append(Save(job))
            moved += 1
        text = f"released {moved} job(s)"
        if others:
            text += f"; not yours, so left alone: {_some(others)}"
        out.append(Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, count=moved, text=text)))

    def _on_jobs(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        """The live jobs a JOBS query asks for; the runtime adds the ended ones it has."""
        query = parse_query(msg.text)
        live: list[Job] = []
        states = query.live_states
        if states:
            name, before, owner = query.name, query.before, query.owner
            found = [
                job
                for job in self._all_live()
                if (name is None or job.name == name)
                and (owner is None or job.owner == owner)
                and (before is None or job.jobid < before)
                and state_name(job) in states
            ]
            for job in heapq.nlargest(query.limit, found, key=lambda j: j.jobid):
                brief = _brief(job)
                if job.state == BLOCKED:
                    brief.note = self.why_blocked(job)
                elif job.state == WAITING:
                    brief.note = self.why_waiting(job) or ""
                live.append(brief)
        out.append(QueryJobs(peer, msg.nonce, query, live))

    def _on_show(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        jobid = msg.jobid
        if not 0 < jobid < self.next_jobid:
            text = f"job {jobid} is not known to this server"
            out.append(Reply(peer, Message(Kind.NOT_KNOWN, reply_to=msg.nonce, text=text)))
            return
        job = self._live(jobid)
        if job is not None:
            job = replace(job)  # a copy: the reply goes out after this turn
            if job.state == BLOCKED:
                job.note = self.why_blocked(job)
            elif job.state == WAITING:
                job.note = self.why_waiting(job) or job.note
        out.append(ShowJob(peer, msg.nonce, jobid, job, self._principal))

    def _on_forget(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        """Ended jobs leave the history (the store's), and this kernel's memory of them."""
        ended = self.ended
        if msg.offset > 0:
            for jobid in [j for j, job in ended.items() if job.end_ns < msg.offset]:
                del ended[jobid]
            out.append(Forget(peer, msg.nonce, [], before_ns=msg.offset))
            return
        top = self.next_jobid
        jobids = [
            jobid
            for first, last in idranges.parse(msg.text)
            for jobid in range(first, min(last, top - 1) + 1)
            if self._live(jobid) is None
        ]
        for jobid in jobids:
            ended.pop(jobid, None)
        out.append(Forget(peer, msg.nonce, jobids))

    def _on_select(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        name = msg.text
        if name:
            found = [j.jobid for j in self._all_live() if j.name == name]
            found += [j.jobid for j in self.ended.values() if j.name == name]
        else:
            found = [j.jobid for j in self._all_live()]
        text = idranges.format_ids(found)
        reply = Message(Kind.JOB_IDS, reply_to=msg.nonce, count=len(found), text=text)
        out.append(Reply(peer, reply))

    def _on_stat(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        n = min(msg.count, MAX_STAT_LIST) if msg.count > 0 else 10
        listed = [_brief(j) for j in islice(self.running.values(), n)]
        waiting = self.waiting.values()
        if self.delayed:
            waiting = iter([*self.delayed.values(), *islice(waiting, n)])
        for job in islice(waiting, n):
            brief = _brief(job)
            why = self.why_waiting(job)
            if why:
                brief.note = why
            listed.append(brief)
        for job in islice(self.blocked.values(), n):
            brief = _brief(job)
            brief.note = self.why_blocked(job)
            listed.append(brief)
        listed += [_brief(j) for j in islice(self.held.values(), n)]
        reply = Message(Kind.STATUS, reply_to=msg.nonce, jobs=listed, counters=self.stat_counters())
        out.append(Reply(peer, reply))

    def _on_shutdown(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        out += self.shutdown(now)
        out.insert(0, Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, text="server stopping")))

    def shutdown(self, now: float) -> list[Action]:
        """Stop: answer every held request GOING_AWAY (workers keep their jobs and rejoin a
        server that comes back), then Stop. Later requests get GOING_AWAY."""
        out: list[Action] = []
        self.stopping = True
        for _, _, item in self._timers:
            if isinstance(item, Held) and not item.answered:
                self._answer(item, Message(Kind.GOING_AWAY), out)
        self.idle.clear()
        for worker in self.workers.values():
            worker.ask = worker.beat = None
        self.waiters.clear()
        self.multi_waiters.clear()
        self._timers.clear()
        out.append(Stop())
        return out

    def _on_immolate(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        told = 0
        for worker in list(self.workers.values()):
            worker.doomed = True
            self._requeue_all(worker, now, out)
            if worker.ask is not None or worker.beat is not None:
                self._exit(worker, None, b"", out)
                told += 1
        self.idle.clear()
        text = f"told {told} waiting worker(s) to exit; busy ones exit at their next heartbeat"
        out.append(Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, count=told, text=text)))
        self._dispatch(now, out)

    def _on_drain(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        self._drain_or_resume(msg, peer, now, out, drain=True)

    def _on_resume(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        self._drain_or_resume(msg, peer, now, out, drain=False)

    def _drain_or_resume(
        self, msg: Message, peer: Hashable, now: float, out: list[Action], drain: bool
    ) -> None:
        if msg.count == 1 and not msg.text:
            names = sorted(self.workers) if drain else sorted(self.drained | set(self.workers))
        elif msg.text in self.workers or msg.text in self.drained:
            names = [msg.text]
        else:
            text = f"no worker named {msg.text!r} is known to this server"
            out.append(Reply(peer, Message(Kind.NOT_KNOWN, reply_to=msg.nonce, text=text)))
            return
        changed = [n for n in names if (n in self.drained) != drain]
        for name in changed:
            if drain:
                self.drained.add(name)
            else:
                self.drained.discard(name)
            self._drain_changed[name] = 1 if drain else 0
        verb = "drained" if drain else "resumed"
        text = f"{verb} {len(changed)} worker(s)" + (f": {', '.join(changed)}" if changed else "")
        if not drain:
            self._dispatch(now, out)
        out.append(
            Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, count=len(changed), text=text))
        )

    def _on_workers(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        listed = []
        for name in sorted(self.workers):
            w = self.workers[name]
            offer = w.offer if w.offer is not None else Capacity(cpus=0)
            free = w.free if w.free is not None else Capacity(cpus=0)
            drained = name in self.drained
            if drained:
                state = "draining" if w.runs else "drained"
            else:
                state = "busy" if w.runs else "idle"
            listed.append(
                {
                    "name": name,
                    "host": w.host,
                    "state": state,
                    "offer": offer.describe(),
                    "free": free.describe(),
                    "jobs": sorted(w.runs),
                    "last_heard_sec_ago": round(max(0.0, now - w.last_heard), 3),
                }
            )
        text = json.dumps({"workers": listed}, separators=(",", ":"))
        out.append(Reply(peer, Message(Kind.WORKER_LIST, reply_to=msg.nonce, text=text)))

    def _on_revoke(self, msg: Message, peer: Hashable, now: float, out: list[Action]) -> None:
        """Refuse the credentials of a name issued until now (a credential issued later under
        the same name is good: rotation). Saved with the batch (the request is remembered)."""
        if msg.text:
            now_ns = self.revoked[msg.text] = int(now * _NS)
            for worker in list(self.workers.values()):
                why = lapsed(worker.principal, now_ns, self.revoked)
                if why is not None and worker.principal is not ROOT:
                    self._deny_worker(worker, why, now, out)
            self._dispatch(now, out)
        text = json.dumps({"revoked": self.revoked}, separators=(",", ":"), sort_keys=True)
        out.append(
            Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, count=len(self.revoked), text=text))
        )

    def _deny_worker(self, worker: Worker, why: str, now: float, out: list[Action]) -> None:
        """A worker whose credential no longer counts: its held requests are answered DENIED
        (it stops, killing its runs), its runs go back to the queue, and it is forgotten."""
        for held in (worker.ask, worker.beat):
            if held is not None and not held.answered:
                self.counters.denied += 1
                self._answer(held, Message(Kind.DENIED, text=why), out)
        worker.ask = worker.beat = None
        self._requeue_all(worker, now, out)
        self._forget(worker)

    def _own(self, jobs: Iterable[Job]) -> tuple[list[Job], list[int]]:
        """The jobs the request's principal may change, and the ids of the others."""
        principal = self._principal
        if principal.role == ADMIN:
            return list(jobs), []
        mine: list[Job] = []
        others: list[int] = []
        for job in jobs:
            if may_change(principal, job):
                mine.append(job)
            else:
                others.append(job.jobid)
        return mine, others

    def _deny_others(
        self, msg: Message, peer: Hashable, verb: str, others: list[int], out: list[Action]
    ) -> None:
        """Every live job a CANCEL, HOLD or RELEASE named belongs to someone else."""
        if len(others) == 1:
            job = self._live(others[0])
            whose = job.owner if job is not None else "someone else"
            self._deny(msg, peer, f"{verb} job {others[0]}: it belongs to {whose}", out)
        else:
            self._deny(msg, peer, f"{verb} jobs {_some(others)}: they are not its own", out)

    def _deny(self, msg: Message, peer: Hashable, what: str, out: list[Action]) -> None:
        self.counters.denied += 1
        text = may_not(self._principal, what)
        out.append(Reply(peer, Message(Kind.DENIED, reply_to=msg.nonce, text=text)))

    _handlers = {
        Kind.SUBMIT: _on_submit,
        Kind.REQUEST_WORK: _on_request_work,
        Kind.HEARTBEAT: _on_heartbeat,
        Kind.OUTPUT: _on_output,
        Kind.RESULT: _on_result,
        Kind.CANCEL: _on_cancel,
        Kind.WAIT: _on_wait,
        Kind.STAT: _on_stat,
        Kind.SHUTDOWN: _on_shutdown,
        Kind.IMMOLATE: _on_immolate,
        Kind.DRAIN: _on_drain,
        Kind.RESUME: _on_resume,
        Kind.WORKERS: _on_workers,
        Kind.HOLD: _on_hold,
        Kind.RELEASE: _on_release,
        Kind.SELECT: _on_select,
        Kind.JOBS: _on_jobs,
        Kind.SHOW: _on_show,
        Kind.FORGET: _on_forget,
        Kind.REVOKE: _on_revoke,
    }

    # ----------------------------------------------------------------------------- matching

    def _dispatch(self, now: float, out: list[Action]) -> None:
        """Hand waiting jobs to asking workers, longest-asking first, while any fits."""
        if not self.waiting or not self.idle:
            return
        for worker in list(self.idle.values()):
            if not self.waiting:
                break
            self._fill(worker, now, out)

    def _head(self) -> tuple[Job, Shape] | None:
        """The first waiting job in queue order that fits some worker ever seen (a job that
        fits none cannot hold the others back), with its need."""
        full = self.caps.full
        for _, need, head in self.waiting.heads():
            if self.why_nowhere_shape(need) is None and not full(head):
                return head, need
        return None

    def _reserved_for(self, head: Job, need: Shape) -> str | None:
        """The worker that keeps room for `head` (which fits no asking worker's free capacity
        now), so that it is not starved: kept while it stays a worker that can run it, else
        the one with the most room among those whose offer fits it."""
        kept = self._reservation
        if kept is not None and kept[0] == head.jobid:
            w = self.workers.get(kept[1])
            if w is not None and w.offer is not None and w.workerid not in self.drained:
                return w.workerid
        best: Worker | None = None
        for w in self.workers.values():
            if w.offer is None or w.free is None or w.workerid in self.drained:
                continue
            if fits(need, w.offer) and (best is None or _room(w.free) > _room(best.free)):  # type: ignore[arg-type]
                best = w
        self._reservation = (head.jobid, best.workerid) if best is not None else None
        return best.workerid if best is not None else None

    def _fill(self, worker: Worker, now: float, out: list[Action]) -> None:
        """Answer the worker's held REQUEST_WORK with every waiting job that fits it now; the
        worker that keeps room for the head of the queue gives others only what it leaves."""
        held = worker.ask
        if (
            held is None
            or held.answered
            or worker.free is None
            or worker.offer is None
            or not self.waiting
            or worker.workerid in self.drained
        ):
            return
        expires = worker.principal.expires_ns
        if expires and now * _NS >= expires:  # it expired while its request waited
            why = lapsed(worker.principal, int(now * _NS), self.revoked)
            self._deny_worker(worker, why or "expired", now, out)
            return
        room = worker.free
        first = self._head()
        if (
            first is not None
            and not fits(first[1], room)
            and self._reserved_for(*first) == worker.workerid
        ):
            room = minus(room, first[1])  # others may use only what the head leaves
        jobs: list[Job] = []
        limit = held.max_jobs
        while not limit or len(jobs) < limit:
            if room.cpus < 1:  # every job needs a cpu: a full worker needs no search
                break
            job = self._first_fitting(room, worker)
            if job is None:
                break
            self.waiting.pop(job.jobid)
            if room is not worker.free:
                take(job, room)  # keep the reduced view in step
            self._start(job, worker, now, out)
            jobs.append(job)
        if jobs:
            worker.ask = None
            self.idle.pop(worker.workerid, None)
            self._answer(held, self._job_message(jobs, held.reply_to), out)

    def _first_fitting(self, room: Capacity, worker: Worker) -> Job | None:
        """The best-ranked waiting job that fits `room` on this worker."""
        full = self.caps.full
        for _, need, head in self.waiting.heads():
            if (
                fits(need, room)
                and (room is worker.free or fits(need, worker.free))  # type: ignore[arg-type]
                and not full(head)
            ):
                return head
        return None

    def _start(self, job: Job, worker: Worker, now: float, out: list[Action]) -> None:
        """Make `job` a new attempt on `worker`, taking its part of the worker's capacity."""
        advance(job, "dispatch")
        job.attempt += 1
        job.workerid = worker.workerid
        job.workerhost = worker.host
        job.start_ns = int(now * _NS)
        assert worker.free is not None
        job.gpu_ids = take(job, worker.free)
        self.running[job.jobid] = job
        self.caps.started(job)
        worker.runs[job.jobid] = job.attempt
        out.append(Save(job))
        if self._notify:
            out.append(Notify("started", job))

    def _job_message(self, jobs: list[Job], reply_to: bytes) -> Message:
        first = jobs[0]
        return Message(
            Kind.JOB,
            reply_to=reply_to,
            jobid=first.jobid,
            attempt=first.attempt,
            jobs=jobs,
            count=MAX_RUNS_PER_RESULT,  # runs the worker may report in one RESULT
        )

    def why_waiting(self, job: Job) -> str | None:
        """Why a waiting job is not running: its retry waits for a delay, its array runs as
        many as it may, or it fits no worker seen (None otherwise)."""
        if job.jobid in self.delayed:
            return f"retry {job.retried} of {job.retries}, after a delay of {job.retry_delay_ms / 1000:g} s"
        if self.caps.full(job):
            return self.caps.describe(job)
        return self.why_nowhere_shape(shape(job))

    def why_blocked(self, job: Job) -> str:
        """On what a blocked job waits: "for job 12", "for jobs 12,15-19" (shortened)."""
        left = self.deps.waits_for(job, lambda dep: self._live(dep) is not None)
        if not left:
            return "for nothing more (about to be ready)"
        return f"for job{'s' if len(left) > 1 else ''} {_some(left)}"

    def why_nowhere_shape(self, need: Shape) -> str | None:
        cache = self._nowhere
        if need not in cache:
            cache[need] = why_nowhere(need, list(self.offers_seen.values()))
        return cache[need]

    def _set_offer(self, worker: Worker, offer: Job | None) -> None:
        """The worker told us what it has (or is a plain worker of one cpu)."""
        capacity = offer_of(offer)
        if offer is not None and offer.workerid:
            worker.token = offer.workerid
        if worker.offer == capacity and worker.free is not None:
            return
        worker.offer = capacity
        runs = [self.running[j] for j in worker.runs if j in self.running]
        worker.free = free_after(capacity, runs)
        if self.offers_seen.get(worker.workerid) != capacity:
            self.offers_seen[worker.workerid] = capacity
            self._nowhere.clear()

    # ----------------------------------------------------------------------------- runs

    def _release_run(self, worker: Worker, job: Job) -> None:
        """A run of the worker ended (or was taken back): its capacity is free again."""
        if worker.runs.pop(job.jobid, None) is not None and worker.free is not None:
            assert worker.offer is not None
            give_back(job, worker.free, worker.offer)

    def _requeue_run(
        self, worker: Worker, jobid: int, now: float, out: list[Action], count: bool = True
    ) -> None:
        """A run is not going on any more (worker dead, gone or immolated): its job goes to the
        head of its priority for a new attempt."""
        job = self.running.get(jobid)
        if job is None:  # ended meanwhile (cancelled)
            worker.runs.pop(jobid, None)
            return
        self._unrun(job)
        how = ATTEMPT_REQUEUED if count else ATTEMPT_UNDELIVERED
        self._attempt_over(job, how, int(now * _NS), out, pid=0)
        self._release_run(worker, job)
        advance(job, "requeue")
        job.workerid = ""
        job.gpu_ids = ""
        if count:
            self.counters.requeued += 1
        self.waiting.push_front(job)
        out.append(Save(job))

    def _requeue_all(self, worker: Worker, now: float, out: list[Action]) -> None:
        for jobid in sorted(worker.runs, reverse=True):  # so the oldest ends up first
            self._requeue_run(worker, jobid, now, out)

    def _kill_runs(self, worker: Worker, jobs: list[Job], out: list[Action]) -> None:
        """Tell the worker to kill these runs now, on its held heartbeat (else at its next)."""
        held = worker.beat
        if held is not None and not held.answered:
            kill = [Job(jobid=j.jobid, attempt=j.attempt) for j in jobs]
            self._answer(held, Message(Kind.KILL, jobid=kill[0].jobid, jobs=kill), out)
            worker.beat = None

    def _unrun(self, job: Job) -> None:
        """The job's run is over (ended, requeued, retried or cancelled): it is not running."""
        del self.running[job.jobid]
        if self.caps.stopped(job):
            self._kick = True  # its array may run another now

    def _attempt_over(
        self,
        job: Job,
        how: str,
        end_ns: int,
        out: list[Action],
        usage: dict[str, int] | None = None,
        pid: int | None = None,
    ) -> None:
        """Keep the record of the job's current attempt, which is over (see records.Attempt)."""
        usage = usage or {}
        record = Attempt(
            job.jobid,
            job.attempt,
            how,
            job.workerid,
            job.workerhost,
            job.pid if pid is None else pid,
            job.start_ns,
            end_ns,
            job.exit_status if how in (ATTEMPT_FINISHED, ATTEMPT_TIMEOUT) else 0,
            max(0, usage.get("maxRssKib", 0)),
            max(0, usage.get("utimeUs", 0)),
            max(0, usage.get("stimeUs", 0)),
        )
        out.append(SaveAttempt(record))

    def _retry(self, job: Job, now: float, out: list[Action]) -> None:
        """A failed run with retries left: the job waits again (after its delay), as a new
        attempt whose output follows this one's."""
        advance(job, "retry")
        job.retried += 1
        job.out_base = job.out_bytes
        job.workerid = ""
        job.gpu_ids = ""
        job.end_ns = int(now * _NS)  # when the delay starts (server clock)
        self.counters.retried += 1
        if job.retry_delay_ms:
            self._delay(job, now + job.retry_delay_ms / 1000)
        else:
            self.waiting.push_front(job)
            self._kick = True
        out.append(Save(job))

    def _delay(self, job: Job, at: float) -> None:
        self.delayed[job.jobid] = job
        heapq.heappush(self._timers, (at, next(self._seq), Delay(job.jobid, at)))

    def _end(self, job: Job, event: str, now: float, out: list[Action]) -> None:
        """Record the job's end, exactly once, and answer everyone waiting for it; then what
        it means for the jobs that depend on it (dependencies.py), down the chain."""
        self._record_end(job, event, out)
        if not self.deps.dependents:
            return
        now_ns = int(now * _NS)
        ended = [job]
        while ended:
            job = ended.pop()
            ready, doomed = self.deps.ended(job.jobid, outcome_of(job.state, job.exit_status))
            for jobid in ready:
                waiting = self.blocked.pop(jobid, None)
                if waiting is not None:  # (a held one stays held, with nothing to wait for)
                    advance(waiting, "unblock")  # not saved: a stored BLOCKED job whose
                    self.waiting.push(waiting)  # dependencies succeeded waits again after a
                    self._kick = True  # restart (restore); its dispatch is saved as usual
            for jobid, why in doomed:
                gone = self.blocked.pop(jobid, None) or self.held.pop(jobid, None)
                if gone is not None:
                    gone.note = why
                    gone.end_ns = now_ns
                    self._record_end(gone, "cancel", out)
                    ended.append(gone)

    def _record_end(self, job: Job, event: str, out: list[Action]) -> None:
        advance(job, event)
        c = self.counters
        if event == "finish":
            c.finished += 1
        elif event == "timeout":
            c.timed_out += 1
        else:
            c.cancelled += 1
        self.ended[job.jobid] = job
        if len(self.ended) > self.config.ended_ring:
            self.ended.popitem(last=False)
        out.append(Save(job))
        if self._notify:
            out.append(Notify("finished", job))
        for held in self.waiters.pop(job.jobid, ()):
            self._answer(held, Message(Kind.FINISHED, jobid=job.jobid, jobs=[_brief(job)]), out)
        if self.multi_waiters:
            self._tell_multi_waiters(job, out)

    def _tell_multi_waiters(self, job: Job, out: list[Action]) -> None:
        keep = []
        for held in self.multi_waiters:
            if held.answered:
                continue
            if held.ranges is not None and _within(job.jobid, held.ranges):
                self._answer(held, Message(Kind.FINISHED, jobs=[_brief(job)]), out)
            else:
                keep.append(held)
        self.multi_waiters = keep

    # ----------------------------------------------------------------------------- liveness

    def _check_alive(self, worker: Worker, now: float, out: list[Action]) -> None:
        """A liveness timer fired: requeue a silent worker's runs and forget it."""
        worker.check_at = _NEVER
        if self.workers.get(worker.workerid) is not worker:
            return
        if self._silent_for(worker, now) < self._silence:
            self._watch(worker, now)
            return
        self._requeue_all(worker, now, out)
        self._forget(worker)
        self._dispatch(now, out)

    def _silent_for(self, worker: Worker, now: float) -> float:
        """How long the worker has been silent while we could have heard it."""
        return now - worker.last_heard - (self.deaf - worker.deaf_at)

    def _forget(self, worker: Worker) -> None:
        """Drop a dead or vanished worker (its runs, if any, already requeued)."""
        for held in (worker.ask, worker.beat):
            if held is not None:
                held.answered = True  # nobody is listening any more
        worker.ask = worker.beat = None
        self.idle.pop(worker.workerid, None)
        if self.workers.get(worker.workerid) is worker:
            del self.workers[worker.workerid]

    def _worker(self, workerid: str, host: str, now: float) -> Worker:
        worker = self.workers.get(workerid)
        if worker is None:
            worker = Worker(workerid, host, now)
            self.workers[workerid] = worker
        worker.last_heard = now
        worker.deaf_at = self.deaf
        self._watch(worker, now)
        return worker

    def _watch(self, worker: Worker, now: float) -> None:
        """Make sure a liveness check fires when the worker's silence would make it dead. One
        pending check per worker: when it fires on a worker heard since, it is set again."""
        if worker.check_at == _NEVER:
            excused = self.deaf - worker.deaf_at  # see _silent_for
            worker.check_at = at = worker.last_heard + excused + self._silence
            heapq.heappush(self._timers, (at, next(self._seq), worker))

    # ----------------------------------------------------------------------------- holds

    def _hold(self, peer: Hashable, msg: Message, kind: Kind, now: float) -> Held:
        wait = min(msg.wait_ms / 1000, self._hold_cap) if msg.wait_ms > 0 else 0.0
        held = Held(peer, msg.nonce, kind, now + wait)
        heapq.heappush(self._timers, (held.deadline, next(self._seq), held))
        return held

    def _answer(self, held: Held, msg: Message, out: list[Action]) -> None:
        held.answered = True
        msg.reply_to = held.reply_to
        out.append(Reply(held.peer, msg))

    def _expire(self, held: Held, out: list[Action]) -> None:
        """A hold's time is up: tell the asker to ask again."""
        if held.kind != Kind.WAIT:
            worker = self.workers.get(held.workerid)
            if worker is not None:
                if worker.ask is held:
                    worker.ask = None
                    self.idle.pop(held.workerid, None)
                elif worker.beat is held:
                    worker.beat = None
            if held.kind == Kind.REQUEST_WORK:
                self._answer(held, Message(Kind.NOTHING_YET, count=MAX_RUNS_PER_RESULT), out)
            else:
                self._answer(held, Message(Kind.ALIVE), out)
        else:
            if held.ranges is not None:
                self.multi_waiters.remove(held)
            waiters = self.waiters.get(held.jobid)
            if waiters is not None:
                waiters.remove(held)
                if not waiters:
                    del self.waiters[held.jobid]
            self._answer(held, Message(Kind.NOTHING_YET, jobid=held.jobid), out)

    def _release(
        self, worker: Worker, which: str, out: list[Action], kind: Kind = Kind.NOTHING_YET
    ) -> None:
        """The worker asked anew (or needs no hold): answer its previous hold of that sort."""
        held = getattr(worker, which)
        if held is not None:
            setattr(worker, which, None)
            if which == "ask":
                self.idle.pop(worker.workerid, None)
            if not held.answered:
                reply = kind if which == "ask" or kind == Kind.ACK else Kind.ALIVE
                self._answer(held, Message(reply, count=MAX_RUNS_PER_RESULT), out)

    def _exit(
        self, worker: Worker, peer: Hashable | None, reply_to: bytes, out: list[Action]
    ) -> None:
        """Tell an immolated worker to exit (on its held requests, or on this one); forget it."""
        for held in (worker.ask, worker.beat):
            if held is not None and not held.answered:
                self._answer(held, Message(Kind.EXIT), out)
        worker.ask = worker.beat = None
        if peer is not None:
            out.append(Reply(peer, Message(Kind.EXIT, reply_to=reply_to)))
        self.idle.pop(worker.workerid, None)
        self.workers.pop(worker.workerid, None)

    # ----------------------------------------------------------------------------- helpers

    def _current_run(self, msg: Message, worker: Worker) -> Job | None:
        """The running job this message reports on, if it is about the current attempt."""
        job = self.running.get(msg.jobid)
        if job is None or job.attempt != msg.attempt or job.workerid != worker.workerid:
            return None
        return job

    def _about_ended(
        self, msg: Message, peer: Hashable, out: list[Action], fmt: str | None
    ) -> None:
        """Answer a CANCEL or WAIT about a job that is not live: ended, or never existed."""
        jobid = msg.jobid
        job = self.ended.get(jobid)
        if not 0 < jobid < self.next_jobid:
            text = f"job {jobid} is not known to this server"
            out.append(
                Reply(peer, Message(Kind.NOT_KNOWN, reply_to=msg.nonce, jobid=jobid, text=text))
            )
        elif fmt is not None:
            out.append(
                Reply(peer, Message(Kind.ACK, reply_to=msg.nonce, jobid=jobid, text=fmt % jobid))
            )
        elif job is not None:
            out.append(
                Reply(
                    peer,
                    Message(Kind.FINISHED, reply_to=msg.nonce, jobid=jobid, jobs=[_brief(job)]),
                )
            )
        else:
            out.append(ReplyStoredJob(peer, msg.nonce, jobid))

    def _live(self, jobid: int) -> Job | None:
        """The job if it has not ended (waiting, running, blocked or held), else None."""
        job = self.waiting.get(jobid)
        if job is None:
            job = self.running.get(jobid)
            if job is None:
                job = self.blocked.get(jobid) or self.held.get(jobid) or self.delayed.get(jobid)
        return job

    def _live_count(self) -> int:
        return (
            len(self.waiting)
            + len(self.running)
            + len(self.blocked)
            + len(self.held)
            + len(self.delayed)
        )

    def _all_live(self) -> Iterable[Job]:
        """Every job that has not ended, by state (running, waiting, blocked, held)."""
        yield from self.running.values()
        yield from self.delayed.values()
        yield from self.waiting.values()
        yield from self.blocked.values()
        yield from self.held.values()

    def _live_in(self, ranges: list[tuple[int, int]]) -> list[Job]:
        """The jobs not ended among these ids, in id order: by id when the ranges are small,
        else by looking at each live job (a range like 1-1000000000 costs no more)."""
        if idranges.count(ranges) <= 4 * self._live_count():
            live = self._live
            found = [live(jobid) for jobid in idranges.ids(ranges) if jobid < self.next_jobid]
            return [job for job in found if job is not None]
        return sorted(
            (job for job in self._all_live() if _within(job.jobid, ranges)),
            key=lambda job: job.jobid,
        )

    def _intern_fields(self, job: Job) -> None:
        """Share one object between jobs for equal environments, commands, directories, hosts
        and users (a million waiting jobs mostly repeat these). The table is bounded."""
        table = self._interned
        if len(table) >= _INTERN_LIMIT:
            table.clear()
        env = job.env
        if env is not self._last_env[0]:  # batches and stored jobs repeat one list object
            key = tuple(env)
            found = table.get(key)
            if found is None:
                table[key] = found = env
            self._last_env = (env, found)
        job.env = self._last_env[1]
        # most jobs depend on nothing and ask for no named resource: share one empty list and
        # one empty dict (never changed in place, like every list and dict of a job it holds)
        if not job.after:
            job.after = self._no_ids
        if not job.after_any:
            job.after_any = self._no_ids
        if not job.resources:
            job.resources = self._no_resources
        if not job.args:
            job.args = self._no_args
        job.cmd = table.setdefault(job.cmd, job.cmd)
        job.dir = table.setdefault(job.dir, job.dir)
        job.host = table.setdefault(job.host, job.host)
        job.user = table.setdefault(job.user, job.user)

    # ----------------------------------------------------------------------------- views

    def stat_counters(self) -> dict[str, int]:
        c = self.counters
        counters = {
            "runQlen": len(self.running),
            "waitingJobs": len(self.waiting) + len(self.delayed),
            "blockedJobs": len(self.blocked),
            "heldJobs": len(self.held),
            "waitingWorkers": len(self.idle),
            "knownWorkers": len(self.workers),
            "finishedJobsCount": c.finished,
            "cancelledJobsCount": c.cancelled,
            "requeuedJobsCount": c.requeued,
            "timedOutJobsCount": c.timed_out,
            "retriedCount": c.retried,
            "staleResultCount": c.stale_results,
            "duplicateResultCount": c.duplicate_results,
            "batchedResultRunCount": c.batched_runs,
            "staleOutputCount": c.stale_output,
            "refusedCount": c.refused,
            "deniedCount": c.denied,
            "errorCount": c.errors,
            "undeliveredCount": c.undelivered,
            "nextJobId": self.next_jobid,
            "waiters": sum(len(w) for w in self.waiters.values()) + len(self.multi_waiters),
        }
        counters.update(c.drops)
        return counters


def _room(free: Capacity) -> tuple[int, int, int]:
    """How much a worker has free, to pick the one that can soonest run a big job."""
    return (len(free.gpus), free.cpus, free.mem)


def _brief(job: Job) -> Job:
    """A copy of a job fit for stat and wait replies: everything but its environment."""
    return replace(job, env=[])


def _within(jobid: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether `jobid` is in these sorted, merged ranges."""
    i = bisect_right(ranges, (jobid, _INT_MAX)) - 1
    return i >= 0 and ranges[i][0] <= jobid <= ranges[i][1]


def _some(ids: list[int]) -> str:
    text = idranges.format_ids(ids)
    return text if len(text) <= _SHOW_DEPS else text[: _SHOW_DEPS - 3].rsplit(",", 1)[0] + ",..."


def _wire_array(text: str) -> ArraySpec:
    """The array a SUBMIT's text names ("START-STOP:STEP"; the front door checked it)."""
    span, _, step = text.partition(":")
    start, _, stop = span.partition("-")
    return ArraySpec(int(start), int(stop), int(step))
