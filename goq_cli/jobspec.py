"""Turns what the user typed (argv, a shell line, or lines of a jobs file) into Jobs carrying the
submit directory, environment, host and user of this shell.

Linux argv, environments, paths and files are bytes. Python hands argv, the environment and the
directory over as str with undecodable bytes as lone surrogates (surrogateescape); a jobs file
is read as bytes and decoded the same way, so a job gets exactly the bytes that were typed or
written. The one byte a job cannot carry is NUL (exec takes C strings): a command or argument
holding one is refused with a line saying where it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from goq_core.errors import GoqError
from goq_core.messages import Job


def _here() -> tuple[str, list[str], str, str]:
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        raise GoqError(
            "the current directory no longer exists; cd somewhere and submit again"
        ) from None
    env = [f"{k}={v}" for k, v in os.environ.items()]
    import pwd  # a built-in module: cheaper than getpass or socket on the `goq sub` path

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = os.environ.get("USER") or str(os.getuid())
    return cwd, env, os.uname().nodename, user


def make_job(argv: list[str], shell: bool) -> Job:
    """A job running `argv` exactly (or, with shell, the words joined as one /bin/sh line)."""
    if not argv or not argv[0]:
        raise GoqError("refusing to submit an empty command")
    for i, word in enumerate(argv):
        if "\x00" in word:  # not from a real argv, but from a caller of this function
            where = "the command" if i == 0 else f"argument {i}"
            raise GoqError(f"refusing to submit a NUL character in {where}: exec cannot pass it")
    cwd, env, host, user = _here()
    if shell:
        return Job(cmd=" ".join(argv), shell=True, dir=cwd, env=env, host=host, user=user)
    return Job(cmd=argv[0], args=argv[1:], dir=cwd, env=env, host=host, user=user)


def decode_lines(data: bytes) -> list[str]:
    """The lines of a jobs file (split at \\n, \\r\\n or \\r), decoded as argv is: with the
    file system encoding and surrogateescape, so that any bytes survive."""
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return [line.decode(encoding, errors) for line in data.splitlines()]


def jobs_from_lines(lines: Iterable[str], shell: bool) -> list[Job]:
    """One job per non-empty line ('#' lines are comments). Without shell a line is split into
    argv with POSIX quoting rules (no pipes or redirections); with shell it runs under /bin/sh.
    A line holding a NUL character is refused (GoqError naming its line number)."""
    import shlex

    cwd, env, host, user = _here()
    jobs: list[Job] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\x00" in line:
            raise GoqError(
                f"line {lineno}: a NUL byte, which no command or argument can hold "
                "(is this a binary file?)"
            )
        if shell:
            jobs.append(Job(cmd=line, shell=True, dir=cwd, env=env, host=host, user=user))
            continue
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise GoqError(f"line {lineno}: {exc} (use --shell for shell syntax)") from None
        if not argv[0]:
            raise GoqError(f"line {lineno}: an empty command")
        jobs.append(Job(cmd=argv[0], args=argv[1:], dir=cwd, env=env, host=host, user=user))
    return jobs
