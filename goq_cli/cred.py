"""`goq cred issue|list|revoke`: credentials with roles (goq_core.credentials) for the hosts and
users of a cluster; issue on the server host (it needs the root secret), revoke from anywhere.
"""

from __future__ import annotations

import time

import click

from goq_core.errors import GoqError

_ROLES_HELP = (
    "work: take and report jobs, as the worker NAME (or NAME:SUFFIX); submit: submit jobs, "
    "see all, and cancel, hold or release its own; admin: everything."
)


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
@click.pass_obj
def issue(obj, role: str, name: str, expires: str | None, out: str | None) -> None:
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
        root = obj.root_key(settings)
        secret = credentials.issue(root, role, name, now, expires_ns)
        credentials.write(path, secret)
        credentials.record_issued(settings.home, secret.acting, path)
    except GoqError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"issued a {role} credential for {name} (expires: {_when(expires_ns)}) in {path}; "
        "copy it to its holder as $GOQ_HOME/.goq/cred, mode 0600"
    )


@cred.command(name="list")
@click.pass_obj
def list_(obj) -> None:
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
    click.echo(f"{'NAME':<20} {'ROLE':<7} {'ISSUED':<23} {'EXPIRES':<23} STATE")
    for doc in found:
        name, issued_ns, expires_ns = doc.get("name"), doc.get("issued_ns"), doc.get("expires_ns")
        if not (isinstance(name, str) and isinstance(issued_ns, int)):
            continue
        expires_ns = expires_ns if isinstance(expires_ns, int) else 0
        if revoked is None:
            state = "?"
        elif name in revoked and issued_ns <= revoked[name]:
            state = f"revoked {_when(revoked[name])}"
        elif expires_ns and expires_ns <= now:
            state = "expired"
        else:
            state = "valid"
        role = str(doc.get("role", "?"))
        click.echo(f"{name:<20} {role:<7} {_when(issued_ns):<23} {_when(expires_ns):<23} {state}")
    if not found:
        click.echo(f"(no credentials were issued from {settings.home})")


@cred.command()
@click.argument("name")
@click.pass_obj
def revoke(obj, name: str) -> None:
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
    when = _when(revoked.get(name, 0))
    click.echo(f"revoked the credentials of {name} issued until {when}: the server refuses them")
    if client.principal.name == name and client.principal.issued_ns:
        click.echo(
            f"goq: this command used a credential of {name}: issue yourself a new one on the "
            "server host (goq cred issue --role admin --name NAME --out FILE), or act with the "
            "root secret there (remove $GOQ_HOME/.goq/cred)",
            err=True,
        )
