"""The kernel's access rules (kernel/access.py), rule by rule, on the pure kernel: what each role
may ask, workers acting only under their own names, own jobs only, revocation and expiry."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from goq_core.kernel import Kernel, KernelConfig, Reply, ShowJob
from goq_core.kernel.access import ALLOWED, refusal, utc_text
from goq_core.messages import Job, Kind, Message
from goq_core.principals import ADMIN, ROOT, SUBMIT, WORK, Principal

T0 = 1_700_000_000.0
NS = 1_000_000_000
ALICE = Principal(SUBMIT, "alice", issued_ns=int(T0 * NS) - 10)
BOB = Principal(SUBMIT, "bob", issued_ns=int(T0 * NS) - 10)
NODE1 = Principal(WORK, "node1", issued_ns=int(T0 * NS) - 10)
OPS = Principal(ADMIN, "ops", issued_ns=int(T0 * NS) - 10)

REQUESTS = [
    k
    for k in Kind
    if k.value < 20 or k in (Kind.REVOKE,)  # every request kind
]


class Driver:
    def __init__(self) -> None:
        self.kernel = Kernel(KernelConfig(heartbeat_sec=1.0, max_hold_sec=1.0))
        self.now = T0
        self._nonces = itertools.count(1)
        self.kernel_actions: list = []

    def send(self, who: Principal, msg: Message, peer: str = "p") -> list:
        msg.nonce = next(self._nonces).to_bytes(16, "big")
        msg.sendtime_ns = int(self.now * NS)
        out = self.kernel.handle(msg, peer, self.now, who)
        self.kernel_actions += out
        return out

    def reply(self, who: Principal, msg: Message, peer: str = "p") -> Message:
        replies = [
            a.msg for a in self.send(who, msg, peer) if isinstance(a, Reply) and a.peer == peer
        ]
        assert len(replies) == 1, replies
        return replies[0]

    def submit(self, who: Principal, *cmds: str) -> int:
        jobs = [Job(cmd=c, dir="/w", env=["SECRET=1"]) for c in cmds]
        ack = self.reply(who, Message(Kind.SUBMIT, jobs=jobs))
        assert ack.kind == Kind.SUBMITTED, ack.text
        return ack.jobid


def _request(kind: Kind) -> Message:
    """A well-formed request of `kind`."""
    if kind == Kind.SUBMIT:
        return Message(kind, jobs=[Job(cmd="true", dir="/w")])
    if kind in (Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.OUTPUT, Kind.RESULT):
        return Message(
            kind, workerid="node1", host="h", jobs=[] if kind != Kind.RESULT else [Job(jobid=1)]
        )
    if kind in (Kind.HOLD, Kind.RELEASE, Kind.FORGET):
        return Message(kind, text="1")
    if kind in (Kind.CANCEL, Kind.WAIT, Kind.SHOW):
        return Message(kind, jobid=1)
    if kind == Kind.JOBS:
        return Message(kind, text="{}")
    if kind in (Kind.DRAIN, Kind.RESUME):
        return Message(kind, count=1)
    return Message(kind)


@pytest.mark.parametrize("kind", REQUESTS, ids=lambda k: k.name)
@pytest.mark.parametrize("who", [ALICE, NODE1], ids=["submit", "work"])
def test_each_role_may_make_only_its_requests(who: Principal, kind: Kind) -> None:
    why = refusal(who, _request(kind), int(T0 * NS), {})
    if kind in ALLOWED[who.role]:
        assert why is None
    else:
        assert why is not None and why.startswith(
            f"this credential ({who.role}: {who.name}) may not"
        )


def test_the_allowed_sets_are_the_issues_list() -> None:
    assert ALLOWED[WORK] == {Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.OUTPUT, Kind.RESULT}
    forbidden_to_submit = {
        Kind.REQUEST_WORK, Kind.HEARTBEAT, Kind.OUTPUT, Kind.RESULT, Kind.SHUTDOWN,
        Kind.IMMOLATE, Kind.DRAIN, Kind.RESUME, Kind.FORGET, Kind.REVOKE,
    }  # fmt: skip
    assert not (ALLOWED[SUBMIT] & forbidden_to_submit)
    assert {Kind.SUBMIT, Kind.STAT, Kind.WAIT, Kind.CANCEL, Kind.JOBS, Kind.SHOW} <= ALLOWED[SUBMIT]


def test_admin_may_make_every_request() -> None:
    for kind in REQUESTS:
        assert refusal(OPS, _request(kind), int(T0 * NS), {}) is None


def test_a_refused_request_is_denied_and_counted_and_changes_nothing() -> None:
    d = Driver()
    reply = d.reply(NODE1, Message(Kind.SUBMIT, jobs=[Job(cmd="true", dir="/w")]))
    assert reply.kind == Kind.DENIED
    assert reply.text == "this credential (work: node1) may not submit jobs"
    assert d.kernel.next_jobid == 1
    assert d.kernel.stat_counters()["deniedCount"] == 1
    reply = d.reply(ALICE, Message(Kind.SHUTDOWN))
    assert reply.kind == Kind.DENIED and "may not shut the server down" in reply.text
    assert not d.kernel.stopping


def test_a_work_credential_acts_only_as_its_own_workers() -> None:
    d = Driver()
    d.submit(ALICE, "a")
    other = d.reply(NODE1, Message(Kind.REQUEST_WORK, workerid="node2", host="h", wait_ms=500))
    assert other.kind == Kind.DENIED and "not as 'node2'" in other.text
    assert d.kernel.running == {}  # the job was not handed to the impostor
    prefix = d.reply(NODE1, Message(Kind.REQUEST_WORK, workerid="node10", host="h", wait_ms=500))
    assert prefix.kind == Kind.DENIED  # node1 does not cover node10
    own = d.reply(NODE1, Message(Kind.REQUEST_WORK, workerid="node1:gpu0", host="h", wait_ms=500))
    assert own.kind == Kind.JOB and own.jobs[0].env == ["SECRET=1"]


def test_a_work_credential_cannot_report_another_workers_job() -> None:
    d = Driver()
    jobid = d.submit(ALICE, "a")
    node2 = Principal(WORK, "node2")
    job = d.reply(node2, Message(Kind.REQUEST_WORK, workerid="node2", host="h", wait_ms=500))
    assert job.kind == Kind.JOB
    result = Message(Kind.RESULT, workerid="node1", jobid=jobid, attempt=1, jobs=[Job(jobid=jobid)])
    forged = d.reply(NODE1, result)  # as node1: not its run, so a stale result
    assert forged.kind == Kind.ACK
    assert d.kernel.stat_counters()["staleResultCount"] == 1
    assert jobid in d.kernel.running and d.kernel.running[jobid].workerid == "node2"
    assert d.reply(NODE1, Message(Kind.RESULT, workerid="node2", jobid=jobid, attempt=1,
                                  jobs=[Job(jobid=jobid)])).kind == Kind.DENIED  # fmt: skip


def test_jobs_record_their_owner_and_submitters_change_only_their_own() -> None:
    d = Driver()
    a = d.submit(ALICE, "a1", "a2")
    b = d.submit(BOB, "b1")
    assert d.kernel.waiting.get(a).owner == "alice"
    assert d.kernel.waiting.get(b).owner == "bob"
    denied = d.reply(BOB, Message(Kind.CANCEL, jobid=a))
    assert denied.kind == Kind.DENIED
    assert denied.text == "this credential (submit: bob) may not cancel job 1: it belongs to alice"
    assert d.kernel.waiting.get(a) is not None
    many = d.reply(BOB, Message(Kind.CANCEL, text=f"{a}-{b}"))
    assert many.kind == Kind.ACK and many.count == 1
    assert "not yours, so left alone: 1-2" in many.text
    held = d.reply(BOB, Message(Kind.HOLD, text=f"{a}-{a + 1}"))  # none of them bob's
    assert held.kind == Kind.DENIED
    assert held.text == "this credential (submit: bob) may not hold jobs 1-2: they are not its own"
    assert d.reply(ALICE, Message(Kind.HOLD, text=f"{a}-{a + 1}")).count == 2
    released = d.reply(BOB, Message(Kind.RELEASE, text=f"{a}"))
    assert released.kind == Kind.DENIED and released.text.endswith("it belongs to alice")
    assert d.reply(BOB, Message(Kind.CANCEL, text=f"{a}")).kind == Kind.DENIED
    mixed = d.reply(BOB, Message(Kind.HOLD, text=f"{a}-{b}"))  # bob's b1 was cancelled above
    assert mixed.kind == Kind.DENIED
    assert d.reply(OPS, Message(Kind.CANCEL, jobid=a)).kind == Kind.ACK  # admins: anyone's


def test_an_array_and_a_batch_are_owned_by_their_submitter() -> None:
    d = Driver()
    ack = d.reply(ALICE, Message(Kind.SUBMIT, jobs=[Job(cmd="x", dir="/w")], text="1-3:1"))
    assert ack.count == 3
    assert {d.kernel.waiting.get(ack.jobid + i).owner for i in range(3)} == {"alice"}
    root = d.submit(ROOT, "r")
    assert d.kernel.waiting.get(root).owner == "admin"


def test_show_names_its_viewer_so_the_runtime_hides_the_environment() -> None:
    d = Driver()
    jobid = d.submit(ALICE, "a")
    (show,) = [a for a in d.send(BOB, Message(Kind.SHOW, jobid=jobid)) if isinstance(a, ShowJob)]
    assert show.viewer == BOB
    from goq_core.kernel.access import may_see_env

    assert not may_see_env(BOB, show.job)
    assert (
        may_see_env(ALICE, show.job) and may_see_env(OPS, show.job) and may_see_env(ROOT, show.job)
    )


def test_revocation_refuses_at_once_is_durable_and_spares_later_credentials() -> None:
    d = Driver()
    assert d.reply(OPS, Message(Kind.REVOKE, text="alice")).kind == Kind.ACK
    refused = d.reply(ALICE, Message(Kind.STAT))
    assert refused.kind == Kind.DENIED
    assert (
        refused.text == f"this credential (submit: alice) was revoked at {utc_text(int(T0 * NS))}"
    )
    assert d.reply(BOB, Message(Kind.STAT)).kind == Kind.STATUS
    counters = d.kernel.durable_counters()
    assert counters["revoked/alice"] == int(T0 * NS)
    again = Kernel(KernelConfig(heartbeat_sec=1.0))
    again.restore([], counters, T0 + 5)
    assert again.revoked == {"alice": int(T0 * NS)}
    reissued = Principal(SUBMIT, "alice", issued_ns=int(T0 * NS) + 1)
    msg = Message(Kind.STAT, nonce=b"n" * 16, sendtime_ns=int((T0 + 5) * NS))
    (a,) = again.handle(msg, "p", T0 + 5, reissued)
    assert a.msg.kind == Kind.STATUS
    msg = Message(Kind.STAT, nonce=b"m" * 16, sendtime_ns=int((T0 + 5) * NS))
    (a,) = again.handle(msg, "p", T0 + 5, ALICE)
    assert a.msg.kind == Kind.DENIED


def test_revoke_lists_and_is_admin_only() -> None:
    d = Driver()
    listed = d.reply(OPS, Message(Kind.REVOKE))
    assert listed.kind == Kind.ACK and listed.text == '{"revoked":{}}'
    assert d.reply(ALICE, Message(Kind.REVOKE, text="bob")).kind == Kind.DENIED
    assert d.kernel.revoked == {}
    bad = d.reply(OPS, Message(Kind.REVOKE, text="no way"))
    assert bad.kind == Kind.ERROR and "not ' '" in bad.text


def test_an_expired_credential_is_refused_with_when() -> None:
    d = Driver()
    short = Principal(SUBMIT, "carol", issued_ns=int(T0 * NS) - 10, expires_ns=int(T0 * NS) + 5)
    assert d.reply(short, Message(Kind.STAT)).kind == Kind.STATUS  # not yet expired
    d.now = T0 + 1
    late = d.reply(short, Message(Kind.STAT))
    assert late.kind == Kind.DENIED
    assert late.text.startswith("this credential (submit: carol) expired at 2023-11-14T22:13:20Z")


@pytest.mark.parametrize("ns", [0, 951_782_400 * NS, 1_700_000_000 * NS + 999, 4_102_444_799 * NS])
def test_utc_text_agrees_with_datetime(ns: int) -> None:
    expected = datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert utc_text(ns) == expected


def test_a_revoked_idle_worker_gets_no_job_and_a_busy_ones_runs_go_back() -> None:
    d = Driver()
    d.send(NODE1, Message(Kind.REQUEST_WORK, workerid="node1", host="h", wait_ms=900), "w1")
    out = d.send(OPS, Message(Kind.REVOKE, text="node1"), "admin")
    assert [a.msg.kind for a in out if isinstance(a, Reply) and a.peer == "w1"] == [Kind.DENIED]
    jobid = d.submit(ALICE, "a")
    assert d.kernel.running == {} and d.kernel.waiting.get(jobid) is not None
    # a busy worker: its held heartbeat is answered DENIED and its run requeued at once
    node3 = Principal(WORK, "node3", issued_ns=int(T0 * NS) - 10)
    job = d.reply(node3, Message(Kind.REQUEST_WORK, workerid="node3", host="h", wait_ms=900), "w3")
    assert job.kind == Kind.JOB and job.jobid == jobid
    beat = Message(Kind.HEARTBEAT, workerid="node3", jobid=jobid, attempt=1, wait_ms=900)
    assert d.send(node3, beat, "b3") == []  # held
    out = d.send(OPS, Message(Kind.REVOKE, text="node3"), "admin")
    assert [a.msg.kind for a in out if isinstance(a, Reply) and a.peer == "b3"] == [Kind.DENIED]
    assert d.kernel.running == {} and d.kernel.waiting.get(jobid).attempt == 1
    assert d.kernel.stat_counters()["requeuedJobsCount"] == 1


def test_a_worker_whose_credential_expires_while_it_waits_gets_denied_not_a_job() -> None:
    d = Driver()
    brief = Principal(WORK, "node4", issued_ns=int(T0 * NS) - 10, expires_ns=int((T0 + 0.5) * NS))
    assert (
        d.send(brief, Message(Kind.REQUEST_WORK, workerid="node4", host="h", wait_ms=900), "w4")
        == []
    )
    d.now = T0 + 0.6
    jobid = d.submit(ALICE, "a")
    denied = [a.msg for a in d.kernel_actions if isinstance(a, Reply) and a.peer == "w4"]
    assert [m.kind for m in denied] == [Kind.DENIED] and "expired at" in denied[0].text
    assert d.kernel.running == {} and d.kernel.waiting.get(jobid) is not None
