"""The transport contract (goq_core.interfaces), checked the same way against every transport:
memory, nng and zmq. Servers run in threads of this process, on 127.0.0.1 ports chosen free.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator

import pluggy
import pytest

import goq_transports.plugin
from goq_core import hookspecs
from goq_core.errors import FrameTooBig, PluginNotFound, TransportError, TransportTimeout
from goq_core.plugins import Plugins, register_builtin
from goq_transports.nng_server import NngServer
from goq_transports.zmq_server import ZmqServer
from tests.support import Echo, free_port, in_thread, wait_for

KINDS = ("memory", "nng", "zmq")
SHORT = 0.3  # seconds for a request that is meant to time out
LONG = 5.0  # seconds for one that is meant to succeed (never reached when all is well)
GONE_WITHIN = 0.1  # seconds after a client's death by which reply() must say it is gone


class Env:
    """One transport, one address, and everything opened on them (closed at teardown)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.transport = getattr(goq_transports.plugin, f"{kind}_transport")()
        if kind == "memory":
            self.address = f"memory://{uuid.uuid4().hex}"
        else:
            self.address = f"tcp://127.0.0.1:{free_port()}"
        self._closers: list[Callable[[], None]] = []

    def listen(self, **kw):
        server = self.transport.listen(self.address, **kw)
        self._closers.append(server.close)
        return server

    def echo(self, **kw) -> Echo:
        echo = Echo(self.transport.listen(self.address, **kw))
        self._closers.append(echo.stop)
        return echo

    def dial(self, **kw):
        client = self.transport.dial(self.address, **kw)
        self._closers.append(client.close)
        return client

    def close_all(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):  # closing twice may complain; go on
                close()


@pytest.fixture(params=KINDS)
def env(request) -> Iterator[Env]:
    e = Env(request.param)
    yield e
    e.close_all()


def test_round_trip_returns_the_servers_reply(env: Env) -> None:
    env.echo()
    client = env.dial()
    assert client.request(b"hello", LONG) == b"re:hello"
    assert client.request(b"", LONG) == b"re:"


def test_held_replies_can_be_answered_later_and_out_of_order(env: Env) -> None:
    server = env.listen()
    clients = [env.dial() for _ in range(3)]
    calls = [in_thread(lambda c=c, i=i: c.request(b"q%d" % i, LONG)) for i, c in enumerate(clients)]
    held = []
    deadline = time.monotonic() + LONG
    while len(held) < 3 and time.monotonic() < deadline:
        got = server.recv(0.5)
        if got is not None:
            held.append(got)
    assert sorted(data for _, data in held) == [b"q0", b"q1", b"q2"]
    time.sleep(0.1)  # the clients keep waiting while their replies are held
    for peer, data in reversed(held):
        assert server.reply(peer, b"answer to " + data)
    for i, (thread, out) in enumerate(calls):
        thread.join(LONG)
        assert out == [b"answer to q%d" % i]


def test_fifty_concurrent_clients_each_get_their_own_reply(env: Env) -> None:
    env.echo()
    clients = [env.dial() for _ in range(50)]

    def talk(i: int) -> list[bytes]:
        return [clients[i].request(b"%d/%d" % (i, n), LONG) for n in range(3)]

    calls = [in_thread(lambda i=i: talk(i)) for i in range(50)]
    for i, (thread, out) in enumerate(calls):
        thread.join(LONG * 2)
        assert out == [[b"re:%d/%d" % (i, n) for n in range(3)]]


