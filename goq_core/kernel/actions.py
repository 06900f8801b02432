"""What the kernel asks its runtime to do. The runtime performs, for each batch of inputs:
first the Replies that dispatch a job (JOB), then every WriteOutput, then every Save, SaveAttempt
and Remember (one store transaction), then every other Reply, Notify and store query (QueryJobs,
ShowJob, Forget, ReplyStoredJob).

Any other reply is sent only after the store commit, so an acknowledged job is a durable job;
output is written before the commit, so a job recorded as finished has its output on disk. A
dispatch may precede the commit: a crash in between only means the job runs again.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from goq_core.attempts import Attempt
from goq_core.jobquery import JobQuery
from goq_core.messages import Job, Message
from goq_core.principals import ROOT, Principal


@dataclass(slots=True)
class Reply:
    """Send `msg` as the answer to the request that came with `peer`."""

    peer: Hashable
    msg: Message


@dataclass(slots=True)
class ReplyStoredJob:
    """Answer a WAIT about a job that ended too long ago to be in memory: look it up in the store
    and reply FINISHED with it (or NOT_KNOWN if the store has no such job)."""

    peer: Hashable
    reply_to: bytes
    jobid: int


@dataclass(slots=True)
class Save:
    """Make this job's current record durable (upsert by jobid)."""

    job: Job


@dataclass(slots=True)
class WriteOutput:
    """Write `data` at `offset` of the output file of `job`; `start`: this is the first chunk
    of an attempt, so the file ends here first (a rerun writes over the partial output of the
    attempt before it, and keeps what earlier attempts wrote before `offset`)."""

    job: Job
    offset: int
    data: bytes
    start: bool = False


@dataclass(slots=True)
class Notify:
    """Tell the plugins an event happened: "submitted", "started" or "finished"."""

    event: str
    job: Job


@dataclass(slots=True)
class Remember:
    """Keep this request's nonce durably (with the batch's commit) until it is too old to be
    admitted anyway, so that a restarted server refuses a replay of it too."""

    nonce: bytes
    sendtime_ns: int


@dataclass(slots=True)
class SaveAttempt:
    """Keep this record of a run that is over in the history (with the batch's commit)."""

    attempt: Attempt


@dataclass(slots=True)
class QueryJobs:
    """Answer a JOBS request (after the commit): `live`, the live jobs that match (newest
    first), merged with the ended ones the store's history has for `query`, newest first."""

    peer: Hashable
    reply_to: bytes
    query: JobQuery
    live: list[Job]


@dataclass(slots=True)
class ShowJob:
    """Answer a SHOW request: the job (`job`, when it is live; else the store's record), its
    attempts from the history, and its output path; NOT_KNOWN if the store has no such job."""

    peer: Hashable
    reply_to: bytes
    jobid: int
    job: Job | None
    viewer: Principal = ROOT  # who asks: the environment is shown only to its owner and admins


@dataclass(slots=True)
class Forget:
    """Remove ended jobs from the history: `jobids` (none of them live), or every one that
    ended before `before_ns`; answer ACK with how many."""

    peer: Hashable
    reply_to: bytes
    jobids: list[int]
    before_ns: int = 0


@dataclass(slots=True)
class Stop:
    """Stop serving once this batch's actions are done (shutdown)."""


Action = (
    Reply
    | ReplyStoredJob
    | Save
    | SaveAttempt
    | WriteOutput
    | Notify
    | Remember
    | QueryJobs
    | ShowJob
    | Forget
    | Stop
)
