"""How the server writes job output files (issue 9, item 3 and part of 9): no links followed, no
FIFO waited on, regular files only, never world-writable, $GOQ_HOME fallback with a note.

Each test builds a submit directory SUB and a GOQ_HOME HOME under tmp_path and writes chunks
through OutputFiles directly, as the server's _write_output does.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from goq_core.messages import Job
from goq_core.roles.output import OutputFiles, output_path

JOBID = 42
LONG = 5.0  # seconds: a bound never reached when all is well


@dataclass
class Setup:
    sub: str  # the job's submit directory
    home: str  # GOQ_HOME
    out: OutputFiles
    lines: list[str] = field(default_factory=list)  # what the server logged

    def job(self, jobdir: str | None = None, env: list[str] | None = None) -> Job:
        return Job(jobid=JOBID, dir=self.sub if jobdir is None else jobdir, env=env or [])

    @property
    def primary(self) -> str:
        return output_path(self.sub, "o", JOBID)

    @property
    def fallback(self) -> str:
        return output_path(self.home, "o", JOBID)


@pytest.fixture
def s(tmp_path) -> Setup:
    sub, home = tmp_path / "run", tmp_path / "home"
    sub.mkdir()
    home.mkdir()
    lines: list[str] = []
    out = OutputFiles(str(home), "o", log=lines.append)
    return Setup(str(sub), str(home), out, lines)


@pytest.fixture
def umask0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def assert_fell_back(s: Setup, job: Job, data: bytes, because: str) -> None:
    assert read(s.fallback) == data
    assert job.note.startswith(f"output in {s.fallback}: ")
    assert because in job.note
    assert len(s.lines) == 1 and str(JOBID) in s.lines[0] and s.fallback in s.lines[0]


# the normal case


def test_normal_write_creates_odir_and_file(s: Setup) -> None:
    job = s.job()
    assert s.out.write(job, 0, b"hello ") is False
    assert s.out.write(job, 6, b"world\n") is False
    assert read(s.primary) == b"hello world\n"
    assert job.note == "" and s.lines == []
    assert s.primary == os.path.join(s.sub, "o", "out.00042")


def test_offset_zero_truncates_and_offsets_write_in_place(s: Setup) -> None:
    job = s.job()
    s.out.write(job, 0, b"a long first attempt\n")
    s.out.write(job, 0, b"short")  # a rerun starts the file afresh
    assert read(s.primary) == b"short"
    s.out.write(job, 10, b"X")  # a later chunk lands at its offset
    assert read(s.primary) == b"short\0\0\0\0\0X"
    s.out.write(job, 2, b"OR")
    assert read(s.primary) == b"shORt\0\0\0\0\0X"
    s.out.write(job, 0, b"")  # an empty result at offset 0: an empty file
    assert read(s.primary) == b""


def test_output_path_naming() -> None:
    assert output_path("/d", "o", 7) == "/d/o/out.00007"
    assert output_path("/d", "o", 1234567) == "/d/o/out.1234567"


def test_created_file_and_odir_are_not_world_writable(s: Setup, umask0: None) -> None:
    s.out.write(s.job(), 0, b"x")
    assert stat.S_IMODE(os.stat(s.primary).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(os.path.dirname(s.primary)).st_mode) == 0o755


def test_created_file_follows_the_server_umask(s: Setup) -> None:
    old = os.umask(0o077)
    try:
        s.out.write(s.job(), 0, b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(s.primary).st_mode) == 0o600


# links, FIFOs and other non-files at the output path


def test_symlink_at_output_file_is_not_followed(s: Setup, tmp_path) -> None:
    victim = tmp_path / "victim"  # e.g. the server's own key
    victim.write_bytes(b"precious")
    os.mkdir(os.path.join(s.sub, "o"))
    os.symlink(victim, s.primary)
    job = s.job()
    noted = s.out.write(job, 0, b"job output")
    assert victim.read_bytes() == b"precious"
    assert noted is True
    assert os.path.islink(s.primary)
    assert_fell_back(s, job, b"job output", f"{s.primary} is a symlink")


def test_dangling_symlink_at_output_file_creates_nothing(s: Setup, tmp_path) -> None:
    target = tmp_path / "created-by-the-server"
    os.mkdir(os.path.join(s.sub, "o"))
    os.symlink(target, s.primary)
    job = s.job()
    noted = s.out.write(job, 0, b"out")
    assert not target.exists()
    assert noted is True
    assert_fell_back(s, job, b"out", "is a symlink")


def test_symlinked_odir_is_refused(s: Setup, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.path.join(s.sub, "o"))
    job = s.job()
    noted = s.out.write(job, 0, b"out")
    assert os.listdir(elsewhere) == []
    assert noted is True
    assert_fell_back(s, job, b"out", f"{os.path.join(s.sub, 'o')} is a symlink")


def test_symlink_in_the_submit_directory_path_is_fine(s: Setup, tmp_path) -> None:
    link = tmp_path / "link-to-run"  # like /home -> /data/home
    os.symlink(s.sub, link)
    job = s.job(str(link))
    assert s.out.write(job, 0, b"out") is False
    assert read(s.primary) == b"out" and job.note == ""


def _write_in_thread(s: Setup, job: Job, data: bytes) -> list[object]:
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(s.out.write(job, 0, data)), daemon=True)
    t.start()
    t.join(LONG)
    if t.is_alive():  # today's server hangs here: free the thread before failing
        fd = os.open(s.primary, os.O_RDONLY | os.O_NONBLOCK)
        t.join(LONG)
        os.close(fd)
        pytest.fail("the write blocked on a FIFO")
    return result


def test_fifo_without_reader_does_not_hang(s: Setup) -> None:
    os.mkdir(os.path.join(s.sub, "o"))
    os.mkfifo(s.primary)
    job = s.job()
    assert _write_in_thread(s, job, b"out") == [True]
    assert_fell_back(s, job, b"out", f"{s.primary} is a FIFO")


def test_fifo_with_reader_is_not_written(s: Setup) -> None:
    os.mkdir(os.path.join(s.sub, "o"))
    os.mkfifo(s.primary)
    reader = os.open(s.primary, os.O_RDONLY | os.O_NONBLOCK)
    try:
        job = s.job()
        assert _write_in_thread(s, job, b"out") == [True]
        with contextlib.suppress(BlockingIOError):  # raised while a writer is still open
            assert os.read(reader, 100) == b""  # nothing was written into the FIFO
    finally:
        os.close(reader)
    assert_fell_back(s, job, b"out", "is a FIFO")


def test_hard_link_is_refused(s: Setup, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.mkdir(os.path.join(s.sub, "o"))
    os.link(victim, s.primary)
    job = s.job()
    noted = s.out.write(job, 0, b"out")
    assert victim.read_bytes() == b"precious"
    assert noted is True
    assert_fell_back(s, job, b"out", "2 hard links")


def test_file_at_odir_is_refused(s: Setup) -> None:
    with open(os.path.join(s.sub, "o"), "wb") as f:
        f.write(b"not a directory")
    job = s.job()
    assert s.out.write(job, 0, b"out") is True
    assert_fell_back(s, job, b"out", f"{os.path.join(s.sub, 'o')} is a regular file")


def test_directory_at_output_file_is_refused(s: Setup) -> None:
    os.makedirs(s.primary)
    job = s.job()
    assert s.out.write(job, 0, b"out") is True
    assert os.path.isdir(s.primary)
    assert_fell_back(s, job, b"out", f"{s.primary} is a directory")


# bad submit directories


@pytest.mark.parametrize("jobdir", ["", "rel", "o/.."])
def test_relative_or_empty_dir_never_writes_into_the_cwd(
    s: Setup, tmp_path, monkeypatch, jobdir: str
) -> None:
    cwd = tmp_path / "server-cwd"
    (cwd / "rel").mkdir(parents=True)
    (cwd / "o").mkdir()
    monkeypatch.chdir(cwd)
    job = s.job(jobdir)
    noted = s.out.write(job, 0, b"out")
    assert sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*")) == ["o", "rel"]
    assert noted is True
    assert_fell_back(s, job, b"out", "submit directory")


def test_nul_in_dir_does_not_raise(s: Setup) -> None:
    job = s.job(s.sub + "\0/x")
    assert s.out.write(job, 0, b"out") is True
    assert_fell_back(s, job, b"out", "contains a NUL byte")


def test_dir_of_the_wrong_type_falls_back(s: Setup) -> None:
    job = s.job()
    job.dir = 12  # type: ignore[assignment]  # what a broken decoder could hand over
    assert s.out.write(job, 0, b"out") is True
    assert_fell_back(s, job, b"out", "is not a path")


def test_non_utf8_dir_is_written(s: Setup, tmp_path) -> None:
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    os.mkdir(raw)
    job = s.job(os.fsdecode(raw))  # surrogateescape, as a lossless str carries it
    assert s.out.write(job, 0, b"out") is False
    with open(raw + b"/o/out.00042", "rb") as f:
        assert f.read() == b"out"


def test_vanished_submit_directory_falls_back_and_is_not_recreated(s: Setup, tmp_path) -> None:
    gone = str(tmp_path / "gone")
    job = s.job(gone)
    noted = s.out.write(job, 0, b"out")
    assert not os.path.exists(gone)
    assert noted is True
    assert_fell_back(s, job, b"out", f"{gone} does not exist")


def test_unwritable_submit_directory_falls_back(s: Setup) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(s.sub, 0o555)
    try:
        job = s.job()
        assert s.out.write(job, 0, b"out") is True
    finally:
        os.chmod(s.sub, 0o755)
    assert_fell_back(s, job, b"out", "Permission denied")


# once per job, bounded memory, never raises


def test_fallback_is_logged_and_noted_once_per_job(s: Setup) -> None:
    os.makedirs(s.primary)  # refused: a directory
    job = s.job()
    assert s.out.write(job, 0, b"one ") is True
    note = job.note
    assert s.out.write(job, 4, b"two ") is False
    assert s.out.write(job, 8, b"three") is False
    assert read(s.fallback) == b"one two three"
    assert job.note == note and len(s.lines) == 1


def test_later_chunks_stay_on_the_fallback(s: Setup, tmp_path) -> None:
    gone = tmp_path / "gone"
    job = s.job(str(gone))
    s.out.write(job, 0, b"one ")
    gone.mkdir()  # the submit directory comes back mid-job: the output stays in one file
    assert s.out.write(job, 4, b"two") is False
    assert read(s.fallback) == b"one two"
    assert not (gone / "o").exists()


def test_fallback_midway_says_from_which_byte(s: Setup) -> None:
    job = s.job()
    s.out.write(job, 0, b"one ")
    os.unlink(s.primary)
    os.mkdir(s.primary)  # the path turns bad between chunks
    assert s.out.write(job, 4, b"two") is True
    assert job.note.startswith(f"output from byte 4 on in {s.fallback}: ")
    assert read(s.fallback) == b"\0\0\0\0two"


def test_both_paths_refused_output_lost_no_exception(tmp_path) -> None:
    lines: list[str] = []
    out = OutputFiles(str(tmp_path / "no-home"), "o", log=lines.append)
    job = Job(jobid=JOBID, dir=str(tmp_path / "gone"))
    assert out.write(job, 0, b"out") is True
    assert job.note.startswith("output lost: ")
    assert len(lines) == 1 and "lost" in lines[0]
    assert out.write(job, 3, b"more") is False  # said once
    assert len(lines) == 1


def test_never_raises(s: Setup, monkeypatch) -> None:
    def boom(*args: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(os, "pwrite", boom)
    job = s.job()
    assert s.out.write(job, 0, b"out") is True
    assert "lost" in job.note and "disk on fire" in job.note
    monkeypatch.setattr(os, "open", boom)
    assert s.out.write(Job(jobid=7, dir=s.sub), 0, b"x") is True
    assert s.out.write(Job(jobid=8, dir=s.sub), -1, b"x") is True  # a bad offset
    assert s.out.write(None, 0, b"x") is False  # type: ignore[arg-type]


def test_existing_note_is_kept(s: Setup) -> None:
    job = s.job(s.sub + "/gone")
    job.note = "quarantined once"
    s.out.write(job, 0, b"out")
    assert job.note.startswith("quarantined once; output in ")


def test_memory_of_jobs_is_bounded_and_forgettable(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = OutputFiles(str(home), "o", log=lambda line: None, remember=3)
    for jobid in range(10):
        out.write(Job(jobid=jobid, dir=str(tmp_path / "gone")), 0, b"x")
    assert len(out._jobs) == 3
    out.forget(9)
    assert len(out._jobs) == 2


# the submitter's GOQ_ODIR


def test_submitters_goq_odir_is_honoured(s: Setup) -> None:
    job = s.job(env=["HOME=/h", "GOQ_ODIR=logs/goq", "PATH=/bin"])
    assert s.out.write(job, 0, b"out") is False
    assert read(output_path(s.sub, "logs/goq", JOBID)) == b"out"
    assert not os.path.exists(s.primary) and job.note == ""


@pytest.mark.parametrize("odir", ["../x", "a/../../x", "/tmp/abs", "", "  ", "a\0b"])
def test_unsafe_goq_odir_is_refused(s: Setup, tmp_path, odir: str) -> None:
    job = s.job(env=[f"GOQ_ODIR={odir}"])
    assert s.out.write(job, 0, b"out") is True
    assert read(s.primary) == b"out"  # the server's ODIR instead
    assert "GOQ_ODIR" in job.note and "output under o" in job.note
    assert not (tmp_path / "x").exists()
    assert s.out.write(job, 3, b"!") is False  # noted once
    assert len(s.lines) == 1


def test_goq_odir_symlink_is_refused_too(s: Setup, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.path.join(s.sub, "logs"))
    job = s.job(env=["GOQ_ODIR=logs/deeper"])
    assert s.out.write(job, 0, b"out") is True
    assert os.listdir(elsewhere) == []
    assert_fell_back(s, job, b"out", "logs is a symlink")


def test_goq_odir_lookup_is_cached_per_env_list_and_bounded(s: Setup) -> None:
    shared = ["GOQ_ODIR=shared"]
    for jobid in (1, 2):
        s.out.write(Job(jobid=jobid, dir=s.sub, env=shared), 0, b"x")
    assert sorted(os.listdir(os.path.join(s.sub, "shared"))) == ["out.00001", "out.00002"]
    looked: list[int] = []
    lookup = s.out._lookup_odir
    s.out._lookup_odir = lambda env: looked.append(1) or lookup(env)  # type: ignore[method-assign]
    for jobid in range(3, 10):
        s.out.write(Job(jobid=jobid, dir=s.sub, env=shared), 0, b"x")
    assert looked == []  # one env list, looked up once
    for i in range(1000):
        s.out.odir_for(Job(env=[f"GOQ_ODIR=d{i}"]))
    assert len(s.out._envs) <= 256
    assert s.out.odir_for(Job(env=shared)) == ("shared", "")
    assert s.out.odir_for(Job(env=["GOQ_ODIR=../up"]))[0] == "o"


def test_bad_offset_touches_no_file(s: Setup) -> None:
    job = s.job()
    assert s.out.write(job, -1, b"x") is True
    assert "offset -1 is out of range" in job.note
    assert not os.path.exists(s.primary) and not os.path.exists(s.fallback)


def test_absolute_server_odir_is_one_directory_for_all(tmp_path) -> None:
    shared = tmp_path / "all-output"
    out = OutputFiles(str(tmp_path), str(shared), log=lambda line: None)
    job = Job(jobid=JOBID, dir=str(tmp_path / "gone"))
    assert out.write(job, 0, b"out") is False
    assert (shared / "out.00042").read_bytes() == b"out"
    assert out.write(Job(jobid=43, dir=""), 0, b"x") is False  # the job's dir is not used


def test_concurrent_writers_as_the_server_runs_them(s: Setup, tmp_path) -> None:
    gone = str(tmp_path / "gone")
    jobs = [Job(jobid=i, dir=s.sub if i % 2 else gone) for i in range(1, 41)]
    with ThreadPoolExecutor(4) as pool:  # each job's chunks in order, jobs side by side
        list(pool.map(lambda j: [s.out.write(j, off, b"abcd") for off in range(0, 40, 4)], jobs))
    for job in jobs:
        base = s.sub if job.jobid % 2 else s.home
        assert read(output_path(base, "o", job.jobid)) == b"abcd" * 10
        assert bool(job.note) == (job.jobid % 2 == 0)
    assert len(s.lines) == 20
