"""What a worker offers: parsing sizes, counts, named resources and GPU lists, and detecting
cpus, memory and GPUs (nvidia-smi is faked by an injected runner; no real GPU needed)."""

from __future__ import annotations

import os
import subprocess

import pytest

from goq_core.messages import Job
from goq_core.roles import offer
from goq_core.roles.offer import (
    detect_cpus,
    detect_gpus,
    detect_mem,
    make_offer,
    parse_count,
    parse_cpus,
    parse_gpus,
    parse_mem,
    parse_resource,
    parse_resources,
    parse_size,
)

# --- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("0", 0),
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("4G", 4 << 30),
        ("4g", 4 << 30),
        ("4GB", 4 << 30),
        ("4GiB", 4 << 30),
        ("4gib", 4 << 30),
        ("1.5T", 3 << 39),
        ("0.5K", 512),
        ("2k", 2048),
        ("100B", 100),
        (" 8 G ", 8 << 30),
        ("1.3K", 1331),  # fractions of a unit round down to whole bytes
        ("8388607T", 8388607 << 40),
    ],
)
def test_parse_size_takes_binary_units_in_any_case(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["12Q", "", "G", "4 GG", "1e3", "0x10", "4iB", "four", "4G4", "--1", "1,5G"]
)
def test_parse_size_refuses_what_is_not_a_size_with_a_clear_line(text):
    with pytest.raises(ValueError, match=r"bad size .*512M or 4G") as exc:
        parse_size(text)
    assert "\n" not in str(exc.value)


def test_parse_size_refuses_negative_and_too_large():
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_size("-1G")
    with pytest.raises(ValueError, match="2\\^63"):
        parse_size("8388608T")  # exactly 2^63
    with pytest.raises(ValueError, match="2\\^63"):
        parse_size(str(1 << 64))
    assert parse_size(str((1 << 63) - 1)) == (1 << 63) - 1


# --- counts and named resources ----------------------------------------------------------------


def test_parse_count_bounds():
    assert parse_count("4") == 4
    assert parse_count(" 0 ") == 0
    assert parse_count(str((1 << 31) - 1)) == (1 << 31) - 1
    for bad in ("-1", "1.5", "x", "", str(1 << 31)):
        with pytest.raises(ValueError, match="bad cpu count"):
            parse_count(bad, "cpu count")
    with pytest.raises(ValueError, match="at least 1"):
        parse_count("0", "cpu count", minimum=1)


@pytest.mark.parametrize(
    ("text", "pair"),
    [("license=4", ("license", 4)), ("gpu_mem=0", ("gpu_mem", 0)), ("a.b-c=12", ("a.b-c", 12))],
)
def test_parse_resource(text, pair):
    assert parse_resource(text) == pair


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x", "NAME=N"),
        ("x=", "how many"),
        ("=3", "name must start"),
        ("x=-1", "at least 0"),
        ("x=1.5", "whole number"),
        ("1x=2", "name must start"),
        ("a b=2", "name must start"),
        (f"x={1 << 31}", "at most"),
    ],
)
def test_parse_resource_refuses_bad_ones_saying_why(text, why):
    with pytest.raises(ValueError, match=why) as exc:
        parse_resource(text)
    assert str(exc.value).startswith(f"bad resource {text!r}")


def test_parse_resources_refuses_a_name_twice():
    assert parse_resources(["a=1", "b=2"]) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="given twice"):
        parse_resources(["a=1", "a=2"])


# --- cpus and memory -----------------------------------------------------------------------------


def test_detect_cpus_is_this_process_affinity():
    assert detect_cpus() == len(os.sched_getaffinity(0)) >= 1
    assert parse_cpus("auto") == parse_cpus("AUTO") == detect_cpus()
    assert parse_cpus("3") == 3
    with pytest.raises(ValueError, match="at least 1"):
        parse_cpus("0")


def test_detect_mem_reads_memtotal(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree:  100 kB\nMemTotal:       16318412 kB\nSwapTotal: 0 kB\n")
    assert detect_mem(str(meminfo)) == 16318412 * 1024
    assert parse_mem("auto", str(meminfo)) == 16318412 * 1024
    assert parse_mem("2G", str(meminfo)) == 2 << 30
    assert detect_mem(str(tmp_path / "missing")) == 0
    (tmp_path / "odd").write_text("MemTotal: lots\n")
    assert detect_mem(str(tmp_path / "odd")) == 0


def test_detect_mem_on_this_host():
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo here")
    assert detect_mem() > 1 << 20


# --- GPUs -----------------------------------------------------------------------------------------

SMI_4 = (
    "0, GPU-aaaaaaaa-1111-2222-3333-444444444444\n"
    "1, GPU-bbbbbbbb-1111-2222-3333-444444444444\n"
    "2, GPU-cccccccc-1111-2222-3333-444444444444\n"
    "3, GPU-dddddddd-1111-2222-3333-444444444444\n"
)


class FakeSmi:
    """Stands in for subprocess.run of nvidia-smi: records calls, returns `stdout`, or raises."""

    def __init__(self, stdout: str = SMI_4, returncode: int = 0, raises=None) -> None:
        self.stdout, self.returncode, self.raises = stdout, returncode, raises
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, argv, **kw):
        self.calls.append((argv, kw))
        if self.raises is not None:
            raise self.raises
        return subprocess.CompletedProcess(argv, self.returncode, self.stdout, "")


