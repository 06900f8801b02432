"""The one in-memory message type that every role sends and every codec encodes.

`Message` is flat on purpose: each kind uses a few of its fields and leaves the rest at their
defaults, so a codec has exactly one shape to get right (see docs/architecture.md for who uses what).

Workers with several slots (design.md §7, Resources): a worker's REQUEST_WORK carries `jobs`:
first its *offer* (a Job with jobid 0 whose cpus, mem, gpus, gpu_ids and resources are what the
worker has in all, and whose workerid is a token unique to this worker process), then one
Job(jobid, attempt) per run it holds (running, or finished with its result not yet acknowledged),
so the server can tell a dispatch that was lost from one that is under way. A JOB reply may hand
several jobs at once (each with its own attempt and gpu_ids); HEARTBEAT lists every run the worker
holds in `jobs`, and KILL names in `jobs` the runs to kill. A REQUEST_WORK without an offer is a
worker of one cpu, nothing else.

Several runs in one RESULT: a worker with slots reports the runs that ended while it was busy
sending in one message (at most goq_core.limits.MAX_RUNS_PER_RESULT). Each run's whole output
is then in `data` (offset 0), the runs' outputs one after the other in the order of `jobs`, run
I's `jobs[I].out_bytes` long; `counters` holds run I's rusage as "I/NAME" (`runs_counters`). A
run whose output took OUTPUT chunks is reported alone. A worker batches only for a server that
says it may: the server's JOB, NOTHING_YET and ACK answering a worker's ask or RESULT carry in
`count` how many runs it takes in one RESULT (0, from an older server: one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Kind(IntEnum):
    """What a message asks or answers. Requests go to the server; every request gets one reply."""

    # requests (client or worker -> server)
    SUBMIT = 1  # jobs: the jobs to add (ids unset); reply SUBMITTED. With text "START-STOP:STEP"
    # it is an array: jobs holds one job, made once per index (consecutive ids)
    REQUEST_WORK = 2  # workerid (its name), host, wait_ms, jobs=[offer, *runs held]; reply JOB,
    # NOTHING_YET or EXIT (held while nothing fits its free capacity)
    HEARTBEAT = 3  # workerid, jobs=[runs held] (jobid, attempt: the first), wait_ms; reply ALIVE,
    # KILL (jobs: the runs to kill) or EXIT (held until then)
    OUTPUT = 4  # workerid, jobid, attempt, offset, data: a chunk of a job's output; reply ACK
    RESULT = 5  # workerid, jobs=[the outcome of each run it reports: state TIMEOUT if the worker
    # killed it at its time limit], jobid and attempt: the first's. One run: data is its last
    # output chunk (at offset), counters its rusage (maxRssKib, utimeUs, stimeUs; absent when it
    # did not start). Several runs (see "Several runs in one RESULT" above); reply ACK/JOB...
    CANCEL = 6  # jobid; reply ACK (count: 1 if cancelled, 0 if it had ended; text says what
    # happened) or NOT_KNOWN. With jobid 0, text:
    # job ids (idranges): cancels those not ended; reply ACK (count: how many cancelled)
    WAIT = 7  # jobid, wait_ms; reply FINISHED, NOT_KNOWN or NOTHING_YET (held until then).
    # With jobid 0, text: job ids (idranges); held until one of them has ended; reply FINISHED
    # with jobs=[each ended one still in memory] and text: the ended ones that are not (ask
    # each alone); NOT_KNOWN (text: why) if an id was never a job
    STAT = 8  # count: how many jobs to list; reply STATUS
    SHUTDOWN = 9  # reply ACK, then the server stops
    IMMOLATE = 10  # reply ACK (count: workers told)
    DRAIN = 11  # text: a worker name (count=1: every worker); reply ACK (count: workers drained)
    RESUME = 12  # text: a worker name (count=1: every worker); reply ACK (count: workers resumed)
    WORKERS = 13  # reply WORKER_LIST
    HOLD = 14  # text: job ids (see idranges); reply ACK (count: how many held, text: the rest)
    RELEASE = 15  # text: job ids; reply ACK (count: how many released, text: the rest)
    SELECT = 16  # text: a job name, or "" with count=1 for every job; reply JOB_IDS
    JOBS = 17  # text: a JSON query {"states": [...], "name", "since_ns", "before", "limit"}
    # (see goq_core.jobquery); reply JOB_LIST
    SHOW = 18  # jobid; reply JOB_RECORD or NOT_KNOWN
    FORGET = 19  # text: job ids (idranges), or offset: forget those ended before (ns since the
    # epoch); reply ACK (count: how many removed from history; live jobs never are)
    REVOKE = 36  # text: a credential name: its credentials issued until now are refused from
    # now on (durable); "" only lists; reply ACK, text: JSON {"revoked": {name: ns}} (admin)

    # replies (server -> client or worker)
    SUBMITTED = 20  # jobid: first new id, count: how many (ids are consecutive)
    JOB = 21  # jobs=[the jobs to run, each with attempt and gpu_ids]; jobid, attempt: the first
    NOTHING_YET = 22  # a held request timed out: ask again
    ALIVE = 23  # heartbeat acknowledged: keep running
    KILL = 24  # kill the job (cancelled, or this attempt is no longer current)
    EXIT = 25  # worker: exit now (immolate)
    ACK = 26  # request done; text may say more
    FINISHED = 27  # jobs=[the finished job with its outcome]
    NOT_KNOWN = 28  # jobid is not a job this server knows
    STATUS = 29  # counters, jobs (running then waiting, by state; a waiting job's note says why
    # it waits when it fits no worker)
    GOING_AWAY = 30  # the server is shutting down: ask again later
    ERROR = 31  # text: why the request was refused
    WORKER_LIST = 32  # text: a JSON document {"workers": [...]} (see docs/scheduling.md)
    JOB_IDS = 33  # text: job ids (see idranges), count: how many
    JOB_LIST = 34  # jobs: the jobs found, newest first (no environments)
    DENIED = 37  # text: why this request's credential may not make it (goq_core.kernel.access)
    JOB_RECORD = 35  # jobs=[the job, with its environment]; text: JSON {"attempts": [...],
    # "output_path": str} (attempts as goq_core.records.attempt_to_dict)


class JobState(IntEnum):
    """Where a job is in its lifecycle (see goq_core.kernel.lifecycle for the transitions)."""

    NEW = 0
    WAITING = 1
    RUNNING = 2
    FINISHED = 3
    CANCELLED = 4
    TIMEOUT = 5  # ended: killed at its time limit
    BLOCKED = 6  # waits for its dependencies
    HELD = 7  # waits until released


@dataclass(slots=True)
class Job:
    """A job: what to run and where, and, once run, how it went."""

    jobid: int = 0
    cmd: str = ""
    args: list[str] = field(default_factory=list)
    shell: bool = False  # run cmd as a /bin/sh -c line
    dir: str = ""  # submit directory
    env: list[str] = field(default_factory=list)  # "NAME=value" entries
    host: str = ""  # submit host
    user: str = ""  # submitting user
    state: JobState = JobState.NEW
    attempt: int = 0  # 1 for the first run; +1 at each requeue
    workerid: str = ""
    workerhost: str = ""
    pid: int = 0
    exit_status: int = 0  # exit code, or -N for a signal N
    submit_ns: int = 0
    start_ns: int = 0
    end_ns: int = 0
    out_bytes: int = 0  # size of the whole output
    note: str = ""  # what the server wants the record to say (e.g. where output went instead)
    # what the job asks for (on a worker's offer: what the worker has)
    cpus: int = 1
    mem: int = 0  # bytes
    gpus: int = 0  # how many GPUs
    resources: dict[str, int] = field(default_factory=dict)  # named counters, e.g. license=1
    priority: int = 0  # higher runs first; FIFO within a priority
    gpu_ids: str = ""  # the GPUs given to this run, comma-separated (offer: the ids offered)
    # workflow (design.md §7): names, dependencies, arrays, retries, time limits
    name: str = ""  # several jobs may share one
    after: list[int] = field(default_factory=list)  # run once all of these succeeded
    after_any: list[int] = field(default_factory=list)  # run once all of these ended
    array_id: int = 0  # the first job id of its array (0: not in an array)
    array_index: int = 0  # its index in the array (GOQ_ARRAY_INDEX)
    array_max: int = 0  # at most this many of its array run at once (0: no cap)
    retries: int = 0  # runs again up to this many times after a failure
    retry_delay_ms: int = 0  # ... this long after the failure
    retried: int = 0  # retries used so far
    time_limit_ms: int = 0  # killed (TIMEOUT) after running this long (0: no limit)
    out_base: int = 0  # bytes of its output file written by earlier attempts (retries)
    owner: str = ""  # the principal that submitted it (set by the server, never by a client)


@dataclass(slots=True)
class Message:
    """One request or reply. `nonce` and `sendtime_ns` are stamped by the sender's runtime."""

    kind: Kind
    nonce: bytes = b""  # random, unique per message (replay guard)
    sendtime_ns: int = 0  # sender's wall clock, ns since the epoch (replay guard)
    reply_to: bytes = b""  # on a reply: the nonce of the request it answers
    workerid: str = ""
    host: str = ""
    jobid: int = 0
    attempt: int = 0
    count: int = 0
    wait_ms: int = 0  # how long the sender will wait for a held reply
    offset: int = 0  # byte offset of `data` within a job's output
    data: bytes = b""  # a chunk of job output
    text: str = ""
    jobs: list[Job] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def batch_counters(usages: list[dict[str, int]]) -> dict[str, int]:
    """The counters of a RESULT reporting several runs: run I's rusage as "I/NAME"."""
    return {f"{i}/{name}": value for i, usage in enumerate(usages) for name, value in usage.items()}


def runs_counters(msg: Message) -> list[dict[str, int]]:
    """The rusage of each run a RESULT reports, in the order of `jobs` (see batch_counters; one
    run: all its counters). Each counter is read once; a name with no run's index is ignored."""
    if len(msg.jobs) <= 1:
        return [msg.counters]
    usages: list[dict[str, int]] = [{} for _ in msg.jobs]
    for key, value in msg.counters.items():
        index, slash, name = key.partition("/")
        if slash and index.isascii() and index.isdigit():
            i = int(index)
            if i < len(usages) and str(i) == index:  # "I/" exactly: not "01/", "+1/"
                usages[i][name] = value
    return usages
