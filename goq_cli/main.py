"""The `goq` command line: one click function per command, each a thin layer over a role runtime.

Heavy modules (runtimes, plugins) are imported inside the commands so that `goq sub` starts fast.
Every user mistake ends as one line on stderr and exit status 1, never a traceback (with
`--json` too: the document goes to stdout only on success). Text that the terminal's encoding
cannot show (undecodable bytes in a command, say) prints escaped, as \\xNN: see
goq_cli.entry.escape_unencodable.

Shell completion is click's (`_GOQ_COMPLETE=bash_source goq`, README): commands, options, job
states, and for `kill`, `wait`, `show`, `hold` and `release` the ids of the server's live jobs
(_complete_ids: bounded, silent, at most about a second).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

import click

from goq_cli.plugin_commands import PluginGroup
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
from goq_cli.workflow import (
    MAX_RETRIES,
    Array,
    Duration,
    JobId,
    JobIds,
    JobName,
    Since,
    States,
)
from goq_cli.workflow import STATES as _STATE_NAMES
from goq_core import __version__
from goq_core.errors import GoqError
from goq_core.jobquery import DEFAULT_LIMIT, MAX_LIST
from goq_core.limits import MAX_INT, MAX_STAT_LIST

DAY_MS = 86_400_000  # `goq jobs` lists jobs that ended this recently unless --since says

if TYPE_CHECKING:
    from goq_core.arrayspec import ArraySpec
    from goq_core.idranges import Range

_SUB_CONTEXT = {"ignore_unknown_options": True, "allow_interspersed_args": False}
_JSON = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document instead of text (docs/json.md describes every field).",
)
COMPLETE_IDS = 200  # at most this many job ids offered by shell completion
COMPLETE_WAIT_S = 0.8  # and no longer spent asking the server for them


class _Ctx:
    """What the global options say, and the settings and key they lead to (read lazily)."""

    def __init__(
        self,
        transport: str | None,
        codec: str | None,
        cipher: str | None,
        cred: str | None = None,
    ) -> None:
        self.overrides = {"transport": transport, "codec": codec, "cipher": cipher, "cred": cred}

    def settings(self):
        from goq_core.config import load_settings

        return load_settings(os.environ, self.overrides)

    def key(self, settings):
        """The secret this command seals with: its credential, else the root secret."""
        from goq_core.credentials import load_secret

        return load_secret(settings)

    def root_key(self, settings) -> bytes:
        """The cluster's root secret (the server's, and `goq cred issue`'s)."""
        from goq_core.keys import load_key

        return load_key(settings.home)

    def client(self):
        from goq_core.plugins import Plugins
        from goq_core.roles.client import Client

        settings = self.settings()
        return Client(settings, self.key(settings), Plugins(lazy=True))


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _emit(doc: dict) -> None:
    from goq_cli.jsonout import emit

    emit(doc)


def _live_ids(ctx: click.Context) -> list[Range]:
    """The ids of the server's live jobs, for shell completion: [] when anything goes wrong
    or takes longer than COMPLETE_WAIT_S (completion must never print errors nor hang)."""
    import io
    import threading

    params = ctx.find_root().params
    found: list[list[Range]] = []

    def ask() -> None:
        try:
            obj = _Ctx(params.get("transport"), params.get("codec"), params.get("cipher"))
            with obj.client() as client:
                client.timeout = min(client.timeout, COMPLETE_WAIT_S)
                found.append(client.select(None))
        except Exception:  # noqa: BLE001 (no server, no GOQ_HOME, no key: offer nothing)
            pass

    stderr, sys.stderr = sys.stderr, io.StringIO()  # nothing may reach the shell's screen
    try:
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        asker.join(COMPLETE_WAIT_S + 0.2)
    finally:
        sys.stderr = stderr
    return found[0] if found else []


