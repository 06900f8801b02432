"""The plugin system: built-ins and third-party plugins register the same way and are found by
name; unknown names fail with the list of known ones."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from goq_core.errors import PluginNotFound
from goq_core.hookspecs import hookimpl
from goq_core.plugins import Plugins, make_plugin_manager


class EchoCodec:
    """A codec defined only in this test."""

    name = "echo-test"

    def encode(self, msg):  # pragma: no cover - not called here
        raise NotImplementedError

    def decode(self, data):  # pragma: no cover
        raise NotImplementedError


class EchoPlugin:
    @hookimpl
    def goq_register_codecs(self, register):
        register("echo-test", EchoCodec)


def test_registered_plugin_is_selected_by_name() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(EchoPlugin())
    plugins = Plugins(pm)
    codec = plugins.codec("echo-test")
    assert isinstance(codec, EchoCodec)
    assert plugins.codec("echo-test") is codec  # made once, then reused
    assert "echo-test" in plugins.names("codec")


def test_builtins_register_like_any_plugin() -> None:
    plugins = Plugins(make_plugin_manager(load_entrypoints=False))
    assert {"zmq", "nng", "memory"} <= set(plugins.names("transport"))
    assert {"sqlite", "memory"} <= set(plugins.names("store"))


def test_unknown_name_lists_the_available_ones() -> None:
    plugins = Plugins(make_plugin_manager(load_entrypoints=False))
    with pytest.raises(PluginNotFound) as err:
        plugins.transport("carrier-pigeon")
    assert "carrier-pigeon" in str(err.value)
    assert "memory, nng, zmq" in str(err.value)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party package installed on sys.path with an entry point in the `goq` group."""
    pkg = tmp_path / "goq_pigeon"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from goq_core.hookspecs import hookimpl

            class Pigeon:
                name = "pigeon"

            @hookimpl
            def goq_register_transports(register):
                register("pigeon", Pigeon)
            """
        )
    )
    dist = tmp_path / "goq_pigeon-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: goq-pigeon\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[goq]\npigeon = goq_pigeon\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("goq_pigeon", None)


def test_third_party_plugin_is_loaded_from_the_goq_entry_point_group(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOQ_LOAD_PLUGINS", raising=False)
    plugins = Plugins(make_plugin_manager())
    assert plugins.transport("pigeon").name == "pigeon"


def test_goq_load_plugins_limits_which_entry_points_load(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOQ_LOAD_PLUGINS", "")
    plugins = Plugins(make_plugin_manager())
    assert "pigeon" not in plugins.names("transport")
    monkeypatch.setenv("GOQ_LOAD_PLUGINS", "pigeon")
    assert "pigeon" in Plugins(make_plugin_manager()).names("transport")


def test_lazy_plugins_scan_entry_points_only_for_a_name_not_built_in(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOQ_LOAD_PLUGINS", raising=False)
    plugins = Plugins(lazy=True)
    plugins.transport("memory")
    assert "goq_pigeon" not in sys.modules  # a built-in name needed no scan
    assert plugins.transport("pigeon").name == "pigeon"


class ReversedRawCodec:
    """A third-party codec defined only here: goq's raw encoding, bytes reversed."""

    name = "reversed-test"

    def __init__(self) -> None:
        from goq_codecs.raw import RawCodec

        self._raw = RawCodec()

    def encode(self, msg):
        return self._raw.encode(msg)[::-1]

    def decode(self, data):
        return self._raw.decode(bytes(data)[::-1])


class ReversedCodecPlugin:
    @hookimpl
    def goq_register_codecs(self, register):
        register("reversed-test", ReversedRawCodec)


def test_a_plugin_codec_carries_a_whole_session_without_touching_goq(tmp_path: Path) -> None:
    """A ninth combination (zmq + a codec from a test plugin + aes-gcm): submit, stat and a
    mismatch error, through a real server and client."""
    import os
    import threading

    from goq_core.config import Settings
    from goq_core.errors import RemoteError
    from goq_core.messages import Job
    from goq_core.roles.client import Client
    from goq_core.roles.server import Server, ServerOptions
    from tests.cluster import free_port

    def plugins() -> Plugins:
        pm = make_plugin_manager(load_entrypoints=False)
        pm.register(ReversedCodecPlugin())
        return Plugins(pm)

    os.makedirs(tmp_path / ".goq")
    settings = Settings(
        home=str(tmp_path), jserv_ip="127.0.0.1", jserv_port=free_port(), codec="reversed-test"
    )
    key = os.urandom(32)
    server = Server(settings, key, plugins(), ServerOptions(store="memory"))
    server.open()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Client(settings, key, plugins()) as client:
            first, n = client.submit([Job(cmd="true", dir=str(tmp_path))])
            assert (first, n) == (1, 1)
            assert client.stat().counters["waitingJobs"] == 1
        raw_settings = Settings(**{**_fields(settings), "codec": "raw"})
        with Client(raw_settings, key, plugins()) as stranger, pytest.raises(RemoteError) as err:
            stranger.stat()
        assert "reversed-test" in str(err.value)
        with Client(settings, key, plugins()) as client:
            client.shutdown()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        server.close()


def _fields(settings) -> dict:
    from dataclasses import fields

    return {f.name: getattr(settings, f.name) for f in fields(settings)}
