"""History end to end (issue 12): the server prunes by age in small steps, and a job's rusage
reaches `goq show` through the worker, the server and the store."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from goq_core.config import Settings
from goq_core.messages import Job, JobState
from goq_core.records import Attempt
from goq_core.roles.server import PRUNE_STEP, Server, ServerOptions
from goq_core.stores.sqlite import SqliteStore
from tests.cluster import initialised
from tests.test_server_runtime import RecordingEnd

DAY_NS = 86_400 * 10**9


def test_the_server_prunes_history_older_than_goq_history_days_in_steps(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=1, history_days=2)
    server = Server(settings, os.urandom(32), options=ServerOptions(store="sqlite"))
    server.end = RecordingEnd()
    server.store = store = SqliteStore(str(tmp_path), create=True)
    now = time.time()
    now_ns = int(now * 1e9)
    old = PRUNE_STEP + 500  # more than one step's worth
    jobs = [
        Job(jobid=i, cmd="x", dir="/w", state=JobState.FINISHED, end_ns=now_ns - 3 * DAY_NS)
        for i in range(1, old + 1)
    ]
    recent = Job(jobid=old + 1, cmd="x", dir="/w", state=JobState.FINISHED, end_ns=now_ns)
    live = Job(jobid=old + 2, cmd="x", dir="/w", state=JobState.WAITING)
    store.save([*jobs, recent, live], {}, attempts=[Attempt(1, 1, "finished", end_ns=1)])
    server._prune(now)
    assert store.get_job(1) is None and store.attempts(1) == []  # oldest first
    assert store.get_job(old) is not None  # at most one step per turn
    server._prune(now)  # more was left: the next quiet turn goes on at once
    assert store.get_job(old) is None
    assert store.get_job(recent.jobid) is not None and store.get_job(live.jobid) is not None
    server._prune(now)  # nothing old left: the next step waits PRUNE_EVERY
    assert server._prune_at > now
    store.close()


@pytest.mark.slow
def test_show_reports_a_jobs_max_rss_and_cpu_time(tmp_path: Path) -> None:
    big = "b = bytearray(200 * 1024 * 1024); import time; time.sleep(0.2)"
    busy = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 1: sum(range(10000))"
    )
    with initialised(tmp_path, server=True) as c:
        c.start_worker()
        mem = c.sub(sys.executable, "-c", big)
        cpu = c.sub(sys.executable, "-c", busy)
        assert c.goq("wait", str(mem), str(cpu), timeout=60).returncode == 0
        (m,) = json.loads(c.ok("show", "--json", str(mem)))["job"]["attempts"]
        (u,) = json.loads(c.ok("show", "--json", str(cpu)))["job"]["attempts"]
    assert m["outcome"] == "finished" and m["max_rss_kib"] >= 200 * 1024
    assert u["user_cpu"] >= 0.8 and u["exit_status"] == 0
    assert u["ran"] >= 1.0 and u["worker"]
