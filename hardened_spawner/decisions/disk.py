"""Whether the disk every server depends on has room for one more: a pure decision on measured figures.

Every container's writable layer, its log and (with the local volume driver)
every home directory live on the filesystem under the Docker data root
(``docker info`` DockerRootDir); often the hub's database and audit log do
too. When it fills, every user's server fails at once. :func:`free_space_verdict`
refuses new spawns while the free space there is below ``min_free_disk``, so the
room that is left goes to the servers already running and to the hub's records.
"""

from dataclasses import dataclass

from ..units import format_bytes


@dataclass(frozen=True)
class FreeSpace:
    """What the hub measured of one filesystem (``os.statvfs``)."""

    path: str                # the path measured (DockerRootDir, or the admin's min_free_disk_path)
    free: int | None = None  # bytes an unprivileged writer may still use (f_bavail); None: not measured
    total: int | None = None
    error: str = ""          # why it could not be measured


@dataclass(frozen=True)
class FreeSpaceVerdict:
    refused: bool = False
    message: str = ""   # what the user reads
    detail: str = ""    # what the admin reads (hub log, audit line)
    warning: str = ""   # the check could not be made: said in the hub log, the spawn goes on


def free_space_verdict(min_free, space, setting="min_free_disk"):
    """The verdict for a spawn with ``min_free`` bytes required (0: off) and ``space`` measured.

    A filesystem the hub cannot see (Docker on another machine, the hub in a
    container without the data root) is not a reason to refuse every spawn: the
    spawn goes on and the warning says how to let the hub measure it.
    """
    if not min_free:
        return FreeSpaceVerdict()
    if space.free is None:
        return FreeSpaceVerdict(warning=(
            f"{setting} is not checked: the hub cannot measure free space at {space.path} "
            f"({space.error or 'unknown'}). Mount that filesystem into the hub (read-only) and set "
            f"min_free_disk_path to it, or set {setting} = '0' to turn the check off."))
    if space.free >= min_free:
        return FreeSpaceVerdict()
    of = f" (of {format_bytes(space.total)})" if space.total else ""
    return FreeSpaceVerdict(
        refused=True,
        message=(f"The hub is not starting servers now: the disk that holds every server has "
                 f"{format_bytes(space.free)} free, less than the {format_bytes(min_free)} this hub keeps free "
                 "so that running servers and the hub's own records do not fail. Files in your home "
                 "directory are not affected."),
        detail=f"{setting}: {space.path} has {space.free} bytes free{of}; {setting} is {min_free} bytes",
    )


# Storage drivers that enforce ``--storage-opt size`` (moby: btrfs and zfs by quota, overlay2 only
# on an xfs backing filesystem mounted with pquota, which ``docker info`` does not show).
SIZE_DRIVERS = ("btrfs", "zfs")


def storage_size_problem(driver, backing_fs):
    """Why a daemon with storage ``driver`` on ``backing_fs`` cannot bound a writable layer, or ""."""
    if driver in SIZE_DRIVERS or (driver == "overlay2" and backing_fs == "xfs"):
        return ""
    on = f" on {backing_fs}" if backing_fs else ""
    return (f"the Docker daemon's storage driver {driver or 'unknown'!r}{on} cannot bound a container's "
            "writable layer (storage_opt size needs btrfs, zfs, or overlay2 on xfs mounted with pquota); "
            "remove disk_limit or move the daemon's data root")
