"""The Python API (goq_core.api, issue 12 item 6) on real processes: a server and two workers
(`--cpus 2` each) on 127.0.0.1; the parameter sweep of docs/python-api.md runs as written; each
method, its options and its errors; `import goq_core` stays cheap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from goq_core import Client, GoqError, InvalidValue, JobRecord, WaitTimeout
from goq_core.config import Settings, save_settings
from goq_core.errors import ConfigError
from goq_core.keys import create_key
from tests.cluster import Cluster, initialised, wait_for
from tests.support import free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"
WAIT_S = 60  # the longest any wait here may take


def _doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC.read_text(), re.M | re.S)


# ----------------------------------------------------------------------------- no server


def test_import_goq_core_imports_no_plugin_library_and_client_comes_lazily() -> None:
    code = (
        "import sys\n"
        "import goq_core\n"
        "libs = ('click', 'goq_codecs', 'goq_transports', 'zmq', 'pynng', 'capnp', 'Crypto',\n"
        "        'cryptography')\n"
        "heavy = (*libs, 'pluggy', 'goq_core.api', 'goq_core.roles', 'goq_cli')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
        "from goq_core import Client, JobRecord\n"
        "print(sorted(m for m in sys.modules if m.startswith(libs)))\n"
        "import goq_core.api\n"
        "print(Client is goq_core.api.Client, 'Client' in dir(goq_core))\n"
        "try:\n"
        "    goq_core.NoSuchThing\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.splitlines() == [
        "[]",
        "[]",  # neither click nor a codec, transport or cipher library until a Client is made
        "True True",
        "module 'goq_core' has no attribute 'NoSuchThing'",
    ], done.stdout + done.stderr


def test_the_api_and_its_option_checks_import_neither_click_nor_goq_cli() -> None:
    # goq_core owns the option checks (goq_core.options); goq_cli wraps them for click
    code = (
        "import sys\n"
        "from goq_core import Client\n"
        "c = Client.__init__\n"
        "import goq_core.api\n"
        "import goq_core.options\n"
        "from goq_core.api import InvalidValue, _options\n"
        "from goq_core.messages import Job\n"
        "job = Job(cmd='true')\n"
        "_options(dict(cpus='2', gpus=1, mem='1G', resources={'lic': 2}, priority=-3,\n"
        "              name='a', after='1-3', after_any=[7], retries=2, retry_delay='1m',\n"
        "              time=90, hold=True)).apply([job])\n"
        "print(job.cpus, job.gpus, job.mem, job.resources, job.priority, job.name, job.after,\n"
        "      job.after_any, job.retries, job.retry_delay_ms, job.time_limit_ms, job.state.name)\n"
        "try:\n"
        "    _options({'resources': {'cpus': 1}})\n"
        "except InvalidValue as exc:\n"
        "    print(exc)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('click', 'goq_cli'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.splitlines() == [
        "2 1 1073741824 {'lic': 2} -3 a [1, 2, 3] [7] 2 60000 90000 HELD",
        "invalid value for resources: cpus has its own option: use --cpus",
        "[]",
    ], done.stdout + done.stderr


# the CLI's lines for bad values (test_bad_option_values_are_invalid_values_with_the_cli_line
# checks `goq sub` says the same, on a real server)
BAD_VALUES = [
    ({"cpus": 0}, "invalid value for cpus: 0 is too small: at least 1"),
    ({"cpus": "2.5"}, "invalid value for cpus: '2.5' is not a whole number"),
    ({"cpus": "9" * 40}, "invalid value for cpus: 99999999999999999999... is out of range"),
    ({"gpus": 1 << 31}, "invalid value for gpus: 2147483648 is too large: at most 2,147,483,647"),
    ({"mem": "4Q"}, "invalid value for mem: bad size '4Q'"),
    ({"mem": -1}, "invalid value for mem: -1 is negative"),
    ({"mem": "4194305T"}, "invalid value for mem: '4194305T' is too large: at most 4,611,686,"),
    ({"priority": -(1 << 31) - 1}, "invalid value for priority: -2147483649 is too small"),
    (
        {"resources": {"lic": 0}},
        "invalid value for resources: lic=0: the amount must be at least 1",
    ),
    (
        {"resources": {"lic": 1 << 31}},
        "invalid value for resources: bad resource 'lic=2147483648': bad amount of lic",
    ),
    ({"name": ""}, "invalid value for name: a job name cannot be empty"),
    ({"name": "x" * 201}, "invalid value for name: a job name has at most 200 characters, not 201"),
    ({"retries": -1}, "invalid value for retries: -1 is too small: at least 0"),
    ({"time": "soon"}, "invalid value for time: 'soon' is not a duration: use e.g. 90s"),
    ({"time": "400d"}, "invalid value for time: '400d' is too long: at most 365 days (365d)"),
    ({"retries": 1, "retry_delay": -1}, "invalid value for retry_delay: '-1' is not a duration"),
    ({"after": "1-200000"}, "--after and --after-any name 200,000 jobs; a job may depend on at"),
]


@pytest.mark.parametrize("options,line", BAD_VALUES, ids=[repr(b[0])[:40] for b in BAD_VALUES])
def test_bad_option_values_are_checked_without_a_server(options: dict, line: str) -> None:
    from goq_core.api import _options

    with pytest.raises(InvalidValue) as raised:
        _options(options)
    assert str(raised.value).startswith(line) and "\n" not in str(raised.value)


def test_the_page_has_one_python_block_and_says_what_it_prints() -> None:
    assert len(_doc_blocks("python")) == 1
    assert len(_doc_blocks("text")) == 1


def _home(root: Path, port: int = 1776) -> Path:
    """A GOQ_HOME with a key and a settings file, as `goq init` makes them (in this process)."""
    home = root / "home"
    create_key(str(home))
    save_settings(Settings(home=str(home), jserv_ip="127.0.0.1", jserv_port=port))
    return home


def test_client_settings_are_checked_as_the_cli_checks_them(tmp_path: Path) -> None:
    home = _home(tmp_path)
    with pytest.raises(TypeError, match="unexpected keyword argument 'prot'"):
        Client(home=home, prot=1)
    with pytest.raises(ConfigError, match=r"GOQ_JSERV_PORT='0' \(from the port= argument\)"):
        Client(home=home, port=0)
    goq = Client(home=home, address="tcp://127.0.0.2:4321", codec="capnp")
    assert goq.address == "tcp://127.0.0.2:4321" and goq.settings.codec == "capnp"
    assert repr(goq) == "<goq Client tcp://127.0.0.2:4321 zmq/capnp/aes-gcm>"
    assert Client(home=home).address == "tcp://127.0.0.1:1776"  # the settings file's
    with pytest.raises(InvalidValue, match="expected tcp://HOST:PORT"):
        Client(home=home, address="nowhere")
    with pytest.raises(ConfigError, match="no credential in .*goq cred issue"):
        Client(home=tmp_path / "elsewhere")


def test_from_env_needs_goq_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOQ_HOME", raising=False)
    with pytest.raises(ConfigError, match="GOQ_HOME is not set"):
        Client.from_env()


def test_no_server_is_one_line(tmp_path: Path) -> None:
    goq = Client(home=_home(tmp_path, free_port()), sendtimeout_ms=200)
    with goq, pytest.raises(GoqError, match=r"^no reply from the goq server at tcp://"):
        goq.stat()


def test_ids_in_several_ranges_come_back_as_a_list(tmp_path: Path) -> None:
    with Client(home=_home(tmp_path)) as goq:
        goq._client.submit_many = lambda jobs: [(5, 2), (10, 1)]  # another submitter between
        assert goq.submit_many([["true"], ["true"], ["true"]]) == [5, 6, 10]
        assert goq.submit_many([]) == range(0)


# ----------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("api")
    with initialised(root, server=True, heartbeat=1.0) as c:
        c.spawn("work", "forever", "--cpus", "2", log="worker1.log")
        c.spawn("work", "forever", "--cpus", "2", log="worker2.log")
        wait_for(lambda: c.stat()["waitingWorkers"] == 2, 20, "both workers to ask")
        yield c


@pytest.fixture
def goq(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # jobs run, and write o/out.NNNNN, here
    with Client(home=cluster.home) as client:
        yield client


def _out(jobid: int, where: Path) -> str:
    return (where / "o" / f"out.{jobid:05d}").read_text()


@pytest.mark.slow
def test_the_parameter_sweep_of_the_page_runs_as_written(cluster: Cluster, tmp_path: Path) -> None:
    [code], [expected] = _doc_blocks("python"), _doc_blocks("text")
    (tmp_path / "sweep.py").write_text(code)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "sweep.py"],
        cwd=tmp_path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected
    assert len(list((tmp_path / "o").iterdir())) == 1000
    print(f"the sweep of 1,000 jobs took {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_submit_runs_argv_exactly_in_cwd_with_env(goq: Client, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    a = goq.submit("sh", "-c", 'echo "$FOO|$PWD|$1"', "x", "a b", env={"FOO": "bar"})
    b = goq.submit("echo", "$((6 * 7))", shell=True, cwd=elsewhere, env=["FOO=baz"])
    c = goq.submit(Path("/bin/sh"), "-c", "exit $0", 3)
    here = os.environ.get("PATH", "")
    d = goq.submit("sh", "-c", 'test "$PATH" = "$0"', here)  # default env: this process's
    ra, rb, rc, rd = goq.wait([a, b, c, d], timeout=WAIT_S)
    assert isinstance(ra, JobRecord) and [r.id for r in (ra, rb, rc, rd)] == [a, b, c, d]
    assert _out(a, tmp_path) == f"bar|{tmp_path}|a b\n"
    assert _out(b, elsewhere) == "42\n"
    assert (ra.state, ra.exit_status, ra.command, ra.shell) == (
        "finished",
        0,
        ["sh", "-c", 'echo "$FOO|$PWD|$1"', "x", "a b"],
        False,
    )
    assert (rb.command, rb.shell, rb.directory) == (["echo $((6 * 7))"], True, str(elsewhere))
    assert (rc.state, rc.exit_status, rc.signal) == ("failed", 3, None)
    assert rd.exit_status == 0
    assert ra.to_json()["id"] == a and ra.worker and ra.submitted and ra.ran is not None


@pytest.mark.slow
def test_no_subprocess_is_started_by_the_client(
    goq: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kw):
        raise AssertionError("the API started a subprocess")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    [record] = goq.wait(goq.submit("true"), timeout=WAIT_S)
    assert record.state == "finished"


@pytest.mark.slow
def test_options_reach_the_job_as_goq_sub_sets_them(goq: Client) -> None:
    dep = goq.submit("true", name="api-dep")
    job = goq.submit(
        "true",
        cpus=2,
        gpus=0,
        mem="1G",
        resources={"license": 1},
        priority=5,
        name="api-options",
        after=[dep],
        retries=2,
        retry_delay=timedelta(seconds=30),
        time="10m",
        hold=True,
        after_any=None,  # None: not given
    )
    assert goq.show(job).state == "held"
    assert goq.cancel(job) == 1
    [r] = goq.wait(job, timeout=WAIT_S)
    assert (r.state, r.reason) == ("cancelled", "by goq kill")
    assert (r.cpus, r.gpus, r.mem, r.resources, r.priority) == (2, 0, 1 << 30, {"license": 1}, 5)
    assert (r.name, r.after, r.after_any, r.retries, r.time_limit) == (
        "api-options",
        [dep],
        [],
        2,
        600.0,
    )
    t = goq.submit("sleep", "5", time=0.5, after_any=str(dep))
    [r] = goq.wait(t, timeout=WAIT_S)
    assert (r.state, r.time_limit, r.after_any) == ("timeout", 0.5, [dep])


@pytest.mark.slow
def test_submit_many_gives_consecutive_ids_in_the_order_of_the_specs(
    goq: Client, tmp_path: Path
) -> None:
    specs = [
        ["sh", "-c", "echo one"],
        ("sh", "-c", "echo two"),
        {"cmd": "echo three", "shell": True, "name": "api-third"},
        {"cmd": "sh", "args": ["-c", "echo $X"], "env": {"X": "four"}, "cpus": 2},
    ]
    ids = goq.submit_many(specs, name="api-many")
    assert isinstance(ids, range) and len(ids) == 4
    records = goq.wait(ids, timeout=WAIT_S)
    assert [_out(i, tmp_path) for i in ids] == ["one\n", "two\n", "three\n", "four\n"]
    assert [r.name for r in records] == ["api-many", "api-many", "api-third", "api-many"]
    assert [r.cpus for r in records] == [1, 1, 1, 2]
    big = goq.submit_many([["true"]] * 6000, hold=True)  # two requests
    assert len(big) == 6000 and list(big) == list(range(big[0], big[0] + 6000))
    assert goq.cancel(big) == 6000


@pytest.mark.slow
def test_submit_array_takes_a_range_or_the_cli_text(goq: Client, tmp_path: Path) -> None:
    ids = goq.submit_array("sh", "-c", "echo $GOQ_ARRAY_INDEX", indexes=range(0, 10, 3))
    assert isinstance(ids, range) and len(ids) == 4
    records = goq.wait(ids, timeout=WAIT_S)
    assert [_out(i, tmp_path) for i in ids] == ["0\n", "3\n", "6\n", "9\n"]
    assert [r.array_index for r in records] == [0, 3, 6, 9]
    assert {r.array_id for r in records} == {ids[0]}
    more = goq.submit_array("true", indexes="1-5%1", name="api-array")
    assert len(more) == 5
    assert [r.state for r in goq.wait(more, timeout=WAIT_S)] == ["finished"] * 5
    capped = goq.submit_array("true", indexes=range(1, 3), max_running=1)
    assert len(goq.wait(capped, timeout=WAIT_S)) == 2


@pytest.mark.slow
def test_wait_returns_in_the_order_given_and_times_out(goq: Client) -> None:
    slow = goq.submit("sleep", "30")
    quick = goq.submit("true")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        goq.wait([quick, slow], timeout=0.5)
    assert 0.4 < time.monotonic() - started < 5
    err = raised.value
    assert isinstance(err, TimeoutError) and isinstance(err, GoqError)
    assert err.pending == [slow] and set(err.done) <= {quick}
    assert str(err) == f"1 of 2 jobs had not ended within 0.5 s (job {slow} among them)"
    assert goq.cancel([slow]) == 1
    rs = goq.wait([slow, quick, slow], timeout=WAIT_S)
    assert [(r.id, r.state) for r in rs] == [
        (slow, "cancelled"),
        (quick, "finished"),
        (slow, "cancelled"),
    ]
    assert goq.cancel(slow) == 0  # ended already


@pytest.mark.slow
def test_hold_and_release(goq: Client) -> None:
    blocker = goq.submit("sleep", "30")
    blocked = goq.submit("true", after=blocker)
    held = goq.submit("true", hold=True)
    assert goq.hold([blocked, held]) == 1  # the blocked one; the other was held already
    assert goq.show(blocked).state == "held"
    assert goq.stat()["heldJobs"] >= 2
    assert goq.release(f"{held}") == 1
    assert goq.wait(held, timeout=WAIT_S)[0].state == "finished"
    assert goq.release(blocked) == 1
    assert goq.cancel(blocker) == 1
    [r] = goq.wait(blocked, timeout=WAIT_S)
    assert (r.state, r.reason) == ("cancelled", f"dependency {blocker} was cancelled")


@pytest.mark.slow
def test_cancel_many_kills_running_jobs(goq: Client) -> None:
    ids = goq.submit_many([["sleep", "30"]] * 3)
    wait_for(lambda: goq.stat()["runQlen"] >= 3, 20, "the jobs to run")
    assert goq.cancel(ids) == 3
    assert [r.state for r in goq.wait(ids, timeout=WAIT_S)] == ["cancelled"] * 3


@pytest.mark.slow
def test_stat_and_workers(goq: Client) -> None:
    counters = goq.stat()
    assert counters["waitingWorkers"] + counters["runQlen"] >= 1 and counters["nextJobId"] >= 1
    workers = goq.workers()
    assert len(workers) == 2 and all(w["offer"]["cpus"] == 2 for w in workers)


@pytest.mark.slow
def test_jobs_show_and_forget(goq: Client) -> None:
    ok = goq.submit("true", name="api-history")
    bad = goq.submit("sh", "-c", "exit 4", name="api-history")
    live = goq.submit("true", name="api-history", hold=True)
    goq.wait([ok, bad], timeout=WAIT_S)
    listed = goq.jobs(name="api-history")
    assert [r.id for r in listed] == [live, bad, ok]  # newest first
    assert all(isinstance(r, JobRecord) and r.attempts is None for r in listed)
    assert [r.id for r in goq.jobs(state="failed", name="api-history")] == [bad]
    assert [r.id for r in goq.jobs(state=["held", "finished"], name="api-history")] == [live, ok]
    assert [r.id for r in goq.jobs(state="all", name="api-history", limit=1)] == [live]
    assert [r.id for r in goq.jobs(name="api-history", before=live)] == [bad, ok]
    assert [r.id for r in goq.jobs(state="finished", name="api-history", since="1h")] == [ok]
    assert [r.id for r in goq.jobs(state="failed,held", name="api-history", since="all")] == [
        live,
        bad,
    ]
    since = datetime.now(UTC) + timedelta(hours=1)
    assert goq.jobs(state="finished", name="api-history", since=since) == []
    shown = goq.show(bad)
    assert (shown.state, shown.exit_status, shown.output_path) == (
        "failed",
        4,
        str(Path.cwd() / "o" / f"out.{bad:05d}"),
    )
    [attempt] = shown.attempts
    assert (attempt.attempt, attempt.outcome, attempt.exit_status) == (1, "finished", 4)
    assert attempt.pid and attempt.worker and attempt.ran is not None
    assert goq.forget(before=timedelta(days=1)) == 0  # nothing here is that old
    assert goq.forget([ok, live]) == 1  # never a live job
    assert [r.id for r in goq.jobs(state="all", name="api-history")] == [live, bad]
    goq.cancel(live)


@pytest.mark.slow
def test_unknown_ids_are_goq_errors_with_the_cli_lines(goq: Client) -> None:
    far = goq.stat()["nextJobId"] + 1000
    with pytest.raises(GoqError, match=f"^job {far} is not known to th(e|is) server$"):
        goq.wait(far, timeout=5)
    with pytest.raises(GoqError, match=f"^job {far} is not known to the server$"):
        goq.cancel(far)
    with pytest.raises(GoqError, match=f"job {far} is not known"):
        goq.show(far)
    with pytest.raises(GoqError, match=f"^job {far} is not known to the server$"):
        goq.hold([1, far])
    with pytest.raises(InvalidValue, match="is not a job id"):
        goq.wait(0)
    with pytest.raises(TypeError, match="not a float"):
        goq.wait(1.5)  # type: ignore[arg-type]


BAD_OPTIONS = [
    ({"cpus": 0}, ("--cpus", "0"), "0 is too small: at least 1"),
    ({"gpus": -1}, ("--gpus", "-1"), "-1 is too small: at least 0"),
    ({"mem": "4Q"}, ("--mem", "4Q"), "bad size '4Q'"),
    ({"priority": 1 << 40}, ("--priority", str(1 << 40)), "is too large: at most 2,147,483,647"),
    ({"resources": {"lic": 0}}, ("--resource", "lic=0"), "lic=0: the amount must be at least 1"),
    ({"time": "soon"}, ("--time", "soon"), "'soon' is not a duration"),
    ({"time": 0}, ("--time", "0"), "'0' is too short"),
    ({"name": "a\tb"}, ("--name", "a\tb"), "a job name cannot hold a control character"),
    ({"retries": 100000}, ("--retries", "100000"), "is too large: at most 1,000"),
    ({"after": "5-2"}, ("--after", "5-2"), "it ends before it starts"),
]


@pytest.mark.slow
@pytest.mark.parametrize("options,flags,line", BAD_OPTIONS, ids=[b[1][0] for b in BAD_OPTIONS])
def test_bad_option_values_are_invalid_values_with_the_cli_line(
    goq: Client, cluster: Cluster, options: dict, flags: tuple[str, ...], line: str
) -> None:
    before = goq.stat()["nextJobId"]
    with pytest.raises(InvalidValue) as raised:
        goq.submit("true", **options)
    assert isinstance(raised.value, ValueError) and line in str(raised.value)
    cli = cluster.goq("sub", *flags, "true")
    assert cli.returncode == 1 and line in cli.stderr, cli.stderr
    assert goq.stat()["nextJobId"] == before  # nothing submitted


@pytest.mark.slow
def test_bad_calls_are_type_errors_or_invalid_values(goq: Client, tmp_path: Path) -> None:
    before = goq.stat()["nextJobId"]
    with pytest.raises(TypeError, match="unexpected keyword argument 'gpu'; did you mean 'gpus'"):
        goq.submit("true", gpu=1)
    with pytest.raises(TypeError, match="spec 1 is a str"):
        goq.submit_many([["true"], "echo hi"])
    with pytest.raises(TypeError, match="spec 0 has no 'cmd'"):
        goq.submit_many([{"args": ["x"]}])
    with pytest.raises(TypeError, match="hold is True or False"):
        goq.submit("true", hold="yes")
    with pytest.raises(TypeError, match="env is a dict or a list"):
        goq.submit("true", env="A=1")
    with pytest.raises(InvalidValue, match="retry_delay needs retries"):
        goq.submit("true", retry_delay=5)
    with pytest.raises(InvalidValue, match="refusing to submit an empty command"):
        goq.submit("")
    with pytest.raises(InvalidValue, match="NUL character in argument 1"):
        goq.submit("echo", "a\x00b")
    with pytest.raises(InvalidValue, match="is not a directory"):
        goq.submit("true", cwd=tmp_path / "missing")
    with pytest.raises(InvalidValue, match='is not "NAME=value"'):
        goq.submit("true", env=["JUSTANAME"])
    with pytest.raises(InvalidValue, match="the range ends"):
        goq.submit_array("true", indexes="5-1")
    with pytest.raises(InvalidValue, match="is empty"):
        goq.submit_array("true", indexes=range(3, 3))
    with pytest.raises(InvalidValue, match="'done' is not a job state: use waiting, "):
        goq.jobs(state="done")
    with pytest.raises(InvalidValue, match="invalid value for limit: 0 is not in 1 to 10,000"):
        goq.jobs(limit=0)
    with pytest.raises(InvalidValue, match="invalid value for since: 'lately' is not a duration"):
        goq.jobs(since="lately")
    with pytest.raises(TypeError, match="exactly one"):
        goq.forget()
    with pytest.raises(InvalidValue, match="invalid value for cpus"):  # checked before any is sent
        goq.submit_many([["true"], {"cmd": "true", "cpus": 0}])
    assert goq.stat()["nextJobId"] == before


@pytest.mark.slow
def test_from_env_reads_goq_variables_like_the_cli(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cluster.env.items():
        if name.startswith("GOQ_"):
            monkeypatch.setenv(name, value)
    with Client.from_env() as goq:
        assert goq.address == f"tcp://127.0.0.1:{cluster.port}"
        assert goq.stat()["nextJobId"] >= 1
    monkeypatch.setenv("GOQ_JSERV_PORT", str(free_port()))
    monkeypatch.setenv("GOQ_SENDTIMEOUT_MSEC", "100")
    with Client.from_env() as goq, pytest.raises(GoqError, match="no reply"):
        goq.stat()
    with Client.from_env(port=cluster.port) as goq:  # overrides win over GOQ_* variables
        assert goq.stat()["nextJobId"] >= 1


@pytest.mark.slow
def test_other_plugins_are_used_as_the_settings_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with initialised(tmp_path, server=True, transport="nng", extra_env={"GOQ_CODEC": "capnp"}) as c:
        c.start_worker()
        monkeypatch.chdir(c.workdir)
        with Client(home=c.home) as goq:
            assert goq.settings.transport == "nng" and goq.settings.codec == "capnp"
            ids = goq.submit_many([["sh", "-c", f"exit {i}"] for i in range(3)])
            assert [r.exit_status for r in goq.wait(ids, timeout=WAIT_S)] == [0, 1, 2]