def test_reply_to_gone_client_returns_false_and_server_keeps_serving(env: Env) -> None:
    server = env.listen()
    gone = env.dial()
    call = in_thread(lambda: gone.request(b"then I left", SHORT))
    got = server.recv(LONG)
    assert got is not None and got[1] == b"then I left"
    call[0].join(LONG)
    assert isinstance(call[1][0], TransportTimeout)
    gone.close()
    time.sleep(0.2)  # let the socket transports notice the closed connection
    assert server.reply(got[0], b"too late") is False
    assert server.reply(("not", "a peer"), b"x") is False

    other = env.dial()
    thread, out = in_thread(lambda: other.request(b"still there?", LONG))
    got = server.recv(LONG)
    assert got is not None and got[1] == b"still there?"
    assert server.reply(got[0], b"yes")
    thread.join(LONG)
    assert out == [b"yes"]


def _until_reply_fails(server, peer, limit: float = 2.0) -> float:
    """Seconds until reply(peer) returns False (replies sent before that reach nobody);
    `limit` + 1 when it never did."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if server.reply(peer, b"are you there?") is False:
            return time.monotonic() - started
        time.sleep(0.001)
    return limit + 1


def test_reply_to_client_closed_while_its_request_is_held_returns_false(env: Env) -> None:
    server = env.listen()
    client = env.dial()
    call = in_thread(lambda: client.request(b"hold me", 1.0))
    got = server.recv(LONG)
    assert got is not None and got[1] == b"hold me"
    # memory and nng: the request is still waiting, close() wakes it; zmq sockets are not
    # thread-safe, so there close() waits for the request to time out first.
    client.close()
    assert _until_reply_fails(server, got[0]) < GONE_WITHIN
    call[0].join(LONG)
    assert isinstance(call[1][0], (TransportError, TransportTimeout))


_HOLDER = textwrap.dedent(
    """
    import sys
    import goq_transports.plugin as plugin
    client = getattr(plugin, sys.argv[1] + "_transport")().dial(sys.argv[2])
    client.request(b"held by a doomed client", 60.0)
    """
)


@pytest.mark.parametrize("kind", ["nng", "zmq"])
def test_reply_to_a_sigkilled_client_process_fails_within_100_ms(kind: str) -> None:
    """A worker process killed while its request for work is held: the server's reply to that
    request must fail at once, so that the job goes back to the queue (issue 9, item 10)."""
    env = Env(kind)
    proc = None
    try:
        server = env.listen()
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, kind, env.address],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            stdin=subprocess.DEVNULL,
        )
        got = server.recv(20)
        assert got is not None and got[1] == b"held by a doomed client"
        assert server.reply(("not", "a peer"), b"x") is False
        proc.send_signal(signal.SIGKILL)
        proc.wait(LONG)  # dead and reaped: the kernel has closed its sockets
        latency = _until_reply_fails(server, got[0])
        assert latency < GONE_WITHIN, f"{kind}: reply still accepted {latency:.3f}s after death"
        # and the server goes on serving others
        client = env.dial()
        call = in_thread(lambda: client.request(b"next", LONG))
        nxt = server.recv(LONG)
        assert nxt is not None and nxt[1] == b"next"
        assert server.reply(nxt[0], b"served")
        call[0].join(LONG)
        assert call[1] == [b"served"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(LONG)
        env.close_all()


# --- bounds on what a peer without the key can hold (issue 9, item 7) ---------------------


def _open_half_frame(kind: str, port: int, announced: int, sent: int) -> socket.socket:
    """A raw connection that completes the transport's handshake, announces a frame of
    `announced` bytes and sends only `sent` of it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=LONG)
    if kind == "zmq":  # ZMTP 3.0 greeting (NULL, as client), READY as a DEALER, long frame
        greeting = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + bytes(32)
        ready = b"\x05READY\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
        s.sendall(greeting + b"\x04" + bytes([len(ready)]) + ready)
        s.sendall(b"\x02" + announced.to_bytes(8, "big"))
    else:  # SP header of a Pair1 peer, then the 8-byte length of the frame
        s.sendall(b"\x00SP\x00\x00\x11\x00\x00" + announced.to_bytes(8, "big"))
    s.sendall(bytes(sent))
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        while True:
            if not s.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _short_idle_server(kind: str, address: str, max_frame: int = 1 << 20):
    """A server that drops silent connections after about a second."""
    if kind == "zmq":
        return ZmqServer(address, max_frame, heartbeat_ivl_ms=200, heartbeat_timeout_ms=800)
    return NngServer(address, max_frame, idle_sec=0.8)


