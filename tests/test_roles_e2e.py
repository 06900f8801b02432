"""Credentials with roles, end to end (issue 13, item 6): real `goq` processes on 127.0.0.1.

One cluster serves the whole module (its server is restarted once, by the revocation test):
credentials for a worker host (work: node1) and two users (submit: alice, bob) are issued with
`goq cred issue`, as docs/deployment.md says, and each command picks one with `--cred FILE`.
The admin acts with the credential `goq init` wrote ($GOQ_HOME/.goq/cred). Every refusal must be
one line on stderr, exit 1, no traceback, and be counted in `deniedCount`. Jobs left in the
shared cluster are held or ended, so that a worker started by one test takes only its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, initialised, wait_for

pytestmark = pytest.mark.slow


class Roles:
    """The shared cluster, and the credential files of its principals."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.creds = cluster.root / "creds"
        self.creds.mkdir(mode=0o700)

    def issue(self, role: str, name: str, *extra: str, out: str | None = None) -> Path:
        path = self.creds / (out or f"{name}.cred")
        self.c.ok("cred", "issue", "--role", role, "--name", name, "--out", str(path), *extra)
        return path

    def cred(self, name: str) -> Path:
        return self.creds / f"{name}.cred"

    def as_(self, who: str | Path, *args: str, **kw) -> subprocess.CompletedProcess:
        """`goq ARGS` acting with `who`'s credential (a name issued here, or a file)."""
        path = who if isinstance(who, Path) else self.cred(who)
        return self.c.goq("--cred", str(path), *args, **kw)

    def ok_as(self, who: str | Path, *args: str, **kw) -> str:
        done = self.as_(who, *args, **kw)
        assert done.returncode == 0, f"goq {' '.join(args)} as {who}: {done.stderr}{done.stdout}"
        return done.stdout

    def sub_as(self, who: str | Path, *argv: str, env=None) -> int:
        out = self.ok_as(who, "sub", *argv, env=env)
        return int(out.split()[2])

    def denied(self) -> int:
        return self.c.stat()["deniedCount"]

    def state(self, jobid: int) -> str:
        out = self.c.ok("show", str(jobid))
        return re.search(r"^\s*state\s+([a-z]+)", out, re.M).group(1)


