"""goq's own client ends (goq_transports.stream_client: zmtp_client for zmq, sp_client for nng)
against the real servers (libzmq's ROUTER, nng's Pair1), for what the shared contract suite does
not reach: connections the server dropped while idle, big frames both ways, PINGs between
requests, peers that speak another protocol, and any bytes a peer may send.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goq_core.errors import FrameTooBig, TransportError, TransportTimeout
from goq_transports.nng_server import NngServer
from goq_transports.sp_client import HEADER, SpClient
from goq_transports.zmq_server import ZmqServer
from goq_transports.zmtp_client import GREETING, ZmtpClient
from tests.support import Echo, free_port, in_thread

LONG = 5.0
SERVERS = {"zmq": ZmqServer, "nng": NngServer}
CLIENTS = {"zmq": ZmtpClient, "nng": SpClient}


@pytest.fixture
def address() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("kind", ["zmq", "nng"])
def test_an_idle_connection_dropped_by_the_server_is_dialled_afresh(
    address: str, kind: str
) -> None:
    """A worker's pooled connection may sit idle past the server's heartbeat (zmq) or idle
    (nng) timeout: the server drops it, and the next request must go through on a new one."""
    if kind == "zmq":
        server = ZmqServer(address, 1 << 20, heartbeat_ivl_ms=100, heartbeat_timeout_ms=300)
    else:
        server = NngServer(address, 1 << 20, idle_sec=0.3)  # reaped within a second or so
    echo = Echo(server)
    client = CLIENTS[kind](address)
    try:
        assert client.request(b"one", LONG) == b"re:one"
        first = client._sock
        time.sleep(1.0 if kind == "zmq" else 1.6)  # the server closes the connection
        assert client.request(b"two", LONG) == b"re:two"
        assert client._sock is not first
    finally:
        client.close()
        echo.stop()


def test_pings_that_arrived_between_requests_are_answered_and_skipped(address: str) -> None:
    echo = Echo(ZmqServer(address, 1 << 20, heartbeat_ivl_ms=50, heartbeat_timeout_ms=2_000))
    client = ZmtpClient(address)
    try:
        for n in range(5):
            assert client.request(b"%d" % n, LONG) == b"re:%d" % n
            time.sleep(0.12)  # a PING or two wait in the socket
    finally:
        client.close()
        echo.stop()


@pytest.mark.parametrize("kind", ["zmq", "nng"])
@pytest.mark.parametrize("size", [255, 256, 3 << 20])
def test_frames_of_every_size_class_go_both_ways(address: str, kind: str, size: int) -> None:
    """Short frames (zmq: 1-byte size) and long ones (8-byte size), up to several MiB."""
    echo = Echo(SERVERS[kind](address, 8 << 20))
    client = CLIENTS[kind](address, 8 << 20)
    try:
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert client.request(data, LONG) == b"re:" + data
    finally:
        client.close()
        echo.stop()


@pytest.mark.parametrize("kind", ["zmq", "nng"])
def test_a_reply_over_the_clients_limit_ends_the_connection_not_the_client(
    address: str, kind: str
) -> None:
    server = SERVERS[kind](address, 1 << 20)
    client = CLIENTS[kind](address, max_frame=1000)
    try:
        thread, out = in_thread(lambda: client.request(b"big please", LONG))
        got = server.recv(LONG)
        assert got is not None
        server.reply(got[0], b"y" * 100_000)
        thread.join(LONG)
        assert isinstance(out[0], TransportTimeout)
        thread, out = in_thread(lambda: client.request(b"small", LONG))
        got = server.recv(LONG)  # on a new connection
        assert got is not None and got[1] == b"small"
        server.reply(got[0], b"ok")
        thread.join(LONG)
        assert out == [b"ok"]
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("kind", ["zmq", "nng"])
def test_a_request_over_the_limit_is_refused_before_anything_is_sent(
    address: str, kind: str
) -> None:
    client = CLIENTS[kind](address, max_frame=10)
    with pytest.raises(FrameTooBig):
        client.request(b"x" * 11, 0.1)
    client.close()


@pytest.mark.parametrize("kind", ["zmq", "nng"])
def test_dialling_the_other_transports_server_fails_with_a_clear_error_not_a_hang(
    address: str, kind: str
) -> None:
    server = SERVERS["nng" if kind == "zmq" else "zmq"](address, 1 << 20)
    client = CLIENTS[kind](address)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as err:
            client.request(b"hello?", 2.0)
        assert time.monotonic() - started < 2.5
        assert not isinstance(err.value, TransportTimeout)
        assert "another transport" in str(err.value)
    finally:
        client.close()
        server.close()


def _refused_by_a_fake_peer(answer: bytes, match: str, kind: str = "zmq") -> None:
    """A listener that reads our greeting and answers `answer`: the request fails with a
    TransportError matching `match`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(64)
            conn.sendall(answer)
            time.sleep(1.0)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = CLIENTS[kind](f"tcp://127.0.0.1:{port}")
    try:
        with pytest.raises(TransportError, match=match):
            client.request(b"x", LONG)
    finally:
        client.close()
        thread.join(LONG)
        listener.close()


