"""Admission decisions as data: rules, findings and the decision they add up to.

A :class:`Finding` is one violated rule, worded for the user and the admin.
Each rule runs in a mode the admin picks: ``enforce`` (the finding denies the
image), ``audit`` (it warns and the image runs) or ``off``. A rule whose risk
the spawner's runtime settings already remove warns by default, and its
findings say so (``Rule.why_audit``). Pure: no I/O.
"""

from dataclasses import dataclass, field

MODES = ("enforce", "audit", "off")
SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    default_mode: str
    summary: str
    remediation: str
    why_audit: str = ""  # why the default is audit: appended to findings that warn by default


def _rules(*rules):
    return {r.id: r for r in rules}


RULES = _rules(
    # reference rules
    Rule("image.not-allowlisted", "high", "enforce", "image is not on the allowlist",
         "Use an image from an allowed registry/repository, or ask the hub admin to allow this one."),
    Rule("image.tag-latest", "medium", "enforce", "image is referenced by :latest or no tag",
         "Reference the image by a fixed tag or by digest (name@sha256:...)."),
    Rule("image.digest-required", "medium", "enforce", "image is not pinned by digest",
         "Reference the image by digest: name@sha256:<digest> (docker inspect shows RepoDigests)."),
    # content rules
    Rule("image.user-root", "high", "enforce", "image runs as root",
         "Add a non-root USER to the Dockerfile (e.g. USER 1000:100)."),
    Rule("image.user-unknown", "high", "enforce", "image's USER is not an account in the image",
         "Set USER to a uid:gid, or to a user (and group) that /etc/passwd (and /etc/group) define."),
    Rule("image.gpu-env", "low", "audit", "image selects GPUs in its environment",
         "Remove NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES / DOCKER_RESOURCE_* from the image's ENV: "
         "GPUs are leased per server by the hub.",
         why_audit="This warns by default: the hub sets NVIDIA_VISIBLE_DEVICES in every container it starts "
         "(the leased GPUs, or none), so the image's value never reaches the NVIDIA runtime."),
    Rule("image.baked-private-key", "critical", "enforce", "private key baked into the image",
         "Remove the key from the image (and rotate it): keys are delivered per spawn, never built in."),
    Rule("image.baked-authorized-keys", "high", "enforce", "authorized_keys baked into the image",
         "Remove authorized_keys from the image: the hub delivers each user's keys at spawn."),
    Rule("image.env-secret", "critical", "enforce", "secret in the image's environment",
         "Remove the variable from the image's ENV (and rotate the secret); pass secrets at runtime."),
    Rule("sshd.root-login", "high", "enforce", "sshd allows root login",
         "Set 'PermitRootLogin no' in the image's sshd_config."),
    Rule("sshd.password-auth", "high", "enforce", "sshd allows password logins",
         "Set 'PasswordAuthentication no' and 'KbdInteractiveAuthentication no' (or "
         "'AuthenticationMethods publickey') in the image's sshd_config."),
    Rule("sudo.nopasswd", "high", "enforce", "sudoers grants commands without a password",
         "Remove NOPASSWD rules from /etc/sudoers and /etc/sudoers.d (better: remove sudo)."),
    Rule("sudo.interpreter-grant", "critical", "enforce", "sudoers grants a shell, interpreter or package manager",
         "Remove the sudo rule: running an interpreter or package manager through sudo is root. "
         "Change environments through the image (environment.yml) or user-owned envs in the home."),
    Rule("image.setuid-binary", "medium", "audit", "setuid/setgid binary outside the allowlist",
         "Remove the setuid/setgid bits in the Dockerfile (find / -xdev -perm /6000 -exec chmod a-s {} +).",
         why_audit="This warns by default: every container the hub starts runs with no-new-privileges, "
                   "which makes setuid/setgid bits inert (su, passwd, mount and sudo cannot gain privileges); "
                   "set the rule to enforce if these images also run elsewhere."),
    Rule("image.too-old", "medium", "enforce", "image is older than the allowed age",
         "Rebuild the image so it picks up current security updates."),
    Rule("image.no-healthcheck", "low", "audit", "image has no HEALTHCHECK",
         "Add a HEALTHCHECK to the Dockerfile."),
    # conda environment policy
    Rule("conda.record-invalid", "high", "enforce", "conda-meta record cannot be read",
         "Rebuild the environment with conda/mamba so every conda-meta record is complete JSON."),
    Rule("conda.channel-not-allowed", "high", "enforce", "package from a channel that is not allowed",
         "Install the package from an allowed channel (or a mirror the hub admin has declared)."),
    Rule("conda.python-eol", "high", "enforce", "Python is past its end of life",
         "Rebuild the image with a supported Python version."),
    Rule("conda.python-eol-soon", "medium", "audit", "Python reaches its end of life soon",
         "Plan a rebuild with a newer Python before the end-of-life date."),
    Rule("conda.package-denied", "high", "enforce", "denied package installed",
         "Remove the package from the environment."),
    Rule("conda.package-required", "high", "enforce", "required package missing or wrong version",
         "Install a version of the package that matches the required spec."),
    Rule("conda.lock-mismatch", "high", "enforce", "installed packages differ from the lock file",
         "Build the environment from the lock file exactly (conda create --file / conda-lock install / pixi install --frozen)."),
    Rule("conda.lock-invalid", "high", "enforce", "the lock file cannot be read",
         "Fix or regenerate the lock file configured by the hub admin."),
    Rule("conda.pip-pollution", "medium", "audit", "pip-installed packages in the conda environment",
         "Install the packages with conda, or add them to the pip allowlist if pip is intended.",
         why_audit="This warns by default: packages pip installed at build time grant no privilege, but they "
                   "bypass the conda channel policy and lock files; set the rule to enforce where every "
                   "package must come from an approved channel."),
    # scanner gates
    Rule("scan.report-missing", "high", "enforce", "no vulnerability report for this image",
         "Scan the image in CI (trivy/grype) and publish the JSON report to the hub's report directory."),
    Rule("scan.report-invalid", "high", "enforce", "vulnerability report cannot be used",
         "Publish a valid Trivy, Grype or CycloneDX JSON report made for this image digest."),
    Rule("scan.severity-threshold", "high", "enforce", "vulnerabilities at or above the severity threshold",
         "Update the affected packages and rebuild, or allowlist the CVE with an expiry date."),
    # signatures (issue 15)
    Rule("image.signature", "critical", "enforce", "no signature verifies against the trust policy",
         "Sign the image's digest with a key or identity the hub's trust policy accepts for this repository "
         "(docs/image-signing.md), and push the signature to the image's registry."),
    Rule("image.signature-missing", "high", "enforce", "image has no signature",
         "Push the image to its registry, sign its digest (cosign sign --key ... IMAGE@sha256:...) and pull it "
         "from there; images built or tagged on the hub's host carry no registry digest to sign."),
    Rule("image.signature-unverifiable", "high", "enforce", "signatures could not be checked",
         "Make sure the hub can reach the image's registry (admission_registry_plain_http, "
         "admission_registry_auth_file); set this rule to audit only to run unverified images during an outage."),
)


