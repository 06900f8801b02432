"""Credentials: a file that lets one principal (role, name, expiry) talk to the server, whose key
the server derives from the cluster's root secret on demand, so it stores no copy of any.

key = HMAC-SHA256(root secret, "goq credential 1" NUL principal text), the principal text
(role:name:issued_ns:expires_ns) travelling in each frame's header as authenticated data: a
changed role, name or expiry no longer matches the key, and the server refuses the frame.
The file (mode 0600) is `key = value` lines; `goq cred issue` writes it, `load_secret` picks the
one a command uses: GOQ_CRED / --cred, else $GOQ_HOME/.goq/cred, else the root secret itself.
"""

from __future__ import annotations

import os

from goq_core.config import Settings, settings_dir
from goq_core.errors import ConfigError
from goq_core.keys import KEY_BYTES, load_key, read_private, write_private
from goq_core.principals import ROLES, Principal, Secret, name_problem
from goq_core.principals import parse as parse_principal

CRED_FILE = "cred"  # the default credential in $GOQ_HOME/.goq
ISSUED_FILE = "issued"  # what `goq cred issue` issued on this host (no keys): for `cred list`
_DOMAIN = b"goq credential 1\x00"
_MAX_FILE = 4096
_HEADER = "# goq credential: keep it private (mode 0600). Made by `goq cred issue`.\n"


def derive(root: bytes, principal: Principal) -> bytes:
    """The key of `principal`'s credential."""
    import hmac  # the server's and `goq cred issue`'s only (hashlib costs `goq sub` 2 ms)

    return hmac.digest(root, _DOMAIN + principal.text().encode("ascii"), "sha256")


def issue(root: bytes, role: str, name: str, now_ns: int, expires_ns: int = 0) -> Secret:
    """A new credential for (role, name), issued now; ConfigError for a bad role or name."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    why = name_problem(name)
    if why is not None:
        raise ConfigError(why)
    if expires_ns and expires_ns <= now_ns:
        raise ConfigError("a credential must expire in the future")
    principal = Principal(role, name, now_ns, expires_ns)
    return Secret(derive(root, principal), principal)


def dump(secret: Secret) -> str:
    """The text of a credential file."""
    p = secret.principal
    assert p is not None, "the root secret is not written as a credential"
    return (
        _HEADER
        + f"role = {p.role}\nname = {p.name}\nissued = {p.issued_ns}\n"
        + f"expires = {p.expires_ns}\n"
        + f"key = {secret.key.hex()}\n"
    )


def write(path: str, secret: Secret) -> None:
    """Write a credential file (mode 0600); ConfigError if one is there already."""
    try:
        write_private(path, dump(secret).encode("ascii"))
    except FileExistsError:
        raise ConfigError(
            f"{path} exists already: remove it first, or name another --out"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot write credential {path}: {e.strerror or e}") from None


def parse(text: str, where: str) -> Secret:
    """The credential a file's text holds; ConfigError naming `where` when it is not one."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise ConfigError(f"credential {where} is damaged (a line without '=')")
        fields[key.strip()] = value.strip()
    missing = [k for k in ("role", "name", "issued", "expires", "key") if k not in fields]
    if missing:
        raise ConfigError(f"credential {where} is damaged or not a credential (no {missing[0]})")
    principal = parse_principal(":".join(fields[k] for k in ("role", "name", "issued", "expires")))
    if principal is None:  # read as the server reads a frame's principal
        raise ConfigError(
            f"credential {where} is damaged (role {fields['role']!r}, name {fields['name']!r}, "
            "issued or expires)"
        )
    try:
        key = bytes.fromhex(fields["key"])
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"credential {where} is damaged (its key)")
    return Secret(key, principal)


def load_credential(path: str) -> Secret:
    """Read a credential file; ConfigError if missing, readable by others, or damaged."""
    data = read_private(path, "credential", _MAX_FILE + 1, f"no credential file {path}")
    if len(data) > _MAX_FILE:
        raise ConfigError(f"{path} is not a goq credential (too large)")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a goq credential (not text)") from None
    return parse(text, path)


def default_path(home: str) -> str:
    return os.path.join(settings_dir(home), CRED_FILE)


def load_secret(settings: Settings) -> Secret:
    """The secret a command uses: the credential GOQ_CRED (or --cred) names, else the default
    one in $GOQ_HOME/.goq/cred, else the cluster's root secret ($GOQ_HOME/.goq/key)."""
    if settings.cred:
        return load_credential(settings.cred)
    path = default_path(settings.home)
    if os.path.lexists(path):
        return load_credential(path)
    if not os.path.lexists(os.path.join(settings_dir(settings.home), "key")):
        raise ConfigError(
            f"no credential in {settings_dir(settings.home)}: put the one `goq cred issue` made "
            f"for this host or user there as {CRED_FILE} (mode 0600), or point GOQ_CRED at it; "
            "on a new cluster's server host, run `goq init` first"
        )
    return Secret(load_key(settings.home))


def record_issued(home: str, principal: Principal, path: str) -> None:
    """Note an issued credential (never its key) in $GOQ_HOME/.goq/issued, for `cred list`."""
    import json

    line = json.dumps(
        {
            "role": principal.role,
            "name": principal.name,
            "issued_ns": principal.issued_ns,
            "expires_ns": principal.expires_ns,
            "file": os.path.abspath(path),
        }
    )
    target = os.path.join(settings_dir(home), ISSUED_FILE)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def issued(home: str) -> list[dict]:
    """What `record_issued` noted, oldest first ([] when nothing was)."""
    import json

    target = os.path.join(settings_dir(home), ISSUED_FILE)
    try:
        with open(target, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: skip it
        if isinstance(doc, dict):
            found.append(doc)
    return found
