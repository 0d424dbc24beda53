"""The admission policy as one immutable value, validated and hashed. Pure: no I/O
except :func:`Policy.problems`, which checks that configured files can be read.

Built from the spawner's settings (each trait tagged with the field it
fills), for the hub and for the ``check-image`` command alike, so the hub and
image CI apply the same policy. Problems name fields; the settings map them
to the traits admins write. ``digest()`` changes whenever any setting changes, which
invalidates cached decisions.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import re

from . import conda, conda_attestations, locks, reports
from .patterns import image_pattern
from .rules import RULES

_CVE = re.compile(r"^(CVE-\d{4}-\d{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3}|[A-Z][A-Z0-9]+-[A-Za-z0-9:._-]+)$")


@dataclasses.dataclass(frozen=True)
class Policy:
    modes: tuple = ()                       # ((rule id, mode), ...)
    image_allowlist: tuple = ()             # registry/repository patterns; empty: any image
    require_digest: bool = False
    max_image_age_days: int = 0             # 0: no limit
    setuid_paths: tuple = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin")
    setuid_allowlist: tuple = ()            # fnmatch patterns of absolute paths
    env_secret_allowlist: tuple = ("GPG_KEY", "PYTHON_GPG_KEY")
    sshd_config: str = "/etc/ssh/sshd_config"
    conda_prefix: str = "/opt/conda"
    conda_envs: tuple = ("*",)              # environments under <prefix>/envs checked too; "*": every one
    allowed_channels: tuple = ()            # empty: any channel
    verify_channels: tuple = ()             # ((channel, URL of its repodata or ""), ...): records checked
    verify_files: bool = False              # compare the environments' installed files with their packages' sha256
    attestation_keys: tuple = ()            # ((verified channel, PEM file of the keys its attestations need), ...)
    channel_alias: str = "https://conda.anaconda.org"
    channel_mirrors: tuple = ()             # ((mirror URL, channel it mirrors), ...)
    python_eol_warn_days: int = 180
    python_eol_dates: tuple = ()            # (("3.10", "2026-10-04"), ...): overrides the table
    denied_packages: tuple = ()             # MatchSpecs
    required_packages: tuple = ()           # MatchSpecs
    lock_file: str = ""
    lock_environment: str = "default"
    lock_platform: str = "linux-64"
    pip_allowlist: tuple = ()               # distribution names pip may install
    library_paths: tuple = ("/usr/local/nvidia/lib", "/usr/local/nvidia/lib64")  # LD_LIBRARY_PATH may name
    scan_report_dir: str = ""               # empty: no scanner gate
    scan_deny_severity: str = "critical"
    scan_cve_allowlist: tuple = ()          # ((CVE id, "YYYY-MM-DD" expiry), ...)
    signature_policy: tuple = ()            # trust policy entries as JSON strings; empty: no signature rule
    provenance_policy: tuple = ()           # provenance policy entries as JSON strings; empty: no provenance rule
    signature_trusted_root: str = ""        # Sigstore trusted_root.json; empty: the public-good root
    registry_plain_http: tuple = ()         # registries read over http (signatures)
    registry_timeout: float = 10.0          # seconds per registry request
    registry_auth_file: str = ""            # Docker config.json with registry credentials
    scan_osv_file: str = ""                 # OSV JSON vulnerability list matched against the SBOM
    scan_attestation_max_age_days: int = 0  # signed scan attestations from the registry count; 0: not read

    def mode(self, rule):
        return dict(self.modes).get(rule) or RULES[rule].default_mode

    def digest(self):
        """A hash of every setting (and the lock file's identity), for cache keys."""
        data = dataclasses.asdict(self)
        data["lock_file_identity"] = file_identity(self.lock_file)
        data["osv_file_identity"] = file_identity(self.scan_osv_file)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def problems(self, prefix=""):
        """Configuration errors as ``(setting, message)`` pairs (empty when valid). No file I/O:
        cheap enough for every spawn. :meth:`file_problems` reads the configured files."""
        out = []
        for rule, mode in self.modes:
            if rule not in RULES:
                out.append((f"{prefix}modes", f"unknown rule {rule!r}; known rules: "
                            + ", ".join(sorted(RULES))))
            elif mode not in RULES[rule].modes:
                out.append((f"{prefix}modes", f"rule {rule!r}: mode {mode!r} is not one of "
                            + ", ".join(RULES[rule].modes)))
        for pattern in self.image_allowlist:
            try:
                image_pattern(pattern)
            except ValueError as e:
                out.append((f"{prefix}image_allowlist", str(e)))
        for name, value in (("max_image_age_days", self.max_image_age_days),
                            ("python_eol_warn_days", self.python_eol_warn_days),
                            ("scan_attestation_max_age_days", self.scan_attestation_max_age_days)):
            if value < 0:
                out.append((f"{prefix}{name}", f"must be 0 or more, not {value}"))
        for name, paths in (("sshd_config", (self.sshd_config,)), ("conda_prefix", (self.conda_prefix,)),
                            ("setuid_paths", self.setuid_paths), ("library_paths", self.library_paths)):
            out += [(f"{prefix}{name}", f"{path!r} is not an absolute path") for path in paths
                    if path and not path.startswith("/")]
        for env in self.conda_envs:
            if env != "*" and (not env or "/" in env or env in (".", "..")):
                out.append((f"{prefix}conda_envs", f"{env!r} is not an environment name under <prefix>/envs"))
        for channel in self.allowed_channels:
            try:
                conda.normalize_channel(channel, self.channel_alias)
            except ValueError as e:
                out.append((f"{prefix}allowed_channels", str(e)))
        for channel, url in self.verify_channels:
            for value in (channel, url) if url else (channel,):
                try:
                    conda.normalize_channel(value, self.channel_alias)
                except ValueError as e:
                    out.append((f"{prefix}verify_channels", str(e)))
        verified = {c for c, _ in self.verify_channels}
        for channel, value in self.attestation_keys:
            if channel not in verified:
                out.append((f"{prefix}attestation_keys", f"{channel!r} is not a channel in conda_verify_channels"))
            out += [(f"{prefix}attestation_keys", f"{channel}: {p}") for p in conda_attestations.signers(value)[2]]
        for mirror, target in self.channel_mirrors:
            for value in (mirror, target):
                try:
                    conda.normalize_channel(value, self.channel_alias)
                except ValueError as e:
                    out.append((f"{prefix}channel_mirrors", str(e)))
        for version, date in self.python_eol_dates:
            if not re.fullmatch(r"\d+\.\d+", version):
                out.append((f"{prefix}python_eol_dates", f"{version!r} is not a Python version like '3.10'"))
            if _date_problem(date):
                out.append((f"{prefix}python_eol_dates", f"{version}: {_date_problem(date)}"))
        for name, specs in (("denied_packages", self.denied_packages),
                            ("required_packages", self.required_packages)):
            for spec in specs:
                problem = conda.spec_problem(spec)
                if problem:
                    out.append((f"{prefix}{name}", problem))
        if self.scan_deny_severity not in reports.THRESHOLDS:
            out.append((f"{prefix}scan_deny_severity", f"unknown severity {self.scan_deny_severity!r}; use one of "
                        + ", ".join(reports.THRESHOLDS)))
        for cve, date in self.scan_cve_allowlist:
            if not _CVE.match(cve):
                out.append((f"{prefix}scan_cve_allowlist", f"{cve!r} is not a vulnerability id like CVE-2024-12345"))
            if _date_problem(date):
                out.append((f"{prefix}scan_cve_allowlist", f"{cve}: {_date_problem(date)}"))
        return out


    def file_problems(self, prefix=""):
        """Problems with the configured lock file and report directory (reads them: hub start, CI)."""
        out = []
        if self.lock_file:
            try:
                locks.load(self.lock_file, self.lock_environment, self.lock_platform)
            except locks.LockError as e:
                out.append((f"{prefix}lock_file", str(e)))
        for channel, value in self.attestation_keys:
            for path in conda_attestations.signers(value)[0]:
                try:
                    with open(path, "rb") as f:
                        conda_attestations.load_keys(f.read())
                except (OSError, ValueError) as e:
                    out.append((f"{prefix}attestation_keys", f"{channel}: {path} {e}"))
        if self.scan_report_dir and not os.path.isdir(self.scan_report_dir):
            out.append((f"{prefix}scan_report_dir", f"{self.scan_report_dir} is not a directory"))
        return out


def _date_problem(value):
    try:
        datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        return f"{value!r} is not a date like 2026-12-31"
    return None


def file_identity(path):
    """(size, mtime) of ``path``, so an edited file changes cache keys; None if absent."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
