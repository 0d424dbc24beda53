import pytest
from hypothesis import given, strategies as st

from hardened_spawner.decisions.limits import Ceilings, Limits, build_limits
from hardened_spawner.units import format_bytes, parse_bytes


@pytest.mark.parametrize("text, size", [
    ("2G", 2 * 1024**3), ("2g", 2 * 1024**3), ("512M", 512 * 1024**2), ("512Mi", 512 * 1024**2),
    ("1.5G", int(1.5 * 1024**3)), ("100", 100), (4096, 4096), ("16GiB", 16 * 1024**3), ("1t", 1024**4),
])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["", "G", "-1G", "2X", "two", None, True, [1]])
def test_parse_bytes_rejects(bad):
    with pytest.raises(ValueError):
        parse_bytes(bad)


@given(st.integers(min_value=1, max_value=2**50))
def test_format_then_parse_is_close(size):
    text = format_bytes(size)
    number, unit = text.split()
    back = parse_bytes(number + unit[0] if unit != "B" else number)
    assert abs(back - size) <= max(size * 0.06, 1)


def test_describe_in_words():
    assert Limits(16 * 1024**3, 4, 1024, 1024**3, gpus=("0",)).describe() == "4 CPUs, 16 GiB, 1 GPU"
    assert Limits(512 * 1024**2, 1, 64, 64 * 1024**2).describe() == "1 CPU, 512 MiB"
    assert Limits(1024**3, 0.5, 64, 1, gpus=("0", "1")).describe() == "0.5 CPUs, 1 GiB, 2 GPUs"


def test_build_limits_ok():
    limits, problems = build_limits("S.", "2G", 1.5, 512, "256m")
    assert problems == []
    assert (limits.memory, limits.cpus, limits.pids, limits.shm) == (2 * 1024**3, 1.5, 512, 256 * 1024**2)


@pytest.mark.parametrize("kwargs, setting", [
    (dict(memory="-1G"), "S.mem_limit"),
    (dict(memory=0), "S.mem_limit"),
    (dict(memory="5000T"), "S.mem_limit"),
    (dict(cpus=-1), "S.cpu_limit"),
    (dict(cpus=0), "S.cpu_limit"),
    (dict(cpus=10_000), "S.cpu_limit"),
    (dict(cpus="lots"), "S.cpu_limit"),
    (dict(pids=-1), "S.pids_limit"),
    (dict(pids=0), "S.pids_limit"),
    (dict(pids=10**9), "S.pids_limit"),
    (dict(shm="4G"), "S.shm_size"),
])
def test_build_limits_refuses_negative_and_absurd(kwargs, setting):
    args = dict(memory="2G", cpus=1, pids=1024, shm="256m") | kwargs
    limits, problems = build_limits("S.", args["memory"], args["cpus"], args["pids"], args["shm"], Ceilings())
    assert limits is None
    assert setting in [s for s, _ in problems]
