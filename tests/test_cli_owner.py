"""`goq stat`, `jobs` and `show` show each job's owner, and `--mine` keeps the caller's jobs:
end to end on a real server and worker, with the cluster's key (the admin named admin). The
filter between two owners is tested without processes in tests/test_owner.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster import initialised, wait_for


def test_jobs_show_and_stat_show_the_owner_and_mine_keeps_the_callers(tmp_path: Path) -> None:
    with initialised(tmp_path, server=True) as c:
        done = c.sub("true")
        marker = c.workdir / "started"
        slow = c.sub("sh", "-c", f"touch {marker}; sleep 30")
        c.start_worker()
        assert c.goq("wait", str(done)).returncode == 0
        wait_for(marker.exists, 20, "the slow job to start")

        jobs = json.loads(c.ok("jobs", "--json"))["jobs"]
        assert [(j["id"], j["owner"]) for j in jobs] == [(slow, "admin"), (done, "admin")]
        mine = json.loads(c.ok("jobs", "--json", "--mine"))["jobs"]
        assert [j["id"] for j in mine] == [slow, done]
        table = c.ok("jobs", "--mine").splitlines()
        assert table[0].split()[:4] == ["ID", "NAME", "OWNER", "STATE"]
        assert [line.split()[2] for line in table[1:]] == ["admin", "admin"]

        shown = json.loads(c.ok("show", "--json", str(done)))["job"]
        assert (shown["id"], shown["owner"]) == (done, "admin")
        assert "  owner         admin" in c.ok("show", str(done))

        stat = c.ok("stat")
        (line,) = [x for x in stat.splitlines() if x.split()[:1] == [str(slow)]]
        assert "by admin  on " in line
        last = c.ok("stat", "--mine").splitlines()[-1]
        assert last.split()[:1] == [str(slow)] and last.split()[2:] == line.split()[2:]
        status = json.loads(c.ok("stat", "--json", "--mine"))
        assert [(j["id"], j["owner"]) for j in status["jobs"]] == [(slow, "admin")]
        c.ok("kill", str(slow))
