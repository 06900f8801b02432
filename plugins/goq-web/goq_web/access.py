"""Who may read the dashboard: anyone on this host when it listens on a loopback address;
otherwise only requests carrying the token (a header, or the cookie the login link sets).

The token is given (--token, GOQ_WEB_TOKEN) or made here; loopback-only listening with no token
also checks the Host header, so that a web page elsewhere cannot read it by DNS rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

COOKIE = "goq_web_token"
HEADER = "X-Goq-Token"
MIN_TOKEN = 16  # characters a given token must have at least


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv4 address or name; [IPv6]:PORT) -> (host, port); ValueError, one line."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8787")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """A given token, if long enough and printable; ValueError otherwise."""
    if len(token) < MIN_TOKEN or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(f"the token must be at least {MIN_TOKEN} printable ASCII characters")
    return token


class Access:
    """The rule for one dashboard: `token` None means loopback only, no token."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def matches(self, given: str | None) -> bool:
        return (
            self.token is not None
            and given is not None
            and hmac.compare_digest(given.encode(), self.token.encode())
        )

    def allowed(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these headers may read the dashboard."""
        if self.token is None:
            host = headers.get("Host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return is_loopback(name.removeprefix("[").removesuffix("]"))
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and self.matches(auth[7:].strip()):
            return True
        if self.matches(headers.get(HEADER)):
            return True
        return self.matches(_cookie(headers.get("Cookie", "")))

    def cookie_header(self) -> str:
        return f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"


def _cookie(text: str) -> str | None:
    try:
        jar = SimpleCookie(text)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None