def _complete_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of job ids: live jobs' ids that start with what is typed (after the
    last comma or dash of a list such as 12,15 or 100-1...)."""
    from click.shell_completion import CompletionItem

    from goq_cli.workflow import ids_with_prefix

    cut = max(incomplete.rfind(","), incomplete.rfind("-")) + 1
    head, word = incomplete[:cut], incomplete[cut:]
    if word and not (word.isascii() and word.isdigit()):
        return []
    ranges = _live_ids(ctx)
    return [CompletionItem(f"{head}{i}") for i in ids_with_prefix(ranges, word, COMPLETE_IDS)]


@click.group(
    cls=PluginGroup,  # plugins' commands (goq_register_commands), listed apart in --help
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="GOQ_HOME must be set (goq keeps its key, settings and state in $GOQ_HOME/.goq). "
    "Run `goq COMMAND --help` for each command.",
)
@click.option(
    "--transport", metavar="NAME", help="Transport plugin (nng, zmq); overrides GOQ_TRANSPORT."
)
@click.option("--codec", metavar="NAME", help="Codec plugin (raw, capnp); overrides GOQ_CODEC.")
@click.option("--cipher", metavar="NAME", help="Cipher plugin (aes-gcm); overrides GOQ_CIPHER.")
@click.option(
    "--cred",
    metavar="FILE",
    help="Credential file to act with; overrides GOQ_CRED (default: $GOQ_HOME/.goq/cred, "
    "else the cluster key).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    transport: str | None,
    codec: str | None,
    cipher: str | None,
    cred: str | None,
) -> None:
    """goq: a fast, secure job queue. One server (`goq serve`), many workers (`goq work`),
    submit from anywhere (`goq sub CMD ARGS...`)."""
    ctx.obj = _Ctx(transport, codec, cipher, cred)


@cli.command()
@click.pass_obj
def init(obj: _Ctx) -> None:
    """Create $GOQ_HOME/.goq with the cluster's root secret (key), an admin credential (cred)
    and the settings (from GOQ_* variables)."""
    import time

    from goq_core import credentials
    from goq_core.config import save_settings, settings_dir
    from goq_core.keys import create_key, load_key
    from goq_core.plugins import Plugins

    try:
        settings = obj.settings()
        key_file = create_key(settings.home)
        cred_file = credentials.default_path(settings.home)
        admin = credentials.issue(load_key(settings.home), "admin", "admin", time.time_ns())
        credentials.write(cred_file, admin)
        credentials.record_issued(settings.home, admin.acting, cred_file)
        save_settings(settings)
        Plugins().store("sqlite", settings_dir(settings.home), create=True).close()
    except GoqError as exc:
        raise _fail(exc) from None
    click.echo(
        f"goq initialized: root secret in {key_file}, an admin credential in {cred_file}; "
        f"the server will listen on {settings.address}."
    )
    click.echo(
        "Give other hosts credentials, not the root secret: `goq cred issue --role work "
        "--name HOST` and `--role submit --name USER` (docs/deployment.md). A host that holds "
        "a copy of all of $GOQ_HOME/.goq acts as admin."
    )


@cli.command()
@click.option("--allow-insecure", is_flag=True, help="Permit the `none` cipher (tests only).")
@click.pass_obj
def serve(obj: _Ctx, allow_insecure: bool) -> None:
    """Run the server until `goq shutdown`, SIGTERM or Ctrl-C."""
    from goq_core.roles.server import Server, ServerOptions

    try:
        settings = obj.settings()
        server = Server(settings, obj.root_key(settings), options=ServerOptions(allow_insecure))
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
@_JSON
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
    as_json: bool,
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
    try:
        flow = Workflow.from_options(after, after_any, retries, retry_delay, time_limit, name, hold)
    except ValueError as exc:  # --retry-delay without --retries, too many dependencies
        raise click.UsageError(str(exc)) from None
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
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.submitted(ranges, address, array.describe() if array else None))
        return
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
    if getattr(worker, "denied", False):  # the server refused its credential
        sys.exit(1)


@cli.command(
    help="Show the server's counters, then up to COUNT (default 10) running and COUNT waiting "
    f"jobs. COUNT 0 shows the counters only; above {MAX_STAT_LIST}, the most one reply lists, "
    f"it is capped at {MAX_STAT_LIST} with a note on stderr."
)
@click.argument("count", type=click.IntRange(min=0, max=MAX_INT), default=10, required=False)
@click.option("--mine", is_flag=True, help="List only the jobs of this credential's principal.")
@_JSON
@click.pass_obj
def stat(obj: _Ctx, count: int, mine: bool, as_json: bool) -> None:
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
            if mine:  # the counters stay the server's; the jobs listed, only ours
                from goq_core.principals import ROOT

                owner = getattr(client, "principal", ROOT).name
                status.jobs = [j for j in status.jobs if j.owner == owner]
    except GoqError as exc:
        raise _fail(exc) from None
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.status(status))
        return
    click.echo(format_status(status, count))


_IDS = click.argument(
    "ids", nargs=-1, type=JobIds(), metavar="[ID...]", shell_complete=_complete_ids
)


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
@_JSON
@click.pass_obj
def kill(
    obj: _Ctx,
    ids: tuple[list[Range], ...],
    name: str | None,
    every: bool,
    yes: bool,
    as_json: bool,
) -> None:
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
                text = reply.text or f"job {jobid} cancelled"
                _said("cancelled", reply.count, text, as_json)  # 0: it had already ended
                return
            if not ranges:
                ranges = _select(client, name)
            if not ranges:
                text = "no job to cancel: none is waiting, blocked, held or running"
                _said("cancelled", 0, text, as_json)
                return
            reply = client.cancel_many(ranges)
    except GoqError as exc:
        raise _fail(exc) from None
    _said("cancelled", reply.count, reply.text or f"{reply.count} job(s) cancelled", as_json)


def _said(kind: str, count: int, text: str, as_json: bool) -> None:
    """What kill, hold, release and forget print: the server's sentence, or its document."""
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.acted(kind, count, text))
    else:
        click.echo(text)


