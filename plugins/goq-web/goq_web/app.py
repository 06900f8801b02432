"""The dashboard's routes, as a plain function of a request (method, path, headers) to a
response: no sockets here, so every rule (read-only, token, escaping) is testable directly.

GET and HEAD only. /, /workers, /jobs, /jobs/ID: pages; /plot.svg; /metrics; /api/status,
/api/workers, /api/jobs, /api/jobs/ID, /api/version: the `--json` documents; /login?token=T.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from goq_cli import jsonout
from goq_core import __version__
from goq_web import metrics, pages
from goq_web.access import Access
from goq_web.markup import esc, page
from goq_web.plot import svg
from goq_web.source import Answer, Source

HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = HTML
    headers: dict[str, str] = field(default_factory=dict)


class App:
    """Routes requests to pages over one Source, behind one Access rule."""

    def __init__(self, source: Source, access: Access, server: str) -> None:
        self.source = source
        self.access = access
        self.server = server

    def handle(self, method: str, target: str, headers: dict[str, str]) -> Response:
        if method not in ("GET", "HEAD"):
            return Response(
                405, b"read-only: GET and HEAD only\n", "text/plain", {"Allow": "GET, HEAD"}
            )
        url = urlsplit(target)
        params = parse_qs(url.query, keep_blank_values=True)
        if url.path == "/login":
            return self._login(params)
        if not self.access.allowed(headers):
            body = page(
                "Token needed",
                "<p>This dashboard needs its token: open the login link that <code>goq web"
                "</code> printed, or send the token in an X-Goq-Token header.</p>",
                self.server,
                refresh=False,
            )
            return Response(401 if self.access.token else 403, body)
        return self._route(url.path, params)

    def _login(self, params: dict[str, list[str]]) -> Response:
        given = (params.get("token") or [""])[0]
        if self.access.token is None:
            return Response(303, b"", headers={"Location": "/"})
        if not self.access.matches(given):
            return Response(
                401, page("Wrong token", "<p>That token is wrong.</p>", self.server, False)
            )
        headers = {"Location": "/", "Set-Cookie": self.access.cookie_header()}
        return Response(303, b"", headers=headers)

    def _route(self, path: str, params: dict[str, list[str]]) -> Response:
        s, server = self.source, self.server
        if path == "/":
            return Response(*pages.overview(s, server))
        if path == "/workers":
            return Response(*pages.workers_page(s, server))
        if path == "/jobs":
            return Response(*pages.jobs_page(s, server, params))
        if path.startswith("/jobs/") and _jobid(path[6:]) is not None:
            return Response(*pages.job_page(s, server, _jobid(path[6:])))
        if path == "/plot.svg":
            answer = s.throughput()
            if not answer.ok:
                return _json_error(answer)
            return Response(200, svg(answer.doc).encode(), "image/svg+xml")
        if path == "/metrics":
            return Response(200, metrics.exposition(s), metrics.CONTENT_TYPE)
        if path.startswith("/api/"):
            return self._api(path[5:], params)
        return Response(404, page("Not found", f"<p>No page {esc(path)}.</p>", server, False))

    def _api(self, what: str, params: dict[str, list[str]]) -> Response:
        s = self.source
        if what == "status":
            return _json(s.status())
        if what == "workers":
            return _json(s.workers())
        if what == "version":
            return _json(Answer(jsonout.version(__version__), None, 0))
        if what == "jobs":
            query, problem = pages.jobs_query(params)
            if problem is not None:
                return Response(400, _dumps({"error": problem}), "application/json")
            return _json(s.jobs(query))
        if what.startswith("jobs/") and _jobid(what[5:]) is not None:
            return _json(s.job(_jobid(what[5:])))
        return Response(404, _dumps({"error": f"no document /api/{what}"}), "application/json")


def _jobid(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 2**63 else None


def _dumps(doc: object) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _json(answer: Answer) -> Response:
    if not answer.ok:
        return _json_error(answer)
    return Response(200, _dumps(answer.doc), "application/json")


def _json_error(answer: Answer) -> Response:
    status = 404 if "not known" in (answer.error or "") else 503
    return Response(status, _dumps({"error": answer.error}), "application/json")