@pytest.mark.parametrize("kind", ["nng", "zmq"])
def test_half_sent_frame_from_a_silent_peer_is_dropped(kind: str) -> None:
    port = free_port()
    server = _short_idle_server(kind, f"tcp://127.0.0.1:{port}")
    conns: list[socket.socket] = []
    try:
        conns = [_open_half_frame(kind, port, 1 << 20, 100_000) for _ in range(3)]

        def all_dropped() -> bool:
            server.recv(0.05)  # the server loop keeps turning (nng reaps idle pipes in recv)
            return all(_closed_by_peer(c) for c in conns)

        wait_for(all_dropped, 5, "the server to drop the silent connections")
    finally:
        for c in conns:
            c.close()
        server.close()


@pytest.mark.parametrize("kind", ["nng", "zmq"])
def test_held_request_of_a_live_client_outlives_the_idle_timeout(kind: str) -> None:
    """A worker's request for work may be held for hours: the idle timeout must not cut it."""
    env = Env(kind)
    server = _short_idle_server(kind, env.address)
    try:
        client = env.dial()
        call = in_thread(lambda: client.request(b"wait for work", 20))
        got = server.recv(LONG)
        assert got is not None
        deadline = time.monotonic() + 3.0  # several idle timeouts
        while time.monotonic() < deadline:
            server.recv(0.1)  # the server loop keeps turning (nng reaps idle pipes in recv)
        assert server.reply(got[0], b"a job")
        call[0].join(LONG)
        assert call[1] == [b"a job"]
    finally:
        server.close()
        env.close_all()


def test_nng_server_refuses_pipes_beyond_its_limit() -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    server = NngServer(address, 1 << 20, max_pipes=2)
    echo = Echo(server)
    env = Env("nng")
    env.address = address
    try:
        first, second = env.dial(), env.dial()
        assert first.request(b"1", LONG) == b"re:1"
        assert second.request(b"2", LONG) == b"re:2"
        third = env.dial()
        with pytest.raises(TransportTimeout):
            third.request(b"3", SHORT)
        assert server.refused_pipes >= 1
        first.close()

        def served() -> bool:  # the refused dialer gets the freed place (a request sent while
            try:  # nng reconnects may be lost: goq's clients re-send after a timeout anyway)
                return third.request(b"3 again", 1.0) == b"re:3 again"
            except TransportTimeout:
                return False

        wait_for(served, 3 * LONG, "the refused client to be let in once a place is free")
    finally:
        env.close_all()
        echo.stop()


def test_client_times_out_without_server_then_succeeds_once_one_listens(env: Env) -> None:
    client = env.dial()
    started = time.monotonic()
    with pytest.raises(TransportTimeout):
        client.request(b"anyone?", SHORT)
    assert SHORT * 0.8 <= time.monotonic() - started < SHORT + 1.0
    env.echo()
    assert client.request(b"now?", LONG) == b"re:now?"


def test_request_made_while_no_server_does_not_reach_a_later_server(env: Env) -> None:
    client = env.dial()
    with pytest.raises(TransportTimeout):
        client.request(b"stale", SHORT)
    server = env.listen()
    thread, out = in_thread(lambda: client.request(b"fresh", LONG))
    got = server.recv(LONG)
    assert got is not None and got[1] == b"fresh"
    server.reply(got[0], b"ok")
    thread.join(LONG)
    assert out == [b"ok"]


def test_client_recovers_when_server_listens_again_on_same_address(env: Env) -> None:
    first = env.echo()
    client = env.dial()
    assert client.request(b"one", LONG) == b"re:one"
    first.stop()
    with pytest.raises(TransportTimeout):
        client.request(b"while down", SHORT)
    env.echo()
    assert client.request(b"two", LONG) == b"re:two"


