"""The `goq` command line: one click function per command, each a thin layer over a role runtime.

Heavy modules (runtimes, plugins) are imported inside the commands so that `goq sub` starts fast.
Every user mistake ends as one line on stderr and exit status 1, never a traceback. Text that
the terminal's encoding cannot show (undecodable bytes in a command, say) prints escaped, as
\\xNN: see goq_cli.entry.escape_unencodable.
"""

from __future__ import annotations

import os
import sys

import click

from goq_cli.resources import (
    MAX_JOB_MEM,
    Amount,
    Priority,
    Request,
    Resource,
    Size,
    build_offer,
    check_worker_name,
    format_offer,
    resource_dict,
)
from goq_core import __version__
from goq_core.errors import GoqError
from goq_core.limits import MAX_INT, MAX_STAT_LIST

_SUB_CONTEXT = {"ignore_unknown_options": True, "allow_interspersed_args": False}


class _Ctx:
    """What the global options say, and the settings and key they lead to (read lazily)."""

    def __init__(self, transport: str | None, codec: str | None, cipher: str | None) -> None:
        self.overrides = {"transport": transport, "codec": codec, "cipher": cipher}

    def settings(self):
        from goq_core.config import load_settings

        return load_settings(os.environ, self.overrides)

    def key(self, settings) -> bytes:
        from goq_core.keys import load_key

        return load_key(settings.home)

    def client(self):
        from goq_core.plugins import Plugins
        from goq_core.roles.client import Client

        settings = self.settings()
        return Client(settings, self.key(settings), Plugins(lazy=True))


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="GOQ_HOME must be set (goq keeps its key, settings and state in $GOQ_HOME/.goq). "
    "Run `goq COMMAND --help` for each command.",
)
@click.option(
    "--transport", metavar="NAME", help="Transport plugin (nng, zmq); overrides GOQ_TRANSPORT."
)
@click.option("--codec", metavar="NAME", help="Codec plugin (raw, capnp); overrides GOQ_CODEC.")
@click.option("--cipher", metavar="NAME", help="Cipher plugin (aes-gcm); overrides GOQ_CIPHER.")
@click.pass_context
def cli(ctx: click.Context, transport: str | None, codec: str | None, cipher: str | None) -> None:
    """goq: a fast, secure job queue. One server (`goq serve`), many workers (`goq work`),
    submit from anywhere (`goq sub CMD ARGS...`)."""
    ctx.obj = _Ctx(transport, codec, cipher)


@cli.command()
@click.pass_obj
def init(obj: _Ctx) -> None:
    """Create $GOQ_HOME/.goq with a fresh key and the settings (from GOQ_* variables)."""
    from goq_core.config import save_settings, settings_dir
    from goq_core.keys import create_key
    from goq_core.plugins import Plugins

    try:
        settings = obj.settings()
        key_file = create_key(settings.home)
        save_settings(settings)
        Plugins().store("sqlite", settings_dir(settings.home), create=True).close()
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(f"goq initialized: key in {key_file}; the server will listen on {settings.address}.")
    click.echo("Copy $GOQ_HOME/.goq to every host that takes part (keep it private).")


