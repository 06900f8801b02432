"""How the server writes job output files: BASE/ODIR/out.NNNNN, opened without following links
or blocking, regular files only, falling back to $GOQ_HOME/ODIR; it never raises.

BASE is the job's submit directory (an absolute path; links along it are followed, as a user's
/home -> /data/home must work). ODIR is the submitter's GOQ_ODIR when its environment has a safe
one (relative, no "..", no NUL, not empty), else the server's GOQ_ODIR. Every ODIR component is
opened with O_NOFOLLOW through directory fds (openat), and so is the file itself: a link there
could point anywhere the server's user can write (its store, its key), and a link in ODIR would
move the file the same way, so ODIR and out.NNNNN must be real directories and files. Missing
ODIR components are created (mode 0o755 less the umask); a vanished submit directory is not.
The file is opened O_NONBLOCK (a FIFO without a reader is refused at once, not waited on), is
never truncated at open, and is written only when fstat says it is a regular file with one link.
An attempt's first chunk first tries to create the file (O_CREAT|O_EXCL|O_NOFOLLOW): a file made
by that open is a new, empty regular file with one link, so it needs neither the fstat nor the
cut; any name already there (file, link, FIFO...) fails it with EEXIST and takes the careful way
above. `write_many` writes a batch of chunks opening each directory once for all of them (the
same opens, the same rules; a refusal of a directory holds for the batch).

Permissions: the file is created 0o644 and missing ODIR directories 0o755, less the umask of
the server process (the submitter's umask plays no part: the server creates them). So output is
never world- or group-writable whatever the umask, and a server umask of 077 makes it private to
the server's user; an existing file keeps its mode. Group-writable output would take FILE_MODE
0o664 with a server umask of 002 (still never world-writable).

GOQ_OUTPUT_ROOTS (the server's; default: none, anywhere the server's user may write) confines
output: the directory BASE/ODIR actually opened must lie under one of the roots, or the job's
output is refused there (and goes to the fallback below). The fallback is never confined.

A refused or failing path falls back to $GOQ_HOME/ODIR/out.NNNNN (the server's ODIR, never the
submitter's), under the same rules, with one line on stderr and a sentence in `job.note`, once
per job; later chunks of that job go straight to the fallback. An absolute server GOQ_ODIR (an
admin's choice) is one directory for every job, its own fallback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from goq_core.messages import Job

DIR_MODE = 0o755
FILE_MODE = 0o644
REMEMBER_JOBS = 4096  # jobs whose output went elsewhere (fallback, lost, noted) kept in memory
REMEMBER_ENVS = 256  # env lists whose GOQ_ODIR lookup is cached (each kept alive while cached)

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BASE_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | _NONBLOCK  # follows links
_ODIR_FLAGS = _BASE_FLAGS | os.O_NOFOLLOW
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | _NONBLOCK
# A file that does not exist yet: created here, so a regular file with one link (no fstat, and
# nothing to cut); EEXIST (a file, a link, a FIFO of that name...) takes the careful way.
_NEW_FLAGS = _FILE_FLAGS | os.O_EXCL

_MAX_OFFSET = 1 << 62
_PRIMARY, _FALLBACK, _LOST = 0, 1, 2  # where a remembered job's output goes


def output_path(base: str, odir: str, jobid: int) -> str:
    """Where a job's output goes: BASE/ODIR/out.NNNNN (zero-padded to 5 digits, more if larger)."""
    return os.path.join(base, odir, f"out.{jobid:05d}")


class _Refused(Exception):
    """An output path that cannot be used; the text says which path and why."""


