"""Credential files and the server's gate: derivation, the file format and its errors, which
secret a command picks, and frames sealed for a credential (tampered, forged, cached)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace

import pytest

from goq_core import credentials
from goq_core.config import Settings
from goq_core.credentials import derive, issue, load_credential, load_secret
from goq_core.drops import BAD_SIG, GARBAGE, MISMATCH
from goq_core.errors import BadFrame, ConfigError
from goq_core.gate import Gate
from goq_core.keys import create_key, load_key
from goq_core.messages import Kind, Message
from goq_core.plugins import Plugins
from goq_core.principals import ROOT, SUBMIT, WORK, Principal, Secret, name_problem, parse
from goq_core.wire import Wire

NOW = 1_800_000_000 * 10**9
ROOT_SECRET = bytes(range(32))


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins()


def _wire(plugins: Plugins, secret: Secret, codec: str = "raw") -> Wire:
    cipher = plugins.cipher("aes-gcm", secret.key)
    return Wire(plugins.codec(codec), cipher, principal=secret.principal)


def _gate(plugins: Plugins, root: bytes = ROOT_SECRET) -> Gate:
    return Gate(plugins.codec("raw"), lambda k: plugins.cipher("aes-gcm", k), root)


# ------------------------------------------------------------------------ principals


def test_principal_text_round_trips_and_rejects_what_is_not_one() -> None:
    p = Principal(WORK, "node-17.a_b@c", 123, 456)
    assert parse(p.text()) == p
    for bad in ["", "work:n:1", "boss:n:1:0", "work::1:0", "work:a b:1:0", "work:n:x:0",
                "work:n:1:-5", "work:n:1:0:extra", "work:n:" + "9" * 20 + ":0", f"work:n:{1 << 63}:0"]:  # fmt: skip
        assert parse(bad) is None, bad


def test_names_are_checked() -> None:
    assert name_problem("node17") is None
    assert "needs a name" in name_problem("")
    assert "at most 64" in name_problem("x" * 65)
    assert "not ':'" in name_problem("a:b")


def test_a_work_principal_acts_as_its_name_or_its_name_with_a_suffix() -> None:
    p = Principal(WORK, "node1")
    assert p.may_act_as_worker("node1") and p.may_act_as_worker("node1:gpu0")
    assert not p.may_act_as_worker("node10") and not p.may_act_as_worker("node2")
    assert not Principal(SUBMIT, "node1").may_act_as_worker("node1")
    assert ROOT.may_act_as_worker("anything")


# ------------------------------------------------------------------------ derivation and files


def test_derivation_binds_role_name_issue_time_and_expiry() -> None:
    base = Principal(WORK, "n", 1, 0)
    key = derive(ROOT_SECRET, base)
    assert len(key) == 32 and key == derive(ROOT_SECRET, base)
    for other in (replace(base, role=SUBMIT), replace(base, name="m"), replace(base, issued_ns=2),
                  replace(base, expires_ns=5)):  # fmt: skip
        assert derive(ROOT_SECRET, other) != key
    assert derive(bytes(32), base) != key


def test_issue_refuses_bad_roles_names_and_past_expiry() -> None:
    with pytest.raises(ConfigError, match="unknown role"):
        issue(ROOT_SECRET, "root", "x", NOW)
    with pytest.raises(ConfigError, match="not ' '"):
        issue(ROOT_SECRET, WORK, "a b", NOW)
    with pytest.raises(ConfigError, match="expire in the future"):
        issue(ROOT_SECRET, WORK, "a", NOW, NOW - 1)


def test_a_credential_file_is_private_and_reads_back(tmp_path) -> None:
    secret = issue(ROOT_SECRET, SUBMIT, "alice", NOW, NOW + 10**12)
    path = str(tmp_path / "alice.cred")
    credentials.write(path, secret)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_credential(path) == secret
    with pytest.raises(ConfigError, match="exists already"):
        credentials.write(path, secret)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("role = submit", "role = boss"), "damaged"),
        (lambda t: t.replace("name = alice", "name = a:b"), "damaged"),
        (lambda t: t.replace("key = ", "key = zz"), "damaged"),
        (lambda t: t.split("key =")[0], "no key"),
        (lambda t: "hello", "damaged"),
        (lambda t: t.replace("issued = ", "issued = -"), "damaged"),
    ],
)
def test_a_damaged_credential_file_is_one_clear_error(tmp_path, change, message) -> None:
    path = tmp_path / "c"
    path.write_text(change(credentials.dump(issue(ROOT_SECRET, SUBMIT, "alice", NOW))))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=message) as err:
        load_credential(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_credential_others_can_read_or_that_is_not_text_is_refused(tmp_path) -> None:
    path = tmp_path / "c"
    path.write_text(credentials.dump(issue(ROOT_SECRET, SUBMIT, "alice", NOW)))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="too open.*chmod 600"):
        load_credential(str(path))
    path.write_bytes(b"\xff\xfe" * 10)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not a goq credential"):
        load_credential(str(path))
    with pytest.raises(ConfigError, match="no credential file"):
        load_credential(str(tmp_path / "missing"))


def test_load_secret_prefers_goq_cred_then_the_default_file_then_the_root_secret(tmp_path) -> None:
    home = str(tmp_path)
    create_key(home)
    settings = Settings(home=home)
    assert load_secret(settings) == Secret(load_key(home))  # only the root secret: admin
    default = issue(load_key(home), "admin", "admin", NOW)
    credentials.write(credentials.default_path(home), default)
    assert load_secret(settings) == default
    mine = issue(load_key(home), SUBMIT, "me", NOW)
    credentials.write(str(tmp_path / "me.cred"), mine)
    assert load_secret(replace(settings, cred=str(tmp_path / "me.cred"))) == mine


def test_issued_credentials_are_recorded_without_their_keys(tmp_path) -> None:
    home = str(tmp_path)
    create_key(home)
    secret = issue(load_key(home), WORK, "node1", NOW)
    credentials.record_issued(home, secret.acting, "node1.cred")
    (doc,) = credentials.issued(home)
    assert doc["name"] == "node1" and doc["role"] == WORK and doc["issued_ns"] == NOW
    listing = (tmp_path / ".goq" / credentials.ISSUED_FILE).read_text()
    assert secret.key.hex() not in listing


# ------------------------------------------------------------------------ the gate


def test_the_gate_opens_root_and_credential_frames_and_says_who_sent_them(plugins) -> None:
    gate = _gate(plugins)
    msg, wire = gate.open(_wire(plugins, Secret(ROOT_SECRET)).pack(Message(Kind.STAT)))
    assert msg.kind == Kind.STAT and wire is gate.root and wire.principal is None
    alice = issue(ROOT_SECRET, SUBMIT, "alice", NOW)
    client = _wire(plugins, alice)
    msg, wire = gate.open(client.pack(Message(Kind.STAT, count=3)))
    assert msg.count == 3 and wire.principal == alice.principal
    reply = wire.pack(Message(Kind.ACK, text="yes"))  # the reply is sealed for alice
    assert client.unpack(reply).text == "yes"
    again, same = gate.open(client.pack(Message(Kind.STAT)))
    assert same is wire  # cached


def test_a_credential_edited_by_hand_or_from_another_cluster_does_not_open(plugins) -> None:
    gate = _gate(plugins)
    alice = issue(ROOT_SECRET, SUBMIT, "alice", NOW)
    promoted = Secret(alice.key, replace(alice.principal, role="admin"))
    with pytest.raises(BadFrame) as bad:
        gate.open(_wire(plugins, promoted).pack(Message(Kind.SHUTDOWN)))
    assert bad.value.reason == BAD_SIG
    foreign = issue(bytes(32), SUBMIT, "alice", NOW)
    with pytest.raises(BadFrame) as bad:
        gate.open(_wire(plugins, foreign).pack(Message(Kind.STAT)))
    assert bad.value.reason == BAD_SIG
    assert len(gate._wires) == 0  # frames that do not open are never cached


def test_a_tampered_header_or_body_does_not_open_even_when_cached(plugins) -> None:
    gate = _gate(plugins)
    alice = issue(ROOT_SECRET, SUBMIT, "alice", NOW)
    client = _wire(plugins, alice)
    gate.open(client.pack(Message(Kind.STAT)))
    frame = bytearray(client.pack(Message(Kind.STAT)))
    frame[-1] ^= 1
    with pytest.raises(BadFrame) as bad:
        gate.open(bytes(frame))
    assert bad.value.reason == BAD_SIG
    header = client.header
    renamed = (
        header.replace(b"alice", b"alicf") + bytes(client.pack(Message(Kind.STAT)))[len(header) :]
    )
    with pytest.raises(BadFrame) as bad:
        gate.open(renamed)
    assert bad.value.reason == BAD_SIG


def test_malformed_credential_headers_are_garbage_or_mismatch(plugins) -> None:
    gate = _gate(plugins)
    alice = issue(ROOT_SECRET, SUBMIT, "alice", NOW)
    body = _wire(plugins, alice).pack(Message(Kind.STAT))
    label = b"raw/aes-gcm"
    for frame in [
        b"GQ\x01C" + bytes([len(label)]) + label,  # cut after the label
        b"GQ\x01C" + bytes([len(label)]) + label + b"\x05admin" + body[-40:],  # not a principal
        b"GQ\x01C"
        + bytes([len(label)])
        + label
        + b"\x0esubmit:a:01:00"
        + body[-40:],  # not canonical
    ]:
        with pytest.raises(BadFrame) as bad:
            gate.open(frame)
        assert bad.value.reason == GARBAGE, frame
    other = _wire(plugins, alice, codec="capnp").pack(Message(Kind.STAT))
    with pytest.raises(BadFrame) as bad:
        gate.open(other)
    assert bad.value.reason == MISMATCH
