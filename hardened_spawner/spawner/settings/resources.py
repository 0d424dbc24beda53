"""Resource settings: profiles users choose from, and the GPUs the hub hands out."""

from traitlets import Dict, Enum, Float, HasTraits, Int, List, Unicode


class ResourceSettings(HasTraits):
    """Traits of profiles and GPUs (see docs/profiles-and-gpus.md)."""

    profiles = List(
        Dict(), config=True,
        help="""Resource profiles users choose from, as a list of dicts.

        Keys: ``slug`` (required; lower-case letters, digits, '-'), ``display_name``,
        ``description``, ``mem_limit``, ``mem_guarantee``, ``cpu_limit``,
        ``cpu_guarantee``, ``pids_limit``, ``shm_size``, ``gpus`` (how many GPUs,
        allocated exclusively), ``images`` (names in ``allowed_images`` the profile
        may run; empty: all of them; the first is used when the user picks none),
        ``groups`` (hub groups whose members may use it; empty: everyone) and
        ``default`` (the profile used when a user picks none), and for GPU profiles
        ``gpu_idle_minutes`` and ``gpu_max_age_minutes`` (when the GPU is taken back,
        see ``gpu_idle_minutes``), ``log_max_size`` and ``log_max_file`` (the bound of
        the container's log, see ``log_max_size``) and ``disk_limit`` (the bound of its
        writable layer, see ``disk_limit``), ``home_quota`` and ``home_files`` (the size and files
        of the user's home, see ``home_quota``). A limit a profile leaves out comes from the
        spawner's own setting (``mem_limit`` ...).
        Empty: one profile made of those settings.

        The options form lists only the profiles the user's groups allow, and the
        same check refuses other profiles (HTTP 403, reason ``not-entitled``) when
        they arrive through the REST API or from an admin starting a server for the user.""",
    )
    gpu_ids = List(
        Unicode(), config=True,
        help="""GPUs the hub may hand out, as Docker device ids: indexes (``"0"``) or
        UUIDs (``"GPU-6f1c..."``). Empty: ask ``nvidia-smi`` on the hub's machine at
        the first GPU spawn (set them explicitly when Docker runs on another machine).""",
    )
    gpu_sharing = Int(
        1, config=True,
        help="""How many servers may share one GPU at a time. 1 (the default): each GPU
        belongs to one server until it stops. Higher values suit small inference
        workloads on large GPUs; memory on the GPU is then not isolated.""",
    )
    gpu_request_style = Enum(
        ("device-ids", "cdi"), "device-ids", config=True,
        help="""How GPUs are asked of Docker: ``device-ids`` (DeviceRequests for the
        ``nvidia`` driver with the allocated ids; needs nvidia-container-toolkit) or
        ``cdi`` (CDI device names ``nvidia.com/gpu=<id>``; Docker 25 or later with CDI
        enabled).""",
    ).tag(hardening="gpu_request_style")
    max_gpus_per_user = Int(
        0, config=True,
        help="""Most GPUs one user may hold at once across all their servers (named
        servers included). 0: no limit beyond each profile's ``gpus``.""",
    )
    gpu_busy_hint = Unicode(
        "", config=True,
        help="""A sentence added to the message a user reads when no GPU is free,
        e.g. ``"Idle servers are stopped after one hour."``.""",
    )

    gpu_idle_minutes = Float(
        0.0, config=True,
        help="""Stop a server that holds GPUs after this many minutes without kernel activity,
        so its GPUs go back to the pool (0: never). A profile's ``gpu_idle_minutes`` key
        overrides it. Activity is what the server itself reports: a kernel running code
        counts as active, and so does any kernel or terminal message; an open browser tab
        alone does not. When the server cannot be asked, the hub's last-activity decides.
        The user is warned on the hub's pages ``gpu_idle_warning_minutes`` before.""",
    )
    gpu_max_age_minutes = Float(
        0.0, config=True,
        help="""Stop a server that holds GPUs once its lease is this many minutes old,
        busy or not (0: no maximum). A profile's ``gpu_max_age_minutes`` key overrides it.""",
    )
    gpu_idle_warning_minutes = Float(
        10.0, config=True,
        help="""How many minutes before a GPU server is stopped (idle or too old) its user is
        warned on the hub's pages. A server is stopped only after its user was warned this
        long; 0 stops without a warning.""",
    )
    gpu_reclaim_interval = Float(
        60.0, config=True,
        help="""Seconds between two looks at the GPU servers for ``gpu_idle_minutes`` and
        ``gpu_max_age_minutes`` (each look asks every GPU server for its kernels' activity).""",
    )

    def resource_problems(self, prefix):
        problems = []
        if self.gpu_sharing < 1:
            problems.append((f"{prefix}gpu_sharing", f"{self.gpu_sharing} must be at least 1"))
        if self.max_gpus_per_user < 0:
            problems.append((f"{prefix}max_gpus_per_user", f"{self.max_gpus_per_user} must be 0 or more"))
        for name in ("gpu_idle_warning_minutes", "gpu_reclaim_interval"):
            if getattr(self, name) < 0:
                problems.append((f"{prefix}{name}", f"{getattr(self, name)} must be 0 or more"))
        return problems