class OutputFiles:
    """Writes chunks of job output at their offsets; thread-safe; `write` never raises."""

    def __init__(
        self,
        home: str,
        odir: str,
        *,
        log: Callable[[str], None] | None = None,  # one line, no prefix (Server.log)
        remember: int = REMEMBER_JOBS,
        roots: tuple[str, ...] = (),  # GOQ_OUTPUT_ROOTS: output only under these (): anywhere)
    ) -> None:
        self.home = home
        self.odir = odir
        self._log = log if log is not None else _log_stderr
        self._remember = max(1, remember)
        self._parts = _server_odir_parts(odir)
        if os.path.isabs(odir):  # an admin's absolute ODIR: the same directory for every job
            self._abs_base: str | None = os.path.dirname(os.path.normpath(odir)) or "/"
        else:
            self._abs_base = None
        self._home_base = self._abs_base if self._abs_base is not None else home  # the fallback
        self._roots = tuple(os.path.realpath(r) for r in roots)
        self._lock = threading.Lock()
        self._jobs: OrderedDict[int, int] = OrderedDict()  # jobid -> _FALLBACK / _LOST / _PRIMARY
        self._envs: OrderedDict[int, tuple[list[str], int, _OdirChoice]] = OrderedDict()

    def write(self, job: Job, offset: int, data: bytes, start: bool | None = None) -> bool:
        """Write `data` at `offset` of `job`'s output file; `start` (default: offset 0) cuts
        the file at `offset` first (an attempt's first chunk).

        Returns True when it changed `job.note` (the caller must then save the job)."""
        return self.write_many([(job, offset, data, start)])[0]

    def _write_chunk(
        self, job: Job, offset: int, data: bytes, start: bool | None, dirs: _Dirs
    ) -> bool:
        try:
            return self._write(job, offset, data, offset == 0 if start is None else start, dirs)
        except Exception as exc:  # the server must survive anything
            with contextlib.suppress(Exception):
                self._log(f"job {job.jobid}: output not written: {exc!r}")
            return False

    def write_many(self, chunks: Sequence[tuple[Job, int, bytes, bool | None]]) -> list[bool]:
        """`write` each (job, offset, data, start) in order, opening each output directory
        once for all of them (the rules are the same: every directory is opened as `write`
        opens it, then its files are opened through that one descriptor); never raises."""
        dirs: _Dirs = {}
        try:
            return [
                self._write_chunk(job, off, data, start, dirs) for job, off, data, start in chunks
            ]
        finally:
            for dfd in dirs.values():
                if isinstance(dfd, int):
                    with contextlib.suppress(OSError):
                        os.close(dfd)

    def forget(self, jobid: int) -> None:
        """Drop what is remembered about a job (call once its output is complete)."""
        if jobid not in self._jobs:  # the usual case, no lock: only writers change it
            return
        with self._lock:
            self._jobs.pop(jobid, None)

    def odir_for(self, job: Job) -> tuple[str, str]:
        """The ODIR used for `job` and, when the submitter's GOQ_ODIR was refused, why."""
        choice = self._odir_choice(job.env)
        return choice.odir, choice.refusal

    # internals

    def _write(self, job: Job, offset: int, data: bytes, start: bool, dirs: _Dirs) -> bool:
        jobid = job.jobid
        name = f"out.{jobid:05d}"
        route = self._jobs.get(jobid)  # no lock to read: only writers hold it
        if route is not None:
            with self._lock, contextlib.suppress(KeyError):
                self._jobs.move_to_end(jobid)
        if route == _FALLBACK:
            try:
                self._write_under(self._home_base, self._parts, name, offset, data, start, (), dirs)
                return False
            except _Refused as why:
                return self._lost(job, str(why), None)

        choice = self._odir_choice(job.env)
        noted = False
        if choice.refusal and route is None:
            noted = self._note(job, f"{choice.refusal}: output under {_show(self.odir)}")
            self._log(
                f"job {jobid}: {choice.refusal}; using the server's GOQ_ODIR {_show(self.odir)}"
            )
            self._remember_route(jobid, _PRIMARY)
        if not 0 <= offset < _MAX_OFFSET:  # no file is touched for a nonsense offset
            if route == _LOST:
                return noted
            return self._lost(job, f"chunk offset {offset} is out of range", None) or noted
        try:
            base = self._base(job.dir, choice)
            self._write_under(base, choice.parts, name, offset, data, start, self._roots, dirs)
            return noted
        except _Refused as why:
            refused = str(why)
        if route == _LOST:  # already logged and noted: retry quietly, on the fallback
            with contextlib.suppress(_Refused):
                self._write_under(self._home_base, self._parts, name, offset, data, start, (), dirs)
            return noted
        fallback = output_path(_show(self.home), _show(self.odir), jobid)
        try:
            self._write_under(self._home_base, self._parts, name, offset, data, start, (), dirs)
        except _Refused as why:
            return self._lost(job, refused, str(why)) or noted
        self._remember_route(jobid, _FALLBACK)
        where = f"output in {fallback}"
        if offset:
            where = f"output from byte {offset} on in {fallback}"
        self._log(f"job {jobid}: output refused: {refused}; written to {fallback}")
        return self._note(job, f"{where}: {refused}") or noted

    def _lost(self, job: Job, why: str, fallback_why: str | None) -> bool:
        self._remember_route(job.jobid, _LOST)
        text = f"output lost: {why}" + (f"; and {fallback_why}" if fallback_why else "")
        self._log(f"job {job.jobid}: {text}")
        return self._note(job, text)

    def _remember_route(self, jobid: int, route: int) -> None:
        with self._lock:
            self._jobs[jobid] = route
            self._jobs.move_to_end(jobid)
            while len(self._jobs) > self._remember:
                self._jobs.popitem(last=False)

    @staticmethod
    def _note(job: Job, text: str) -> bool:
        if text in job.note:
            return False
        job.note = f"{job.note}; {text}" if job.note else text
        return True

    def _base(self, jobdir: str | bytes, choice: _OdirChoice) -> str:
        if self._abs_base is not None and not choice.from_env:
            return self._abs_base
        if isinstance(jobdir, bytes):
            jobdir = os.fsdecode(jobdir)
        elif not isinstance(jobdir, str):
            raise _Refused(f"submit directory {jobdir!r} is not a path")
        if jobdir[:1] == "/" and "\0" not in jobdir:
            return jobdir
        if not jobdir:
            raise _Refused("the submit directory is empty")
        if "\0" in jobdir:
            raise _Refused(f"submit directory {_show(jobdir)} contains a NUL byte")
        raise _Refused(f"submit directory {_show(jobdir)} is not an absolute path")

    def _write_under(
        self,
        base: str,
        parts: tuple[str, ...],
        name: str,
        offset: int,
        data: bytes,
        start: bool,
        roots: tuple[str, ...],
        dirs: _Dirs,
    ) -> None:
        """Write into BASE/PARTS.../NAME; raise _Refused (only) when that cannot be done, or
        when `roots` are given and the directory opened is under none of them. `dirs` keeps
        the directories opened (and refusals) of one write_many: each is opened once."""
        path = base
        try:
            dfd = _cached_dir(dirs, base, parts, roots)  # closed by write_many
            fd = -1
            try:
                if start:  # usually a file not there yet: made here, nothing to check
                    with contextlib.suppress(FileExistsError):  # else the careful way below
                        fd = os.open(name, _NEW_FLAGS, FILE_MODE, dir_fd=dfd)
                new = fd >= 0
                if not new:
                    fd = os.open(name, _FILE_FLAGS, FILE_MODE, dir_fd=dfd)
            except OSError as exc:
                path = os.path.join(base, *parts, name)
                raise _Refused(_why(path, exc, dfd, name)) from None
            try:
                if not new:
                    st = os.fstat(fd)
                    if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
                        path = os.path.join(base, *parts, name)
                        if not stat.S_ISREG(st.st_mode):
                            raise _Refused(f"{_show(path)} is {_kind(st.st_mode)}")
                        raise _Refused(f"{_show(path)} has {st.st_nlink} hard links")
                    if start:  # an attempt's first chunk: what followed it before goes
                        os.ftruncate(fd, offset)
                elif offset and not data:  # a new file is empty: only its length to set
                    os.ftruncate(fd, offset)
                n = os.pwrite(fd, data, offset) if data else 0
                if n < len(data):  # short write (rare): go on from where it stopped
                    view = memoryview(data)[n:]
                    offset += n
                    while view:
                        n = os.pwrite(fd, view, offset)
                        view, offset = view[n:], offset + n
            except OSError as exc:
                path = os.path.join(base, *parts, name)
                raise _Refused(f"{_show(path)} cannot be written ({exc.strerror})") from None
            finally:
                os.close(fd)
        except _Refused:
            raise
        except Exception as exc:  # anything else on this path is a refusal too
            raise _Refused(f"{_show(path)} cannot be used ({exc!r})") from None

    def _odir_choice(self, env: list[str]) -> _OdirChoice:
        """The ODIR for a job's environment; cached per env list object (jobs share them)."""
        if not env:
            return _OdirChoice(self.odir, self._parts, "")
        key = id(env)
        hit = self._envs.get(key)  # no lock to read: only writers hold it
        if hit is not None and hit[0] is env and hit[1] == len(env):
            return hit[2]
        choice = self._lookup_odir(env)
        with self._lock:  # first in, first out: a busy env list is simply looked up again
            self._envs[key] = (env, len(env), choice)  # holding env keeps its id unique
            self._envs.move_to_end(key)
            while len(self._envs) > REMEMBER_ENVS:
                self._envs.popitem(last=False)
        return choice

    def _lookup_odir(self, env: list[str]) -> _OdirChoice:
        raw: str | None = None
        for entry in env:  # the last one wins, as in a process's environment
            if isinstance(entry, bytes):
                entry = os.fsdecode(entry)
            if isinstance(entry, str) and entry.startswith("GOQ_ODIR="):
                raw = entry[len("GOQ_ODIR=") :]
        if raw is None:
            return _OdirChoice(self.odir, self._parts, "")
        value = raw.strip()
        why = ""
        if not value:
            why = "is empty"
        elif "\0" in value:
            why = "contains a NUL byte"
        elif value.startswith("/"):
            why = "is an absolute path"
        elif ".." in value.split("/"):
            why = "has a '..' component"
        else:
            try:
                os.fsencode(value)
            except Exception:
                why = "is not a valid file name"
        if why:
            return _OdirChoice(self.odir, self._parts, f"submitter's GOQ_ODIR {_quote(raw)} {why}")
        return _OdirChoice(value, _split(value), from_env=True)


