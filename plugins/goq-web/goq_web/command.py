"""`goq web`: the click command that connects to the goq server as `goq stat` does (the same
settings, key, transport, codec and cipher) and serves the dashboard until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from goq_core.errors import GoqError


@click.command()
@click.option(
    "--listen",
    default="127.0.0.1:8787",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve the dashboard. Any address but loopback requires the token.",
)
@click.option(
    "--token",
    envvar="GOQ_WEB_TOKEN",
    metavar="TOKEN",
    help="The token every request must carry (header X-Goq-Token, or the cookie the login "
    "link sets); default: none on loopback, else a new one, printed once. Also GOQ_WEB_TOKEN.",
)
@click.pass_context
def web(ctx: click.Context, listen: str, token: str | None) -> None:
    """Serve a read-only web dashboard of the goq server (overview, workers, jobs, one job
    with its output, jobs finished and failed per minute) and Prometheus metrics at /metrics.
    It asks the server at most once a second, whatever the number of browsers.

    \b
    Examples:
      goq web                                  (then open http://127.0.0.1:8787/)
      goq web --listen 0.0.0.0:8787            (prints a login link with a new token)
    """
    from goq_web.access import Access, check_token, is_loopback, new_token, parse_listen
    from goq_web.app import App
    from goq_web.httpd import DashboardServer
    from goq_web.source import Source

    try:
        host, port = parse_listen(listen)
        if token is not None:
            token = check_token(token)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    made = token is None and not is_loopback(host)
    if made:
        token = new_token()
    try:
        settings, key = _settings_and_key(ctx)
    except GoqError as exc:
        raise click.ClickException(str(exc)) from None
    source = Source(lambda: _client(settings, key))
    try:
        httpd = DashboardServer((host, port), App(source, Access(token), settings.address))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    bound = httpd.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{bound}/"
    click.echo(f"goq web (pid {os.getpid()}) serving {url} for the server at {settings.address}")
    if token is not None:
        login = f"{url}login?token={token}"
        click.echo(f"open {login} to log in" + (" (a new token: keep it private)" if made else ""))
    sys.stdout.flush()
    _stop_on_sigterm(httpd)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        source.close()
    click.echo("goq web stopped")


def _settings_and_key(ctx: click.Context):
    """The settings as `goq stat` reads them, with goq's global options, and the key."""
    from goq_core.config import load_settings
    from goq_core.keys import load_key

    params = ctx.find_root().params
    overrides = {k: params.get(k) for k in ("transport", "codec", "cipher")}
    settings = load_settings(os.environ, overrides)
    return settings, load_key(settings.home)


def _client(settings, key: bytes):
    from goq_core.plugins import Plugins
    from goq_core.roles.client import Client

    return Client(settings, key, Plugins(lazy=True))


def _stop_on_sigterm(httpd) -> None:
    """SIGTERM stops serving (from another thread: shutdown() waits for serve_forever)."""

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
