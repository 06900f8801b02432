"""A run's rusage, as JobRun measures it when it reaps the job's main process with wait4: max RSS
(KiB: the largest single process among the main one and the descendants it waited for) and user
and system CPU time (us) of the main process plus those descendants. Real processes, every wait
bounded; the worker's RESULT carrying them is checked in tests/test_worker_slots.py.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from goq_core.messages import Job
from goq_core.roles.jobrun import MAX_RSS_KIB, STIME_US, UTIME_US, JobRun

PATH = ["PATH=/usr/local/bin:/usr/bin:/bin"]
PY = sys.executable
ALLOC_200MB = "b = bytearray(200*1024*1024); import time; time.sleep(0.2)"  # zero-fill: touched
# 1 s (0.5 s) of CPU, nearly all of it user time: process_time() is a system call (no vDSO for a
# process's CPU clock), so a loop that does nothing else spends most of its time in the kernel
BUSY_1S = "import time; t=time.process_time()\nwhile time.process_time()-t<1: sum(range(10000))"
BUSY_HALF_S = (
    "import time; t=time.process_time()\nwhile time.process_time()-t<0.5: sum(range(10000))"
)
BUSY_FOREVER = "while True: pass"


@pytest.fixture
def start(tmp_path):
    """Start jobs with JobRun.start; each is killed (its whole group) and reaped at the end."""
    home = tmp_path / "home"
    home.mkdir()
    started: list[JobRun] = []
    ids = iter(range(1, 1000))

    def run(cmd: str, *args: str, shell: bool = False) -> JobRun:
        job = Job(jobid=next(ids), attempt=1, cmd=cmd, args=list(args), shell=shell, env=PATH)
        r = JobRun.start(job, str(home), str(tmp_path / "spool"))
        started.append(r)
        return r

    yield run
    for r in started:
        if r.pgid:
            r.kill(grace=0.0)


def ended(r: JobRun, within: float = 10.0) -> int:
    status = r.wait(within)
    assert status is not None, f"job did not end within {within} s"
    return status


def test_a_job_that_allocates_200_mb_reports_a_max_rss_of_at_least_that(start):
    r = start(PY, "-c", ALLOC_200MB)
    assert ended(r) == 0
    assert r.max_rss_kib is not None and r.max_rss_kib >= 200 * 1024
    assert r.usage_counters()[MAX_RSS_KIB] == r.max_rss_kib


def test_a_1_s_busy_loop_reports_at_least_0_8_s_of_user_cpu(start):
    r = start(PY, "-c", BUSY_1S)
    assert ended(r) == 0
    assert r.utime_us is not None and r.utime_us >= 800_000
    assert r.stime_us is not None and 0 <= r.stime_us < r.utime_us
    counters = r.usage_counters()
    assert counters == {MAX_RSS_KIB: r.max_rss_kib, UTIME_US: r.utime_us, STIME_US: r.stime_us}
    assert set(counters) == {"maxRssKib", "utimeUs", "stimeUs"}  # the keys a RESULT carries


def test_the_cpu_of_a_child_the_job_waits_for_counts(start):
    """sh itself burns next to nothing: the CPU is its child's, counted because sh waits for
    it (the child's rusage is folded into sh's when sh reaps it)."""
    r = start(f"'{PY}' -c '{BUSY_HALF_S}' & wait", shell=True)
    assert ended(r) == 0
    assert r.utime_us is not None and r.utime_us >= 400_000


def test_the_cpu_of_a_child_left_behind_does_not_count(start):
    """A child that the main process does not wait for (orphaned, then killed with the group)
    is not in the main process's rusage."""
    r = start(f"'{PY}' -c '{BUSY_FOREVER}' & sleep 0.3", shell=True)
    assert ended(r) == 0
    time.sleep(0.5)  # the orphan burns on
    assert r.utime_us is not None and r.utime_us < 200_000


def test_a_killed_job_is_measured_too(start):
    r = start(PY, "-c", BUSY_FOREVER)
    assert r.wait(0.6) is None
    assert r.kill(grace=0.5) == -15
    assert r.utime_us is not None and r.utime_us >= 300_000
    assert set(r.usage_counters()) == {MAX_RSS_KIB, UTIME_US, STIME_US}


def test_a_command_that_cannot_start_has_no_rusage(start):
    r = start("/no/such/program")
    assert r.exit_status == 127
    assert (r.max_rss_kib, r.utime_us, r.stime_us) == (None, None, None)
    assert r.usage_counters() == {}


def test_a_running_job_has_no_rusage_yet(start):
    r = start("sleep", "5")
    assert r.poll() is None
    assert r.usage_counters() == {}


def test_runs_waited_for_in_threads_at_once_each_get_their_own(start):
    """A worker with several slots waits for its runs in threads: a busy run's CPU does not
    show in an idle run ended at the same time (per-process wait4, not RUSAGE_CHILDREN)."""
    busy = start(PY, "-c", BUSY_1S)
    idle = start("sleep", "1")
    waiters = [threading.Thread(target=r.wait, args=(10.0,)) for r in (busy, idle)]
    for t in waiters:
        t.start()
    for t in waiters:
        t.join(15.0)
    assert busy.exit_status == 0 and idle.exit_status == 0
    assert busy.utime_us is not None and busy.utime_us >= 800_000
    assert idle.utime_us is not None and idle.utime_us < 200_000
    assert idle.max_rss_kib is not None and busy.max_rss_kib is not None
