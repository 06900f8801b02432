"""The contracts a plugin implements: transport, codec, cipher and store.

These are typing Protocols; a plugin needs no base class, only these methods (see docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from goq_core.limits import MAX_FRAME
from goq_core.messages import Job, JobState, Message
from goq_core.records import Attempt

DEFAULT_MAX_FRAME = MAX_FRAME  # bytes; larger frames are refused and counted


class ServerEnd(Protocol):
    """The listening side. Requests come in with a peer handle; each is answered exactly once,
    later and in any order if need be (held replies)."""

    def recv(self, timeout: float | None) -> tuple[Hashable, bytes] | None:
        """Wait up to `timeout` seconds (None: forever) for a request; None when none came."""

    def reply(self, peer: Hashable, data: bytes) -> bool:
        """Answer the request `peer` came with. False when that client is gone (never raises)."""

    def close(self) -> None: ...


class ClientEnd(Protocol):
    """The dialling side: one request at a time, each matched to its own reply."""

    def request(self, data: bytes, timeout: float) -> bytes:
        """Send `data` and return the reply; TransportTimeout after `timeout` seconds. A late
        reply to an earlier, timed-out request is never returned for a later one."""

    def close(self) -> None: ...


class Transport(Protocol):
    """A named way to carry frames. Addresses look like tcp://HOST:PORT."""

    name: str

    def listen(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> ServerEnd: ...

    def dial(self, address: str, max_frame: int = DEFAULT_MAX_FRAME) -> ClientEnd: ...


class Codec(Protocol):
    """Message <-> bytes, lossless for every field. decode raises CodecError on bad input."""

    name: str

    def encode(self, msg: Message) -> bytes: ...

    def decode(self, data: bytes) -> Message: ...


class Cipher(Protocol):
    """Authenticated encryption of frames. open raises CipherError on any failure."""

    name: str

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, sealed: bytes, aad: bytes) -> bytes: ...


class CipherFactory(Protocol):
    """Makes a cipher for a 32-byte key."""

    def __call__(self, key: bytes) -> Cipher: ...


# What `Store.history` filters on: the ended jobs, by how they ended. "finished": FINISHED with
# exit status 0; "failed": FINISHED with any other; "cancelled": CANCELLED; "timeout": TIMEOUT.
HISTORY_STATES = frozenset(("finished", "failed", "cancelled", "timeout"))
HISTORY_LIMIT_MAX = 10_000  # the most jobs one `Store.history` call returns


@dataclass(slots=True)
class StoredState:
    """What a store gives back at start: every job not yet ended (in submit order; ended:
    FINISHED, CANCELLED or TIMEOUT; BLOCKED and HELD jobs are not ended), the counters
    (including nextJobId), the stored rows it could not turn into jobs and moved to quarantine
    at this load, as (jobid, reason), and the replay guard's remembered (nonce, sendtime_ns)."""

    jobs: list[Job] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    quarantined: list[tuple[int, str]] = field(default_factory=list)
    nonces: list[tuple[bytes, int]] = field(default_factory=list)


class Store(Protocol):
    """The durable record of jobs (ended ones too, with their attempts: the history, until
    `forget` or `prune` removes them) and counters, and the replay guard's nonces. `load` reads
    only what is not yet ended: the history costs the server no memory. Every failure is
    a StoreError of one line; one raised by save carries ``transient`` (bool): True when the
    same save may succeed later (disk full, read-only, I/O error, busy), the store staying
    usable meanwhile."""

    name: str

    def load(self) -> StoredState:
        """Everything needed to rebuild the queues. A stored job that cannot be turned into a
        Job is moved to quarantine and reported in `quarantined`, never raised; StoreError if
        the store as a whole is unreadable."""

    def save(
        self,
        jobs: Sequence[Job],
        counters: dict[str, int],
        nonces: Sequence[tuple[bytes, int]] = (),
        forget_nonces_before_ns: int = 0,
        attempts: Sequence[Attempt] = (),
    ) -> None:
        """Upsert these jobs (by jobid), set these counters, remember these (nonce,
        sendtime_ns) (a known nonce is kept), when `forget_nonces_before_ns` > 0 forget the
        nonces sent before it, and upsert these attempts (by jobid and attempt), all in one
        transaction, and return only once it is durable. Every field is kept exactly: str ones
        whatever they hold (lone surrogates, NUL), the lists (args, env, after, after_any) in
        their order. An attempt may be saved before, with or after its job, and for a job not
        yet ended (an attempt that was requeued)."""

    def get_job(self, jobid: int) -> Job | None:
        """The stored record of one job, ended or not (for wait and history); None if unknown.
        StoreError (naming the job and why) if its record is damaged or quarantined."""

    def outcomes(self, ids: Iterable[int]) -> dict[int, tuple[JobState, int]]:
        """(state, exit_status) of each of `ids` whose stored record has ended (FINISHED,
        CANCELLED or TIMEOUT); an id not stored, not ended, or whose record is damaged or
        quarantined is absent. For the server's dependencies on jobs it no longer holds in
        memory: at start, and when a submission names such a job. Copes with 100,000 ids and
        more in one call (a store asks in chunks as it must)."""

    def quarantine(self, jobid: int, reason: str) -> None:
        """Move job `jobid`'s record out of the jobs (the server refuses to use it), keeping it
        aside with `reason`; nothing if there is no such record."""

    def attempts(self, jobid: int) -> list[Attempt]:
        """The saved attempts of job `jobid`, in attempt order (their own copies); [] if none.
        StoreError (naming the job and why) if one of them is damaged."""

    def history(
        self,
        *,
        states: frozenset[str],
        name: str | None,
        since_ns: int,
        before_jobid: int | None,
        limit: int,
        owner: str | None = None,
    ) -> list[Job]:
        """Ended jobs (FINISHED, CANCELLED, TIMEOUT), newest first (jobid descending), at most
        `limit` (0 to HISTORY_LIMIT_MAX; ValueError beyond, or for a name not in
        HISTORY_STATES). Only those whose way of ending is in `states` (see HISTORY_STATES;
        empty: none); of name `name` unless it is None ("" is the name of unnamed jobs); that
        ended at `since_ns` or later when it is > 0; whose jobid is below `before_jobid` unless
        it is None (the next page: the last jobid of the previous one); submitted by `owner`
        (a principal's name) unless it is None. Every field is read
        except the environment (env is []). A damaged record is left out (`get_job` says why).
        Answers from indexes, without reading the whole history (within milliseconds with a
        million ended jobs)."""

    def forget(self, jobids: Iterable[int] = (), before_ns: int = 0) -> int:
        """Remove from the store, with their attempts, the ended jobs among `jobids` and, when
        `before_ns` > 0, every ended job whose end_ns is below it; a job not ended (live,
        blocked, held) is never removed. One transaction; returns how many jobs were removed.
        A big removal is one long transaction: to remove old history without stalling, call
        `prune` repeatedly instead."""

    def prune(self, before_ns: int, limit: int) -> int:
        """As forget(before_ns=before_ns), but at most `limit` jobs, those that ended first:
        call it again until it returns less than `limit`. Each call is one short transaction
        (a few ms for 1,000 jobs). Returns how many jobs were removed."""

    def close(self) -> None: ...


class StoreFactory(Protocol):
    """Opens (creating if allowed) a store kept in directory `path`."""

    def __call__(self, path: str, create: bool) -> Store: ...
