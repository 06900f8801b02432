"""`goq cred issue|list|revoke`: credentials with roles (goq_core.credentials) for the hosts and
users of a cluster; issue on the server host (it needs the root secret), revoke from anywhere.
"""

from __future__ import annotations

import time

import click

from goq_core.errors import GoqError
from goq_core.principals import Principal

_JSON_HELP = "Print one JSON document instead of text (docs/json.md describes every field)."

_ROLES_HELP = (
    "work: take and report jobs, as the worker NAME (or NAME:SUFFIX); submit: submit jobs, "
    "see all, and cancel, hold or release its own; admin: everything."
)


def _one_role_per_name(home: str, role: str, name: str) -> None:
    """A name is one principal: jobs belong to a name whatever the role, so a name keeps the
    role it was first issued with here (and "admin", the root secret's, is an admin's)."""
    from goq_core import credentials
    from goq_core.principals import ADMIN, ROOT

    if name == ROOT.name and role != ADMIN:
        raise GoqError(f"the name {name!r} is the root secret's (an admin): choose another name")
    for doc in credentials.issued(home):
        if doc.get("name") == name and doc.get("role") != role:
            raise GoqError(
                f"{name!r} already has a {doc.get('role')} credential (issued here): a name is one "
                "principal, whose jobs are its own whatever the role; choose another name"
            )


def _record(p: Principal, state: str, revoked_ns: int | None = None) -> dict:
    """A credential as docs/json.md's object `credential` describes it (never its key)."""
    from goq_core.records import rfc3339

    return {
        "name": p.name,
        "role": p.role,
        "issued": rfc3339(p.issued_ns),
        "expires": rfc3339(p.expires_ns),
        "state": state,
        "revoked_at": rfc3339(revoked_ns) if state == "revoked" and revoked_ns else None,
    }


def _when(ns: int) -> str:
    if not ns:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


@click.group()
def cred() -> None:
    """Credentials with roles: who may take work, submit, or administer the cluster.

    `goq init` made the cluster's root secret ($GOQ_HOME/.goq/key, keep it on the server host)
    and an admin credential ($GOQ_HOME/.goq/cred). Give every other host and user a
    credential of its own instead of the root secret; revoke one without re-keying anyone."""


@cred.command()
@click.option(
    "--role",
    required=True,
    type=click.Choice(["work", "submit", "admin"]),
    help=_ROLES_HELP,
)
@click.option("--name", required=True, help="Who it is for: a worker host, or a user.")
@click.option(
    "--expires",
    metavar="DURATION",
    help="Valid for this long (e.g. 90d, 12h; at most 365d). Default: until revoked.",
)
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Where to write it (mode 0600; never over an existing file). Default: NAME.cred.",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def issue(obj, role: str, name: str, expires: str | None, out: str | None, as_json: bool) -> None:
    """Write a credential file for one host or user (run on the server host).

    The server keeps no copy: it checks a credential against the root secret. Copy the file
    to its holder as $GOQ_HOME/.goq/cred (or point GOQ_CRED at it)."""
    from goq_core import credentials
    from goq_core.options import parse_duration_ms
    from goq_core.principals import name_problem

    why = name_problem(name)
    if why is not None:
        raise click.BadParameter(why, param_hint="--name")
    now = time.time_ns()
    expires_ns = 0
    if expires is not None:
        try:
            expires_ns = now + parse_duration_ms(expires) * 1_000_000
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
    path = out or f"{name}.cred"
    try:
        settings = obj.settings()
        _one_role_per_name(settings.home, role, name)
        root = obj.root_key(settings)
        secret = credentials.issue(root, role, name, now, expires_ns)
        credentials.write(path, secret)
        credentials.record_issued(settings.home, secret.acting, path)
    except GoqError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        from goq_cli.jsonout import emit
        from goq_core.records import document

        emit(document("credential", credential=_record(secret.acting, "valid"), file=path))
        return
    click.echo(
        f"issued a {role} credential for {name} (expires: {_when(expires_ns)}) in {path}; "
        "copy it to its holder as $GOQ_HOME/.goq/cred, mode 0600"
    )


@cred.command(name="list")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def list_(obj, as_json: bool) -> None:
    """The credentials issued on this host, and which are revoked or expired.

    Revocations come from the server (admin only); without it, they show as unknown."""
    from goq_core import credentials

    try:
        settings = obj.settings()
        found = credentials.issued(settings.home)
    except GoqError as exc:
        raise click.ClickException(str(exc)) from None
    revoked: dict[str, int] | None
    try:
        with obj.client() as client:
            revoked = client.revoke(None)
    except GoqError as exc:
        click.echo(f"goq: revocations unknown: {exc}", err=True)
        revoked = None
    now = time.time_ns()
    rows: list[tuple[Principal, str]] = []
    for doc in found:
        name, issued_ns, expires_ns = doc.get("name"), doc.get("issued_ns"), doc.get("expires_ns")
        role = doc.get("role")
        if not (isinstance(name, str) and isinstance(issued_ns, int) and isinstance(role, str)):
            continue
        expires_ns = expires_ns if isinstance(expires_ns, int) else 0
        if revoked is None:
            state = "unknown"
        elif name in revoked and issued_ns <= revoked[name]:
            state = "revoked"
        elif expires_ns and expires_ns <= now:
            state = "expired"
        else:
            state = "valid"
        rows.append((Principal(role, name, issued_ns, expires_ns), state))
    if as_json:
        from goq_cli.jsonout import emit
        from goq_core.records import document

        records = [_record(p, state, (revoked or {}).get(p.name)) for p, state in rows]
        emit(document("credentials", credentials=records, revocations_known=revoked is not None))
        return
    click.echo(f"{'NAME':<20} {'ROLE':<7} {'ISSUED':<23} {'EXPIRES':<23} STATE")
    for p, state in rows:
        if state == "revoked" and revoked is not None:
            state = f"revoked {_when(revoked[p.name])}"
        issued, until = _when(p.issued_ns), _when(p.expires_ns)
        click.echo(f"{p.name:<20} {p.role:<7} {issued:<23} {until:<23} {state}")
    if not found:
        click.echo(f"(no credentials were issued from {settings.home})")


@cred.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_obj
def revoke(obj, name: str, as_json: bool) -> None:
    """Refuse NAME's credentials from now on (at once, and after restarts).

    Every credential issued for NAME until now stops working; one issued later works (so
    rotating is: revoke, then issue anew). Needs an admin credential and the server up."""
    from goq_core.principals import name_problem

    why = name_problem(name)
    if why is not None:
        raise click.BadParameter(why, param_hint="NAME")
    try:
        with obj.client() as client:
            revoked = client.revoke(name)
    except GoqError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        from goq_cli.jsonout import emit
        from goq_core.records import document, rfc3339

        at = {k: rfc3339(v) for k, v in sorted(revoked.items())}
        emit(document("revoked", name=name, revoked_at=at.get(name), revoked=at))
    else:
        when = _when(revoked.get(name, 0))
        click.echo(
            f"revoked the credentials of {name} issued until {when}: the server refuses them"
        )
    acting = getattr(client, "principal", None)
    if acting is not None and acting.name == name and acting.issued_ns:
        click.echo(
            f"goq: this command used a credential of {name}: issue yourself a new one on the "
            "server host (goq cred issue --role admin --name NAME --out FILE), or act with the "
            "root secret there (remove $GOQ_HOME/.goq/cred)",
            err=True,
        )
