"""The `aes-gcm` cipher: AES-256-GCM, sealed = 12-byte random nonce + ciphertext + 16-byte tag,
with the frame header as associated data. Two backends make and accept the same bytes.

`cryptography` (AESGCM, OpenSSL) is used whenever it imports; `pycryptodome` is the fallback.
pycryptodome's GCM object costs ~100 µs to build and is good for one nonce only, so that backend
does GCM from parts built once per key (the GHASH key tables and an ECB cipher) plus one CTR
cipher per message, which is several times faster; if pycryptodome's private GHASH helpers ever
move, it falls back to a GCM object per message (same bytes, just slower).

`cryptography`'s AESGCM class is taken from the Rust bindings module that defines it, which
`cryptography.hazmat.primitives.ciphers.aead` only re-exports: importing that package costs
`goq sub` 3-4 ms more (the ciphers package's algorithms and modes). If the bindings move, the
public module is used.
"""

from __future__ import annotations

import os
import struct
from _operator import _compare_digest  # hmac.compare_digest, without importing hashlib

from goq_core.errors import CipherError

TYPE_CHECKING = False  # typing and goq_core.interfaces: for type checkers only
if TYPE_CHECKING:
    from typing import Any

    from goq_core.interfaces import Cipher

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
BACKENDS = ("cryptography", "pycryptodome")
_ZERO_BLOCK = bytes(16)
_BAD_TAG = "authentication failed: wrong key, wrong header, or tampered frame"


def check_key(key: bytes) -> bytes:
    """`key` as bytes if it is a 32-byte key; ValueError otherwise."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise ValueError(f"cipher key must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise ValueError(f"cipher key must be {KEY_SIZE} bytes, not {len(key)}")
    return key


def aes_gcm(key: bytes, backend: str = "auto") -> Cipher:
    """An AES-256-GCM cipher for `key`: backend "cryptography", "pycryptodome", or "auto"
    (cryptography when it imports, else pycryptodome)."""
    key = check_key(key)
    if backend == "auto":
        try:
            return CryptographyAesGcm(key)
        except ImportError:
            return PycryptodomeAesGcm(key)
    if backend == "cryptography":
        return CryptographyAesGcm(key)
    if backend == "pycryptodome":
        return PycryptodomeAesGcm(key)
    raise ValueError(f"unknown aes-gcm backend {backend!r}; known: auto, {', '.join(BACKENDS)}")


class CryptographyAesGcm:
    """AES-256-GCM through the `cryptography` package: one AESGCM object per key."""

    __slots__ = ("_aead", "_invalid_tag")
    name = "aes-gcm"
    backend = "cryptography"
    insecure = False

    def __init__(self, key: bytes) -> None:
        from cryptography.exceptions import InvalidTag

        self._aead = _cryptography_aesgcm()(check_key(key))
        self._invalid_tag = InvalidTag

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        try:
            return nonce + self._aead.encrypt(nonce, plaintext, aad)
        except Exception as exc:  # OverflowError for > 2 GiB, TypeError for non-bytes
            raise CipherError(f"cannot seal: {exc}") from None

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            view = _sealed_view(sealed)
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except CipherError:
            raise
        except self._invalid_tag:
            raise CipherError(_BAD_TAG) from None
        except Exception as exc:
            raise CipherError(f"cannot open: {exc}") from None


def _cryptography_aesgcm() -> type:
    """cryptography's AESGCM class, from the module that defines it when it is still there."""
    try:
        from cryptography.hazmat.bindings._rust import openssl

        return openssl.aead.AESGCM
    except (ImportError, AttributeError):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM


class PycryptodomeAesGcm:
    """AES-256-GCM through pycryptodome, making the same bytes as CryptographyAesGcm.

    `reuse=True` (the default) builds the key-dependent parts once; `reuse=False` makes a
    pycryptodome GCM object per message, the library's own GCM (kept as the reference)."""

    __slots__ = ("_key", "_aes", "_ghash", "_ctr_mode", "_gcm_mode")
    name = "aes-gcm"
    backend = "pycryptodome"
    insecure = False

    def __init__(self, key: bytes, reuse: bool = True) -> None:
        from Crypto.Cipher import AES

        self._key = check_key(key)
        self._aes = AES
        self._ctr_mode = AES.MODE_CTR
        self._gcm_mode = AES.MODE_GCM
        self._ghash = None
        if reuse:  # the GHASH key is E_K(0^128)
            self._ghash = _Ghash.make(AES.new(self._key, AES.MODE_ECB).encrypt(_ZERO_BLOCK))

    @property
    def reuses_key_setup(self) -> bool:
        """True when the fast path (key setup once, not per message) is in use."""
        return self._ghash is not None

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        try:
            if self._ghash is None:
                gcm = self._aes.new(self._key, self._gcm_mode, nonce=nonce, mac_len=TAG_SIZE)
                gcm.update(aad)
                ct, tag = gcm.encrypt_and_digest(plaintext)
                return b"".join((nonce, ct, tag))
            # The first CTR block (counter 1, i.e. J0) masks the tag; the payload starts at 2.
            ctr = self._aes.new(self._key, self._ctr_mode, nonce=nonce, initial_value=1)
            out = ctr.encrypt(_ZERO_BLOCK + plaintext)
            ct = memoryview(out)[16:]
            tag = _xor16(out[:16], self._ghash.digest(aad, ct))
            return b"".join((nonce, ct, tag))
        except Exception as exc:
            raise CipherError(f"cannot seal: {exc}") from None

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            view = _sealed_view(sealed)
            nonce = bytes(view[:NONCE_SIZE])
            ct = view[NONCE_SIZE:-TAG_SIZE]
            tag = bytes(view[-TAG_SIZE:])
            if self._ghash is None:
                gcm = self._aes.new(self._key, self._gcm_mode, nonce=nonce, mac_len=TAG_SIZE)
                gcm.update(aad)
                return gcm.decrypt_and_verify(ct, tag)  # ValueError when the tag is wrong
            hashed = self._ghash.digest(aad, ct)
            ctr = self._aes.new(self._key, self._ctr_mode, nonce=nonce, initial_value=1)
            out = ctr.decrypt(_ZERO_BLOCK + ct)
            if not _compare_digest(_xor16(out[:16], hashed), tag):
                raise CipherError(_BAD_TAG)
            return out[16:]
        except CipherError:
            raise
        except ValueError:
            raise CipherError(_BAD_TAG) from None
        except Exception as exc:
            raise CipherError(f"cannot open: {exc}") from None


class _Ghash:
    """GHASH (NIST SP 800-38D) under one hash key, with the key tables built once. Uses
    pycryptodome's C GHASH through its private helpers; `make` returns None if they moved."""

    __slots__ = ("_tables", "_impl", "_buffer", "_ptr", "_size_t", "_raw")

    def __init__(self, hash_key: bytes) -> None:
        from Crypto.Cipher import _mode_gcm
        from Crypto.Util import _raw_api

        impl = _mode_gcm._ghash_clmul or _mode_gcm._ghash_portable
        self._tables = _mode_gcm._GHASH(hash_key, impl)  # keeps the expanded key alive
        self._impl = impl
        self._buffer = _raw_api.create_string_buffer
        self._ptr = _raw_api.c_uint8_ptr
        self._size_t = _raw_api.c_size_t
        self._raw = _raw_api.get_raw_buffer

    @classmethod
    def make(cls, hash_key: bytes) -> _Ghash | None:
        try:
            ghash = cls(hash_key)
            ghash.digest(b"", b"")
        except Exception:  # pycryptodome's internals changed: use its public GCM instead
            return None
        return ghash

    def digest(self, aad: Any, ct: Any) -> bytes:
        """GHASH(aad padded || ct padded || bit lengths), ready to be masked into the tag."""
        blocks = b"".join(
            (
                aad,
                bytes(-len(aad) % 16),
                ct,
                bytes(-len(ct) % 16),
                struct.pack(">QQ", 8 * len(aad), 8 * len(ct)),
            )
        )
        y = self._buffer(16)
        err = self._impl.ghash(
            y, self._ptr(blocks), self._size_t(len(blocks)), y, self._tables._exp_key.get()
        )
        if err:
            raise CipherError(f"GHASH failed with error {err}")
        return self._raw(y)


def _sealed_view(sealed: bytes) -> memoryview:
    view = memoryview(sealed)
    if view.nbytes < OVERHEAD:
        raise CipherError(f"sealed frame too short ({view.nbytes} bytes)")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(16)