class _OdirChoice:
    """The ODIR of a job: the submitter's (from_env) or the server's (with why, if refused)."""

    __slots__ = ("odir", "parts", "refusal", "from_env")

    def __init__(
        self, odir: str, parts: tuple[str, ...], refusal: str = "", from_env: bool = False
    ) -> None:
        self.odir = odir
        self.parts = parts
        self.refusal = refusal
        self.from_env = from_env


# The directories a batch of writes opened: (base, parts, roots) -> its fd, or why it was refused.
_Dirs = dict[tuple[str, tuple[str, ...], tuple[str, ...]], "int | _Refused"]


def _cached_dir(dirs: _Dirs, base: str, parts: tuple[str, ...], roots: tuple[str, ...]) -> int:
    """The fd of BASE/PARTS opened as _open_confined/_open_odir open it, once per batch (a
    refusal is kept too: raised again for each chunk there)."""
    key = (base, parts, roots)
    got = dirs.get(key)
    if got is None:
        try:
            got = _open_confined(base, parts, roots) if roots else _open_odir(base, parts)
        except _Refused as why:
            got = why
        dirs[key] = got
    if isinstance(got, _Refused):
        raise _Refused(str(got))
    return got


def _split(odir: str) -> tuple[str, ...]:
    return tuple(p for p in odir.split("/") if p not in ("", "."))


