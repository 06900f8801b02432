"""The exceptions goq raises across module boundaries.

`GoqError` and its children carry one line a user can read; the CLI prints it and exits 1.
"""

from __future__ import annotations


class GoqError(Exception):
    """A failure with a message fit for a user: the CLI prints it as one line."""


class ConfigError(GoqError):
    """Missing or bad configuration (GOQ_HOME unset, no key, bad port...)."""


class PluginNotFound(GoqError):
    """No plugin offers the asked-for name; the message lists those that do."""


class TransportError(GoqError):
    """The transport could not carry a request (bad address, closed socket...)."""


class TransportTimeout(TransportError):
    """No reply within the time allowed: the server is absent, slow, or does not understand us."""


class FrameTooBig(TransportError):
    """A frame larger than the configured maximum was refused."""


class BadFrame(Exception):
    """An incoming frame was dropped. `reason` names the drop counter it goes to."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CodecError(ValueError):
    """Bytes that do not decode to a Message (malformed, truncated, unknown kind)."""


class CipherError(ValueError):
    """Bytes that do not open with this key (wrong key, tampered, truncated)."""


class RemoteError(GoqError):
    """The server refused our request with an explanation (a plaintext error frame or ERROR)."""


class StoreError(GoqError):
    """The durable store is missing, corrupt, or unwritable. `transient` is True when the
    condition can pass by itself (full disk, read-only file system, I/O error, a lock): the
    server keeps running and retries, refusing submissions meanwhile."""

    transient: bool = False
