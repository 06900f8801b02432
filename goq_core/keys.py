"""The cluster's shared secret: one random 256-bit key in $GOQ_HOME/.goq/key (mode 0600).

`create_key` makes it once (`goq init`); `load_key` reads it and refuses a key that others can
read, like ssh does. Every host of a cluster uses the same key (GOQ_HOME is shared or copied).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from goq_core.config import settings_dir
from goq_core.errors import ConfigError

KEY_FILE = "key"
KEY_BYTES = 32
# link() errors of filesystems without hard links (some network and FUSE filesystems).
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)


def key_path(home: str) -> str:
    """Where the key lives: $GOQ_HOME/.goq/key."""
    return os.path.join(settings_dir(home), KEY_FILE)


def create_key(home: str) -> str:
    """Create $GOQ_HOME/.goq (mode 0700) and a fresh random key in it (mode 0600); returns the
    key's path. Refuses with ConfigError if a key is already there.

    The key is written to a private temporary file and hard-linked into place, so the key file
    is never readable by others, never partly written, and never replaces an existing one.
    """
    d = settings_dir(home)
    path = key_path(home)
    if os.path.lexists(path):
        raise _exists(path, d)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # makedirs honours the umask, and the directory may have existed
    except OSError as e:
        raise ConfigError(f"cannot create {d}: {e.strerror}") from None
    tmp = os.path.join(d, f".{KEY_FILE}.{os.getpid()}.tmp")
    key = os.urandom(KEY_BYTES)
    try:
        write_private(tmp, key)
        try:
            os.link(tmp, path)
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            write_private(path, key)  # O_EXCL still never replaces an existing key
        _fsync_dir(d)
    except FileExistsError:
        raise _exists(path, d) from None
    except OSError as e:
        raise ConfigError(f"cannot write key {path}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path


def load_key(home: str) -> bytes:
    """The cluster key. ConfigError if it is missing, readable by others, or the wrong size."""
    d = settings_dir(home)
    path = key_path(home)
    missing = f"no key in {d}; run `goq init` first (or copy $GOQ_HOME/.goq from the server host)"
    data = read_private(path, "key", KEY_BYTES + 1, missing)
    if len(data) != KEY_BYTES:
        raise ConfigError(
            f"key {path} is damaged ({len(data)} bytes, expected {KEY_BYTES}); "
            f"copy it again from the server host, or remove {d} to start over"
        )
    return data


def read_private(path: str, what: str, limit: int, missing: str) -> bytes:
    """Up to `limit` bytes of a secret file (`what`: "key", "credential"); ConfigError
    (`missing` when there is none) if it cannot be read or others could read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(missing) from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"permissions {mode:04o} for {what} {path} are too open: others could read "
                f"it; run `chmod 600 {path}`"
            )
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_private(path: str, data: bytes) -> None:
    """Write `data` to a new file only its owner can read, and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only have removed bits; make the mode exact
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(d: str) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:  # some filesystems cannot fsync a directory
            raise
    finally:
        os.close(fd)


def _exists(path: str, d: str) -> ConfigError:
    return ConfigError(
        f"a key already exists at {path}; remove {d} to start over "
        "(every host must then get the new key)"
    )