def _server_odir_parts(odir: str) -> tuple[str, ...]:
    if os.path.isabs(odir):
        last = os.path.basename(os.path.normpath(odir))
        return (last,) if last else ()
    return _split(odir)


def _open_odir(base: str, parts: tuple[str, ...]) -> int:
    """A directory fd for BASE/PARTS: links along BASE followed, none in PARTS; missing PARTS
    made (never BASE). Raises _Refused."""
    if parts:  # fast path: BASE/FIRST in one open; O_NOFOLLOW holds for its last component only
        first = os.path.join(base, parts[0])
        try:
            dfd = os.open(first, _ODIR_FLAGS)
        except FileNotFoundError:
            return _walk(base, parts)
        except OSError as exc:
            raise _Refused(_why(first, exc, None, first)) from None
        return _walk_from(dfd, first, parts[1:])
    try:
        return os.open(base, _BASE_FLAGS)
    except OSError as exc:
        raise _Refused(_why(base, exc, None, "")) from None


def _walk(base: str, parts: tuple[str, ...]) -> int:
    """The careful way to BASE/PARTS, one component at a time, making missing ODIR parts."""
    try:
        dfd = os.open(base, _BASE_FLAGS)
    except OSError as exc:
        raise _Refused(_why(base, exc, None, "")) from None
    return _walk_from(dfd, base, parts)


