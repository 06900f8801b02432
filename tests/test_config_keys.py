"""Settings (defaults < settings file < environment < CLI overrides, checked values) and the
cluster key (created once, private, refused when missing, damaged or readable by others)."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from goq_core.config import (
    Settings,
    default_ip,
    goq_home,
    load_settings,
    save_settings,
    settings_dir,
    settings_path,
)
from goq_core.errors import ConfigError
from goq_core.keys import KEY_BYTES, create_key, key_path, load_key


@pytest.fixture
def home(tmp_path):
    return str(tmp_path)


def env_for(home: str, **more: str) -> dict[str, str]:
    return {"GOQ_HOME": home, "GOQ_JSERV_IP": "10.1.2.3", **more}


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- GOQ_HOME --------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"GOQ_HOME": ""}])
def test_missing_goq_home_is_a_config_error_saying_how_to_set_it(env):
    with pytest.raises(ConfigError, match=r"GOQ_HOME is not set: export GOQ_HOME="):
        goq_home(env)
    with pytest.raises(ConfigError, match="GOQ_HOME"):
        load_settings(env)


def test_settings_dir_is_dot_goq_under_home(home):
    assert settings_dir(home) == os.path.join(home, ".goq")
    assert Settings(home=home).dir == os.path.join(home, ".goq")


# --- defaults and precedence -----------------------------------------------------------------


def test_defaults_when_nothing_is_configured(home):
    s = load_settings(env_for(home))
    assert s == Settings(home=home, jserv_ip="10.1.2.3")
    assert (s.jserv_port, s.odir, s.sendtimeout_ms, s.heartbeat_sec) == (1776, "o", 1000, 5.0)
    assert (s.transport, s.codec, s.cipher) == ("zmq", "raw", "aes-gcm")
    assert s.address == "tcp://10.1.2.3:1776"


def test_default_ip_is_an_ipv4_address_and_used_when_unset(home):
    ip = default_ip()
    assert ipaddress.ip_address(ip).version == 4
    assert load_settings({"GOQ_HOME": home}).jserv_ip == ip


def test_settings_file_is_read_when_the_environment_is_silent(home):
    save_settings(Settings(home=home, jserv_ip="10.9.9.9", jserv_port=2000, heartbeat_sec=0.5))
    s = load_settings({"GOQ_HOME": home})
    assert (s.jserv_ip, s.jserv_port, s.heartbeat_sec) == ("10.9.9.9", 2000, 0.5)


def test_environment_overrides_disk_and_cli_overrides_environment(home):
    save_settings(Settings(home=home, jserv_port=2000, transport="nng", codec="capnp", odir="d"))
    env = env_for(home, GOQ_JSERV_PORT="3000", GOQ_TRANSPORT="memory", GOQ_CODEC="raw")
    s = load_settings(env, overrides={"transport": "zmq", "codec": None})
    assert s.jserv_port == 3000  # env beats disk
    assert s.transport == "zmq"  # override beats env
    assert s.codec == "raw"  # a None override (flag not given) changes nothing
    assert s.odir == "d"  # disk beats default


def test_empty_environment_variable_counts_as_unset(home):
    save_settings(Settings(home=home, jserv_port=2000))
    assert load_settings(env_for(home, GOQ_JSERV_PORT="")).jserv_port == 2000


def test_saved_settings_file_is_human_readable_and_round_trips(home):
    s = Settings(home=home, jserv_ip="10.0.0.7", jserv_port=1999, sendtimeout_ms=250)
    path = save_settings(s)
    assert path == settings_path(home)
    text = Path(path).read_text()
    assert "GOQ_JSERV_IP=10.0.0.7\n" in text and "GOQ_HEARTBEAT_SEC=5\n" in text
    assert load_settings({"GOQ_HOME": home}) == s


def test_settings_file_comments_and_unknown_names_are_ignored(home):
    os.makedirs(settings_dir(home))
    with open(settings_path(home), "w") as fh:
        fh.write("# a comment\n\nGOQ_FUTURE_THING=1\n GOQ_JSERV_PORT = 4000 \n")
    assert load_settings(env_for(home)).jserv_port == 4000


def test_unknown_override_name_is_a_programming_error(home):
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(env_for(home), overrides={"colour": "red"})


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("GOQ_JSERV_PORT", "http"),
        ("GOQ_JSERV_PORT", "0"),
        ("GOQ_JSERV_PORT", "65536"),
        ("GOQ_HEARTBEAT_SEC", "-1"),
        ("GOQ_HEARTBEAT_SEC", "0"),
        ("GOQ_HEARTBEAT_SEC", "nan"),
        ("GOQ_HEARTBEAT_SEC", "soon"),
        ("GOQ_SENDTIMEOUT_MSEC", "1.5"),
        ("GOQ_SENDTIMEOUT_MSEC", "-3"),
    ],
)
def test_bad_environment_value_is_a_config_error_naming_variable_and_value(home, name, value):
    with pytest.raises(ConfigError) as e:
        load_settings(env_for(home, **{name: value}))
    assert name in str(e.value) and repr(value) in str(e.value)
    assert "environment" in str(e.value)


def test_bad_value_in_settings_file_names_variable_and_file(home):
    os.makedirs(settings_dir(home))
    with open(settings_path(home), "w") as fh:
        fh.write("GOQ_JSERV_PORT=99999\n")
    with pytest.raises(ConfigError, match=r"GOQ_JSERV_PORT='99999'.*settings, line 1"):
        load_settings(env_for(home))


def test_bad_cli_override_is_a_config_error(home):
    with pytest.raises(ConfigError, match="GOQ_TRANSPORT=''.*command line"):
        load_settings(env_for(home), overrides={"transport": ""})


def test_malformed_settings_line_is_a_config_error(home):
    os.makedirs(settings_dir(home))
    with open(settings_path(home), "w") as fh:
        fh.write("GOQ_JSERV_PORT 1776\n")
    with pytest.raises(ConfigError, match="line 1: expected GOQ_NAME=value"):
        load_settings(env_for(home))


def test_config_module_imports_nothing_heavy():
    code = "import sys, goq_core.config; print(sorted({'typing','socket','subprocess'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


# --- key -------------------------------------------------------------------------------------


def test_create_key_makes_private_dir_and_key(home):
    path = create_key(home)
    assert path == key_path(home)
    assert mode(settings_dir(home)) == 0o700
    assert mode(path) == 0o600
    assert os.path.getsize(path) == KEY_BYTES
    assert load_key(home) == Path(path).read_bytes()
    assert [n for n in os.listdir(settings_dir(home)) if n != "key"] == []  # no temp left


def test_create_key_modes_do_not_depend_on_umask(home):
    old = os.umask(0)
    try:
        path = create_key(home)
    finally:
        os.umask(old)
    assert (mode(settings_dir(home)), mode(path)) == (0o700, 0o600)


def test_create_key_tightens_an_existing_settings_dir(home):
    os.makedirs(settings_dir(home))
    os.chmod(settings_dir(home), 0o755)
    create_key(home)
    assert mode(settings_dir(home)) == 0o700


def test_keys_are_random(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    create_key(str(a))
    create_key(str(b))
    assert load_key(str(a)) != load_key(str(b))


def test_second_create_key_is_refused_and_keeps_the_first(home):
    create_key(home)
    first = load_key(home)
    with pytest.raises(ConfigError, match=r"already exists.*remove .*\.goq to start over"):
        create_key(home)
    assert load_key(home) == first


def test_missing_key_says_to_run_goq_init(home):
    with pytest.raises(ConfigError, match=r"no key in .*run `goq init` first"):
        load_key(home)


def test_key_readable_by_others_is_refused_with_chmod_advice(home):
    path = create_key(home)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match=r"too open.*chmod 600"):
        load_key(home)


def test_key_of_wrong_size_is_refused(home):
    path = create_key(home)
    with open(path, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ConfigError, match=f"33 bytes, expected {KEY_BYTES}"):
        load_key(home)


# --- ranges (issue 9: a heartbeat of 0.001 s was accepted and livelocked the server) ---------


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("GOQ_HEARTBEAT_SEC", "0.001", "from 0.1 to 3600"),
        ("GOQ_HEARTBEAT_SEC", "0.099", "from 0.1 to 3600"),
        ("GOQ_HEARTBEAT_SEC", "3601", "from 0.1 to 3600"),
        ("GOQ_HEARTBEAT_SEC", "inf", "from 0.1 to 3600"),
        ("GOQ_HEARTBEAT_SEC", "1e-9", "from 0.1 to 3600"),
        ("GOQ_HEARTBEAT_SEC", "five", "from 0.1 to 3600"),
        ("GOQ_SENDTIMEOUT_MSEC", "0", "from 10 to 3600000"),
        ("GOQ_SENDTIMEOUT_MSEC", "9", "from 10 to 3600000"),
        ("GOQ_SENDTIMEOUT_MSEC", "3600001", "from 10 to 3600000"),
        ("GOQ_SENDTIMEOUT_MSEC", "99999999999999999999", "from 10 to 3600000"),
        ("GOQ_SENDTIMEOUT_MSEC", "1s", "from 10 to 3600000"),
        ("GOQ_JSERV_PORT", "-1", "from 1 to 65535"),
        ("GOQ_JSERV_PORT", "99999999999999999999", "from 1 to 65535"),
        ("GOQ_JSERV_PORT", "1776/tcp", "from 1 to 65535"),
        ("GOQ_ODIR", "/tmp/out", "relative directory"),
        ("GOQ_ODIR", "..", "relative directory"),
        ("GOQ_ODIR", "o/../../etc", "relative directory"),
        ("GOQ_ODIR", "   ", "relative directory"),
    ],
)
def test_value_out_of_range_is_one_line_naming_variable_value_and_range(home, name, value, allowed):
    with pytest.raises(ConfigError) as e:
        load_settings(env_for(home, **{name: value}))
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"{name}={value!r} (from the environment)")
    assert allowed in text


@pytest.mark.parametrize(
    "name, value",
    [
        ("GOQ_HEARTBEAT_SEC", "0.1"),
        ("GOQ_HEARTBEAT_SEC", "3600"),
        ("GOQ_SENDTIMEOUT_MSEC", "10"),
        ("GOQ_SENDTIMEOUT_MSEC", "3600000"),
        ("GOQ_JSERV_PORT", "1"),
        ("GOQ_JSERV_PORT", "65535"),
        ("GOQ_ODIR", "out/goq"),
        ("GOQ_ODIR", "o..k"),
    ],
)
def test_values_at_the_ends_of_their_ranges_are_accepted(home, name, value):
    load_settings(env_for(home, **{name: value}))


def test_odir_with_nul_in_the_settings_file_is_refused(home):
    os.makedirs(settings_dir(home))
    with open(settings_path(home), "w") as fh:
        fh.write("GOQ_ODIR=o\x00x\n")
    with pytest.raises(ConfigError, match=r"GOQ_ODIR='o\\x00x'.*settings, line 1.*NUL"):
        load_settings(env_for(home))


def test_heartbeat_out_of_range_in_the_settings_file_is_refused(home):
    os.makedirs(settings_dir(home))
    with open(settings_path(home), "w") as fh:
        fh.write("GOQ_HEARTBEAT_SEC=0.001\n")
    with pytest.raises(ConfigError, match=r"GOQ_HEARTBEAT_SEC='0.001'.*line 1.*0.1 to 3600"):
        load_settings(env_for(home))


def test_goq_serve_with_a_tiny_heartbeat_is_one_line_and_exit_1(home):
    env = dict(os.environ, **env_for(home, GOQ_HEARTBEAT_SEC="0.001"))
    done = subprocess.run(
        [sys.executable, "-m", "goq_cli", "serve"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "GOQ_HEARTBEAT_SEC='0.001'" in err and "0.1 to 3600" in err
