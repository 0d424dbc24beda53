"""The free-space decision (min_free_disk) on synthetic figures."""

import pytest

from hardened_spawner.decisions.disk import FreeSpace, free_space_verdict, storage_size_problem
from hardened_spawner.spawner.disk import measure

GIB = 1024**3


def test_enough_room_starts():
    assert free_space_verdict(2 * GIB, FreeSpace("/srv/docker", free=2 * GIB, total=100 * GIB)).refused is False
    assert free_space_verdict(2 * GIB, FreeSpace("/srv/docker", free=50 * GIB, total=100 * GIB)).refused is False


def test_too_little_room_refuses_with_figures_for_user_and_admin():
    v = free_space_verdict(2 * GIB, FreeSpace("/srv/docker", free=GIB + GIB // 2, total=100 * GIB), "S.min_free_disk")
    assert v.refused
    assert "1.5 GiB free, less than the 2 GiB this hub keeps free" in v.message
    assert "/srv/docker" not in v.message  # a host path is for admins
    assert v.detail == (f"S.min_free_disk: /srv/docker has {GIB + GIB // 2} bytes free (of 100 GiB); "
                        f"S.min_free_disk is {2 * GIB} bytes")
    assert free_space_verdict(2 * GIB, FreeSpace("/x", free=0, total=GIB)).refused


def test_off_never_refuses_even_a_full_disk():
    assert free_space_verdict(0, FreeSpace("/srv/docker", free=0, total=GIB)) == free_space_verdict(0, FreeSpace("/"))


def test_a_filesystem_the_hub_cannot_see_is_said_not_refused():
    v = free_space_verdict(2 * GIB, FreeSpace("/var/lib/docker", error="No such file or directory"), "S.min_free_disk")
    assert not v.refused and not v.message
    assert "S.min_free_disk is not checked" in v.warning and "/var/lib/docker" in v.warning
    assert "min_free_disk_path" in v.warning


def test_measure_reads_the_filesystem_or_says_why_not(tmp_path):
    space = measure(str(tmp_path))
    assert space.total > 0 and 0 <= space.free <= space.total and space.error == ""
    missing = measure(str(tmp_path / "absent"))
    assert (missing.free, missing.error) == (None, "No such file or directory")


@pytest.mark.parametrize("driver, backing_fs", [("btrfs", ""), ("zfs", ""), ("overlay2", "xfs")])
def test_drivers_that_bound_a_writable_layer(driver, backing_fs):
    assert storage_size_problem(driver, backing_fs) == ""


@pytest.mark.parametrize("driver, backing_fs, words", [
    ("overlay2", "extfs", "storage driver 'overlay2' on extfs cannot bound"),
    ("vfs", "", "storage driver 'vfs' cannot bound"),
    ("", "", "storage driver 'unknown' cannot bound"),
])
def test_drivers_that_cannot_are_named_with_what_to_do(driver, backing_fs, words):
    problem = storage_size_problem(driver, backing_fs)
    assert words in problem and problem.endswith("remove disk_limit or move the daemon's data root")