def test_a_peer_that_is_not_zmtp_is_a_transport_error() -> None:
    _refused_by_a_fake_peer(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(40), "does not speak zmq")


def test_a_zmq_peer_that_is_not_a_router_is_refused() -> None:
    value = b"PUB"
    ready_body = b"\x05READY\x0bSocket-Type" + len(value).to_bytes(4, "big") + value
    answer = GREETING + b"\x04" + bytes([len(ready_body)]) + ready_body
    _refused_by_a_fake_peer(answer, "not a goq zmq server")


def test_an_sp_peer_of_another_protocol_is_refused() -> None:
    _refused_by_a_fake_peer(HEADER[:4] + (0x30).to_bytes(2, "big") + bytes(2), "not Pair1", "nng")


def test_a_peer_that_is_not_sp_is_a_transport_error() -> None:
    _refused_by_a_fake_peer(b"HTTP/1.1 400 Bad Request\r\n\r\n", "does not speak nng", "nng")


@pytest.mark.parametrize("kind", ["zmq", "nng"])
def test_addresses_are_read_as_the_libraries_read_them(kind: str) -> None:
    """An IPv6 literal loses its brackets; an ASCII name goes to getaddrinfo as bytes (no idna
    codec to import); a bad address is a TransportError at once."""
    assert CLIENTS[kind]("tcp://[::1]:1776")._host == b"::1"
    assert CLIENTS[kind]("tcp://node7.example:1776")._host == b"node7.example"
    with pytest.raises(TransportError):
        CLIENTS[kind]("127.0.0.1:1776")


@pytest.mark.parametrize("kind", ["zmq", "nng"])
def test_a_closed_client_refuses_requests(address: str, kind: str) -> None:
    client = CLIENTS[kind](address)
    client.close()
    with pytest.raises(TransportError):
        client.request(b"x", 0.1)


# --- whatever a connected peer sends, the client ends with a TransportError in time ---------

_FRAMES = st.lists(
    st.one_of(
        st.binary(max_size=64),  # raw garbage
        st.tuples(st.integers(0, 7), st.binary(max_size=300)).map(  # a frame: MORE, LONG, COMMAND
            lambda f: (
                bytes([f[0] | 0b10]) + len(f[1]).to_bytes(8, "big") + f[1]
                if len(f[1]) > 255 or f[0] & 0b10
                else bytes([f[0], len(f[1])]) + f[1]
            )
        ),
        st.sampled_from(  # commands: PING (with and without context), ERROR, unknown, empty
            [
                b"\x04\x07\x04PING\x00\x0a",
                b"\x04\x0b\x04PING\x00\x0aabcd",
                b"\x04\x08\x05ERROR\x01x",
                b"\x04\x04\x03FOO",
                b"\x04\x00",
                b"\x02" + (1 << 62).to_bytes(8, "big"),  # a frame larger than any limit
            ]
        ),
    ),
    max_size=6,
)


_SP_MESSAGES = st.lists(
    st.one_of(
        st.binary(max_size=64),  # raw garbage
        st.tuples(st.integers(0, 300), st.binary(max_size=300)).map(  # hop count, body
            lambda m: (len(m[1]) + 4).to_bytes(8, "big") + m[0].to_bytes(4, "big") + m[1]
        ),
        st.just((1 << 62).to_bytes(8, "big")),  # a message larger than any limit
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(stream=_FRAMES, close=st.booleans())
def test_any_bytes_after_the_zmq_handshake_end_in_a_transport_error(
    stream: list[bytes], close: bool
) -> None:
    _any_bytes_end_in_a_transport_error(ZmtpClient, stream, close)


@settings(max_examples=150, deadline=None)
@given(stream=_SP_MESSAGES, close=st.booleans())
def test_any_bytes_after_the_sp_handshake_end_in_a_transport_error(
    stream: list[bytes], close: bool
) -> None:
    _any_bytes_end_in_a_transport_error(SpClient, stream, close)


def _any_bytes_end_in_a_transport_error(client_class, stream: list[bytes], close: bool) -> None:
    """A peer in the middle of the connection (the transports' framing is not sealed: only
    goq's frames are) can send anything: the request must end in a TransportError (a timeout
    included) within its timeout, never another exception and never a hang."""
    ours, theirs = socket.socketpair()
    client = client_class("tcp://127.0.0.1:1", max_frame=1 << 16)  # redials find nothing there
    client._sock = ours  # as if dialled and greeted

    def peer() -> None:  # once the request is in, the "reply": these bytes
        theirs.settimeout(2.0)
        with contextlib.suppress(OSError):
            theirs.recv(4096)
            theirs.sendall(b"".join(stream))
            if close:
                theirs.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(TransportError):
            client.request(b"x", 0.2)
        assert time.monotonic() - started < 1.5
    finally:
        client.close()
        thread.join(5)
        theirs.close()
