"""The cipher contract: aes-gcm's backends make and accept the same bytes and reject anything
not sealed with this key and header; `none` passes bytes through. Then whole frames: the wire
with every codec and cipher, and a frame from another key dropped as a bad signature.
"""

from __future__ import annotations

import os

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import goq_codecs.plugin
from goq_codecs.aesgcm import (
    OVERHEAD,
    CryptographyAesGcm,
    PycryptodomeAesGcm,
    aes_gcm,
)
from goq_codecs.none_cipher import NoneCipher
from goq_core import hookspecs
from goq_core.drops import BAD_CODEC, BAD_SIG
from goq_core.errors import BadFrame, CipherError
from goq_core.messages import Job, JobState, Kind, Message
from goq_core.plugins import Plugins, register_builtin
from goq_core.wire import Wire

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = b"GQ\x01M\x0draw/aes-gcm"

# AES-256-GCM, 96-bit IV: test case 16 of McGrew & Viega, "The Galois/Counter Mode of Operation"
TV_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
TV_IV = bytes.fromhex("cafebabefacedbaddecaf888")
TV_PLAIN = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
TV_AAD = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
TV_SEALED = TV_IV + bytes.fromhex(
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    "76fc6ece0f4e1768cddf8853bb2d551b"  # the tag
)

MAKERS = {
    "cryptography": lambda key: CryptographyAesGcm(key),
    "pycryptodome": lambda key: PycryptodomeAesGcm(key),
    "pycryptodome-per-message": lambda key: PycryptodomeAesGcm(key, reuse=False),
}


@pytest.fixture(params=list(MAKERS))
def make(request):
    return MAKERS[request.param]


# --- aes-gcm -----------------------------------------------------------------------------------


def test_pycryptodome_backend_sets_up_the_key_once() -> None:
    assert PycryptodomeAesGcm(KEY).reuses_key_setup
    assert not PycryptodomeAesGcm(KEY, reuse=False).reuses_key_setup


def test_every_backend_opens_the_published_test_vector(make) -> None:
    assert make(TV_KEY).open(TV_SEALED, TV_AAD) == TV_PLAIN


@pytest.mark.parametrize("sealer", list(MAKERS))
@pytest.mark.parametrize("opener", list(MAKERS))
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 70_000])
def test_any_backend_opens_what_any_other_sealed(sealer: str, opener: str, size: int) -> None:
    plain = os.urandom(size)
    sealed = MAKERS[sealer](KEY).seal(plain, AAD)
    assert len(sealed) == size + OVERHEAD
    assert MAKERS[opener](KEY).open(sealed, AAD) == plain


@settings(deadline=None, max_examples=60)
@given(plain=st.binary(max_size=200), aad=st.binary(max_size=40))
def test_backends_agree_on_arbitrary_data_and_headers(plain: bytes, aad: bytes) -> None:
    ciphers = [make(KEY) for make in MAKERS.values()]
    for sealer in ciphers:
        sealed = sealer.seal(plain, aad)
        assert [c.open(sealed, aad) for c in ciphers] == [plain] * len(ciphers)


def test_each_seal_uses_a_fresh_nonce(make) -> None:
    cipher = make(KEY)
    sealed = [cipher.seal(b"same", AAD) for _ in range(50)]
    assert len({s[:12] for s in sealed}) == 50
    assert len(set(sealed)) == 50


def test_wrong_key_is_a_cipher_error(make) -> None:
    sealed = make(KEY).seal(b"secret", AAD)
    with pytest.raises(CipherError, match="authentication failed"):
        make(OTHER_KEY).open(sealed, AAD)


def test_wrong_header_is_a_cipher_error(make) -> None:
    sealed = make(KEY).seal(b"secret", AAD)
    with pytest.raises(CipherError):
        make(KEY).open(sealed, AAD[:-1] + b"X")
    with pytest.raises(CipherError):
        make(KEY).open(sealed, b"")


def test_a_flipped_bit_anywhere_is_a_cipher_error(make) -> None:
    cipher = make(KEY)
    sealed = cipher.seal(b"twenty bytes of text", AAD)
    for at in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[at] ^= bit
            with pytest.raises(CipherError):
                cipher.open(bytes(tampered), AAD)


def test_every_truncation_is_a_cipher_error(make) -> None:
    cipher = make(KEY)
    sealed = cipher.seal(b"some plaintext", AAD)
    for n in range(len(sealed)):
        with pytest.raises(CipherError):
            cipher.open(sealed[:n], AAD)
    with pytest.raises(CipherError):
        cipher.open(sealed + b"\x00", AAD)


@pytest.mark.parametrize("bad", [None, "text", 42])
def test_open_of_a_non_bytes_is_a_cipher_error(make, bad) -> None:
    with pytest.raises(CipherError):
        make(KEY).open(bad, AAD)


