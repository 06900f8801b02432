"""goq web's HTTP server: a browser dropping its connection is not logged as a crash, and any
other failure of a request is one line (socketserver's default is a traceback on stderr)."""

from __future__ import annotations

import pytest

httpd = pytest.importorskip("goq_web.httpd", reason="goq-web is not installed (CI installs it)")


def _fail_with(exc: BaseException, capsys) -> str:
    server = object.__new__(httpd.DashboardServer)  # handle_error needs no socket
    try:
        raise exc
    except BaseException:
        server.handle_error(None, ("127.0.0.1", 4242))
    return capsys.readouterr().err


def test_a_dropped_connection_says_nothing(capsys) -> None:
    assert _fail_with(ConnectionResetError(104, "Connection reset by peer"), capsys) == ""
    assert _fail_with(BrokenPipeError(32, "Broken pipe"), capsys) == ""


def test_any_other_failure_is_one_line_without_a_traceback(capsys) -> None:
    err = _fail_with(ValueError("bad"), capsys)
    assert err == "goq web: request from ('127.0.0.1', 4242) failed: ValueError('bad')\n"
    assert "Traceback" not in err
