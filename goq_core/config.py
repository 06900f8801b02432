"""goq's settings: defaults, then the settings file in $GOQ_HOME/.goq/, then GOQ_* environment
variables, then command-line overrides. Standard library only and cheap to import (`goq sub`).

The settings file holds one `GOQ_NAME=value` per line (`#` starts a comment), written by
`goq init` from the environment it ran in.

Every value is checked where it is read: a value that is not a number, or outside its range
(GOQ_HEARTBEAT_SEC 0.1-3600 s, GOQ_SENDTIMEOUT_MSEC 10-3600000 ms, GOQ_JSERV_PORT 1-65535,
GOQ_KILL_GRACE 0-3600 s, GOQ_HISTORY_DAYS 0.01-36500), or a GOQ_ODIR that is empty, absolute, or has a '..' component or a
NUL, is a ConfigError of one line naming the variable, the value, where it came from and what
is allowed.

GOQ_KILL_GRACE (seconds, default 10; 0: at once) is the worker's: a job still running at its
time limit gets SIGTERM to its process group, then SIGKILL this much later.
GOQ_HISTORY_DAYS (default 30) is the server's: ended jobs older than this leave the history.
GOQ_OUTPUT_ROOTS (default empty: anywhere) is the server's: the only directories, separated by
':', under which it writes job output (see goq_core.roles.output).
GOQ_CRED (or --cred) names the credential file a command uses (goq_core.credentials); it is
per host and per user, so it is never written to the settings file.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, fields

from goq_core.errors import ConfigError

TYPE_CHECKING = False  # typing costs 3 ms to import; only type checkers need these
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

SETTINGS_FILE = "settings"
DEFAULT_PORT = 1776

# Settings field -> the GOQ_* name it is read from (in the environment and in the settings file).
ENV_NAMES: dict[str, str] = {
    "jserv_ip": "GOQ_JSERV_IP",
    "jserv_port": "GOQ_JSERV_PORT",
    "odir": "GOQ_ODIR",
    "sendtimeout_ms": "GOQ_SENDTIMEOUT_MSEC",
    "heartbeat_sec": "GOQ_HEARTBEAT_SEC",
    "transport": "GOQ_TRANSPORT",
    "codec": "GOQ_CODEC",
    "cipher": "GOQ_CIPHER",
    "kill_grace_sec": "GOQ_KILL_GRACE",
    "history_days": "GOQ_HISTORY_DAYS",
    "output_roots": "GOQ_OUTPUT_ROOTS",
}
_FIELD_OF = {env: name for name, env in ENV_NAMES.items()}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a goq role needs to know before it talks to anyone."""

    home: str
    jserv_ip: str = "127.0.0.1"
    jserv_port: int = DEFAULT_PORT
    odir: str = "o"
    sendtimeout_ms: int = 1000
    heartbeat_sec: float = 5.0
    transport: str = "zmq"
    codec: str = "raw"
    cipher: str = "aes-gcm"
    kill_grace_sec: float = 10.0  # a worker: SIGTERM to SIGKILL of a job at its time limit
    history_days: float = 30.0  # the server: ended jobs older than this leave the history
    output_roots: str = ""  # the server: ":"-separated directories output may go under ("": any)
    cred: str = ""  # the credential file to use (GOQ_CRED or --cred; never in the settings file)

    @property
    def address(self) -> str:
        """The server's address as a transport URL."""
        return f"tcp://{self.jserv_ip}:{self.jserv_port}"

    @property
    def dir(self) -> str:
        """$GOQ_HOME/.goq: where the key, the settings file and the server's state live."""
        return settings_dir(self.home)


def goq_home(env: Mapping[str, str] = os.environ) -> str:
    """$GOQ_HOME, which every command needs; ConfigError saying how to set it when it is not."""
    home = env.get("GOQ_HOME", "")
    if not home:
        raise ConfigError(
            "GOQ_HOME is not set: export GOQ_HOME=/path/to/a/shared/dir "
            "(goq keeps its key and state in $GOQ_HOME/.goq)"
        )
    return home


def settings_dir(home: str) -> str:
    """The directory holding goq's key, settings and state: $GOQ_HOME/.goq."""
    return os.path.join(home, ".goq")


def settings_path(home: str) -> str:
    """The settings file: $GOQ_HOME/.goq/settings."""
    return os.path.join(settings_dir(home), SETTINGS_FILE)


def default_ip() -> str:
    """This host's first non-loopback IPv4 address, or 127.0.0.1 when it has none.

    Asks the kernel which source address it would use to reach a documentation-only address
    (connect() on a UDP socket picks a route and sends nothing); failing that, what the host
    name resolves to.
    """
    import socket

    candidates: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737); connect() sends no packet
            candidates.append(s.getsockname()[0])
    except OSError:
        candidates = []  # no route at all: try what the host name resolves to
    if not any(map(_usable, candidates)):
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        except OSError:
            infos = []
        candidates += [str(info[4][0]) for info in infos]
    return next(filter(_usable, candidates), "127.0.0.1")


def _usable(ip: str) -> bool:
    return bool(ip) and not ip.startswith("127.") and ip != "0.0.0.0"


def load_settings(
    env: Mapping[str, str] = os.environ, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """The settings in force: defaults < settings file < GOQ_* environment < `overrides`.

    `overrides` maps Settings field names (e.g. "transport", from CLI flags) to values; None
    values are ignored so that unset flags can be passed straight through.
    """
    home = goq_home(env)
    values: dict[str, Any] = {}
    path = settings_path(home)
    for name, (raw, lineno) in _read_settings_file(path).items():
        values[name] = _parse(name, raw, f"{path}, line {lineno}")
    for name, envname in ENV_NAMES.items():
        raw = env.get(envname, "")
        if raw:
            values[name] = _parse(name, raw, "the environment")
    cred = env.get("GOQ_CRED", "")
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name == "cred":
            cred = str(value)
            continue
        if name not in ENV_NAMES:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(ENV_NAMES)}")
        values[name] = _parse(name, str(value), "the command line")
    if "jserv_ip" not in values:
        values["jserv_ip"] = default_ip()
    return Settings(home=home, cred=cred, **values)


