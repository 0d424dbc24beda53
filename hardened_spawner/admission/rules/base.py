"""What a rule is, what it sees, and how its hits become findings. Pure: no I/O.

A :class:`Rule` is one definition: its id, severity, default mode, the words
users and admins read (summary, remediation, why it warns by default, what it
protects against and when it applies: the docs' rule tables are generated from
these), and its check. A check is a pure function of a subject: it yields the
message of each violation it finds (a :class:`Hit` to override the severity),
nothing when the image passes. Rules are registered per :class:`Family` with
the family's decorator, next to the rules they belong with.

Each rule also declares what it ``needs`` (:data:`NEEDS`), and a rule runs
on a subject only when the subject has all of it: a :class:`Reference` subject
holds the policy and the image reference (parsed: ``reference``, unless Docker
would refuse it), so the rules that need nothing more run before the image is
pulled; an :class:`Image` subject adds what the engine prepared from the image
(``image``: its inspect data, the facts read from its files, its conda
environments and their ``site-packages`` listings) and the ``context`` (lock
file, scanner reports, OSV list, signatures). The engine reads site-packages
only when an active rule needs them. Analyses several rules share (the
sudoers grants, the signature verdict) are computed once per subject with
:meth:`Reference.once`.
"""

import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ..model import MODES, SEVERITIES, Finding
from ...decisions.reference import BadReference, parse

_ID = re.compile(r"^[a-z]+\.[a-z0-9]+(-[a-z0-9]+)*$")
MAX_LISTED = 10
NEEDS = {
    "reference": "the parsed image reference",
    "image": "the image's inspect data and the facts read from its files and conda environments",
    "site-packages": "the listings of the conda environments' site-packages directories",
    "context": "the lock file, scanner reports, OSV list and signatures read for the image",
}


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
    needs: frozenset = frozenset()  # keys of NEEDS: the rule runs on subjects that have all of them
    modes: tuple = MODES            # the modes an admin may choose for it (a reference Docker refuses: enforce only)


@dataclass
class Family:
    """Rules that belong together, documented on one page (``page``, in docs/).

    ``needs``: what its rules need unless a rule says otherwise (keys of :data:`NEEDS`).
    """

    id: str
    title: str
    page: str
    needs: tuple
    rules: list = field(default_factory=list)

    def rule(self, id, severity, default_mode, summary, remediation, *, why_audit="", protects, when="",
             needs=None, modes=MODES):
        """Decorator: register the decorated check as rule ``id`` of this family."""
        needs = frozenset(self.needs if needs is None else needs)
        if (not _ID.match(id) or severity not in SEVERITIES or default_mode not in modes
                or not set(modes) <= set(MODES) or not needs <= set(NEEDS)):
            raise ValueError(f"rule {id!r}: bad id, severity {severity!r}, modes {modes!r}/{default_mode!r} "
                             f"or needs {sorted(needs)}")

        def register(check):
            self.rules.append(Rule(id, severity, default_mode, summary, remediation, check, why_audit,
                                   protects, when, self.id, needs, tuple(modes)))
            return check
        return register


@dataclass
class Reference:
    """The policy and the image reference, parsed here.

    ``image`` is the :class:`~...decisions.reference.ImageRef`, or None when
    Docker would refuse the reference (``problem`` then says why, and the
    subject lacks ``reference``)."""

    policy: object
    ref: str
    image: object = field(init=False, repr=False)      # decisions.reference.ImageRef, or None
    problem: str = field(init=False, default="")       # why the reference cannot be parsed
    _memo: dict = field(init=False, repr=False, default_factory=dict)
    has = frozenset({"reference"})                    # what this kind of subject holds (keys of NEEDS)

    def __post_init__(self):
        try:
            self.image = parse(self.ref)
        except BadReference as e:
            self.image, self.problem = None, str(e)

    def provides(self, needs):
        """True when the subject holds everything in ``needs``."""
        return needs <= (self.has if self.image else self.has - {"reference"})

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
    has = frozenset(NEEDS)

    @property
    def config(self):
        return self.image_info.get("Config") or {}

    @property
    def facts(self):
        return self.inputs.facts


def findings(rules, subject):
    """The findings of ``rules`` on ``subject``, in the modes of ``subject.policy``.

    A rule runs when its mode is not ``off`` and the subject provides what it needs; a mode the
    rule does not allow (:meth:`.policy.Policy.problems` refuses it at start) counts as its default."""
    modes = dict(subject.policy.modes)
    out = []
    for rule in rules:
        mode = modes.get(rule.id) if modes.get(rule.id) in rule.modes else rule.default_mode
        if mode == "off" or not subject.provides(rule.needs):
            continue
        for hit in rule.check(subject):
            message, severity = (hit, rule.severity) if isinstance(hit, str) else hit
            if rule.why_audit and not modes.get(rule.id):
                message = f"{message} {rule.why_audit}"
            out.append(Finding(rule.id, severity, "deny" if mode == "enforce" else "warn", message, rule.remediation))
    return out