def test_late_reply_to_timed_out_request_is_not_returned_for_the_next(env: Env) -> None:
    server = env.listen()
    client = env.dial()
    first = in_thread(lambda: client.request(b"first", SHORT))
    got1 = server.recv(LONG)
    assert got1 is not None and got1[1] == b"first"
    first[0].join(LONG)
    assert isinstance(first[1][0], TransportTimeout)
    server.reply(got1[0], b"late answer to first")  # the client is alive, but moved on
    time.sleep(0.1)  # let the late reply arrive at the client before it asks again

    second = in_thread(lambda: client.request(b"second", LONG))
    got2 = server.recv(LONG)
    assert got2 is not None and got2[1] == b"second"
    assert server.reply(got2[0], b"answer to second")
    second[0].join(LONG)
    assert second[1] == [b"answer to second"]


def test_oversized_frame_is_refused_and_server_keeps_serving(env: Env) -> None:
    env.echo(max_frame=1024)
    client = env.dial()
    assert client.request(b"x" * 1000, LONG) == b"re:" + b"x" * 1000
    with pytest.raises((TransportTimeout, FrameTooBig)):
        client.request(b"x" * 4096, SHORT)
    assert env.dial().request(b"small", LONG) == b"re:small"
    assert client.request(b"small again", LONG) == b"re:small again"


def test_request_over_the_clients_own_limit_raises_frame_too_big(env: Env) -> None:
    env.echo()
    client = env.dial(max_frame=100)
    with pytest.raises(FrameTooBig):
        client.request(b"x" * 101, LONG)
    assert client.request(b"x" * 10, LONG) == b"re:" + b"x" * 10


def test_second_listener_on_a_busy_address_is_refused(env: Env) -> None:
    env.listen()
    started = time.monotonic()
    with pytest.raises(TransportError):
        env.transport.listen(env.address)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("kind", ["nng", "zmq"])
@pytest.mark.parametrize("address", ["127.0.0.1:1776", "tcp://127.0.0.1", "tcp://:x"])
def test_bad_tcp_address_is_a_transport_error(kind: str, address: str) -> None:
    transport = getattr(goq_transports.plugin, f"{kind}_transport")()
    with pytest.raises(TransportError):
        transport.listen(address)
    with pytest.raises(TransportError):
        transport.dial(address)


def test_memory_listeners_belong_to_their_transport_instance() -> None:
    a = goq_transports.plugin.memory_transport()
    b = goq_transports.plugin.memory_transport()
    server = a.listen("memory://shared-name")
    try:
        with pytest.raises(TransportTimeout):
            b.dial("memory://shared-name").request(b"hi", 0.05)
        b.listen("memory://shared-name").close()  # the name is free in b
    finally:
        server.close()


def _transport_plugins() -> Plugins:
    pm = pluggy.PluginManager("goq")
    pm.add_hookspecs(hookspecs)
    register_builtin(pm, goq_transports.plugin)  # marks its plain hook functions, then registers
    return Plugins(pm)


@pytest.mark.parametrize("kind", KINDS)
def test_plugin_manager_offers_each_transport_by_name(kind: str) -> None:
    plugins = _transport_plugins()
    transport = plugins.transport(kind)
    assert transport.name == kind
    assert plugins.transport(kind) is transport  # made once, shared by listen and dial


def test_default_plugin_manager_returns_our_nng_transport() -> None:
    pytest.importorskip("goq_codecs.plugin")
    pytest.importorskip("goq_core.stores.plugin")
    from goq_transports.nng_transport import NngTransport

    assert isinstance(Plugins().transport("nng"), NngTransport)


def test_unknown_transport_name_lists_those_available() -> None:
    with pytest.raises(PluginNotFound, match="memory, nng, zmq"):
        _transport_plugins().transport("carrier-pigeon")
