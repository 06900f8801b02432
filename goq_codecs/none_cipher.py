"""The `none` cipher: frames pass through unchanged, unauthenticated. For tests only: it is
marked `insecure`, and `goq serve` refuses it unless explicitly allowed.
"""

from __future__ import annotations

from goq_codecs.aesgcm import check_key
from goq_core.errors import CipherError


class NoneCipher:
    """Seal and open are the identity (as bytes); the key is checked, then ignored."""

    __slots__ = ()
    name = "none"
    backend = "none"
    insecure = True

    def __init__(self, key: bytes) -> None:
        check_key(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return _as_bytes(plaintext)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        return _as_bytes(sealed)


def _as_bytes(data: bytes) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise CipherError(f"expected bytes, got {type(data).__name__}")
