"""The `goq` command line: one click function per command, each a thin layer over a role runtime.

Heavy modules (runtimes, plugins) are imported inside the commands so that `goq sub` starts fast.
Every user mistake ends as one line on stderr and exit status 1, never a traceback. Text that
the terminal's encoding cannot show (undecodable bytes in a command, say) prints escaped, as
\\xNN: see goq_cli.entry.escape_unencodable.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

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
from goq_cli.workflow import MAX_RETRIES, Array, Duration, JobIds, JobName
from goq_core import __version__
from goq_core.errors import GoqError
from goq_core.limits import MAX_INT, MAX_STAT_LIST

if TYPE_CHECKING:
    from goq_core.arrayspec import ArraySpec
    from goq_core.idranges import Range

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
@click.option(
    "--after",
    "after",
    type=JobIds(),
    multiple=True,
    help="Run only once all these jobs succeeded (exit status 0), e.g. --after 12,15 or "
    "--after 100-199. Until then the job is BLOCKED; if one of them fails, is cancelled or "
    "times out, this job is cancelled with that reason (and so are the jobs after it).",
)
@click.option(
    "--after-any",
    "after_any",
    type=JobIds(),
    multiple=True,
    help="Run once all these jobs ended, however they ended, e.g. --after-any 12.",
)
@click.option(
    "--array",
    type=Array(),
    help="Submit one job per index START, START+STEP, ... up to STOP, with consecutive ids; "
    "each sees its index in GOQ_ARRAY_INDEX. %MAX caps how many of them run at once. E.g. "
    "--array 1-1000, --array 0-99:10, --array 1-1000%50. Not with --file.",
)
@click.option(
    "--retries",
    type=Amount(0, MAX_RETRIES),
    metavar="N",
    help=f"Run the job again, up to N more times (0 to {MAX_RETRIES}), when it ends with a "
    "non-zero exit status or a signal goq did not send; the output file holds every attempt. "
    "E.g. --retries 3.",
)
@click.option(
    "--retry-delay",
    "retry_delay",
    type=Duration(allow_zero=True),
    metavar="SECS",
    help="Wait this long before each retry (needs --retries): seconds, or a duration like "
    "30s or 5m. E.g. --retries 3 --retry-delay 60.",
)
@click.option(
    "--time",
    "time_limit",
    type=Duration(),
    metavar="DURATION",
    help="Time limit of each attempt: at the limit the job gets SIGTERM, then SIGKILL after "
    "GOQ_KILL_GRACE seconds (default 10), and it ends TIMEOUT. E.g. --time 90s, 10m, 2h, 1d, "
    "1:30:00 (H:MM:SS), 30:00 (M:SS), or a number of seconds.",
)
@click.option(
    "--name",
    type=JobName(),
    help="Name the job (several jobs may share a name; up to 200 characters), shown by "
    "`goq stat` and used by `goq wait --name` and `goq kill --name`. E.g. --name align.",
)
@click.option(
    "--hold",
    is_flag=True,
    help="Submit the job HELD: it runs only once released, e.g. `goq sub --hold ./step.sh` "
    "then `goq release ID`.",
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
    after: tuple[list[Range], ...],
    after_any: tuple[list[Range], ...],
    array: ArraySpec | None,
    retries: int | None,
    retry_delay: int | None,
    time_limit: int | None,
    name: str | None,
    hold: bool,
    command: tuple[str, ...],
) -> None:
    """Submit a job: COMMAND runs with its ARGS exactly as given (their bytes, whatever the
    encoding), in this directory, with this environment. Output lands in ./o/out.NNNNN.
    Options go before COMMAND; with --file they apply to every line. By default a job needs
    1 cpu and nothing else (see docs/scheduling.md); docs/workflows.md shows pipelines,
    parameter sweeps and retries.

    \b
    Examples:
      goq sub ./analyze.sh input-17.csv
      goq sub --shell 'sort big.txt | uniq -c > counts.txt'
      goq sub --file jobs.txt        (one job per line; with --shell each line is a shell line)
      goq sub --gpus 2 --cpus 8 --mem 32G python train.py --epochs 10
      goq sub --resource license=1 --priority 5 ./simulate.sh
      goq sub --name align ./align.sh sample1.fq
      goq sub --after 12,15 ./merge.sh          (once jobs 12 and 15 succeeded)
      goq sub --array 1-1000%50 --shell './run.sh $GOQ_ARRAY_INDEX'
      goq sub --retries 3 --retry-delay 60 --time 2h ./flaky-download.sh
      goq sub --hold ./step.sh                  (then: goq release ID)
    """
    from goq_cli.jobspec import decode_lines, jobs_from_lines, make_job
    from goq_cli.workflow import Workflow

    if jobs_file is not None and command:
        raise click.UsageError("give either a command or --file, not both")
    if array is not None and jobs_file is not None:
        raise click.UsageError(
            "--array repeats one command: it cannot be combined with --file "
            "(use $GOQ_ARRAY_INDEX in the command instead)"
        )
    if command and command[0].startswith("-") and len(command[0]) > 1:
        _unknown_option(command[0])
    request = Request(cpus, mem, gpus, resource_dict(resources), priority)
    flow = Workflow.from_options(after, after_any, retries, retry_delay, time_limit, name, hold)
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
        flow.apply(jobs)
        with obj.client() as client:
            if array is not None:
                ranges = [client.submit_array(jobs[0], array)]
            else:
                ranges = client.submit_many(jobs)
            address = client.settings.address
    except GoqError as exc:
        raise _fail(exc) from None
    n = sum(count for _, count in ranges)
    if array is not None:
        first = ranges[0][0]
        ids = f"job {first}" if n == 1 else f"jobs {first}..{first + n - 1}"
        click.echo(f"submitted {ids} (array {array.describe()}) to server at {address}")
    elif n == 1:
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


_IDS = click.argument("ids", nargs=-1, type=JobIds(), metavar="[ID...]")


def _targets(ids: tuple[list[Range], ...], name: str | None, every: bool) -> list[Range]:
    """The jobs `goq wait` and `goq kill` act on: exactly one of IDs, --name and --all; the
    merged id ranges given (empty for --name and --all, which the server resolves)."""
    from goq_cli.workflow import merge_ids

    if sum((bool(ids), name is not None, every)) != 1:
        raise click.UsageError("give job IDs, --name NAME or --all (exactly one of them)")
    return merge_ids(ids)


def _single(ids: tuple[list[Range], ...], ranges: list[Range]) -> int | None:
    """The one job id of `goq kill 12` / `goq wait 12` (the original single-job forms)."""
    if len(ids) == 1 and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return ranges[0][0]
    return None


def _select(client, name: str | None) -> list[Range]:
    """The ids of --name NAME (None: --all); GoqError when no job has that name."""
    ranges = client.select(name)
    if not ranges and name is not None:
        raise GoqError(f"no job named {name!r} is waiting, running or recently ended")
    return ranges


@cli.command()
@_IDS
@click.option("--name", type=JobName(), help="Every job of this name, e.g. --name align.")
@click.option("--all", "every", is_flag=True, help="Every job that has not ended.")
@click.option(
    "--yes", is_flag=True, help="With --all: cancel without asking (needed on a terminal)."
)
@click.pass_obj
def kill(obj: _Ctx, ids: tuple[list[Range], ...], name: str | None, every: bool, yes: bool) -> None:
    """Cancel jobs: a waiting, blocked or held job is removed, a running one is killed on its
    worker (its whole process tree). IDs are job ids and ranges; jobs after a cancelled one
    (--after) are cancelled too. --all asks for --yes when stdin is a terminal.

    \b
    Examples:
      goq kill 12
      goq kill 12 15 100-199
      goq kill --name align
      goq kill --all --yes
    """
    ranges = _targets(ids, name, every)
    if every and not yes and sys.stdin is not None and sys.stdin.isatty():
        raise click.UsageError("--all cancels every job that has not ended: add --yes to do it")
    jobid = _single(ids, ranges)
    try:
        with obj.client() as client:
            if jobid is not None:
                reply = client.cancel(jobid)
                click.echo(reply.text or f"job {jobid} cancelled")
                return
            if not ranges:
                ranges = _select(client, name)
            if not ranges:
                click.echo("no job to cancel: none is waiting, blocked, held or running")
                return
            reply = client.cancel_many(ranges)
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(reply.text or f"{reply.count} job(s) cancelled")


@cli.command()
@_IDS
@click.option("--name", type=JobName(), help="Every job of this name, e.g. --name align.")
@click.option("--all", "every", is_flag=True, help="Every job that has not ended.")
@click.pass_obj
def wait(obj: _Ctx, ids: tuple[list[Range], ...], name: str | None, every: bool) -> None:
    """Block until jobs have ended, printing one line per job as each ends: finished with its
    exit status, failed, cancelled (and why), or timed out. IDs are job ids and ranges. On a
    terminal, waiting for several jobs shows a live "N of M done" line on stderr.

    \b
    Exit status:
      0  every job succeeded (finished with exit status 0)
      2  some job did not (failed, killed by a signal, cancelled, timed out)
      1  an error: an unknown job id, no server, ...

    A single ID counts too: `goq wait 12` exits 2 when job 12 failed (the original goq exited
    0 whatever the outcome; see README).

    \b
    Examples:
      goq wait 12
      goq wait 12 15 100-199 && echo all succeeded
      goq wait --name align
      goq wait --all
    """
    from goq_cli.report import format_outcome
    from goq_cli.workflow import Progress, wait_exit_code
    from goq_core.idranges import count

    ranges = _targets(ids, name, every)
    jobid = _single(ids, ranges)
    if jobid is not None:
        try:
            with obj.client() as client:
                job = client.wait(jobid)
        except GoqError as exc:
            raise _fail(exc) from None
        click.echo(format_outcome(jobid, job))
        sys.exit(wait_exit_code([job]))
    outcomes = []
    progress: Progress | None = None

    def ended(jobid: int, job) -> None:
        assert progress is not None
        progress.clear()
        click.echo(format_outcome(jobid, job))
        outcomes.append(job)
        progress.show(len(outcomes))

    try:
        with obj.client() as client:
            if not ranges:
                ranges = _select(client, name)
            if not ranges:
                click.echo("goq: note: no job to wait for (every job has ended)", err=True)
                return
            progress = Progress(count(ranges))
            progress.show(0)
            client.wait_many(ranges, ended)
    except GoqError as exc:
        raise _fail(exc) from None
    finally:
        if progress is not None:
            progress.clear()
    sys.exit(wait_exit_code(outcomes))


def _jobs_op(obj: _Ctx, verb: str, done: str, ids: tuple[list[Range], ...]) -> None:
    """`goq hold` and `goq release`: print what the server says it did."""
    from goq_cli.workflow import merge_ids

    try:
        with obj.client() as client:
            reply = getattr(client, verb)(merge_ids(ids))
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(reply.text or f"{reply.count} job(s) {done}")


_IDS_REQUIRED = click.argument("ids", nargs=-1, required=True, type=JobIds(), metavar="ID...")


@cli.command()
@_IDS_REQUIRED
@click.pass_obj
def hold(obj: _Ctx, ids: tuple[list[Range], ...]) -> None:
    """Hold waiting jobs: they stay in the queue but do not run until `goq release`. IDs are
    job ids and ranges; jobs already running or ended are left as they are (the reply says
    which).

    \b
    Examples:
      goq hold 12
      goq hold 100-199 250
    """
    _jobs_op(obj, "hold", "held", ids)


@cli.command()
@_IDS_REQUIRED
@click.pass_obj
def release(obj: _Ctx, ids: tuple[list[Range], ...]) -> None:
    """Release held jobs (held by `goq hold` or submitted with `goq sub --hold`): they run as
    any waiting job. IDs are job ids and ranges.

    \b
    Examples:
      goq release 12
      goq release 100-199 250
    """
    _jobs_op(obj, "release", "released", ids)


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
