"""What a rule is, what it sees, and how its hits become findings. Pure: no I/O.

A :class:`Rule` is one definition: its id, severity, default mode, the words
users and admins read (summary, remediation, why it warns by default, what it
protects against and when it applies: the docs' rule tables are generated from
these), and its check. A check is a pure function of a subject: it yields the
message of each violation it finds (a :class:`Hit` to override the severity),
nothing when the image passes. Rules are registered per :class:`Family` with
the family's decorator, next to the rules they belong with.

A :class:`Reference` subject holds only the policy and the image reference
(the rules that can run before the image is pulled); an :class:`Image` subject
adds what the engine prepared from the image: its inspect data, the facts read
from its files, the prepared conda environments, and the context (lock file,
scanner reports, OSV list, signatures). Analyses several rules share (the
sudoers grants, the signature verdict) are computed once per subject with
:meth:`Reference.once`.
"""

import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ..model import MODES, SEVERITIES, Finding
from ...decisions.reference import parse

_ID = re.compile(r"^[a-z]+\.[a-z0-9]+(-[a-z0-9]+)*$")
MAX_LISTED = 10


def listing(items):
    """``a; b; c`` with at most :data:`MAX_LISTED` items, then how many more."""
    items = list(items)
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


class Hit(NamedTuple):
    """A violation whose severity is not the rule's own (scan.severity-threshold: the worst found)."""

    message: str
    severity: str


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    default_mode: str
    summary: str
    remediation: str
    check: Callable = field(repr=False, compare=False)   # subject -> iterable of str | Hit
    why_audit: str = ""  # why the default is audit: appended to findings that warn by default
    protects: str = ""   # docs: what the rule protects against
    when: str = ""       # docs: the settings the rule needs to apply at all, e.g. "`conda_lock_file` is set"
    family: str = ""


@dataclass
class Family:
    """Rules that belong together, documented on one page (``page``, in docs/).

    ``reference_only``: the rules need nothing but the policy and the image
    reference (a :class:`Reference` subject), so they run before the image is pulled.
    """

    id: str
    title: str
    page: str
    reference_only: bool = False
    rules: list = field(default_factory=list)

    def rule(self, id, severity, default_mode, summary, remediation, *, why_audit="", protects, when=""):
        """Decorator: register the decorated check as rule ``id`` of this family."""
        if not _ID.match(id) or severity not in SEVERITIES or default_mode not in MODES:
            raise ValueError(f"rule {id!r}: bad id, severity {severity!r} or mode {default_mode!r}")

        def register(check):
            self.rules.append(Rule(id, severity, default_mode, summary, remediation, check, why_audit,
                                   protects, when, self.id))
            return check
        return register


@dataclass
class Reference:
    """The policy and the image reference, parsed here (BadReference if Docker would refuse it)."""

    policy: object
    ref: str
    image: object = field(init=False, repr=False)      # decisions.reference.ImageRef
    _memo: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        self.image = parse(self.ref)

    def once(self, analysis):
        """``analysis(self)``, computed once for this subject however many rules ask."""
        if analysis not in self._memo:
            self._memo[analysis] = analysis(self)
        return self._memo[analysis]


@dataclass
class Image(Reference):
    """A reference and what the engine prepared from the image it names."""

    image_info: dict       # docker inspect of the image
    inputs: object         # engine.Inputs: the facts read from its files, its conda environments
    context: object        # engine.Context: lock file, scanner reports, OSV list, signatures
    today: object          # datetime.date

    @property
    def config(self):
        return self.image_info.get("Config") or {}

    @property
    def facts(self):
        return self.inputs.facts


def findings(rules, subject):
    """The findings of ``rules`` on ``subject``, in the modes of ``subject.policy`` (``off`` rules do not run)."""
    modes = dict(subject.policy.modes)
    out = []
    for rule in rules:
        mode = modes.get(rule.id) or rule.default_mode
        if mode == "off":
            continue
        for hit in rule.check(subject):
            message, severity = (hit, rule.severity) if isinstance(hit, str) else hit
            if rule.why_audit and not modes.get(rule.id):
                message = f"{message} {rule.why_audit}"
            out.append(Finding(rule.id, severity, "deny" if mode == "enforce" else "warn", message, rule.remediation))
    return out
