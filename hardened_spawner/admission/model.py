"""Admission decisions as data: findings and the decision they add up to.

A :class:`Finding` is one violated rule (the rules are in :mod:`.rules`),
worded for the user and the admin. Each rule runs in a mode the admin picks:
``enforce`` (the finding denies the image), ``audit`` (it warns and the image
runs) or ``off``. Pure: no I/O.
"""

from dataclasses import dataclass

MODES = ("enforce", "audit", "off")
SEVERITIES = ("info", "low", "medium", "high", "critical")


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
    provenance: str = ""     # the provenance verdict in words (empty: no provenance policy entry covers it)
    level: int = 0           # the SLSA Build level verified: of the provenance that satisfied the policy (0: none)
    inputs: tuple = ()       # ((uri, sha256), ...) of the attestations that did

    @property
    def denials(self):
        return [f for f in self.findings if f.action == "deny"]

    @property
    def warnings(self):
        return [f for f in self.findings if f.action == "warn"]

    def as_dict(self, image=""):
        return {"image": image, "digest": self.digest, "admitted": self.admitted,
                "findings": [f.as_dict() for f in self.findings], "signature": self.signature, "sbom": self.sbom,
                "provenance": self.provenance}

    def explain(self):
        """The findings in words, denials first: what the spawn page shows."""
        lines = [f"[{f.rule}] {f.message} Fix: {f.remediation}" for f in self.denials]
        lines += [f"(warning) [{f.rule}] {f.message}" for f in self.warnings]
        return "\n".join(lines)


def decision(findings, digest="", **fields):
    """The :class:`Decision` of ``findings``: denials first, then by severity and rule; admitted when none denies."""
    ordered = sorted(findings, key=lambda f: (f.action != "deny", -SEVERITIES.index(f.severity), f.rule))
    return Decision(not any(f.action == "deny" for f in ordered), tuple(ordered), digest, **fields)
