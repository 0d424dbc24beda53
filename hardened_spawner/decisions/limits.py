"""Resource limits of one container: validated, and described in words."""

from dataclasses import dataclass, field

from ..units import format_bytes, parse_bytes
from .home_quota import quota_problems

MIN_MEMORY = 64 * 1024**2  # below this jupyterhub-singleuser cannot start
MIN_PIDS = 32
MIN_LOG_SIZE = 64 * 1024  # a smaller json-file rotates on every few lines
MAX_LOG_FILES = 100
MIN_DISK = 64 * 1024**2  # a writable layer smaller than this cannot hold a notebook server's runtime files
LOG_DRIVERS = ("json-file", "local")  # the drivers that keep logs on the daemon's disk, with a bound


@dataclass(frozen=True)
class Ceilings:
    """Upper bounds an admin sets so that a typo cannot ask for absurd limits."""

    memory: int = 1024**4
    cpus: float = 256.0
    pids: int = 1_000_000


@dataclass(frozen=True)
class Limits:
    """What a container may use. Sizes in bytes, CPUs as a float."""

    memory: int
    cpus: float
    pids: int
    shm: int
    memory_guarantee: int | None = None
    cpu_guarantee: float | None = None
    gpus: tuple = field(default=())
    log_max_size: int = 10 * 1024**2  # bytes in one log file before Docker rotates it
    log_max_file: int = 3             # files kept: the log takes at most log_max_size * log_max_file
    disk: int | None = None           # bytes of the writable layer (storage_opt size); None: not bounded
    home: int | None = None           # bytes of the home volume's filesystem (home_quota); None: no quota
    home_files: int = 0               # inodes of that filesystem (home_files); 0: ext4's default for the size

    def describe(self):
        """``"4 CPUs, 16 GiB, 1 GPU"``: the words the options form and errors use."""
        cpus = f"{self.cpus:g} CPU" + ("" if self.cpus == 1 else "s")
        parts = [cpus, format_bytes(self.memory)]
        if self.gpus:
            parts.append(f"{len(self.gpus)} GPU" + ("" if len(self.gpus) == 1 else "s"))
        return ", ".join(parts)

    def as_audit(self):
        return {
            "memory": self.memory,
            "cpus": self.cpus,
            "pids": self.pids,
            "shm": self.shm,
            "gpus": list(self.gpus),
            "log_max_size": self.log_max_size,
            "log_max_file": self.log_max_file,
            "disk": self.disk,
            "home": self.home,
            "home_files": self.home_files,
        }

    def log_bound(self):
        """The most bytes the container's log may hold on the daemon's disk."""
        return self.log_max_size * self.log_max_file


