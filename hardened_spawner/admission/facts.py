"""Read what admission needs from an image without running it.

A container is created from the image (never started, no network) and only
the paths the checks need are read with Docker's archive endpoint: account
and sudo/sshd configuration, SSH directories, the conda prefix's
``conda-meta`` records, the names in ``site-packages`` and the modes of the
files in the binary directories. File data is kept only for the small files
the checks parse. The container is removed at the end, whatever happens.

The Docker calls block, so they run in worker threads: ``run(fn, *args)``
must run ``fn(client, *args)`` off the event loop and return an awaitable.
Give it about ``THREADS`` threads, so no read waits behind another.
"""

import asyncio
import posixpath
import re
import secrets
from dataclasses import dataclass, field

from docker.errors import NotFound

from . import layers, tarscan

CHUNK = 1 << 20
SMALL_FILE = 1 << 20          # sudoers, sshd configs, keys, passwd
RECORD_FILE = 64 << 20        # a conda-meta record (python's lists thousands of files)
KEEP_TOTAL = {SMALL_FILE: 16 << 20, RECORD_FILE: 256 << 20}  # data kept per directory read
PROBE_LABEL = "hardened-spawner.admission-probe"
THREADS = 12                  # reads of one image run at once (they wait on the daemon, not the CPU)


class FactsError(RuntimeError):
    """The image could not be read completely, so no decision can be made."""


@dataclass(frozen=True)
class Entry:
    mode: int
    type: str
    size: int
    linkname: str = ""


@dataclass
class ImageFacts:
    """Files and listings read from an image (absolute paths)."""

    files: dict = field(default_factory=dict)     # path -> bytes, for the small files kept
    entries: dict = field(default_factory=dict)   # path -> Entry, for every member seen
    roots: dict = field(default_factory=dict)     # requested path -> True (read) / False (absent)

    def children(self, directory):
        """Names directly inside ``directory`` (from the listings read)."""
        prefix = directory.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/", 1)[0] for p in self.entries if p.startswith(prefix)})

    def under(self, directory):
        prefix = directory.rstrip("/") + "/"
        return {p: e for p, e in self.entries.items() if p.startswith(prefix)}


@dataclass(frozen=True)
class ReadPlan:
    """Which paths to read. ``conda_prefix`` empty: no conda records or site-packages."""

    sshd_config: str = "/etc/ssh/sshd_config"
    setuid_paths: tuple = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin")
    conda_prefix: str = "/opt/conda"
    site_packages: bool = True
    extra_files: tuple = ()   # more files to read whole (dpkg status for the SBOM)


def _create(client, image):
    host_config = client.create_host_config(network_mode="none")
    name = f"hardened-spawner-admission-{secrets.token_hex(6)}"
    container = client.create_container(
        image, command=["/hardened-spawner-admission-probe-never-runs"], entrypoint=[], name=name,
        network_disabled=True, labels={PROBE_LABEL: "true"}, host_config=host_config,
    )
    return container["Id"]


def _remove(client, container):
    try:
        client.remove_container(container, force=True, v=True)
    except NotFound:
        pass


def _read(client, container, path, keep_limit):
    """Members of ``path`` in the container as (absolute name, Member); None if absent.

    Files up to ``keep_limit`` bytes keep their data, at most ``KEEP_TOTAL[keep_limit]``
    bytes per read: an image that points a checked directory (a symlinked ``.ssh``)
    at a large tree is refused rather than read into the hub's memory.
    """
    # APIClient is a requests.Session: requesting the archive directly lets us close the
    # response when we stop early; an unclosed one keeps the daemon (and the container) busy.
    # "identity": otherwise the daemon gzips the stream, several times slower (as docker-py does).
    url = f"{client.base_url}/v{client.api_version}/containers/{container}/archive"
    response = client.get(url, params={"path": path}, stream=True, headers={"Accept-Encoding": "identity"})
    try:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise FactsError(f"cannot read {path} from the image: Docker says {response.status_code} "
                             f"{response.text.strip()[:200]}")
        parent = posixpath.dirname(path.rstrip("/")) or "/"
        kept = [0]

        def keep(name, size):
            if not keep_limit or size > keep_limit:
                return False
            kept[0] += size
            if kept[0] > KEEP_TOTAL[keep_limit]:
                raise FactsError(f"{path} in the image holds more than {KEEP_TOTAL[keep_limit] >> 20} MiB "
                                 "of files to check")
            return True

        members = tarscan.scan(response.iter_content(CHUNK), keep)
        return [(posixpath.normpath(posixpath.join(parent, m.name)), m) for m in members]
    finally:
        response.close()