def test_detect_gpus_lists_what_nvidia_smi_lists():
    smi = FakeSmi()
    assert detect_gpus(env={}, run=smi) == ["0", "1", "2", "3"]
    argv, kw = smi.calls[0]
    assert argv == ["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"]
    assert kw["timeout"] == 10


@pytest.mark.parametrize(
    "smi",
    [
        FakeSmi(raises=FileNotFoundError(2, "No such file or directory", "nvidia-smi")),
        FakeSmi(raises=subprocess.TimeoutExpired("nvidia-smi", 10)),
        FakeSmi(raises=PermissionError(13, "Permission denied")),
        FakeSmi(stdout="", returncode=9),
        FakeSmi(stdout="NVIDIA-SMI has failed because it couldn't communicate with the driver"),
        FakeSmi(stdout="0, GPU-x, extra\n"),
        FakeSmi(stdout="zero, GPU-x\n"),
        FakeSmi(stdout=""),
    ],
    ids=["missing", "timeout", "denied", "fails", "driver", "fields", "index", "empty"],
)
def test_detect_gpus_is_none_when_nvidia_smi_is_missing_fails_or_is_unreadable(smi):
    assert detect_gpus(env={}, run=smi) == []


@pytest.mark.parametrize(
    ("visible", "ids"),
    [
        ("1,3", ["1", "3"]),
        ("3,1", ["3", "1"]),
        ("", []),
        ("-1", []),
        ("2,9,1", ["2"]),  # CUDA stops at an invalid entry
        ("GPU-cccccccc-1111-2222-3333-444444444444", ["2"]),
        ("GPU-dddd,0", ["3", "0"]),  # a unique UUID prefix, as CUDA takes it
        ("bbbbbbbb", ["1"]),  # a UUID without its GPU- prefix
        ("MIG-12345678-aaaa-bbbb-cccc-dddddddddddd", ["MIG-12345678-aaaa-bbbb-cccc-dddddddddddd"]),
        ("0,0,1", ["0", "1"]),
    ],
)
def test_detect_gpus_is_limited_by_cuda_visible_devices(visible, ids):
    assert detect_gpus(env={"CUDA_VISIBLE_DEVICES": visible}, run=FakeSmi()) == ids


def test_parse_gpus_forms():
    smi = FakeSmi()
    assert parse_gpus("auto", env={"CUDA_VISIBLE_DEVICES": "2"}, run=smi) == ["2"]
    assert parse_gpus("0", run=smi) == []
    assert parse_gpus("2", run=smi) == ["0", "1"]
    assert parse_gpus("0,2,5", run=smi) == ["0", "2", "5"]
    assert parse_gpus(" 3, ", run=smi) == ["3"]  # one id: with a comma
    assert parse_gpus("GPU-abc,01", run=smi) == ["GPU-abc", "1"]
    assert len(smi.calls) == 1  # only auto asks nvidia-smi


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("-1", "at least 0"),
        ("x", "whole number"),
        ("1.5", "whole number"),
        ("0,,1", "empty id"),
        ("0,-1", "not a device index"),
        ("0,0", "given twice"),
        ("a,b", "not a device index"),
        ("5000", "at most 1024"),
    ],
)
def test_parse_gpus_refuses_bad_lists(text, why):
    with pytest.raises(ValueError, match=why):
        parse_gpus(text, env={}, run=FakeSmi())


# --- the offer --------------------------------------------------------------------------------------


def test_make_offer_is_a_job_zero_with_what_the_worker_has():
    job = make_offer(cpus=8, mem=64 << 30, gpu_ids=["0", "1"], resources={"license": 4})
    assert isinstance(job, Job)
    assert (job.jobid, job.cpus, job.mem, job.gpus, job.gpu_ids) == (0, 8, 64 << 30, 2, "0,1")
    assert job.resources == {"license": 4}
    assert job.workerid.startswith(f"{os.getpid()}-") and len(job.workerid.split("-")[1]) == 8
    assert make_offer().workerid != make_offer().workerid
    assert make_offer(token="t").workerid == "t"
    plain = make_offer()
    assert (plain.cpus, plain.mem, plain.gpus, plain.gpu_ids, plain.resources) == (1, 0, 0, "", {})


def test_make_offer_refuses_impossible_amounts():
    for kw in (
        {"cpus": 0},
        {"mem": -1},
        {"gpu_ids": ["0", "0"]},
        {"gpu_ids": ["0,1"]},
        {"resources": {"x": -1}},
        {"resources": {"=": 1}},
    ):
        with pytest.raises(ValueError):
            make_offer(**kw)


def test_constants_are_documented_limits():
    assert offer.MAX_SIZE == (1 << 63) - 1 and offer.MAX_COUNT == (1 << 31) - 1