def build_limits(setting, memory, cpus, pids, shm, ceilings=Ceilings(),
                 memory_guarantee=None, cpu_guarantee=None, log_max_size="10m", log_max_file=3, disk_limit=None,
                 home_quota=None, home_files=0):
    """Parse and check limits; return ``(Limits or None, problems)``.

    ``setting`` prefixes each problem so the admin sees which setting is wrong.
    """
    problems = []

    def size(name, value, allow_none=False):
        if value is None and allow_none:
            return None
        try:
            return parse_bytes(value)
        except (TypeError, ValueError) as e:
            problems.append((f"{setting}{name}", str(e)))
            return None

    mem = size("mem_limit", memory)
    shm_bytes = size("shm_size", shm)
    mem_g = size("mem_guarantee", memory_guarantee, allow_none=True)
    if mem is not None and not MIN_MEMORY <= mem <= ceilings.memory:
        problems.append((f"{setting}mem_limit", f"{memory!r} is outside {format_bytes(MIN_MEMORY)}"
                         f"..{format_bytes(ceilings.memory)}"))
    if mem is not None and mem_g is not None and not 0 < mem_g <= mem:
        problems.append((f"{setting}mem_guarantee", f"{memory_guarantee!r} must be positive and at most mem_limit"))
    if shm_bytes is not None and mem is not None and not 0 < shm_bytes <= mem:
        problems.append((f"{setting}shm_size", f"{shm!r} must be positive and at most mem_limit"))
    try:
        cpu = float(cpus)
    except (TypeError, ValueError):
        problems.append((f"{setting}cpu_limit", f"not a number of CPUs: {cpus!r}"))
        cpu = None
    if cpu is not None and not 0.01 <= cpu <= ceilings.cpus:
        problems.append((f"{setting}cpu_limit", f"{cpus!r} is outside 0.01..{ceilings.cpus:g} CPUs"))
    if cpu_guarantee is not None and cpu is not None and not 0 < float(cpu_guarantee) <= cpu:
        problems.append((f"{setting}cpu_guarantee", f"{cpu_guarantee!r} must be positive and at most cpu_limit"))
    if isinstance(pids, bool) or not isinstance(pids, int) or not MIN_PIDS <= pids <= ceilings.pids:
        problems.append((f"{setting}pids_limit", f"{pids!r} is outside {MIN_PIDS}..{ceilings.pids} "
                         "(a pids limit is always set: it stops fork bombs)"))
    log_size = size("log_max_size", log_max_size)
    if log_size is not None and log_size < MIN_LOG_SIZE:
        problems.append((f"{setting}log_max_size", f"{log_max_size!r} is below {format_bytes(MIN_LOG_SIZE)} "
                         "(a log is always bounded; 0 would mean no bound)"))
    if isinstance(log_max_file, bool) or not isinstance(log_max_file, int) or not 1 <= log_max_file <= MAX_LOG_FILES:
        problems.append((f"{setting}log_max_file", f"{log_max_file!r} is outside 1..{MAX_LOG_FILES} files"))
    disk = size("disk_limit", disk_limit, allow_none=True) if disk_limit not in ("", 0, "0") else None
    if disk is not None and disk < MIN_DISK:
        problems.append((f"{setting}disk_limit", f"{disk_limit!r} is below {format_bytes(MIN_DISK)} "
                         "(empty: the writable layer is not bounded)"))
    home = size("home_quota", home_quota, allow_none=True) if home_quota not in ("", 0, "0") else None
    if isinstance(home_files, bool) or not isinstance(home_files, int) or home_files < 0:
        problems.append((f"{setting}home_files", f"{home_files!r} is not a whole number of files (0: ext4's default)"))
        home_files = 0
    problems += quota_problems(setting, home, home_files)
    if problems:
        return None, problems
    return Limits(
        memory=mem, cpus=cpu, pids=pids, shm=shm_bytes, memory_guarantee=mem_g,
        cpu_guarantee=None if cpu_guarantee is None else float(cpu_guarantee),
        log_max_size=log_size, log_max_file=log_max_file, disk=disk,
        home=home, home_files=home_files,
    ), []


def log_bound_problems(log_config, limits):
    """Why a container log configuration (API or docker-py form, any key case) is not bounded within
    ``limits``: ``none`` keeps nothing; drivers that ship logs elsewhere have no bound the hub can check."""
    log = {str(k).lower(): v for k, v in (log_config or {}).items()}
    kind, options = log.get("type") or "", log.get("config") or {}
    if kind == "none":
        return []
    if kind not in LOG_DRIVERS:
        return [f"its log driver is {kind or 'the daemon default'!r}, not {' or '.join(LOG_DRIVERS)} "
                "with a size bound (or none)"]
    problems = []
    try:
        size = parse_bytes(options.get("max-size"))
    except ValueError:
        size = 0
    if not 0 < size <= limits.log_max_size:
        problems.append(f"its {kind} log has max-size {options.get('max-size')!r}, not a bound of at most "
                        f"{format_bytes(limits.log_max_size)}")
    files = str(options.get("max-file") or ("5" if kind == "local" else "1"))  # Docker's defaults
    if not files.isdigit() or not 1 <= int(files) <= limits.log_max_file:
        problems.append(f"its {kind} log keeps max-file {files!r}, not at most {limits.log_max_file} files")
    return problems


def tmpfs_problems(setting, tmpfs_size, profiles, configured=True):
    """The /tmp tmpfs of a read-only root is memory the container's cgroup is charged for: a size
    (``0`` would mean no bound at all) of at most each profile's ``mem_limit`` when the admin
    ``configured`` it (the default is capped at a smaller profile's ``mem_limit`` instead)."""
    try:
        size = parse_bytes(tmpfs_size)
    except (TypeError, ValueError) as e:
        return [(setting, str(e))]
    if size <= 0:
        return [(setting, f"{tmpfs_size!r} is no bound (a tmpfs of size 0 may fill memory)")]
    return [(setting, f"{tmpfs_size!r} is more than the mem_limit of profile {p.slug!r} "
                      f"({format_bytes(p.limits.memory)}), which the files in /tmp count against")
            for p in profiles if configured and size > p.limits.memory]