def homes(passwd):
    """Home directories from /etc/passwd: root's and every human user's (uid 0 or >= 1000)."""
    found = {"/root"}
    for line in passwd.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) < 7 or not parts[2].isdigit():
            continue
        uid, home = int(parts[2]), parts[5]
        if (uid == 0 or 1000 <= uid < 65534 or home.startswith("/home/")) and home.startswith("/") and home != "/":
            found.add(posixpath.normpath(home))
    return sorted(found)


_PYTHON_RECORD = re.compile(r"^python-(\d+)\.(\d+)[.\d]*-[^-]+\.json$")


def site_packages_dirs(conda_prefix, record_names):
    """``<prefix>/lib/pythonX.Y/site-packages`` for the python record among ``record_names``."""
    dirs = set()
    for name in record_names:
        match = _PYTHON_RECORD.match(name)
        if match:
            dirs.add(posixpath.join(conda_prefix, f"lib/python{match[1]}.{match[2]}/site-packages"))
    return sorted(dirs)


async def read_facts(run, image, plan, layer_dirs=None):
    """Read ``plan``'s paths from ``image`` into :class:`ImageFacts`.

    ``layer_dirs`` (from :func:`.layers.overlay_layers`): list directories from the
    image's layers where they can answer, instead of streaming them from Docker.
    """
    facts = ImageFacts()
    container = await run(_create, image)
    try:
        async def fetch(path, keep_limit=0, recursive=True):
            if path in facts.roots:
                return
            facts.roots[path] = False
            if layer_dirs and not keep_limit:
                listed = await run(lambda client: layers.listing(layer_dirs, path, recursive))
                if listed is not None:
                    facts.roots[path] = bool(listed)
                    facts.entries.update((p, Entry(*e)) for p, e in listed.items())
                    return
            try:
                members = await run(_read, container, path, keep_limit)
            except tarscan.TarError as e:
                raise FactsError(f"cannot read {path} from the image: {e}") from None
            if members is None:
                return
            facts.roots[path] = True
            for name, m in members:
                facts.entries[name] = Entry(m.mode, m.type, m.size, m.linkname)
                if m.data is not None:
                    facts.files[name] = m.data
            root = facts.entries.get(path.rstrip("/"))
            if root and root.type == "symlink":  # /bin -> usr/bin on merged-/usr systems
                target = posixpath.normpath(posixpath.join(posixpath.dirname(path), root.linkname))
                await fetch(target, keep_limit)

        async def accounts():
            await fetch("/etc/passwd", SMALL_FILE)
            passwd = facts.files.get("/etc/passwd", b"")
            await asyncio.gather(*(fetch(posixpath.join(h, ".ssh"), SMALL_FILE) for h in homes(passwd)))

        async def conda():
            meta = posixpath.join(plan.conda_prefix, "conda-meta")
            await fetch(meta, RECORD_FILE)
            if plan.site_packages and facts.roots.get(meta):
                dirs = site_packages_dirs(plan.conda_prefix, facts.children(meta))
                await asyncio.gather(*(fetch(d, recursive=False) for d in dirs))

        # The conda chain first: site-packages is the longest read and waits for conda-meta.
        jobs = [conda()] if plan.conda_prefix else []
        jobs += [accounts(), fetch("/etc/group", SMALL_FILE), fetch("/etc/sudoers", SMALL_FILE),
                 fetch("/etc/sudoers.d", SMALL_FILE), fetch("/etc/ssh", SMALL_FILE)]
        if not plan.sshd_config.startswith("/etc/ssh/"):
            jobs.append(fetch(plan.sshd_config, SMALL_FILE))
        jobs += [fetch(p) for p in plan.setuid_paths]
        jobs += [fetch(p, RECORD_FILE) for p in plan.extra_files]
        await asyncio.gather(*jobs)
    finally:
        await run(_remove, container)
    return facts
