"""Home volumes with a quota (``home_quota``): an ext4 image per home, on a loop device, as a Docker volume.

The I/O of :mod:`..decisions.home_quota`: read the facts (the image file, ``losetup``,
``docker volume inspect``, whether a running container uses the volume), then do
what the decision says, before the container is created (or restarted). The
daemon mounts the loop device when a container using the volume starts and
unmounts it when the last one stops; the image keeps the files. After a reboot
the loop device is gone: the next start attaches the image again and points the
volume at the new device.
"""

import asyncio
import os
import subprocess

from docker.errors import NotFound

from ..decisions.home_quota import HomeFacts, HomeUsage, describe_usage, home_actions, volume_action
from ..errors import SpawnRefused, UnsafeConfig
from ..units import format_bytes

LABEL_HOME = "hardened-spawner.home-image"
_locks = {}  # volume -> asyncio.Lock: two servers of one user start one at a time here


class HomeError(RuntimeError):
    """A tool (mkfs.ext4, losetup, resize2fs) failed."""


def _run(*cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise HomeError(f"{' '.join(cmd)}: {(done.stderr or done.stdout).strip() or f'exit {done.returncode}'}")
    return done.stdout.strip()


def loops_of(image):
    """The loop devices ``image`` is attached to."""
    out = _run("losetup", "--noheadings", "--output", "NAME", "--associated", image)
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_image(image, size, files, owner):
    """A new ext4 filesystem of ``size`` bytes (``files`` inodes, 0: default) whose root ``owner`` owns."""
    os.makedirs(os.path.dirname(image), mode=0o700, exist_ok=True)
    partial = image + ".new"  # a failed mkfs leaves no image behind that looks like a home
    with open(partial, "wb") as f:
        f.truncate(size)
    try:
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", *(("-N", str(files)) if files else ()),
             "-E", f"root_owner={owner}", partial)
    except HomeError:
        os.unlink(partial)
        raise
    os.rename(partial, image)


def grow_image(image, size):
    """Grow the unmounted ``image`` to ``size`` bytes (its inode tables grow with it)."""
    for loop in loops_of(image):
        _run("losetup", "--detach", loop)
    with open(image, "r+b") as f:
        f.truncate(size)
    _run("e2fsck", "-f", "-p", image)
    _run("resize2fs", image)


def remove_image(image):
    if os.path.exists(image):
        for loop in loops_of(image):
            _run("losetup", "--detach", loop)
        os.unlink(image)