def test_bytearray_and_memoryview_open(make) -> None:
    cipher = make(KEY)
    sealed = cipher.seal(b"payload", AAD)
    assert cipher.open(bytearray(sealed), AAD) == b"payload"
    assert cipher.open(memoryview(sealed), AAD) == b"payload"


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), "k" * 32, None])
def test_a_key_that_is_not_32_bytes_is_refused(key) -> None:
    for factory in (
        *MAKERS.values(),
        aes_gcm,
        NoneCipher,
        goq_codecs.plugin.aes_gcm_cipher,
        goq_codecs.plugin.none_cipher,
    ):
        with pytest.raises(ValueError):
            factory(key)


def test_auto_backend_prefers_cryptography() -> None:
    assert aes_gcm(KEY).backend == "cryptography"
    assert aes_gcm(KEY, backend="pycryptodome").backend == "pycryptodome"
    with pytest.raises(ValueError, match="backend"):
        aes_gcm(KEY, backend="rot13")


def test_aes_gcm_is_secure_and_none_is_marked_insecure() -> None:
    for cipher in (aes_gcm(KEY), PycryptodomeAesGcm(KEY)):
        assert cipher.name == "aes-gcm" and cipher.insecure is False
    assert NoneCipher(KEY).name == "none" and NoneCipher(KEY).insecure is True


# --- none --------------------------------------------------------------------------------------


def test_none_cipher_passes_bytes_through() -> None:
    cipher = NoneCipher(KEY)
    assert cipher.seal(b"plain", AAD) == b"plain"
    assert cipher.open(b"anything at all", b"any header") == b"anything at all"
    assert cipher.open(b"", AAD) == b""
    assert cipher.open(bytearray(b"ba"), AAD) == b"ba"
    with pytest.raises(CipherError):
        cipher.open(None, AAD)  # type: ignore[arg-type]


# --- registration and frames -------------------------------------------------------------------


def codec_plugins() -> Plugins:
    pm = pluggy.PluginManager("goq")
    pm.add_hookspecs(hookspecs)
    register_builtin(pm, goq_codecs.plugin)  # marks its plain hook functions, then registers
    return Plugins(pm)


def test_ciphers_register_under_their_names() -> None:
    plugins = codec_plugins()
    assert plugins.names("cipher") == ["aes-gcm", "none"]
    assert plugins.cipher("aes-gcm", KEY).name == "aes-gcm"
    assert plugins.cipher("none", KEY).insecure is True


def sample_message() -> Message:
    job = Job(jobid=3, cmd="echo hi", shell=True, env=["A=1"], state=JobState.FINISHED,
              exit_status=-15, out_bytes=3)  # fmt: skip
    return Message(Kind.RESULT, workerid="w1", jobs=[job], data=b"hi\n", counters={"x": 1})


@pytest.mark.parametrize("codec", ["raw", "capnp"])
@pytest.mark.parametrize("cipher", ["aes-gcm", "none"])
def test_wire_packs_and_unpacks_with_every_codec_and_cipher(codec: str, cipher: str) -> None:
    plugins = codec_plugins()
    sender = Wire(plugins.codec(codec), plugins.cipher(cipher, KEY))
    receiver = Wire(plugins.codec(codec), plugins.cipher(cipher, KEY))
    msg = sample_message()
    frame = sender.pack(msg)
    assert frame.startswith(b"GQ\x01M") and f"{codec}/{cipher}".encode() in frame[:32]
    assert receiver.unpack(frame) == msg
    assert len(msg.nonce) == 16 and msg.sendtime_ns > 0


@pytest.mark.parametrize("codec", ["raw", "capnp"])
def test_wire_drops_a_frame_sealed_with_another_key_as_bad_signature(codec: str) -> None:
    plugins = codec_plugins()
    frame = Wire(plugins.codec(codec), plugins.cipher("aes-gcm", OTHER_KEY)).pack(sample_message())
    with pytest.raises(BadFrame) as caught:
        Wire(plugins.codec(codec), plugins.cipher("aes-gcm", KEY)).unpack(frame)
    assert caught.value.reason == BAD_SIG


def test_wire_drops_a_pycryptodome_frame_only_when_the_key_differs() -> None:
    codec = codec_plugins().codec("raw")
    msg = sample_message()
    frame = Wire(codec, PycryptodomeAesGcm(KEY)).pack(msg)
    assert Wire(codec, CryptographyAesGcm(KEY)).unpack(frame) == msg
    with pytest.raises(BadFrame) as caught:
        Wire(codec, CryptographyAesGcm(OTHER_KEY)).unpack(frame)
    assert caught.value.reason == BAD_SIG


@pytest.mark.parametrize("codec", ["raw", "capnp"])
def test_wire_drops_an_authentic_but_undecodable_frame_as_bad_codec(codec: str) -> None:
    plugins = codec_plugins()
    wire = Wire(plugins.codec(codec), plugins.cipher("aes-gcm", KEY))
    frame = wire.header + wire.cipher.seal(b"\x01\x02 not a message", wire.header)
    with pytest.raises(BadFrame) as caught:
        wire.unpack(frame)
    assert caught.value.reason == BAD_CODEC