def _walk_from(dfd: int, path: str, parts: tuple[str, ...]) -> int:
    """From directory fd `dfd` (at `path`) down PARTS, not following links; closes `dfd`."""
    try:
        for part in parts:
            path = os.path.join(path, part)
            try:
                try:
                    fd = os.open(part, _ODIR_FLAGS, dir_fd=dfd)
                except FileNotFoundError:
                    # made meanwhile (FileExistsError): the open below judges what it is
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, DIR_MODE, dir_fd=dfd)
                    fd = os.open(part, _ODIR_FLAGS, dir_fd=dfd)
            except OSError as exc:
                raise _Refused(_why(path, exc, dfd, part)) from None
            os.close(dfd)
            dfd = fd
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def _open_confined(base: str, parts: tuple[str, ...], roots: tuple[str, ...]) -> int:
    """Like _open_odir, once BASE is known to lie under one of `roots`: judged on the directory
    actually opened (its /proc/self/fd link), so no link along BASE, nor one swapped in
    meanwhile, can lead output out of the roots; PARTS are then walked without following links
    (and made only then: nothing is created outside the roots). Raises _Refused."""
    dfd = _walk(base, ())
    try:
        real = os.readlink(f"/proc/self/fd/{dfd}")
    except OSError:  # no /proc: the path's real location, as good as it gets there
        real = os.path.realpath(base)
    if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots):
        os.close(dfd)
        raise _Refused(f"{_show(base)} is outside GOQ_OUTPUT_ROOTS")
    return _walk_from(dfd, base, parts)


def _why(path: str, exc: OSError, dfd: int | None, name: str) -> str:
    """Say why opening `path` (`name` in directory `dfd`, or `name` itself) failed."""
    if exc.errno == errno.ENOENT:
        return f"{_show(path)} does not exist"
    if name and exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
        try:
            kind = _kind(os.lstat(name, dir_fd=dfd).st_mode)
        except OSError:
            kind = ""
        if kind:
            return f"{_show(path)} is {kind}"
    if exc.errno == errno.ENOTDIR:
        return f"{_show(path)} is not a directory"
    return f"{_show(path)} cannot be opened ({exc.strerror})"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def _show(text: str) -> str:
    """`text` fit for one log line: undecodable bytes and control characters escaped."""
    if text.isprintable():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    shown = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in shown)


def _quote(text: str) -> str:
    return f"'{_show(text)}'"


def _log_stderr(line: str) -> None:
    """The default log: one line on stderr, as the server's own `log` writes it."""
    with contextlib.suppress(OSError, ValueError, UnicodeError):
        sys.stderr.write(f"goq server: {line}\n")
        sys.stderr.flush()
