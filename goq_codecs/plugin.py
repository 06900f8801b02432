"""Registers the built-in codecs (raw, capnp) and ciphers (aes-gcm, none) with goq's plugin
manager. Cheap to import: pycapnp and the crypto libraries load only when a factory runs.

The hooks are plain functions, not marked `@hookimpl` (that would import pluggy on the CLI's
fast path): `goq_core.plugins.register_builtin` marks them when it registers this module, and
`Plugins(lazy=True)` calls them directly (see goq_core.plugins).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from goq_core.hookspecs import Register
    from goq_core.interfaces import Cipher, Codec


def raw_codec() -> Codec:
    from goq_codecs.raw import RawCodec

    return RawCodec()


def capnp_codec() -> Codec:
    from goq_codecs.capnp_codec import CapnpCodec

    return CapnpCodec()


def aes_gcm_cipher(key: bytes) -> Cipher:
    """AES-256-GCM with the fastest backend available (see goq_codecs.aesgcm.aes_gcm)."""
    from goq_codecs.aesgcm import aes_gcm

    return aes_gcm(key)


def none_cipher(key: bytes) -> Cipher:
    from goq_codecs.none_cipher import NoneCipher

    return NoneCipher(key)


def goq_register_codecs(register: Register) -> None:
    register("raw", raw_codec)
    register("capnp", capnp_codec)


def goq_register_ciphers(register: Register) -> None:
    register("aes-gcm", aes_gcm_cipher)
    register("none", none_cipher)