class Homes:
    """One spawner's home with a quota: ``ensure`` before a start, ``remove`` when the user is deleted."""

    def __init__(self, docker_io, directory, log):
        self.io, self.directory, self.log = docker_io, directory, log

    def image(self, volume):
        return os.path.join(self.directory, f"{volume}.ext4")

    async def facts(self, volume):
        image = self.image(volume)
        size = os.path.getsize(image) if os.path.exists(image) else None
        loops = await self.io.run(loops_of, image) if size is not None else []
        try:
            info = await self.io("inspect_volume", volume)
            device = (info.get("Options") or {}).get("device", "")
        except NotFound:
            device = None
        running = await self.io("containers", filters={"volume": volume, "status": "running"}) if device else []
        return HomeFacts(image_size=size, loop=loops[0] if loops else "", volume_device=device, in_use=bool(running))

    async def ensure(self, volume, quota, files, owner, say):
        """Make ``volume`` an ext4 home of ``quota`` bytes (create, grow, reattach); refuse when it cannot be."""
        async with _locks.setdefault(volume, asyncio.Lock()):
            facts = await self.facts(volume)
            actions = home_actions(volume, quota, files, facts)
            if actions.refusal:
                raise SpawnRefused(actions.refusal, reason="home-unquoted",
                                   detail=f"volume {volume} has no 'device' option; home_quota is {quota}")
            image = self.image(volume)
            try:
                if actions.create:
                    await self.io.run(make_image, image, actions.create, actions.files, owner)
                    say(f"Made your home: {volume} with a quota")
                if actions.grow_to:
                    await self.io.run(grow_image, image, actions.grow_to)
                    say(f"Grew your home to this profile's quota of {format_bytes(actions.grow_to)}")
                loop = facts.loop
                if actions.attach:
                    loop = await self.io.run(_run, "losetup", "--find", "--show", image)
            except (HomeError, OSError) as e:
                raise SpawnRefused(f"Your home volume could not be prepared ({e}); tell the hub admin.",
                                   reason="home-failed", detail=str(e)) from None
            action = volume_action(facts.volume_device, loop)
            if action == "recreate":  # the volume names a device that is gone: its files are in the image
                await self.io("remove_volume", volume)
            if action:
                await self.io("create_volume", volume, driver="local", labels={LABEL_HOME: image},
                              driver_opts={"type": "ext4", "device": loop})
            if actions.notice:
                say(actions.notice)
            usage = await self.io.run(measure, image, volume)
            if usage.error:
                self.log.warning("home %s not measured: %s", volume, usage.error)
            else:
                say(f"Your home: {describe_usage(usage)}")

    async def remove(self, volume):
        """The user is deleted: their home volume and image go."""
        async with _locks.setdefault(volume, asyncio.Lock()):
            try:
                await self.io("remove_volume", volume)
            except NotFound:
                pass
            await self.io.run(remove_image, self.image(volume))
            self.log.info("home %s removed with its image %s", volume, self.image(volume))


def home_volume(volume_binds, notebook_dir, setting):
    """The named volume mounted at ``notebook_dir`` (the home a quota applies to); UnsafeConfig if none."""
    for source, bind in volume_binds.items():
        if "/" not in source and bind.get("bind") == notebook_dir:
            return source
    raise UnsafeConfig([(setting, f"home_quota needs a named volume in volumes mounted at notebook_dir "
                                  f"({notebook_dir or 'not set'}); none is")])


def _superblock(image):
    """``{field: value}`` of ``dumpe2fs -h`` (the figures of an unmounted filesystem)."""
    out = _run("dumpe2fs", "-h", image)
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def _mounted_at(loop):
    """Where ``loop`` is mounted ("": nowhere; findmnt then exits 1)."""
    done = subprocess.run(["findmnt", "-n", "-o", "TARGET", "--source", loop], capture_output=True, text=True)
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else ""


def measure(image, volume):
    """:class:`HomeUsage` of ``image``: ``statvfs`` where a container has it mounted, else its superblock."""
    try:
        target = next((t for t in map(_mounted_at, loops_of(image)) if t), "")
        if target:
            st = os.statvfs(target)
            # f_bavail, not f_bfree: ext4 keeps some clusters back that no write gets, so "full" is when bavail is 0
            return HomeUsage(volume, (st.f_blocks - st.f_bavail) * st.f_frsize, st.f_blocks * st.f_frsize,
                             st.f_files - st.f_ffree, st.f_files)
        sb = {k.strip(): v.strip() for k, v in _superblock(image).items()}
        block, inodes = int(sb["Block size"]), int(sb["Inode count"])
        blocks = int(sb["Block count"]) - int(sb.get("Overhead clusters", 0))  # as statvfs counts them
        return HomeUsage(volume, max(blocks - int(sb["Free blocks"]), 0) * block, blocks * block,
                         inodes - int(sb["Free inodes"]), inodes)
    except (HomeError, OSError, KeyError, ValueError) as e:
        return HomeUsage(volume, 0, 0, 0, 0, error=str(e))


def measure_all(directory):
    """:class:`HomeUsage` of every home image in ``directory`` (the operations page), by volume name."""
    if not os.path.isdir(directory):
        return []
    names = sorted(n for n in os.listdir(directory) if n.endswith(".ext4"))
    return [measure(os.path.join(directory, n), n[: -len(".ext4")]) for n in names]