@dataclass(frozen=True)
class Finding:
    """One violated rule. ``action`` is ``deny`` or ``warn`` (from the rule's mode)."""

    rule: str
    severity: str
    action: str
    message: str
    remediation: str

    def as_dict(self):
        return {"rule": self.rule, "severity": self.severity, "action": self.action,
                "message": self.message, "remediation": self.remediation}


@dataclass(frozen=True)
class Decision:
    admitted: bool
    findings: tuple = ()
    digest: str = ""
    signature: str = ""      # the signature verdict in words (empty: no trust policy)
    sbom: str = ""           # serial number of the image's SBOM (sbom.serial_number)

    @property
    def denials(self):
        return [f for f in self.findings if f.action == "deny"]

    @property
    def warnings(self):
        return [f for f in self.findings if f.action == "warn"]

    def as_dict(self, image=""):
        return {"image": image, "digest": self.digest, "admitted": self.admitted,
                "findings": [f.as_dict() for f in self.findings], "signature": self.signature, "sbom": self.sbom}

    def explain(self):
        """The findings in words, denials first: what the spawn page shows."""
        lines = [f"[{f.rule}] {f.message} Fix: {f.remediation}" for f in self.denials]
        lines += [f"(warning) [{f.rule}] {f.message}" for f in self.warnings]
        return "\n".join(lines)


@dataclass
class Violations:
    """Collects violations while rules run; :meth:`decide` applies the modes."""

    modes: dict
    items: list = field(default_factory=list)

    def active(self, rule):
        return self.mode(rule) != "off"

    def mode(self, rule):
        return self.modes.get(rule) or RULES[rule].default_mode

    def add(self, rule, message, severity=None):
        if self.active(rule):
            self.items.append((rule, message, severity))

    def decide(self, digest=""):
        findings = []
        for rule, message, severity in self.items:
            meta = RULES[rule]
            action = "deny" if self.mode(rule) == "enforce" else "warn"
            if meta.why_audit and not self.modes.get(rule):
                message = f"{message} {meta.why_audit}"
            findings.append(Finding(rule, severity or meta.severity, action, message, meta.remediation))
        findings.sort(key=lambda f: (f.action != "deny", -SEVERITIES.index(f.severity), f.rule))
        return Decision(not any(f.action == "deny" for f in findings), tuple(findings), digest)
