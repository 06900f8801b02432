"""The server writes a turn's output chunks as one batch (issue 15, item 2): each output
directory opened once for the batch, new files made with O_CREAT|O_EXCL (no fstat, no cut),
anything already at the name taken the careful way. The rules of tests/test_output_files.py
hold for a batch as for single writes: no link followed, no FIFO waited on, one link only,
$GOQ_HOME fallback with a note.
"""

from __future__ import annotations

import os
import types

import pytest

from goq_core.kernel import WriteOutput
from goq_core.messages import Job
from goq_core.roles import output as output_mod
from goq_core.roles.output import OutputFiles, output_path
from goq_core.roles.server import INLINE_WRITES, Server


@pytest.fixture
def dirs(tmp_path):
    sub, home = tmp_path / "run", tmp_path / "home"
    sub.mkdir()
    home.mkdir()
    lines: list[str] = []
    return str(sub), str(home), OutputFiles(str(home), "o", log=lines.append), lines


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_a_batch_opens_each_directory_once_and_writes_every_file(dirs, monkeypatch) -> None:
    sub, _, out, lines = dirs
    opened: list[str] = []
    real = output_mod._open_odir

    def counting(base, parts):
        opened.append(base)
        return real(base, parts)

    monkeypatch.setattr(output_mod, "_open_odir", counting)
    jobs = [Job(jobid=i, dir=sub) for i in range(1, 6)]
    noted = out.write_many([(j, 0, f"job {j.jobid}\n".encode(), None) for j in jobs])
    assert noted == [False] * 5
    assert opened == [sub]
    for j in jobs:
        assert read(output_path(sub, "o", j.jobid)) == f"job {j.jobid}\n".encode()
    assert lines == []


def test_a_batch_keeps_the_order_of_one_jobs_chunks(dirs) -> None:
    sub, _, out, _ = dirs
    job = Job(jobid=7, dir=sub)
    out.write_many([(job, 0, b"first ", True), (job, 6, b"second\n", False)])
    assert read(output_path(sub, "o", 7)) == b"first second\n"


def test_an_existing_file_is_cut_at_the_first_chunk_in_a_batch(dirs) -> None:
    sub, _, out, _ = dirs
    job = Job(jobid=8, dir=sub)
    out.write(job, 0, b"an older, longer attempt\n")
    out.write_many([(job, 0, b"new\n", None)])
    assert read(output_path(sub, "o", 8)) == b"new\n"


def test_a_new_file_started_past_zero_with_no_data_has_that_length(dirs) -> None:
    sub, _, out, _ = dirs
    job = Job(jobid=9, dir=sub)
    out.write_many([(job, 5, b"", True)])
    assert read(output_path(sub, "o", 9)) == b"\0" * 5


def test_a_symlink_fifo_or_hard_link_at_the_name_is_refused_in_a_batch(dirs, tmp_path) -> None:
    sub, home, out, lines = dirs
    odir = os.path.join(sub, "o")
    os.mkdir(odir)
    target = tmp_path / "precious"
    target.write_bytes(b"keep me\n")
    os.symlink(target, os.path.join(odir, "out.00001"))
    os.mkfifo(os.path.join(odir, "out.00002"))
    os.link(target, os.path.join(odir, "out.00003"))
    jobs = [Job(jobid=i, dir=sub) for i in (1, 2, 3, 4)]
    noted = out.write_many([(j, 0, b"output\n", None) for j in jobs])
    assert noted == [True, True, True, False]
    assert read(str(target)) == b"keep me\n"
    for j, why in zip(jobs, ("a symlink", "a FIFO", "2 hard links"), strict=False):
        assert read(output_path(home, "o", j.jobid)) == b"output\n"
        assert why in j.note
    assert read(output_path(sub, "o", 4)) == b"output\n"
    assert len(lines) == 3


def test_a_refused_directory_sends_every_job_of_the_batch_to_the_fallback(dirs) -> None:
    sub, home, out, lines = dirs
    with open(os.path.join(sub, "o"), "w") as f:  # a file where ODIR should be
        f.write("not a directory")
    jobs = [Job(jobid=i, dir=sub) for i in (1, 2)]
    assert out.write_many([(j, 0, b"x\n", None) for j in jobs]) == [True, True]
    for j in jobs:
        assert read(output_path(home, "o", j.jobid)) == b"x\n"
        assert "is not a directory" in j.note or "is a regular file" in j.note
    assert len(lines) == 2


def test_a_batch_never_raises(dirs, monkeypatch) -> None:
    sub, _, out, _ = dirs

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(output_mod, "_open_odir", broken)
    job = Job(jobid=1, dir=sub)
    assert out.write_many([(job, 0, b"x", None)]) == [True]
    assert job.note.startswith("output lost: ") and "boom" in job.note


@pytest.mark.parametrize("count", [1, INLINE_WRITES, INLINE_WRITES + 5])
def test_the_server_writes_many_directories_side_by_side_and_keeps_order(tmp_path, count) -> None:
    home = tmp_path / "home"
    home.mkdir()
    subs = [tmp_path / f"run{i}" for i in range(3)]
    for d in subs:
        d.mkdir()
    fake = types.SimpleNamespace(
        outputs=OutputFiles(str(home), "o", log=lambda line: None), _writers=None
    )
    writes = []
    for i in range(count):
        job = Job(jobid=i + 1, dir=str(subs[i % 3]))
        writes.append(WriteOutput(job, 0, f"{i}\n".encode(), True))
    bad = Job(jobid=1000, dir="relative/dir")  # refused: falls back, noted
    writes.append(WriteOutput(bad, 0, b"bad\n", True))
    try:
        noted = Server._write_outputs(fake, writes)
    finally:
        if fake._writers is not None:
            fake._writers.shutdown()
    assert noted == [False] * count + [True]
    for i in range(count):
        assert read(output_path(str(subs[i % 3]), "o", i + 1)) == f"{i}\n".encode()
    assert read(output_path(str(home), "o", 1000)) == b"bad\n"