@cli.command()
@click.option("--allow-insecure", is_flag=True, help="Permit the `none` cipher (tests only).")
@click.pass_obj
def serve(obj: _Ctx, allow_insecure: bool) -> None:
    """Run the server until `goq shutdown`, SIGTERM or Ctrl-C."""
    from goq_core.roles.server import Server, ServerOptions

    try:
        settings = obj.settings()
        server = Server(settings, obj.key(settings), options=ServerOptions(allow_insecure))
        server.open()
    except GoqError as exc:
        raise _fail(exc) from None
    server.install_signal_handlers()
    click.echo(
        f"goq server (pid {os.getpid()}) listening on {settings.address} "
        f"[{settings.transport}/{settings.codec}/{settings.cipher}]; job output goes to "
        f"{settings.odir}/out.NNNNN under each job's submit directory",
        err=False,
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except GoqError as exc:  # the store failed for good: it stopped cleanly, say why
        raise _fail(exc) from None
    finally:
        server.close()
    click.echo("goq server stopped; state saved.")


@cli.command(context_settings=_SUB_CONTEXT)
@click.option("--shell", "shell", is_flag=True, help="Run the command line with /bin/sh -c.")
@click.option(
    "--cpus",
    type=Amount(1),
    default=1,
    show_default=True,
    help="CPUs the job needs (it sees the count as GOQ_CPUS).",
)
@click.option(
    "--gpus",
    type=Amount(0),
    default=0,
    help="GPUs the job needs; it is given that many of its worker's GPUs, by id, in "
    "CUDA_VISIBLE_DEVICES and GOQ_GPUS.",
)
@click.option(
    "--mem",
    type=Size(maximum=MAX_JOB_MEM),
    default=0,
    help="Memory the job needs: 512M, 4G, 1.5T (binary units).",
)
@click.option(
    "--resource",
    "resources",
    type=Resource(),
    multiple=True,
    help="Units of a named resource the worker offers, e.g. license=1 (repeat for several).",
)
@click.option(
    "--priority",
    type=Priority(),
    default=0,
    show_default=True,
    help="Higher runs first; jobs of equal priority run in submission order. From -2^31 to 2^31-1.",
)
@click.option(
    "--file",
    "jobs_file",
    type=click.File("rb"),
    help="Submit one job per line of this file ('-' for stdin). Its bytes are taken as they "
    "are, like argv (any encoding); a line with a NUL byte is refused. Large batches go in "
    "several requests, with consecutive ids unless others submit meanwhile.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def sub(
    obj: _Ctx,
    shell: bool,
    cpus: int,
    gpus: int,
    mem: int,
    resources: tuple[tuple[str, int], ...],
    priority: int,
    jobs_file,
    command: tuple[str, ...],
) -> None:
    """Submit a job: COMMAND runs with its ARGS exactly as given (their bytes, whatever the
    encoding), in this directory, with this environment. Output lands in ./o/out.NNNNN.
    Options go before COMMAND; with --file they apply to every line. By default a job needs
    1 cpu and nothing else (see docs/scheduling.md).

    \b
    Examples:
      goq sub ./analyze.sh input-17.csv
      goq sub --shell 'sort big.txt | uniq -c > counts.txt'
      goq sub --file jobs.txt        (one job per line; with --shell each line is a shell line)
      goq sub --gpus 2 --cpus 8 --mem 32G python train.py --epochs 10
      goq sub --resource license=1 --priority 5 ./simulate.sh
    """
    from goq_cli.jobspec import decode_lines, jobs_from_lines, make_job

    if jobs_file is not None and command:
        raise click.UsageError("give either a command or --file, not both")
    if command and command[0].startswith("-") and len(command[0]) > 1:
        _unknown_option(command[0])
    request = Request(cpus, mem, gpus, resource_dict(resources), priority)
    try:
        if jobs_file is not None:
            jobs = jobs_from_lines(decode_lines(jobs_file.read()), shell)
            if not jobs:
                raise GoqError(f"no job in {jobs_file.name}: every line is empty or a comment")
        else:
            if not command:
                raise click.UsageError("no command given: try `goq sub CMD ARGS...`")
            jobs = [make_job(list(command), shell)]
        request.apply(jobs)
        with obj.client() as client:
            ranges = client.submit_many(jobs)
            address = client.settings.address
    except GoqError as exc:
        raise _fail(exc) from None
    n = sum(count for _, count in ranges)
    if n == 1:
        click.echo(f"submitted job {ranges[0][0]} to server at {address}")
    else:
        ids = ", ".join(f"{a}..{a + k - 1}" if k > 1 else str(a) for a, k in ranges)
        click.echo(f"submitted jobs {ids} ({n} jobs) to server at {address}")


def _unknown_option(word: str) -> None:
    """UsageError for `goq sub --gpu 1 CMD`: a typo would otherwise be the command to run."""
    import difflib

    known = [opt for param in sub.params for opt in param.opts if opt.startswith("--")]
    close = difflib.get_close_matches(word.partition("=")[0], known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise click.UsageError(f"no such option: {word} ({hint}options go before the command)")


@cli.command()
@click.argument("mode", type=click.Choice(["forever", "oneshot"]), default="forever")
@click.option(
    "--cpus",
    type=Amount(1, auto=True),
    default=1,
    show_default=True,
    help="CPUs to offer; auto: those this process may run on (its CPU affinity).",
)
@click.option(
    "--gpus",
    metavar="auto|N|IDS",
    help="GPUs to offer: auto (those nvidia-smi lists, within CUDA_VISIBLE_DEVICES if set), "
    "N (ids 0 to N-1), or device ids such as 0,2,5 (a single id with a comma: 3,). "
    "Default: none.",
)
@click.option(
    "--mem",
    type=Size(auto=True),
    help="Memory to offer: 512M, 64G (binary units), or auto (this host's, from "
    "/proc/meminfo). Default: not counted.",
)
@click.option(
    "--resource",
    "resources",
    type=Resource(),
    multiple=True,
    help="A named resource to offer, e.g. license=4 (repeat for several).",
)
@click.option(
    "--name",
    metavar="NAME",
    help="This worker's name, unique among live workers (default: host plus a short suffix); "
    "`goq workers`, `goq drain` and `goq resume` use it.",
)
@click.option(
    "--bind", is_flag=True, help="Pin each job to its own cores (as many as it asked cpus)."
)
@click.pass_obj
def work(
    obj: _Ctx,
    mode: str,
    cpus: int | str,
    gpus: str | None,
    mem: int | str | None,
    resources: tuple[tuple[str, int], ...],
    name: str | None,
    bind: bool,
) -> None:
    """Run a worker: take jobs from the server (forever, or oneshot: one job, then exit) and
    run at once every job that fits what it offers. By default it offers 1 cpu and nothing
    else, so it runs one job at a time.

    \b
    Examples:
      goq work                                   (one job at a time)
      goq work --cpus auto --mem auto --gpus auto --name node7
      goq work --cpus 64 --bind
      goq work --resource license=4
    """
    from goq_core.roles.worker import Worker

    def log(line: str) -> None:
        click.echo(line, err=True)

    named = resource_dict(resources)
    check_worker_name(name)
    try:
        offer = build_offer(cpus, gpus, mem, named)
        settings = obj.settings()
        worker = Worker(
            settings,
            obj.key(settings),
            oneshot=(mode == "oneshot"),
            log=log,
            offer=offer,
            name=name,
            bind=bind,
        )
        worker.install_signal_handlers()
        who = getattr(worker, "name", None) or worker.workerid
        click.echo(
            f"goq worker {who} offering {format_offer(offer, bind)}, "
            f"serving jobs from {settings.address}"
        )
        sys.stdout.flush()
        why = worker.run()
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(f"goq worker {who} exiting after {worker.jobs_done} job(s): {why}")


@cli.command(
    help="Show the server's counters, then up to COUNT (default 10) running and COUNT waiting "
    f"jobs. COUNT 0 shows the counters only; above {MAX_STAT_LIST}, the most one reply lists, "
    f"it is capped at {MAX_STAT_LIST} with a note on stderr."
)
@click.argument("count", type=click.IntRange(min=0, max=MAX_INT), default=10, required=False)
@click.pass_obj
def stat(obj: _Ctx, count: int) -> None:
    """Show the server's counters and up to COUNT running and waiting jobs (see help=)."""
    from goq_cli.report import format_status

    if count > MAX_STAT_LIST:
        click.echo(
            f"goq: note: listing at most {MAX_STAT_LIST} running and {MAX_STAT_LIST} waiting "
            "jobs (the most one reply holds)",
            err=True,
        )
        count = MAX_STAT_LIST
    try:
        with obj.client() as client:
            status = client.stat(count)
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(format_status(status, count))


_JOBID = click.IntRange(min=1, max=MAX_INT)


@cli.command()
@click.argument("jobid", type=_JOBID)
@click.pass_obj
def kill(obj: _Ctx, jobid: int) -> None:
    """Cancel job JOBID: a waiting job is removed, a running one is killed on its worker."""
    try:
        with obj.client() as client:
            reply = client.cancel(jobid)
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(reply.text or f"job {jobid} cancelled")


@cli.command()
@click.argument("jobid", type=_JOBID)
@click.pass_obj
def wait(obj: _Ctx, jobid: int) -> None:
    """Block until job JOBID has finished or been cancelled, then print how it ended."""
    from goq_cli.report import format_outcome

    try:
        with obj.client() as client:
            job = client.wait(jobid)
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(format_outcome(jobid, job))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON document.")
@click.pass_obj
def workers(obj: _Ctx, as_json: bool) -> None:
    """List the workers: name, host, state (idle, busy, draining, drained), free/offered cpus,
    GPUs, memory and named resources, running job ids, and when each was last heard from."""
    import json

    from goq_cli.report import format_workers

    try:
        with obj.client() as client:
            doc = client.workers_document()
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(json.dumps(doc, indent=2) if as_json else format_workers(doc["workers"]))


def _worker_op(obj: _Ctx, verb: str, done: str, name: str | None, every: bool) -> None:
    """`goq drain` and `goq resume`: exactly one of NAME and --all; print the server's answer."""
    if every and name is not None:
        raise click.UsageError("give a worker NAME or --all, not both")
    if not every and name is None:
        raise click.UsageError("give a worker NAME, or --all for every worker")
    try:
        with obj.client() as client:
            reply = getattr(client, verb)(None if every else name)
    except GoqError as exc:
        raise _fail(exc) from None
    default = f"{reply.count} worker(s) {done}" if every else f"worker {name} {done}"
    click.echo(reply.text or default)


_WORKER_NAME = click.argument("name", required=False)
_ALL = click.option("--all", "every", is_flag=True, help="Every worker the server knows.")


@cli.command()
@_WORKER_NAME
@_ALL
@click.pass_obj
def drain(obj: _Ctx, name: str | None, every: bool) -> None:
    """Give worker NAME (or, with --all, every worker) no new jobs; its running jobs finish.
    A drained worker stays connected and can be stopped without losing anything."""
    _worker_op(obj, "drain", "drained", name, every)


@cli.command()
@_WORKER_NAME
@_ALL
@click.pass_obj
def resume(obj: _Ctx, name: str | None, every: bool) -> None:
    """Let worker NAME (or, with --all, every worker) take new jobs again after `goq drain`."""
    _worker_op(obj, "resume", "resumed", name, every)


@cli.command()
@click.pass_obj
def shutdown(obj: _Ctx) -> None:
    """Stop the server cleanly (workers keep running and rejoin when a server is back)."""
    try:
        with obj.client() as client:
            client.shutdown()
            address = client.settings.address
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(f"server at {address} is shutting down")


@cli.command()
@click.pass_obj
def immolateworkers(obj: _Ctx) -> None:
    """Tell every worker to exit; running jobs are killed and requeued."""
    try:
        with obj.client() as client:
            reply = client.immolate()
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(reply.text)


@cli.command()
def version() -> None:
    """Print goq's version."""
    click.echo(f"goq {__version__}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Any error, usage errors included, is one line on stderr and exit status 1."""
    from goq_cli.entry import escape_unencodable_output

    escape_unencodable_output()
    try:
        cli.main(args=argv, prog_name="goq", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "goq"
        click.echo(f"goq: error: {exc.format_message()} (see `{where} --help`)", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"goq: error: {exc.format_message()}", err=True)
        sys.exit(1)
    except (click.Abort, KeyboardInterrupt):
        click.echo("goq: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
