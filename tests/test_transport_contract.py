"""The transport contract (goq_core.interfaces), checked the same way against every transport:
memory, nng and zmq. Servers run in threads of this process, on 127.0.0.1 ports chosen free.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pluggy
import pytest

import goq_transports.plugin
from goq_core import hookspecs
from goq_core.errors import FrameTooBig, PluginNotFound, TransportError, TransportTimeout
from goq_core.plugins import Plugins
from tests.support import free_port, in_thread

KINDS = ("memory", "nng", "zmq")
SHORT = 0.3  # seconds for a request that is meant to time out
LONG = 5.0  # seconds for one that is meant to succeed (never reached when all is well)


class Echo:
    """A server loop in a thread replying b"re:" + request at once, until stopped."""

    def __init__(self, server) -> None:
        self.server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                got = self.server.recv(0.05)
                if got is not None:
                    self.server.reply(got[0], b"re:" + got[1])
        finally:
            self.server.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()


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
    pm.register(goq_transports.plugin)
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
