"""Turns what the user typed (argv, a shell line, or lines of a jobs file) into Jobs carrying the
submit directory, environment, host and user of this shell.
"""

from __future__ import annotations

import os
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
    cwd, env, host, user = _here()
    if shell:
        return Job(cmd=" ".join(argv), shell=True, dir=cwd, env=env, host=host, user=user)
    return Job(cmd=argv[0], args=argv[1:], dir=cwd, env=env, host=host, user=user)


def jobs_from_lines(lines: Iterable[str], shell: bool) -> list[Job]:
    """One job per non-empty line ('#' lines are comments). Without shell a line is split into
    argv with POSIX quoting rules (no pipes or redirections); with shell it runs under /bin/sh."""
    import shlex

    cwd, env, host, user = _here()
    jobs: list[Job] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if shell:
            jobs.append(Job(cmd=line, shell=True, dir=cwd, env=env, host=host, user=user))
            continue
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise GoqError(f"line {lineno}: {exc} (use --shell for shell syntax)") from None
        jobs.append(Job(cmd=argv[0], args=argv[1:], dir=cwd, env=env, host=host, user=user))
    return jobs
