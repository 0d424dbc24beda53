"""Home volume quotas (``home_quota``, ``home_files``): what to do with a user's home image, decided on facts.

A home with a quota is an ext4 filesystem in an image file of its own
(``home_quota_dir``), attached to a loop device on the Docker host and handed to
Docker as a ``local`` volume (``type=ext4``, ``device=/dev/loopN``): the kernel
refuses a write past its size (ENOSPC) and a file past its inode count, whatever
the user runs. The shell (:mod:`..spawner.homes`) reads the facts and does what
:func:`home_actions` says; nothing here touches a disk.

Sizes only grow: a smaller quota (another profile) keeps the image as it is, so
no file is ever cut off; the notice says so. The inode count grows with the size
(ext4 adds inode tables with each block group); it is fixed at creation otherwise.
"""

from dataclasses import dataclass

from ..units import format_bytes

MIN_HOME = 16 * 1024**2   # an ext4 filesystem with its journal and a home's dot files
MIN_FILES = 1024


@dataclass(frozen=True)
class HomeFacts:
    """What the hub found of one user's home (image file, loop device, Docker volume)."""

    image_size: int | None = None  # bytes of the image file; None: there is none
    loop: str = ""                 # the loop device the image is attached to ("": not attached)
    volume_device: str | None = None  # the Docker volume's ``device`` option; None: no such volume, "": none
    in_use: bool = False           # a container has the volume mounted


@dataclass(frozen=True)
class HomeActions:
    create: int = 0         # make the image with this many bytes
    files: int = 0          # ... and this many inodes (0: ext4's default for the size)
    grow_to: int = 0        # grow the (unmounted) image to this many bytes, detached first
    attach: bool = False    # attach the image to a (new) loop device
    notice: str = ""        # what the user reads in the spawn's progress
    refusal: str = ""       # the spawn is refused: what the user and the admin read


def home_actions(volume, quota, files, facts):
    """The :class:`HomeActions` that give ``volume`` a home of ``quota`` bytes and ``files`` inodes."""
    if facts.volume_device == "":
        return HomeActions(refusal=(
            f"Your home volume {volume} exists without a size limit (it was made before home_quota was set), "
            "so the hub will not put it under a quota by itself: nothing was changed. Ask the hub admin to "
            "move its files into a quota home (docs/security-defaults.md, 'Home quotas')."))
    if facts.image_size is None:
        return HomeActions(create=quota, files=files, attach=True)
    grow_to, notice = 0, ""
    if quota > facts.image_size:
        if facts.in_use:
            notice = (f"Your home stays at {format_bytes(facts.image_size)} until every server using it stops: "
                      f"it grows to {format_bytes(quota)} at the next start.")
        else:
            grow_to = quota
    elif quota < facts.image_size:
        notice = (f"Your home keeps its {format_bytes(facts.image_size)}: this profile's "
                  f"{format_bytes(quota)} is smaller, and a home is never shrunk (no file is cut off).")
    return HomeActions(grow_to=grow_to, attach=not facts.loop or bool(grow_to), notice=notice)


def volume_action(recorded_device, loop):
    """What the Docker volume needs once the image is on ``loop``: "create", "recreate" (it names the
    device of an earlier attach, as after a reboot; the files are in the image, not in the volume) or ""."""
    if recorded_device is None:
        return "create"
    return "" if recorded_device == loop else "recreate"


def quota_problems(setting, quota, files):
    """Why ``quota`` bytes / ``files`` inodes cannot make a home ("" quota: no quota)."""
    problems = []
    if quota is not None and quota < MIN_HOME:
        problems.append((f"{setting}home_quota", f"{format_bytes(quota)} is below {format_bytes(MIN_HOME)} "
                         "(an ext4 home needs room for its journal; empty: no quota)"))
    if files and quota is None:
        problems.append((f"{setting}home_files", "needs home_quota: files are bounded by the same filesystem"))
    if files and files < MIN_FILES:
        problems.append((f"{setting}home_files", f"{files} is below {MIN_FILES} (0: ext4's default for the size)"))
    return problems


@dataclass(frozen=True)
class HomeUsage:
    """One home's filesystem as measured (``statvfs`` while mounted, its superblock while not)."""

    volume: str
    used: int       # bytes in use (what a user may still write: size - used)
    size: int       # bytes the filesystem holds (the quota, less ext4's own metadata)
    files_used: int
    files: int
    error: str = ""  # why it could not be measured


NEAR, FULL = 0.9, 0.99  # from these shares of bytes or files a home is "near" its quota, and "full" (a write
# of a whole block stops short of the last few)


def usage_level(usage):
    """``"full"``, ``"near"`` or ``"ok"`` (``"unknown"`` when not measured): what the operations page marks."""
    if usage.error or not usage.size:
        return "unknown"
    shares = [usage.used / usage.size] + ([usage.files_used / usage.files] if usage.files else [])
    top = max(shares)
    return "full" if top >= FULL else "near" if top >= NEAR else "ok"


def describe_usage(usage):
    """``"218 MiB of 244 MiB (89%); 11 of 65,536 files (0%)"``, or why it is unknown."""
    if usage.error or not usage.size:
        return f"not measured: {usage.error or 'empty filesystem'}"
    files = (f"; {usage.files_used:,} of {usage.files:,} files ({usage.files_used * 100 // usage.files}%)"
             if usage.files else "")
    return f"{format_bytes(usage.used)} of {format_bytes(usage.size)} ({usage.used * 100 // usage.size}%){files}"


def home_volume_problems(setting, volumes, notebook_dir):
    """A quota needs the home to be a named volume (``volumes``, DockerSpawner's form) at ``notebook_dir``."""
    for source, target in (volumes or {}).items():
        bind = target.get("bind") if isinstance(target, dict) else target
        if "/" not in str(source) and notebook_dir and bind == notebook_dir:
            return []
    return [(setting, f"home_quota needs a named volume in volumes mounted at notebook_dir "
                      f"({notebook_dir or 'not set'}), e.g. {{'jupyterhub-user-{{username}}': '/home/jovyan'}}; none is")]