def one_line_refusal(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert `done` failed as a user mistake should: exit 1, one line on stderr holding every
    fragment, no traceback; return that line."""
    err = done.stderr.strip()
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert err and "\n" not in err, f"not one line on stderr: {done.stderr!r}"
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("roles")
    with initialised(root, server=True, heartbeat=1.0) as c:
        r = Roles(c)
        r.issue("work", "node1")
        r.issue("submit", "alice")
        r.issue("submit", "bob")
        yield r


@pytest.fixture(scope="module")
def held_job(roles: Roles) -> int:
    """A job of alice's that never runs (held): a target for the requests that are refused."""
    return roles.sub_as("alice", "--hold", "true")


# ----------------------------------------------------------------------------- each role refused

WORK_FORBIDDEN = [
    (("sub", "true"), "may not submit jobs"),
    (("kill", "{job}"), "may not cancel jobs"),
    (("stat", "0"), "may not read the server's state"),
    (("jobs",), "may not list jobs"),
    (("shutdown",), "may not shut the server down"),
    (("immolateworkers",), "may not stop the workers"),
    (("drain", "--all"), "may not drain workers"),
    (("forget", "{job}"), "may not forget jobs"),
    (("cred", "revoke", "bob"), "may not revoke credentials"),
]

SUBMIT_FORBIDDEN = [
    (("shutdown",), "may not shut the server down"),
    (("immolateworkers",), "may not stop the workers"),
    (("drain", "--all"), "may not drain workers"),
    (("resume", "--all"), "may not resume workers"),
    (("forget", "{job}"), "may not forget jobs"),
    (("cred", "revoke", "node1"), "may not revoke credentials"),
]


def _refuse_each(roles: Roles, who: str, label: str, forbidden, job: int) -> None:
    before = roles.denied()
    for args, why in forbidden:
        args = tuple(a.format(job=job) for a in args)
        one_line_refusal(roles.as_(who, *args), f"this credential ({label}) {why}")
    assert roles.denied() - before == len(forbidden)


def test_a_work_credential_is_refused_every_request_but_taking_and_reporting_work(
    roles: Roles, held_job: int
) -> None:
    _refuse_each(roles, "node1", "work: node1", WORK_FORBIDDEN, held_job)
    assert roles.state(held_job) == "held"  # nothing was done to it
    assert roles.c.server.poll() is None


def test_a_submit_credential_is_refused_the_admin_requests(roles: Roles, held_job: int) -> None:
    _refuse_each(roles, "alice", "submit: alice", SUBMIT_FORBIDDEN, held_job)
    assert roles.state(held_job) == "held"
    assert roles.c.server.poll() is None


def test_a_submit_credential_cannot_take_work(roles: Roles) -> None:
    before = roles.denied()
    done = roles.as_("alice", "work", timeout=20)
    one_line_refusal(
        done, "refused this worker", "this credential (submit: alice) may not take work"
    )
    assert roles.denied() - before >= 1


# ----------------------------------------------------------------------------- worker identity


def _worker_host(roles: Roles, name: str) -> dict[str, str]:
    """The environment of a worker host set up as docs/deployment.md says: its own GOQ_HOME
    holding only the settings and its work credential as .goq/cred (no root secret)."""
    home = roles.c.root / f"host-{name}"
    dot = home / ".goq"
    dot.mkdir(parents=True, mode=0o700)
    shutil.copy(roles.c.home / ".goq" / "settings", dot / "settings")
    shutil.copy(roles.cred(name), dot / "cred")
    os.chmod(dot / "cred", 0o600)
    return dict(roles.c.env, GOQ_HOME=str(home))


def test_a_work_credential_cannot_claim_another_workers_name(roles: Roles) -> None:
    c = roles.c
    job = roles.sub_as("alice", "echo", "ran by node1")
    host = _worker_host(roles, "node1")
    before = roles.denied()
    done = c.goq("work", "--name", "node2", env=host, timeout=20)
    one_line_refusal(
        done, "this credential (work: node1) may act only as worker 'node1'", "not as 'node2'"
    )
    assert roles.denied() - before >= 1
    assert roles.state(job) == "waiting"  # the impostor never got it
    assert "node2" not in c.ok("show", str(job))
    # the same credential under a name of its own (node1:SUFFIX) takes it
    worker = c.spawn("work", "oneshot", "--name", "node1:gpu0", log="node1-gpu0.log", env=host)
    try:
        assert c.wait_output(job) == "ran by node1\n"
        roles.ok_as("alice", "wait", str(job), timeout=20)  # exit 0: it succeeded
        worker.wait(15)
        assert worker.returncode == 0, c.log("node1-gpu0.log")
    finally:
        c.stop(worker)
    shown = c.ok("show", str(job))
    assert "node1:gpu0" in shown and roles.state(job) == "finished"


# ----------------------------------------------------------------------------- ownership


def test_a_submit_credential_cannot_cancel_another_principals_job(roles: Roles) -> None:
    a1 = roles.sub_as("alice", "--hold", "true")
    a2 = roles.sub_as("alice", "--hold", "true")
    b1 = roles.sub_as("bob", "--hold", "true")
    before = roles.denied()
    one_line_refusal(
        roles.as_("bob", "kill", str(a1)),
        f"this credential (submit: bob) may not cancel job {a1}: it belongs to alice",
    )
    assert roles.denied() - before == 1
    out = roles.ok_as("bob", "kill", str(a1), str(a2), str(b1))
    assert "not yours, so left alone" in out and f"{a1}" in out, out
    assert [roles.state(j) for j in (a1, a2, b1)] == ["held", "held", "cancelled"]
    roles.c.ok("kill", str(a1))  # the admin may
    roles.ok_as("alice", "kill", str(a2))  # and so may its owner
    assert [roles.state(j) for j in (a1, a2)] == ["cancelled", "cancelled"]


def test_show_gives_a_jobs_environment_only_to_its_owner_and_admins(roles: Roles) -> None:
    env = dict(roles.c.env, GOQ_TEST_SECRET="s3cr3t-of-alice")
    job = roles.sub_as("alice", "--hold", "true", env=env)
    try:
        assert "s3cr3t-of-alice" not in roles.ok_as("bob", "show", "--env", str(job))
        assert "s3cr3t-of-alice" in roles.ok_as("alice", "show", "--env", str(job))
        assert "s3cr3t-of-alice" in roles.c.ok("show", "--env", str(job))
    finally:
        roles.c.ok("kill", str(job))


# ----------------------------------------------------------------------------- revoke, expire


def test_a_busy_worker_is_refused_at_its_next_heartbeat_once_revoked(roles: Roles) -> None:
    c = roles.c
    roles.issue("work", "node6")
    job = roles.sub_as("alice", "sleep", "30")
    host = _worker_host(roles, "node6")
    worker = c.spawn("work", log="node6.log", env=host)
    try:
        wait_for(lambda: roles.state(job) == "running", 15, f"job {job} to run on node6")
        c.ok("cred", "revoke", "node6")
        worker.wait(10)  # heartbeats every 1 s: refused within one
        assert worker.returncode == 1
        assert "this credential (work: node6) was revoked at" in c.log("node6.log")
        wait_for(lambda: roles.state(job) == "waiting", 10, f"job {job} to be requeued")
    finally:
        c.stop(worker)
        c.ok("kill", str(job))


def test_an_idle_worker_gets_no_job_once_revoked(roles: Roles) -> None:
    c = roles.c
    roles.issue("work", "node7")
    host = _worker_host(roles, "node7")
    worker = c.spawn("work", log="node7.log", env=host)
    job = None
    try:
        wait_for(lambda: "node7" in c.ok("workers"), 15, "node7 to be waiting for work")
        c.ok("cred", "revoke", "node7")
        job = roles.sub_as("alice", "echo", "not for a revoked worker")
        time.sleep(2.0)  # two heartbeats
        assert "node7" not in c.ok("show", str(job))
        assert roles.state(job) == "waiting"
    finally:
        c.stop(worker)
        if job is not None:
            c.goq("kill", str(job))


def test_a_revoked_credential_is_refused_at_once_and_after_a_restart(roles: Roles) -> None:
    c = roles.c
    carol = roles.issue("submit", "carol")
    roles.ok_as(carol, "stat", "0")
    out = c.ok("cred", "revoke", "carol")
    assert "carol" in out
    before = roles.denied()
    one_line_refusal(roles.as_(carol, "stat", "0"), "this credential (submit: carol) was revoked")
    one_line_refusal(roles.as_(carol, "sub", "true"), "was revoked")
    assert roles.denied() - before == 2
    # the revocation is durable: a restarted server still refuses carol
    assert "shutting down" in c.ok("shutdown")
    c.server.wait(15)
    assert c.server.returncode == 0
    c.start_server()
    one_line_refusal(roles.as_(carol, "stat", "0"), "this credential (submit: carol) was revoked")
    listed = c.ok("cred", "list")
    assert re.search(r"^carol\s+submit\s.*revoked", listed, re.M), listed
    # rotating: a credential issued anew under the same name works
    time.sleep(0.01)  # issued strictly after the revocation
    again = roles.issue("submit", "carol", out="carol-2.cred")
    job = roles.sub_as(again, "--hold", "true")
    assert "carol" in c.ok("show", str(job))
    c.ok("kill", str(job))
    one_line_refusal(roles.as_(carol, "stat", "0"), "was revoked")  # the old one stays refused


def test_an_expired_credential_is_refused_saying_it_expired(roles: Roles) -> None:
    dave = roles.issue("submit", "dave", "--expires", "1s")
    time.sleep(1.5)
    before = roles.denied()
    line = one_line_refusal(
        roles.as_(dave, "stat", "0"), "this credential (submit: dave) expired at", "goq cred issue"
    )
    assert re.search(r"expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line), line
    assert roles.denied() - before == 1


# ----------------------------------------------------------------------------- bad files


def _tampered(roles: Roles, case: str) -> Path:
    path = roles.creds / f"bad-{case}.cred"
    text = roles.cred("node1").read_text()
    if case == "role-edited":
        text = text.replace("role = work", "role = admin")
    elif case == "name-edited":
        text = text.replace("name = node1", "name = alice")
    elif case == "key-changed":
        key = re.search(r"^key = (\w+)$", text, re.M).group(1)
        flipped = f"{int(key[0], 16) ^ 1:x}" + key[1:]
        text = text.replace(key, flipped)
    elif case == "not-a-credential":
        text = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 someone@somewhere\n"
    elif case == "another-cluster":
        other = roles.c.root / "other-cluster"
        other.mkdir(exist_ok=True)
        env = dict(roles.c.env, GOQ_HOME=str(other))
        if not (other / ".goq").exists():
            roles.c.ok("init", env=env)
        text = (other / ".goq" / "cred").read_text()  # an admin credential, of another cluster
    path.write_text(text)
    path.chmod(0o644 if case == "mode-0644" else 0o600)
    return path


NOT_AUTHENTIC = "this credential was not made from this cluster's root secret"
BAD_FILES = [
    ("role-edited", NOT_AUTHENTIC),
    ("name-edited", NOT_AUTHENTIC),
    ("key-changed", NOT_AUTHENTIC),
    ("another-cluster", NOT_AUTHENTIC),
    ("mode-0644", "are too open"),
    ("not-a-credential", "is damaged"),
]


@pytest.mark.parametrize(("case", "says"), BAD_FILES, ids=[case for case, _ in BAD_FILES])
def test_a_wrong_or_tampered_credential_file_gives_one_clear_line(
    roles: Roles, held_job: int, case: str, says: str
) -> None:
    path = _tampered(roles, case)
    one_line_refusal(roles.as_(path, "stat", "0"), says)
    one_line_refusal(roles.as_(path, "kill", str(held_job)), says)
    # GOQ_CRED names it as well as --cred does
    done = roles.c.goq("stat", "0", env=dict(roles.c.env, GOQ_CRED=str(path)))
    one_line_refusal(done, says)
    assert roles.state(held_job) == "held"


def test_a_missing_credential_file_gives_one_clear_line(roles: Roles) -> None:
    one_line_refusal(roles.as_(roles.creds / "nobody.cred", "stat", "0"), "no credential file")


def test_a_worker_with_a_tampered_credential_exits_with_one_line(roles: Roles) -> None:
    done = roles.as_(_tampered(roles, "role-edited"), "work", timeout=20)
    one_line_refusal(done, NOT_AUTHENTIC)


# ----------------------------------------------------------------------------- single key


def test_the_old_single_key_setup_still_works_as_admin(tmp_path: Path) -> None:
    with initialised(tmp_path, heartbeat=1.0) as c:
        (c.home / ".goq" / "cred").unlink()  # only the root secret, .goq/key, is left
        c.start_server()
        sleeper = c.sub("sleep", "30")
        echo = c.sub("echo", "single key")
        assert c.stat()["waitingJobs"] == 2
        assert "cancelled" in c.ok("kill", str(sleeper))
        worker = c.start_worker("oneshot")
        assert c.wait_output(echo) == "single key\n"
        worker.wait(15)
        assert worker.returncode == 0
        assert re.search(r"^\s*owner\s+admin$", c.ok("show", str(echo)), re.M)
        assert c.stat()["deniedCount"] == 0
        assert "shutting down" in c.ok("shutdown")
        c.server.wait(15)
        assert c.server.returncode == 0
