"""Hardening, limit and audit settings: what every container gets."""

from traitlets import Bool, Enum, Float, HasTraits, Int, List, Unicode


class HardeningSettings(HasTraits):
    """Traits of the locked-down container (see docs/security-defaults.md).

    A trait tagged ``hardening="<field>"`` fills that field of
    :class:`~...decisions.container.Hardening` (:meth:`HardenedSpawner.hardening`).
    """

    run_as_uid = Int(
        1000, config=True,
        help="""uid a container runs as when its image's USER is root (or unset).

        Never 0: the hub refuses a configuration that asks for it. Images whose
        USER is already a non-root user keep that user.""",
    ).tag(hardening="run_as_uid")
    run_as_gid = Int(100, config=True, help="gid that goes with ``run_as_uid``.").tag(hardening="run_as_gid")
    cap_add = List(
        Unicode(), config=True,
        help="""Capabilities added back after ``cap_drop: ALL``, by name (e.g. ``NET_BIND_SERVICE``).

        Root-equivalent capabilities (SYS_ADMIN, SYS_PTRACE, SYS_MODULE, NET_ADMIN,
        DAC_READ_SEARCH, BPF, ...) are refused. As the container user is not root,
        added capabilities only reach programs with file capabilities.""",
    ).tag(hardening="cap_add")
    read_only_root = Bool(
        True, config=True,
        help="""Mount the container's root filesystem read-only (CIS Docker 5.12): one user cannot fill
        the disk under the Docker data root through the container's writable layer.

        /tmp becomes a tmpfs (``tmpfs_size``) and the home directory must be a
        volume (``volumes``), so users can still write their work: a spawn whose
        image's user has its home on no writable mount is refused before anything
        is created. SSH keys and the conda/pip policy files (``conda_guard``) are
        delivered in per-server volumes mounted read-only. False: a writable root,
        as Docker's default, for images that must write outside their home and /tmp.""",
    ).tag(hardening="read_only_root")
    tmpfs_size = Unicode(
        "1g", config=True,
        help="""Size of the /tmp tmpfs when ``read_only_root`` is on (the default). Files in it are
        memory the container is charged for, so a size you set must be positive and at most every
        profile's ``mem_limit``; left at its default, a profile with a smaller ``mem_limit`` gets a
        /tmp of its ``mem_limit``. A write past it fails with "No space left on device".""",
    ).tag(hardening="tmpfs_size")
    extra_forbidden_host_paths = List(
        Unicode(), config=True,
        help="""Host paths that may not be mounted, in addition to the built-in list
        (/, /etc, /proc, /sys, /dev, /boot, /usr, /lib, /root, /run, /var/run,
        /var/lib/docker and any container runtime socket). The built-in list cannot be shortened.""",
    )

    # ---- limits ---------------------------------------------------------------------
    pids_limit = Int(
        1024, config=True,
        help="Maximum number of processes and threads in a container (stops fork bombs). Always set.",
    )
    shm_size = Unicode("256m", config=True, help="Size of /dev/shm (PyTorch data loaders need more than Docker's 64 MB).")
    log_max_size = Unicode(
        "10m", config=True,
        help="""Size of one container log file before Docker rotates it (``max-size``), e.g. ``10m``.

        Every container's create request carries a bounded log configuration
        (``log_driver`` with ``max-size`` and ``max-file``): what a server prints to its
        stdout and stderr is kept on the disk under the Docker data root, which every
        user's server and often the hub itself depend on, so the log takes at most
        ``log_max_size * log_max_file``. A profile's ``log_max_size`` key overrides it.
        An ``extra_host_config`` ``log_config`` without a bound at or below the profile's
        (or with a driver other than ``json-file``, ``local`` or ``none``) is refused at
        spawn (invariant ``container.log-bound``).""",
    )
    log_max_file = Int(
        3, config=True,
        help="""How many rotated log files Docker keeps per container (``max-file``, 1..100).
        A profile's ``log_max_file`` key overrides it.""",
    )
    log_driver = Enum(
        ("json-file", "local"), "json-file", config=True,
        help="""Docker log driver of every container: ``json-file`` (Docker's default format,
        which ``docker logs`` and log shippers read) or ``local`` (compressed, Docker's own
        format). Either is bounded by ``log_max_size`` and ``log_max_file``.""",
    ).tag(hardening="log_driver")
    disk_limit = Unicode(
        "", config=True,
        help="""Size of a container's writable layer (``storage_opt size``), e.g. ``20G``; a write
        past it fails in the container with "Disk quota exceeded" and nothing more reaches the
        host's disk. Empty (the default): not bounded. A profile's ``disk_limit`` key overrides it.

        Only some storage drivers enforce it: btrfs and zfs, and overlay2 on an xfs backing
        filesystem mounted with ``pquota``. The hub reads the daemon's driver (``docker info``)
        and refuses a spawn of a profile with a ``disk_limit`` the daemon cannot enforce
        (reason ``unsafe-config``, naming the profile) instead of creating a container without
        the bound; Swarm services have no storage options, so HardenedSwarmSpawner refuses it at
        start. On btrfs the size counts the image's files too (the snapshot references them):
        set it above the image's size. Home volumes are not counted.""",
    )
    home_quota = Unicode(
        "", config=True,
        help="""Size of each user's home volume, e.g. ``10G``, enforced by the kernel: the home is an
        ext4 filesystem in an image file of its own (``home_quota_dir``), attached to a loop device
        and given to Docker as a ``local`` volume, so a write past it fails in the container with
        "No space left on device" and nothing more reaches the host's disk. Empty (the default):
        no quota (the volume is Docker's plain directory on the data root). A profile's
        ``home_quota`` key overrides it.

        The home is the named volume in ``volumes`` mounted at ``notebook_dir`` (the hub refuses to
        start without one). It only grows: a
        profile with a bigger quota grows it at the next start (when no server uses it), a smaller
        one keeps it as it is. Stopping a server keeps it; deleting the user in the hub deletes it.
        A home volume made before the quota was set is refused, not converted. Needs the hub on the
        Docker host, as root (``losetup``, ``mkfs.ext4``, ``resize2fs``); HardenedSwarmSpawner
        refuses it.""",
    )
    home_files = Int(
        0, config=True,
        help="""Most files (inodes) a home with ``home_quota`` may hold, e.g. ``200000``; creating one
        more fails with "No space left on device". 0 (the default): ext4's default for the size (one
        per 16 KiB). It grows in proportion when the home grows. A profile's ``home_files`` key overrides it.""",
    )
    home_quota_dir = Unicode(
        "/var/lib/hardened-spawner/homes", config=True,
        help="""Directory on the Docker host (as the hub sees it) that holds the home images of
        ``home_quota``, one ``<volume>.ext4`` file each. Put it on a filesystem other than the
        Docker data root's and the hub's state, and size it for the sum of the quotas (the
        files are sparse: only what users write takes space).""",
    )
    home_quota_mode = Enum(
        ["filesystem", "watch"], "filesystem", config=True,
        help="""How ``home_quota`` is enforced. ``filesystem`` (the default): by the kernel, in an
        ext4 image per home (``home_quota_dir``); a write past it fails. ``watch``: the home stays a
        plain Docker volume and the hub's watcher measures it (Docker's volume size, every
        ``home_watch_interval`` seconds): from 90% of the quota the user sees a notice, at the quota
        new spawns are refused (reason ``home-full``) and, after ``home_watch_grace`` seconds over it
        (at once past 110%), the server is stopped. No file is ever deleted. For a hub that cannot
        run ``losetup`` (in a container, on another host than Docker): a watched home can go past
        its quota by what a user writes in one interval. ``home_files`` needs ``filesystem``.""",
    )
    home_watch_interval = Float(
        60.0, config=True,
        help="""Seconds between two measurements of the homes ``home_quota_mode = "watch"`` watches
        (one ``docker system df`` call each time, for all of them).""",
    )
    home_watch_grace = Float(
        600.0, config=True,
        help="""Seconds a watched home may stay at or over its quota before its server is stopped (the
        user is told, with the time left, and can delete or move files); 0: stopped at once. Past
        110% of the quota the server is stopped at the next look whatever this says.""",
    )
    home_metrics_per_user = Bool(
        False, config=True,
        help="""Also serve ``jupyterhub_hardened_home_usage_ratio{user="..."}`` on ``/hub/metrics``: bytes
        used / quota of each user's watched home (``home_quota_mode = "watch"``) at the last look. Off
        by default: a user name as a label makes one series per user (thousands on a large hub, each
        kept by Prometheus for its retention) and puts user names into the metrics store. The
        label-free ``jupyterhub_hardened_homes{level="ok|near|over"}`` (homes by their use of the
        quota) is always served; the operations page shows every home by name.""",
    )
    min_free_disk = Unicode(
        "2G", config=True,
        help="""Free space the filesystem under the Docker data root must keep: below it the hub
        refuses new spawns (reason ``disk-low``, HTTP 503) and says why; running servers go on.
        ``0`` turns the check off.

        Every container's writable layer and log, and home volumes on the local volume
        driver, are on that filesystem; often the hub's database and audit log too. Keeping
        room free means one full disk does not fail every server and the hub's records at
        once. Measured at each spawn with ``statvfs`` on ``DockerRootDir`` (from ``docker
        info``) or on ``min_free_disk_path``. When the hub cannot see that path (Docker on
        another machine, the hub in a container) the spawn goes on and the hub log says so
        (WARNING) at each spawn.""",
    )
    min_free_disk_path = Unicode(
        "", config=True,
        help="""Where the hub measures ``min_free_disk``: a path on the same filesystem as the
        Docker data root, as the hub sees it (e.g. that filesystem mounted read-only into the
        hub's container). Empty: ``DockerRootDir`` as the daemon reports it.""",
    )
    max_mem_limit = Unicode("1t", config=True, help="Largest memory limit the configuration may ask for.")
    max_cpu_limit = Float(256.0, config=True, help="Largest CPU limit the configuration may ask for.")
    max_pids_limit = Int(1_000_000, config=True, help="Largest pids limit the configuration may ask for.")

    ready_wait = Float(
        10.0, config=True,
        help="""Seconds ``start()`` waits for the server's port, trying to connect every 50 ms,
        before it hands the server to JupyterHub. 0: return at once, as DockerSpawner does.

        JupyterHub polls a starting server with exponential back-off and random jitter (sleeps
        of up to 0.2, 0.4, 0.8, 1.6 s ...), so a server that listens 0.8 s after its container
        starts is often seen a second later. Waiting here, JupyterHub's first check finds the
        server answering. A server still silent after this wait (or one that exited) is left to
        JupyterHub's own wait (``http_timeout``) and ``poll()``, as without it. The wait counts
        against ``start_timeout``; the spawn's audit line times it as phase ``wait``.""",
    )

    # ---- audit ----------------------------------------------------------------------
    audit_log_file = Unicode(
        "", config=True,
        help="""File that receives one JSON line per spawn, stop and denial. Empty: none.

        Lines carry user, server, image and digest, limits, decision and reasons,
        never key material or tokens.""",
    )
    audit_to_hub_log = Bool(True, config=True, help="Also write audit lines to the hub log (INFO).")
