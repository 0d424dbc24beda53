"""Read what admission needs from an image without running it.

Containers are created from the image (never started, no network) and only
the paths the checks need are read with Docker's archive endpoint: account
and sudo/sshd configuration, SSH directories, the conda-meta records of the
environment at the conda prefix and of every environment under
``<prefix>/envs``, the names in their ``site-packages`` and the modes of the
files in the binary directories. File data is kept only for the small files
the checks parse. The containers are removed at the end, whatever happens;
a hub killed mid-read leaves them behind, and :func:`sweep_probes` (run by
the admission service before its reads) removes them and their volumes.

Docker holds a container's lock for the whole of an archive read, so reads
from one container queue behind each other: independent reads use separate
probe containers (:class:`_Probes`). ``site-packages`` is read from a probe in
which every top-level directory a conda record owns is covered by an empty
volume: the listing shows their names, not their hundreds of megabytes, and
the pip-pollution rule only needs names no record owns; while the rule that looks inside owned packages
(``python.unowned-module``, ``ReadPlan.nested``) is on, site-packages is listed whole instead. The masks are only
trusted when every masked name then lists as a directory (a symlinked name
could redirect a mount); otherwise site-packages is read unmasked. When
installed files are compared with their packages (``conda_verify_files``), the
recorded files are hashed from the layers, and those the layers cannot answer
(all of them without layers) are hashed as one unmasked archive read streams by.

The Docker calls block, so they run in worker threads: ``run(fn, *args)``
must run ``fn(client, *args)`` off the event loop and return an awaitable.
Give it about ``THREADS`` threads, so no read waits behind another.
"""

import asyncio
import base64
import json
import posixpath
import secrets
from dataclasses import dataclass, field

import docker
from docker.errors import NotFound

from . import layers, tarscan
from . import prefixes
from .prefixes import ENV_RECORD, homes, owned_directories, site_packages_dirs

CHUNK = 1 << 20
SMALL_FILE = 1 << 20          # sudoers, sshd configs, keys, passwd
RECORD_FILE = 64 << 20        # a conda-meta record (python's lists thousands of files)
KEEP_TOTAL = {SMALL_FILE: 16 << 20, RECORD_FILE: 256 << 20}  # data kept per directory read
PROBE_LABEL = "hardened-spawner.admission-probe"
THREADS = 12                  # reads of one image run at once (they wait on the daemon, not the CPU)
STALE_PROBE_SECONDS = 600     # a probe container this old was left by a hub that died mid-read
ETC_FILES = ("/etc/passwd", "/etc/group", "/etc/sudoers", "/etc/ld.so.preload")
ETC_DIRS = ("/etc/sudoers.d/", "/etc/ssh/")


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
    prefixes: list = field(default_factory=list)  # conda prefixes found outside the conda prefix's tree
    hashes: dict = field(default_factory=dict)    # path -> sha256 hex (None: absent), of the files compared

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
    conda_envs: tuple = ("*",)    # environments under <prefix>/envs to read; "*": every one there
    find_prefixes: bool = True    # look for conda-meta directories anywhere on the filesystem
    hash_files: bool = False      # hash the site-packages files the records hash (conda.file-modified)
    nested: bool = True           # list site-packages whole, inside owned packages too (python.unowned-module)
    extra_files: tuple = ()   # more files to read whole (dpkg status for the SBOM)


def _create(client, image, masks=()):
    mounts = [docker.types.Mount(path, None, type="volume", no_copy=True, labels={PROBE_LABEL: "true"})
              for path in masks]
    host_config = client.create_host_config(network_mode="none", mounts=mounts or None)
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


