"""Hardening, limit and audit settings: what every container gets."""

from traitlets import Bool, Float, HasTraits, Int, List, Unicode


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
        False, config=True,
        help="""Mount the container's root filesystem read-only.

        /tmp becomes a tmpfs (``tmpfs_size``) and the home directory must be a
        volume (``volumes``), so users can still write their work.""",
    ).tag(hardening="read_only_root")
    tmpfs_size = Unicode("1g", config=True, help="Size of the /tmp tmpfs when ``read_only_root`` is on.").tag(
        hardening="tmpfs_size")
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
    max_mem_limit = Unicode("1t", config=True, help="Largest memory limit the configuration may ask for.")
    max_cpu_limit = Float(256.0, config=True, help="Largest CPU limit the configuration may ask for.")
    max_pids_limit = Int(1_000_000, config=True, help="Largest pids limit the configuration may ask for.")

    # ---- audit ----------------------------------------------------------------------
    audit_log_file = Unicode(
        "", config=True,
        help="""File that receives one JSON line per spawn, stop and denial. Empty: none.

        Lines carry user, server, image and digest, limits, decision and reasons,
        never key material or tokens.""",
    )
    audit_to_hub_log = Bool(True, config=True, help="Also write audit lines to the hub log (INFO).")
