"""GOQ_OUTPUT_ROOTS (issue 13, item 4): the server writes job output only under these
directories, judged on the directory it actually opened; elsewhere output goes to $GOQ_HOME/o
with a sentence in the job's record. Unset, output may go anywhere, as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goq_core.config import ConfigError, load_settings
from goq_core.messages import Job
from goq_core.roles.output import OutputFiles, output_path


def _setup(tmp_path: Path, roots: tuple[str, ...]) -> tuple[OutputFiles, Path, list[str]]:
    home = tmp_path / "home"
    home.mkdir()
    lines: list[str] = []
    return OutputFiles(str(home), "o", log=lines.append, roots=roots), home, lines


def _write(out: OutputFiles, jobdir: Path, jobid: int = 7) -> Job:
    job = Job(jobid=jobid, dir=str(jobdir))
    out.write(job, 0, b"hello\n")
    return job


def test_output_under_a_root_is_written_there(tmp_path: Path) -> None:
    allowed = tmp_path / "lab"
    (allowed / "alice" / "run").mkdir(parents=True)
    out, home, _ = _setup(tmp_path, (str(allowed),))
    job = _write(out, allowed / "alice" / "run")
    assert Path(output_path(str(allowed / "alice" / "run"), "o", 7)).read_bytes() == b"hello\n"
    assert job.note == "" and not (home / "o").exists()


def test_output_outside_every_root_goes_to_goq_home_with_a_note(tmp_path: Path) -> None:
    allowed, elsewhere = tmp_path / "lab", tmp_path / "etc-like"
    allowed.mkdir()
    elsewhere.mkdir()
    out, home, lines = _setup(tmp_path, (str(allowed),))
    job = _write(out, elsewhere)
    assert not (elsewhere / "o").exists()
    assert Path(output_path(str(home), "o", 7)).read_bytes() == b"hello\n"
    assert "outside GOQ_OUTPUT_ROOTS" in job.note and "outside GOQ_OUTPUT_ROOTS" in lines[0]


def test_a_link_inside_a_root_cannot_lead_output_out_of_it(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "lab", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    out, home, _ = _setup(tmp_path, (str(allowed),))
    job = _write(out, allowed / "escape")
    assert not (outside / "o").exists() or not os.listdir(outside / "o")
    assert "outside GOQ_OUTPUT_ROOTS" in job.note
    assert Path(output_path(str(home), "o", 7)).exists()


def test_a_root_reached_through_a_link_counts_as_itself(tmp_path: Path) -> None:
    real = tmp_path / "data" / "home"
    real.mkdir(parents=True)
    (tmp_path / "home-link").symlink_to(real)
    out, _, _ = _setup(tmp_path, (str(tmp_path / "home-link"),))
    job = _write(out, real)
    assert job.note == "" and (real / "o" / "out.00007").exists()


def test_a_sibling_with_the_same_prefix_is_not_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab2").mkdir()
    out, _, _ = _setup(tmp_path, (str(tmp_path / "lab"),))
    job = _write(out, tmp_path / "lab2")
    assert "outside GOQ_OUTPUT_ROOTS" in job.note


def test_the_setting_is_read_and_checked(tmp_path: Path) -> None:
    env = {"GOQ_HOME": str(tmp_path)}
    assert load_settings(env).output_roots == ""
    got = load_settings({**env, "GOQ_OUTPUT_ROOTS": "/srv/lab/:/home"}).output_roots
    assert got == "/srv/lab:/home"
    for bad in ("relative/dir", "/a::/b", ":"):
        with pytest.raises(ConfigError, match="GOQ_OUTPUT_ROOTS"):
            load_settings({**env, "GOQ_OUTPUT_ROOTS": bad})