@cli.command()
@_IDS
@click.option("--name", type=JobName(), help="Every job of this name, e.g. --name align.")
@click.option("--all", "every", is_flag=True, help="Every job that has not ended.")
@_JSON
@click.pass_obj
def wait(
    obj: _Ctx, ids: tuple[list[Range], ...], name: str | None, every: bool, as_json: bool
) -> None:
    """Block until jobs have ended, printing one line per job as each ends: finished with its
    exit status, failed, cancelled (and why), or timed out. IDs are job ids and ranges. On a
    terminal, waiting for several jobs shows a live "N of M done" line on stderr.

    \b
    Exit status:
      0  every job succeeded (finished with exit status 0)
      2  some job did not (failed, killed by a signal, cancelled, timed out)
      1  an error: an unknown job id, no server, ...

    A single ID counts too: `goq wait 12` exits 2 when job 12 failed (the original goq exited
    0 whatever the outcome; see README). With --json, one document lists every job once all
    have ended (same exit status).

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
                if as_json:
                    outcome = _recorded(client, {jobid: job})
        except GoqError as exc:
            raise _fail(exc) from None
        if as_json:
            _emit_ended(outcome)
        else:
            click.echo(format_outcome(jobid, job))
        sys.exit(wait_exit_code([job]))
    outcomes: dict[int, object] = {}
    progress: Progress | None = None

    def ended(jobid: int, job) -> None:
        assert progress is not None
        progress.clear()
        if not as_json:
            click.echo(format_outcome(jobid, job))
        outcomes[jobid] = job
        progress.show(len(outcomes))

    try:
        with obj.client() as client:
            if not ranges:
                ranges = _select(client, name)
            if not ranges:
                click.echo("goq: note: no job to wait for (every job has ended)", err=True)
                if as_json:
                    _emit_ended({})
                return
            progress = Progress(count(ranges))
            progress.show(0)
            client.wait_many(ranges, ended)
            if as_json:
                progress.clear()
                records = _recorded(client, outcomes)
    except GoqError as exc:
        raise _fail(exc) from None
    finally:
        if progress is not None:
            progress.clear()
    code = wait_exit_code(outcomes.values())
    if as_json:
        _emit_ended(records)
    sys.exit(code)


_SHOW_MISSING = 100  # at most this many ended jobs without a record are asked for by SHOW


def _recorded(client, outcomes: dict) -> dict:
    """`outcomes` (id: record or None) with the records the wait replies lacked fetched
    by SHOW where the server has them (a few at most); None where it has not."""
    missing = [jobid for jobid, job in outcomes.items() if job is None][:_SHOW_MISSING]
    filled = dict(outcomes)
    for jobid in missing:
        with contextlib.suppress(GoqError):  # gone from the history too: how is not known
            filled[jobid] = client.show(jobid)[0]
    return filled


def _emit_ended(outcomes: dict) -> None:
    from goq_cli import jsonout
    from goq_cli.workflow import wait_exit_code

    _emit(jsonout.ended(outcomes, wait_exit_code(outcomes.values()) == 0))


def _jobs_op(obj: _Ctx, verb: str, done: str, ids: tuple[list[Range], ...], as_json: bool) -> None:
    """`goq hold` and `goq release`: print what the server says it did."""
    from goq_cli.workflow import merge_ids

    try:
        with obj.client() as client:
            reply = getattr(client, verb)(merge_ids(ids))
    except GoqError as exc:
        raise _fail(exc) from None
    _said(done, reply.count, reply.text or f"{reply.count} job(s) {done}", as_json)


_IDS_REQUIRED = click.argument(
    "ids",
    nargs=-1,
    required=True,
    type=JobIds(),
    metavar="ID...",
    shell_complete=_complete_ids,
)


@cli.command()
@_IDS_REQUIRED
@_JSON
@click.pass_obj
def hold(obj: _Ctx, ids: tuple[list[Range], ...], as_json: bool) -> None:
    """Hold waiting jobs: they stay in the queue but do not run until `goq release`. IDs are
    job ids and ranges; jobs already running or ended are left as they are (the reply says
    which).

    \b
    Examples:
      goq hold 12
      goq hold 100-199 250
    """
    _jobs_op(obj, "hold", "held", ids, as_json)


@cli.command()
@_IDS_REQUIRED
@_JSON
@click.pass_obj
def release(obj: _Ctx, ids: tuple[list[Range], ...], as_json: bool) -> None:
    """Release held jobs (held by `goq hold` or submitted with `goq sub --hold`): they run as
    any waiting job. IDs are job ids and ranges.

    \b
    Examples:
      goq release 12
      goq release 100-199 250
    """
    _jobs_op(obj, "release", "released", ids, as_json)


# ----------------------------------------------------------------------------- history


@cli.command()
@click.option(
    "--state",
    "states",
    type=States(),
    multiple=True,
    help="Only jobs in these states: waiting, blocked, held, running, finished, failed, "
    "cancelled, timeout, or all (repeat or comma-separate: --state failed,timeout). "
    "Default: all.",
)
@click.option("--name", type=JobName(), help="Only jobs of this name.")
@click.option(
    "--since",
    type=Since(),
    help="Ended jobs only if they ended this recently: 2h, 7d, 30d, or all. Default: 24h. "
    "Jobs not ended are always listed.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST),
    metavar="N",
    default=DEFAULT_LIMIT,
    show_default=True,
    help=f"At most this many jobs (up to {MAX_LIST:,}).",
)
@click.option(
    "--before",
    type=JobId(),
    metavar="ID",
    help="Only jobs with ids below ID: the next page after a table whose last id is ID.",
)
@click.option("--mine", is_flag=True, help="Only the jobs of this credential's principal.")
@_JSON
@click.pass_obj
def jobs(
    obj: _Ctx,
    states: tuple[frozenset[str], ...],
    name: str | None,
    since: int | None,
    limit: int,
    before: int | None,
    mine: bool,
    as_json: bool,
) -> None:
    """List jobs, newest first, from the server's memory and its history: id, name, owner,
    state, exit status (or signal), command, worker, when submitted, how long it waited and ran.
    By default every job not ended, and those that ended in the last 24 hours, 50 at most.

    \b
    Examples:
      goq jobs
      goq jobs --state failed,timeout --since 7d
      goq jobs --name align --limit 500
      goq jobs --mine --state failed
      goq jobs --state running --json
    """
    import time

    from goq_cli.report import format_jobs
    from goq_core.jobquery import JobQuery

    wanted: frozenset[str] = frozenset().union(*states) if states else frozenset(_STATE_NAMES)
    since_ms = DAY_MS if since is None else since
    since_ns = max(0, time.time_ns() - since_ms * 1_000_000) if since_ms else 0
    query = JobQuery(wanted, name, since_ns, before, limit)
    try:
        with obj.client() as client:
            if mine:  # the server keeps only this principal's jobs
                from dataclasses import replace

                from goq_core.principals import ROOT

                owner = getattr(client, "principal", ROOT).name
                query = replace(query, owner=owner)
            found = client.jobs(query)
    except GoqError as exc:
        raise _fail(exc) from None
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.jobs(found))
    elif not found:
        click.echo(f"no jobs found {_query_words(query, since_ms)}")
    else:
        click.echo(format_jobs(found))


def _query_words(query, since_ms: int) -> str:
    """What a query asked, in words, for `goq jobs` finding nothing."""
    from goq_cli.report import format_limit

    if query.states == frozenset(_STATE_NAMES):
        words = "in any state"
    else:
        words = "that are " + " or ".join(s for s in _STATE_NAMES if s in query.states)
    if query.name is not None:
        words += f" named {query.name!r}"
    if query.owner is not None:
        words += f" of {query.owner}"
    if query.before is not None:
        words += f" with ids below {query.before}"
    if query.ended_states:
        ago = f"in the last {format_limit(since_ms)}" if since_ms else "at any time"
        words += f" (ended ones: ended {ago}; see --since)"
    return words


@cli.command()
@click.argument("jobid", type=JobId(), metavar="ID", shell_complete=_complete_ids)
@click.option("--env", "show_env", is_flag=True, help="List the job's environment too.")
@_JSON
@click.pass_obj
def show(obj: _Ctx, jobid: int, show_env: bool, as_json: bool) -> None:
    """Show everything about one job, from the server's memory or its history: its command,
    directory, name, owner, state and why, exit status or signal, what it asked for and was given,
    priority, dependencies, array index, retries, time limit, times (submitted, started,
    ended; waited, ran), output file and size, its environment, and each attempt (worker,
    host, pid, start, end, exit, max RSS, user and system CPU time).

    \b
    Examples:
      goq show 12
      goq show 12 --env
      goq show 12 --json
    """
    from goq_cli.report import format_show

    try:
        with obj.client() as client:
            job, attempts, output_path = client.show(jobid)
    except GoqError as exc:
        raise _fail(exc) from None
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.job(job, attempts, output_path))
    else:
        from goq_core.kernel.access import may_see_env

        hidden = not job.env and not may_see_env(client.principal, job)
        click.echo(format_show(job, attempts, output_path, show_env, env_hidden=hidden))


@cli.command()
@click.argument("ids", nargs=-1, type=JobIds(), metavar="[ID...]")
@click.option(
    "--before",
    type=Duration(),
    metavar="DURATION",
    help="Every job that ended more than this long ago: 30d, 12h, ...",
)
@click.option(
    "--yes", is_flag=True, help="With --before: forget without asking (needed on a terminal)."
)
@_JSON
@click.pass_obj
def forget(
    obj: _Ctx,
    ids: tuple[list[Range], ...],
    before: int | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove ended jobs from the history (`goq jobs` and `goq show` no longer know them);
    a job that has not ended is never removed. IDs are job ids and ranges. --before asks for
    --yes when stdin is a terminal. Their output files stay where they are.

    \b
    Examples:
      goq forget 12 100-199
      goq forget --before 30d --yes
    """
    import time

    from goq_cli.workflow import merge_ids

    if bool(ids) == (before is not None):
        raise click.UsageError("give job IDs or --before DURATION (exactly one of them)")
    if before is not None and not yes and sys.stdin is not None and sys.stdin.isatty():
        raise click.UsageError(
            "--before forgets every job that ended before then: add --yes to do it"
        )
    try:
        with obj.client() as client:
            if before is not None:
                removed = client.forget(before_ns=max(1, time.time_ns() - before * 1_000_000))
            else:
                ranges = merge_ids(ids)
                removed = client.forget(ranges)
    except GoqError as exc:
        raise _fail(exc) from None
    text = f"forgot {removed} ended job(s)"
    if before is None:
        from goq_core.idranges import count

        rest = count(ranges) - removed
        if rest > 0:
            text += f"; {rest} of those named are not ended, not in the history, or never were"
    _said("forgotten", removed, text, as_json)


@cli.command()
@_JSON
@click.pass_obj
def workers(obj: _Ctx, as_json: bool) -> None:
    """List the workers: name, host, state (idle, busy, draining, drained), free/offered cpus,
    GPUs, memory and named resources, running job ids, and when each was last heard from."""
    from goq_cli.report import format_workers

    try:
        with obj.client() as client:
            doc = client.workers_document()
    except GoqError as exc:
        raise _fail(exc) from None
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.workers(doc))
    else:
        click.echo(format_workers(doc["workers"]))


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
@_JSON
def version(as_json: bool) -> None:
    """Print goq's version."""
    if as_json:
        from goq_cli import jsonout

        _emit(jsonout.version(__version__))
    else:
        click.echo(f"goq {__version__}")


def _add_cred_commands() -> None:
    from goq_cli.cred import cred

    cli.add_command(cred)


_add_cred_commands()


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
