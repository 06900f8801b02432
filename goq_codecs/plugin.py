"""Registers the built-in codecs (raw, capnp) and ciphers (aes-gcm, none) with goq's plugin
manager. Cheap to import: pycapnp and the crypto libraries load only when a factory runs.
"""

from __future__ import annotations

from goq_core.hookspecs import Register, hookimpl
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


@hookimpl
def goq_register_codecs(register: Register) -> None:
    register("raw", raw_codec)
    register("capnp", capnp_codec)


@hookimpl
def goq_register_ciphers(register: Register) -> None:
    register("aes-gcm", aes_gcm_cipher)
    register("none", none_cipher)