def sweep_probes(client, now, max_age=STALE_PROBE_SECONDS):
    """Remove what a hub that died mid-read left: probe containers older than ``max_age``
    seconds and probe volumes no container uses. Returns how many of each were removed.

    A read takes seconds, so a probe that old belongs to no read still running (of this hub
    or another on the daemon); a volume in use by a live probe is not dangling."""
    containers = [c["Id"] for c in client.containers(all=True, filters={"label": PROBE_LABEL})
                  if now - c.get("Created", now) > max_age]
    for container in containers:
        _remove(client, container)
    volumes = (client.volumes(filters={"label": PROBE_LABEL, "dangling": True}) or {}).get("Volumes") or []
    for volume in volumes:
        try:
            client.remove_volume(volume["Name"])
        except (NotFound, docker.errors.APIError):  # taken by a probe created since, or gone
            pass
    return len(containers), len(volumes)


def _read(client, container, path, keep_limit, wanted=None, digest=None):
    """Members of ``path`` in the container as (absolute name, Member); None if absent.

    Files up to ``keep_limit`` bytes keep their data (only those whose absolute name
    ``wanted`` accepts, when given), at most ``KEEP_TOTAL[keep_limit]`` bytes per read:
    an image that points a checked directory (a symlinked ``.ssh``) at a large tree is
    refused rather than read into the hub's memory. The regular files whose absolute
    names are in ``digest`` get their sha256, without their data being kept.
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
            if wanted and not wanted(posixpath.normpath(posixpath.join(parent, name))):
                return False
            kept[0] += size
            if kept[0] > KEEP_TOTAL[keep_limit]:
                raise FactsError(f"{path} in the image holds more than {KEEP_TOTAL[keep_limit] >> 20} MiB "
                                 "of files to check")
            return True

        def hashed(name):
            return posixpath.normpath(posixpath.join(parent, name)) in digest

        members = tarscan.scan(response.iter_content(CHUNK), keep, hashed if digest else lambda name: False)
        return [(posixpath.normpath(posixpath.join(parent, m.name)), m) for m in members]
    finally:
        response.close()


def _stat(client, container, path):
    """Docker's stat of ``path`` in the container (name, size, mode, mtime, linkTarget); None if absent.

    A HEAD request: no archive is made, so it costs a lookup, not a tar process."""
    url = f"{client.base_url}/v{client.api_version}/containers/{container}/archive"
    response = client.head(url, params={"path": path})
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise FactsError(f"cannot stat {path} in the image: Docker says {response.status_code}")
    try:
        return json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))
    except (KeyError, ValueError) as e:
        raise FactsError(f"cannot stat {path} in the image: bad answer from Docker ({e})") from None


class _Probes:
    """Probe containers of one image, created on first use under a key and removed together."""

    def __init__(self, run, image):
        self.run, self.image, self.ids, self.creating = run, image, [], {}

    async def get(self, key, masks=()):
        if key not in self.creating:
            async def create():
                container = await self.run(_create, self.image, masks)
                self.ids.append(container)
                return container
            self.creating[key] = asyncio.ensure_future(create())
        return await self.creating[key]

    async def remove_all(self):
        await asyncio.gather(*self.creating.values(), return_exceptions=True)  # none left half-created
        await asyncio.gather(*(self.run(_remove, c) for c in self.ids))


async def read_facts(run, image, plan, layer_dirs=None):
    """Read ``plan``'s paths from ``image`` into :class:`ImageFacts`.

    ``layer_dirs`` (from :func:`.layers.overlay_layers`): list directories from the
    image's layers where they can answer, instead of streaming them from Docker.
    """
    facts = ImageFacts()
    probes = _Probes(run, image)

    async def read(probe, path, keep_limit=0, wanted=None, masks=(), digest=None):
        try:
            return await run(_read, await probes.get(probe, masks), path, keep_limit, wanted, digest)
        except tarscan.TarError as e:
            raise FactsError(f"cannot read {path} from the image: {e}") from None

    async def fetch(path, keep_limit=0, recursive=True, probe="main", wanted=None):
        if path in facts.roots:
            return
        facts.roots[path] = False
        if layer_dirs and not keep_limit:
            listed = await run(lambda client: layers.listing(layer_dirs, path, recursive))
            if listed is not None:
                facts.roots[path] = bool(listed)
                facts.entries.update((p, Entry(*e)) for p, e in listed.items())
                return
        members = await read(probe, path, keep_limit, wanted)
        if members is None:
            return
        facts.roots[path] = True
        _add(facts, members)
        root = facts.entries.get(path.rstrip("/"))
        if root and root.type == "symlink":  # /bin -> usr/bin on merged-/usr systems
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), root.linkname))
            await fetch(target, keep_limit, recursive, probe, wanted)

    async def dist_records(directory, owned):
        """The pip RECORD of each distribution no conda record owns, from the layers where they answer."""
        paths = [posixpath.join(directory, n, "RECORD") for n in facts.children(directory)
                 if n.endswith(".dist-info") and n not in owned]
        read_here = await run(lambda client: layers.read_files(layer_dirs, paths, SMALL_FILE))
        for path in paths:
            if path in read_here:
                if read_here[path] is not None:
                    facts.files[path] = read_here[path]
                    facts.entries[path] = Entry(0o644, "file", len(read_here[path]))
            else:
                await fetch(path, SMALL_FILE, recursive=False, probe="site")

    async def hash_paths(paths, probe, tops, masks):
        """sha256 of ``paths``: from the layers where they answer, the rest as archive reads of ``tops`` stream by."""
        if layer_dirs:
            found = await run(lambda client: layers.hash_files(layer_dirs, paths))
            facts.hashes.update(found)
            paths = [p for p in paths if p not in found]
        wanted, got = set(paths), {}
        for top in (t for t in tops if any(p == t or p.startswith(t + "/") for p in paths)):
            members = await read(probe, top, digest=wanted, masks=masks)
            got.update((name, m.sha256) for name, m in members or () if name in wanted)
        facts.hashes.update((p, got.get(p)) for p in paths)  # None: absent or not a regular file

    async def names(prefix, directory, records):
        if layer_dirs:
            await fetch(directory, recursive=plan.nested, probe="site")
            owned = await run(lambda client: set(owned_directories(records, prefix, directory, limit=None)))
            return await dist_records(directory, owned)
        dists = prefixes.is_dist_file  # the pip RECORDs to keep
        # megabytes of JSON: parsed off the event loop
        owned = await run(lambda client: owned_directories(records, prefix, directory))
        if owned and not plan.nested:
            masks = [posixpath.join(directory, name) for name in owned]
            try:
                members = await read(("site", directory), directory, SMALL_FILE, dists, masks=masks)
            except (FactsError, docker.errors.APIError):
                members = None  # e.g. an owned name that is a file: read it unmasked
            listed = {name: m.type for name, m in members or ()}
            if members is not None and all(listed.get(m) == "dir" for m in masks):
                facts.roots[directory] = True
                _add(facts, members)
                return
        await fetch(directory, SMALL_FILE, recursive=False, probe="site", wanted=dists)

    async def environment(prefix):
        meta = posixpath.join(prefix, "conda-meta")
        await fetch(meta, RECORD_FILE, probe="conda")
        if plan.site_packages and facts.roots.get(meta):
            records = [d for p, d in facts.files.items() if posixpath.dirname(p) == meta]
            sites = site_packages_dirs(prefix, facts.children(meta))

            async def hashes():  # megabytes of JSON: parsed off the event loop
                reads = await run(lambda client: prefixes.hash_reads(records, prefix, sites))
                await asyncio.gather(*(hash_paths(*r) for r in reads))
            await asyncio.gather(*(names(prefix, d, records) for d in sites if d not in facts.roots),  # else read
                                 *([hashes()] if plan.hash_files else []))  # with every environment under <prefix>/envs

    async def conda():  # the base environment is read while the others are found
        await asyncio.gather(environment(plan.conda_prefix), other_environments())

    async def other_environments():
        envs = posixpath.join(plan.conda_prefix, "envs")
        names = {n for n in plan.conda_envs if n != "*"}
        if "*" in plan.conda_envs and layer_dirs:
            await fetch(envs, recursive=False, probe="envs")
        elif "*" in plan.conda_envs:  # the archive API cannot list: one stream of every env, keeping its records
            await fetch(envs, RECORD_FILE, probe="envs", wanted=lambda p: bool(
                ENV_RECORD.match(p[len(envs):]) or prefixes.is_dist_file(p)))
            for name in facts.children(envs):
                meta = posixpath.join(envs, name, "conda-meta")
                facts.roots[meta] = meta in facts.entries
                for directory in site_packages_dirs(posixpath.join(envs, name), facts.children(meta)):
                    facts.roots[directory] = directory in facts.entries
        if "*" in plan.conda_envs:
            names |= {n for n in facts.children(envs) if facts.entries[posixpath.join(envs, n)].type == "dir"}
        await asyncio.gather(*(environment(posixpath.join(envs, n)) for n in sorted(names)))

    async def found_environments():
        """Every conda prefix outside the conda prefix's tree: from the layers, or one stream of / with
        the conda prefix masked (names only)."""
        skip = (plan.conda_prefix,)
        found = await run(lambda client: layers.find_dirs(layer_dirs, "conda-meta", skip)) if layer_dirs else None
        if found is None:
            members = await read("find", "/", masks=skip)
            found = [name for name, m in members or () if m.type == "dir"]
        facts.prefixes = prefixes.prefixes_in(found, plan.conda_prefix)
        await asyncio.gather(*(environment(p) for p in facts.prefixes))

    def wanted_in_etc(path):
        return path in ETC_FILES or path.startswith(ETC_DIRS) or path == plan.sshd_config

    async def accounts():
        # one read of /etc instead of five; only the files the checks parse keep their data
        await fetch("/etc", SMALL_FILE, probe="etc", wanted=wanted_in_etc)
        for path in (*ETC_FILES, *(d.rstrip("/") for d in ETC_DIRS)):
            entry = facts.entries.get(path)
            if entry and entry.type == "symlink":  # follow it as its own read
                await fetch(path, SMALL_FILE, probe="etc")
        passwd = facts.files.get("/etc/passwd", b"")
        await asyncio.gather(*(fetch(posixpath.join(h, ".ssh"), SMALL_FILE, probe="etc") for h in homes(passwd)))
        if plan.site_packages:  # the user sites a Python imports from before its own site-packages
            await asyncio.gather(*(fetch(prefixes.user_site_root(h), probe="etc") for h in homes(passwd)))

    async def binaries(path):
        """A directory searched for setuid files; symlinks (/bin -> usr/bin) and absent ones cost a stat."""
        if layer_dirs or path in facts.roots:
            return await fetch(path, probe=_bin_probe(path))
        facts.roots[path] = False
        stat = await run(_stat, await probes.get("bin"), path)
        if stat is None:
            return
        facts.roots[path] = True
        if stat.get("linkTarget"):
            facts.entries[path] = Entry(0o777, "symlink", 0, stat["linkTarget"])
            return await binaries(posixpath.normpath(posixpath.join(posixpath.dirname(path), stat["linkTarget"])))
        del facts.roots[path]
        await fetch(path, probe=_bin_probe(path))

    try:
        jobs = [conda()] if plan.conda_prefix else []
        if plan.conda_prefix and plan.find_prefixes:
            jobs.append(found_environments())
        jobs.append(accounts())
        if not plan.sshd_config.startswith("/etc/"):
            jobs.append(fetch(plan.sshd_config, SMALL_FILE, probe="etc"))
        jobs += [binaries(p) for p in plan.setuid_paths]
        jobs += [fetch(p, RECORD_FILE, probe="extra") for p in plan.extra_files]
        await asyncio.gather(*jobs)
    finally:
        await probes.remove_all()
    return facts


def _bin_probe(path):
    """/usr/bin and /usr/sbin (the large ones) on probes of their own, the rest on one beside /etc's."""
    return ("bin", path) if path in ("/usr/bin", "/usr/sbin") else "bin"


def _add(facts, members):
    for name, m in members:
        facts.entries[name] = Entry(m.mode, m.type, m.size, m.linkname)
        if m.data is not None:
            facts.files[name] = m.data
