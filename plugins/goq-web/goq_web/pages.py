"""The dashboard's pages, rendered on the server from the shared Source: overview, workers,
jobs (filtered by state and name), one job (with the tail of its output file).

Each function returns (HTTP status, page bytes). Every value goes through markup.esc.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Any

from goq_core.jobquery import DEFAULT_LIMIT, MAX_LIST, JobQuery
from goq_core.records import STATES
from goq_web.markup import esc, page, state, table
from goq_web.plot import svg
from goq_web.source import Answer, Source

OUTPUT_TAIL = 64 * 1024  # the job page shows at most this much of the end of the output
DAY_S = 86_400
LIVE = ("running", "waiting", "blocked", "held")
Page = tuple[int, bytes]


def _error(answer: Answer) -> str:
    return f'<p class="err">The goq server could not be asked: {esc(answer.error)}</p>'


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _seconds(value: float | None) -> str:
    if value is None:
        return esc(None)
    if value < 60:
        return f"{value:.1f}s"
    m, s = divmod(int(value), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _when(rfc3339: str | None) -> str:
    """An RFC 3339 time shortened for a table (the full one in its title)."""
    if not rfc3339:
        return esc(None)
    return f'<span title="{esc(rfc3339)}">{esc(rfc3339[:19].replace("T", " "))}</span>'


def _command(job: dict[str, Any]) -> str:
    words = job["command"]
    text = words[0] if job["shell"] else shlex.join(words)
    return f"<code>{esc(text if len(text) <= 120 else text[:117] + '...')}</code>"


def _job_link(jobid: int) -> str:
    return f'<a href="/jobs/{int(jobid)}">{int(jobid)}</a>'


def _exit(job: dict[str, Any]) -> str:
    if job["signal"] is not None:
        return f"sig {int(job['signal'])}"
    return esc(job["exit_status"])


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            _job_link(j["id"]),
            esc(j["name"]),
            state(j["state"]),
            _exit(j),
            _command(j),
            esc(j["worker"]),
            _when(j["submitted"]),
            _seconds(j["waited"]),
            _seconds(j["ran"]),
        ]
        for j in jobs
    ]


_JOB_HEAD = ("id", "name", "state", "exit", "command", "worker", "submitted", "waited", "ran")


def _jobs_table(jobs: list[dict[str, Any]], empty: str) -> str:
    if not jobs:
        return f'<p class="muted">{esc(empty)}</p>'
    return table(_JOB_HEAD, _job_rows(jobs), numeric={0, 3})


def _cards(items: list[tuple[str, object]], css_id: str) -> str:
    inner = "".join(
        f'<div class="card" id="{css_id}-{esc(k)}"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in items
    )
    return f'<div class="cards">{inner}</div>'


def overview(source: Source, server: str) -> Page:
    status, workers, per_minute = source.status(), source.workers(), source.throughput()
    body: list[str] = []
    if not status.ok:
        body.append(_error(status))
    else:
        c = status.doc["counters"]
        jobs = [
            ("running", c.get("runQlen", 0)),
            ("waiting", c.get("waitingJobs", 0)),
            ("blocked", c.get("blockedJobs", 0)),
            ("held", c.get("heldJobs", 0)),
        ]
        body.append("<h2>Jobs</h2>" + _cards(jobs, "jobs"))
    if workers.ok:
        by_state = {s: 0 for s in ("busy", "idle", "draining", "drained")}
        for w in workers.doc["workers"]:
            by_state[w["state"]] = by_state.get(w["state"], 0) + 1
        body.append(
            '<h2>Workers <a class="muted" href="/workers">(details)</a></h2>'
            + _cards(list(by_state.items()), "workers")
        )
    body.append("<h2>Finished and failed per minute, last hour</h2>")
    body.append(svg(per_minute.doc) if per_minute.ok else _error(per_minute))
    if status.ok:
        listed = status.doc["jobs"]
        for which in LIVE:
            some = [j for j in listed if j["state"] == which]
            if some:
                body.append(f"<h2>{which.capitalize()} (first {len(some)})</h2>")
                body.append(_jobs_table(some, ""))
        c = status.doc["counters"]
        rows = [[esc(k), esc(v)] for k, v in sorted(c.items())]
        body.append(
            "<h2>Server counters</h2>" + table(("counter", "value"), rows, numeric={1}, narrow=True)
        )
    return (200 if status.ok else 503), page("Overview", "".join(body), server)


def _capacity(offer: dict[str, Any], free: dict[str, Any]) -> list[str]:
    mem = f"{_size(free['mem'])} / {_size(offer['mem'])}" if offer["mem"] else esc(None)
    gpus = (
        f"{len(free['gpus'])} / {len(offer['gpus'])} ({esc(','.join(free['gpus']) or 'none')} free)"
        if offer["gpus"]
        else esc(None)
    )
    named = ", ".join(
        f"{esc(k)}={esc(free['resources'].get(k, 0))}/{esc(v)}"
        for k, v in sorted(offer["resources"].items())
    )
    return [f"{int(free['cpus'])} / {int(offer['cpus'])}", gpus, mem, named or esc(None)]


def workers_page(source: Source, server: str) -> Page:
    answer = source.workers()
    if not answer.ok:
        return 503, page("Workers", _error(answer), server)
    found = answer.doc["workers"]
    if not found:
        return 200, page(
            "Workers", '<p class="muted">No workers: start one with `goq work`.</p>', server
        )
    rows = [
        [
            f'<span class="worker">{esc(w["name"])}</span>',
            esc(w["host"]),
            state(w["state"]),
            *_capacity(w["offer"], w["free"]),
            " ".join(_job_link(j) for j in w["jobs"]) or esc(None),
            f"{_seconds(w['last_heard_sec_ago'])} ago",
        ]
        for w in found
    ]
    head = ("name", "host", "state", "cpus free / offered", "gpus", "memory free / offered",
            "resources", "running jobs", "last heard")  # fmt: skip
    return 200, page("Workers", table(head, rows), server)


def jobs_query(params: dict[str, list[str]]) -> tuple[JobQuery, str | None]:
    """The JobQuery of the jobs page's (or /api/jobs') parameters `state`, `name`, `limit`,
    as `goq jobs` takes them (ended jobs of the last 24 hours); an error line if one is wrong."""
    wanted: set[str] = set()
    for value in params.get("state", []):
        for word in filter(None, value.split(",")):
            if word == "all":
                wanted.update(STATES)
            elif word in STATES:
                wanted.add(word)
            else:
                return JobQuery(), f"unknown state {word!r}: choose among {', '.join(STATES)}"
    name = (params.get("name") or [""])[0] or None
    limit_text = (params.get("limit") or [str(DEFAULT_LIMIT)])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST:
        return JobQuery(), f"limit must be a number from 1 to {MAX_LIST}"
    since_ns = (int(time.time()) - DAY_S) * 1_000_000_000
    return JobQuery(frozenset(wanted or STATES), name, since_ns, None, int(limit_text)), None


def jobs_page(source: Source, server: str, params: dict[str, list[str]]) -> Page:
    query, problem = jobs_query(params)
    chosen = (params.get("state") or [""])[0]
    options = "".join(
        f'<option value="{s}"{" selected" if s == chosen else ""}>{s or "any state"}</option>'
        for s in ("", *STATES)
    )
    form = (
        '<form method="get" action="/jobs">State <select name="state">'
        f'{options}</select> Name <input name="name" value="{esc(query.name or "")}"> '
        '<button type="submit">Show</button> <span class="muted">jobs not ended, and those '
        "ended in the last 24 hours, newest first</span></form>"
    )
    if problem is not None:
        return 400, page("Jobs", form + f'<p class="err">{esc(problem)}</p>', server)
    answer = source.jobs(query)
    if not answer.ok:
        return 503, page("Jobs", form + _error(answer), server)
    found = answer.doc["jobs"]
    return 200, page("Jobs", form + _jobs_table(found, "No jobs found."), server)


def _tail(path: str | None, size: int) -> str:
    """The last OUTPUT_TAIL bytes of the output file, or why they cannot be shown."""
    if not path:
        return '<p class="muted">No output file yet.</p>'
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - OUTPUT_TAIL))
            data = fh.read(OUTPUT_TAIL)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f'<p class="muted">The output file cannot be read from this host ({esc(why)}).</p>'
    note = f"last {_size(len(data))} of {_size(end)}" if end > len(data) else _size(end)
    text = data.decode("utf-8", "backslashreplace")
    return f'<p class="muted">{esc(path)} ({note})</p><pre id="output">{esc(text)}</pre>'


def job_page(source: Source, server: str, jobid: int) -> Page:
    answer = source.job(jobid)
    title = f"Job {jobid}"
    if not answer.ok:
        status = 404 if "not known" in (answer.error or "") else 503
        return status, page(title, _error(answer), server)
    job = answer.doc["job"]
    fields = [
        [esc(k), state(v) if k == "state" else esc(v)]
        for k, v in job.items()
        if k not in ("attempts", "command")
    ]
    words = job["command"]
    full = words[0] if job["shell"] else shlex.join(words)
    fields.insert(2, ["command", f"<code>{esc(full)}</code>"])
    body = ["<h2>Record</h2>", table(("field", "value"), fields, narrow=True)]
    attempts = job["attempts"] or []
    if attempts:
        head = list(attempts[0])
        body += ["<h2>Attempts</h2>", table(head, [[esc(a[h]) for h in head] for a in attempts])]
    body += ["<h2>Output</h2>", _tail(job["output_path"], job["output_bytes"])]
    env = answer.doc["environment"]
    body.append(
        f"<details><summary>Environment ({len(env)} entries)</summary><pre>"
        + esc("\n".join(env))
        + "</pre></details>"
    )
    return 200, page(title, "".join(body), server)
