"""goq across a real network on one machine: the server and two workers in their own network
namespaces (tests/netns.py), so links can be cut and mended under a running job."""

from __future__ import annotations

import re
import shlex
import shutil
import time
from pathlib import Path

import pytest

from tests.cluster import pgid_alive, wait_for
from tests.netns import NetnsCluster, Network, global_ipv4, ip, netns_names, netns_unavailable

pytestmark = [pytest.mark.netns, pytest.mark.slow]

HEARTBEAT = 1.0


@pytest.fixture(scope="module")
def netns_ok() -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def net(netns_ok: None):
    network = Network(("hostA", "hostB")).create()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def cluster(net: Network, tmp_path: Path):
    c = NetnsCluster(tmp_path, net, heartbeat=HEARTBEAT)
    try:
        c.init()
        c.start_server()
        yield c
    finally:
        c.close()


def _whereami(runs: Path, then: str = "") -> list[str]:
    """argv of a job that appends "PGID ADDRESS" to `runs`, prints its address, then runs `then`."""
    addr = f"{shutil.which('ip') or 'ip'} -4 -o addr show scope global"
    line = f'a=$({addr}); echo "$$ $a" >> {runs}; echo "$a"; {then or "true"}'
    return ["sh", "-c", line]


def _runs(path: Path) -> list[tuple[int, str]]:
    """(pgid, address) of each job run recorded by _whereami, in order."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        pgid, _, rest = line.partition(" ")
        found += [(int(pgid), a) for a in global_ipv4(rest)]
    return found


def _two_idle_workers(c: NetnsCluster) -> None:
    c.start_worker("hostA")
    c.start_worker("hostB")
    wait_for(lambda: c.stat()["waitingWorkers"] == 2, 20, "both workers to ask for work", 0.2)


# ----------------------------------------------------------------------------- the harness


def test_namespaces_and_links_are_gone_after_close(netns_ok: None) -> None:
    root_links = ip("-o", "link", "show").stdout.count("\n")
    network = Network(("hostA", "hostB")).create()
    names = {h.ns for h in network.hosts.values()}
    try:
        assert names <= netns_names()
        for host in network.workers:  # every worker host reaches the server, and only by its link
            assert network.reachable(host.role, network.server.address)
            routes = network.run(host.role, "ip", "-4", "route").stdout
            assert "default" not in routes
        assert ip("-o", "link", "show").stdout.count("\n") == root_links  # root ns untouched
    finally:
        assert network.close() == []
    assert not names & netns_names()


# ----------------------------------------------------------------------------- behaviour


def test_workers_on_two_hosts_both_run_jobs(cluster: NetnsCluster) -> None:
    _two_idle_workers(cluster)
    runs = cluster.workdir / "runs"
    jobs = cluster.workdir / "jobs.txt"
    jobs.write_text(f"{shlex.join(_whereami(runs, 'sleep 1'))}\n" * 4)
    assert cluster.ok("sub", "--file", str(jobs)).startswith("submitted jobs 1..4")
    # both busy at once: `goq stat` lists two running jobs on the two workers (by their names)
    listing = wait_for(
        lambda: (s := cluster.ok("stat")).count(" on ") == 2 and s, 10, "two running jobs", 0.1
    )
    running_on = set(re.findall(r" on (\S+)", listing))
    names = {
        re.search(r"goq worker (\S+) offering", cluster.log(f"worker-{role}.log")).group(1)
        for role in cluster.workers
    }
    assert running_on == names and len(names) == 2
    for jobid in range(1, 5):
        assert "exit status 0" in cluster.ok("wait", str(jobid))
    addresses = {a for _, a in _runs(runs)}
    assert addresses == {h.address for h in cluster.net.workers}
    outputs = {global_ipv4(cluster.output(j))[0] for j in range(1, 5)}
    assert outputs == addresses


def test_workers_only_dial_out_to_the_server_port(cluster: NetnsCluster) -> None:
    _two_idle_workers(cluster)
    net, port = cluster.net, cluster.port
    listening = net.run("server", "ss", "-ltnH").stdout
    assert f"{net.server.address}:{port}" in listening
    for host in net.workers:
        pid = cluster.workers[host.role].pid
        assert net.run(host.role, "ss", "-ltnH").stdout.strip() == ""  # nothing listens there
        conns = net.run(host.role, "ss", "-tnpH", "state", "established").stdout.splitlines()
        mine = [c for c in conns if f"pid={pid}," in c]
        assert mine, conns
        assert all(f"{host.address}:" in c and f"{net.server.address}:{port}" in c for c in mine)


def test_cut_off_host_loses_its_job_to_the_other_and_rejoins_when_the_link_returns(
    cluster: NetnsCluster,
) -> None:
    _two_idle_workers(cluster)
    runs = cluster.workdir / "runs"
    long_job = cluster.sub(*_whereami(runs, "sleep 10; echo done"))
    wait_for(lambda: _runs(runs), 10, "the long job to start")
    first_pgid, first_addr = _runs(runs)[0]
    first = _host_of(cluster, first_addr)
    other = next(h for h in cluster.net.workers if h is not first)
    time.sleep(0.5)  # a heartbeat is held at the server now

    cluster.net.cut(first.role)
    cut_at = time.monotonic()
    wait_for(lambda: len(_runs(runs)) >= 2, 2 * HEARTBEAT + 5, "the job to run again")
    requeued_after = time.monotonic() - cut_at
    assert _runs(runs)[1][1] == other.address
    overlap = pgid_alive(first_pgid)  # the cut-off host cannot hear that its run is superseded

    cluster.net.mend(first.role)
    mended_at = time.monotonic()
    quick = cluster.sub(*_whereami(runs))  # the other host is busy: only `first` can take it
    wait_for(lambda: not pgid_alive(first_pgid), 15, "the superseded run to be killed", 0.05)
    killed_after = time.monotonic() - mended_at
    wait_for(lambda: len(_runs(runs)) >= 3, 15, "the cut-off host to take a new job", 0.05)
    rejoined_after = time.monotonic() - mended_at
    assert _runs(runs)[2][1] == first.address
    assert "exit status 0" in cluster.ok("wait", str(quick))

    assert "exit status 0" in cluster.ok("wait", str(long_job), timeout=30)
    output = cluster.output(long_job)
    assert global_ipv4(output) == [other.address] and output.endswith("done\n")
    counters = cluster.stat()
    assert counters["requeuedJobsCount"] == 1
    assert counters["staleResultCount"] >= 1  # the cut-off host's late result, not recorded
    assert counters["finishedJobsCount"] == 2  # the long job once, and the quick one
    assert len(_runs(runs)) == 3
    print(
        f"\nnetns cut/mend ({cluster.env['GOQ_TRANSPORT']}, heartbeat {HEARTBEAT:g}s): "
        f"rerun on the other host {requeued_after:.2f}s after the cut "
        f"(old run still alive then: {overlap}); after the mend the old run was killed in "
        f"{killed_after:.2f}s and the host took a new job in {rejoined_after:.2f}s"
    )


def test_result_of_a_run_that_ends_while_cut_off_is_stale_and_its_host_rejoins(
    cluster: NetnsCluster,
) -> None:
    _two_idle_workers(cluster)
    runs = cluster.workdir / "runs"
    first_run_ends = 2  # seconds: while its host is cut off, before the server gives up on it
    rerun_takes = 10
    then = f'[ "$(wc -l < {runs})" -gt 1 ] && sleep {rerun_takes} || sleep {first_run_ends}'
    long_job = cluster.sub(*_whereami(runs, f"{then}; echo done"))
    wait_for(lambda: _runs(runs), 10, "the long job to start", 0.01)
    cluster.net.cut((first := _host_of(cluster, _runs(runs)[0][1])).role)
    cut_at = time.monotonic()
    other = next(h for h in cluster.net.workers if h is not first)
    wait_for(lambda: len(_runs(runs)) >= 2, 2 * HEARTBEAT + 5, "the job to run again")
    assert _runs(runs)[1][1] == other.address
    quick = [cluster.sub(*_whereami(runs)) for _ in range(2)]  # waiting: `other` is busy
    while time.monotonic() - cut_at < first_run_ends + 4:  # its result is re-sent meanwhile
        time.sleep(0.05)
    assert not pgid_alive(_runs(runs)[0][0])  # the first run ended on its own

    cluster.net.mend(first.role)
    for jobid in quick:
        assert "exit status 0" in cluster.ok("wait", str(jobid))
    assert [a for _, a in _runs(runs)[2:]] == [first.address] * 2  # once each, on the rejoined host
    assert "exit status 0" in cluster.ok("wait", str(long_job), timeout=30)
    output = cluster.output(long_job)
    assert global_ipv4(output) == [other.address] and output.endswith("done\n")
    counters = cluster.stat()
    assert counters["finishedJobsCount"] == 3  # each job once
    assert counters["staleResultCount"] >= 1
    assert len(_runs(runs)) == 4
    # Copies of the result re-sent during the cut may arrive in a burst at the mend, each also
    # asking for work; a job handed to a copy the worker gave up on is handed again to the next
    # copy (same run), not requeued: one requeue, the real one.
    assert counters["requeuedJobsCount"] == 1


def _host_of(cluster: NetnsCluster, address: str):
    return next(h for h in cluster.net.workers if h.address == address)