def save_settings(settings: Settings) -> str:
    """Write `settings` to $GOQ_HOME/.goq/settings (atomically; the directory is created mode
    0700 if missing). Returns the file's path."""
    d = settings_dir(settings.home)
    os.makedirs(d, mode=0o700, exist_ok=True)
    lines = ["# goq settings, written by `goq init`. GOQ_* environment variables override these."]
    for f in fields(settings):
        if f.name in ENV_NAMES:
            lines.append(f"{ENV_NAMES[f.name]}={_format(getattr(settings, f.name))}")
    path = settings_path(settings.home)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return path


def _read_settings_file(path: str) -> dict[str, tuple[str, int]]:
    """Field name -> (raw value, line number) from the settings file; {} when there is none."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read settings file {path}: {e}") from None
    found: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        envname, sep, raw = line.partition("=")
        envname = envname.strip()
        if not sep or not envname:
            raise ConfigError(f"{path}, line {lineno}: expected GOQ_NAME=value, got {line!r}")
        name = _FIELD_OF.get(envname)
        raw = raw.strip()
        if name is not None and raw:  # unknown names: settings from a newer goq; ignore
            found[name] = (raw, lineno)
    return found


# The ranges a setting must fall in: outside them goq would misbehave (a heartbeat of 1 ms
# livelocks the server; a send timeout of 0 fails every request), so they are refused.
HEARTBEAT_RANGE = (0.1, 3600.0)  # seconds (GOQ_HEARTBEAT_SEC)
SENDTIMEOUT_RANGE = (10, 3_600_000)  # milliseconds (GOQ_SENDTIMEOUT_MSEC)
PORT_RANGE = (1, 65535)  # GOQ_JSERV_PORT
KILL_GRACE_RANGE = (0.0, 3600.0)  # seconds (GOQ_KILL_GRACE; 0: SIGKILL at once)
HISTORY_DAYS_RANGE = (0.01, 36500.0)  # days (GOQ_HISTORY_DAYS)


def _parse(name: str, raw: str, where: str) -> Any:
    """`raw` checked and converted for setting `name`; ConfigError naming the variable, the
    value, where it came from and what is allowed."""
    try:
        return _PARSERS[name](raw)
    except ValueError as e:
        raise ConfigError(f"{ENV_NAMES.get(name, name)}={raw!r} (from {where}): {e}") from None


def _int_in(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    """A parser of a whole number from `low` to `high` (both included)."""
    allowed = f"a whole number{unit} from {low} to {high}"

    def parse(raw: str) -> int:
        try:
            n = int(raw.strip())
        except ValueError:
            raise ValueError(f"not a number: expected {allowed}") from None
        if not low <= n <= high:
            raise ValueError(f"out of range: expected {allowed}")
        return n

    return parse


def _seconds_in(low: float, high: float, unit: str = "seconds") -> Callable[[str], float]:
    """A parser of a number of seconds (or `unit`) from `low` to `high` (both included)."""
    allowed = f"a number of {unit} from {low:g} to {high:g}"

    def parse(raw: str) -> float:
        try:
            x = float(raw.strip())
        except ValueError:
            raise ValueError(f"not a number: expected {allowed}") from None
        if not (math.isfinite(x) and low <= x <= high):
            raise ValueError(f"out of range: expected {allowed}")
        return x

    return parse


def _name(raw: str) -> str:
    raw = raw.strip()
    if not raw:
        raise ValueError("must not be empty")
    if "\x00" in raw:
        raise ValueError("must not contain a NUL character")
    return raw


def _output_roots(raw: str) -> str:
    """GOQ_OUTPUT_ROOTS: absolute directories, separated by ':' (normalized, in order)."""
    roots = []
    for part in raw.strip().split(":"):
        if not part:
            raise ValueError("an empty directory: expected absolute directories separated by ':'")
        if "\x00" in part or not part.startswith("/"):
            raise ValueError(f"{part!r} is not an absolute directory")
        roots.append(os.path.normpath(part))
    return ":".join(roots)


def _odir(raw: str) -> str:
    """The output directory: a relative path that stays under the submit directory."""
    raw = raw.strip()
    expected = "expected a relative directory such as o or out/goq"
    if not raw:
        raise ValueError(f"empty: {expected}")
    if "\x00" in raw:
        raise ValueError(f"contains a NUL character: {expected}")
    if raw.startswith("/"):
        raise ValueError(f"absolute path: {expected} (under each job's submit directory)")
    if ".." in raw.split("/"):
        raise ValueError(f"contains '..': {expected} (under each job's submit directory)")
    return raw


_PARSERS: dict[str, Callable[[str], Any]] = {
    "jserv_ip": _name,
    "jserv_port": _int_in(*PORT_RANGE),
    "odir": _odir,
    "sendtimeout_ms": _int_in(*SENDTIMEOUT_RANGE, unit=" of milliseconds"),
    "heartbeat_sec": _seconds_in(*HEARTBEAT_RANGE),
    "transport": _name,
    "codec": _name,
    "cipher": _name,
    "kill_grace_sec": _seconds_in(*KILL_GRACE_RANGE),
    "history_days": _seconds_in(*HISTORY_DAYS_RANGE, unit="days"),
    "output_roots": _output_roots,
}


def _format(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
