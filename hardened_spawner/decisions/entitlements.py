"""Entitlements from identity-provider claims: pure, no I/O.

The admin writes rules; each rule names a claim and a value, or only a
value that the user's IdP groups must contain (the groups that
GenericOAuthenticator's ``auth_state_groups_key`` reads), and grants hub
groups, profiles, a GPU quota, images and admin. A user's entitlements are
the union of every rule they match (the GPU quota is the largest one granted). A user who matches no rule
gets no access: that is how removing someone from their IdP groups
revokes them at the next refresh.

Entitlements travel in ``auth_state["entitlements"]`` as a plain dict
(:meth:`Entitlements.as_dict`), so the spawner reads them without
importing the authenticator.
"""

from dataclasses import dataclass, field
from functools import reduce

AUTH_STATE_KEY = "entitlements"
GRANTS = ("groups", "profiles", "gpus", "images", "admin")
_RULE_KEYS = {"claim", "value", *GRANTS}
_SCALARS = (str, bool, int)


@dataclass(frozen=True)
class Rule:
    claim: object  # a claim name or dotted path; None: the user's IdP groups
    value: object
    groups: tuple = ()
    profiles: tuple = ()
    gpus: int = 0
    images: tuple = ()
    admin: bool = False


@dataclass(frozen=True)
class Entitlements:
    """What one user may do; ``allowed`` is False when no rule matched."""

    allowed: bool = False
    groups: tuple = ()
    profiles: tuple = ()
    gpus: int = 0
    images: tuple = ()
    admin: bool = False
    matched: tuple = field(default=())  # indexes of the rules that matched
    idp_groups: tuple = ()  # the IdP groups the rules read (the facts behind the decision)

    def as_dict(self):
        return {
            "allowed": self.allowed, "groups": list(self.groups), "profiles": list(self.profiles),
            "gpus": self.gpus, "images": list(self.images), "admin": self.admin,
            "matched": list(self.matched), "idp_groups": list(self.idp_groups),
        }

    @classmethod
    def from_dict(cls, data):
        data = data or {}
        return cls(
            allowed=bool(data.get("allowed")),
            groups=tuple(data.get("groups") or ()),
            profiles=tuple(data.get("profiles") or ()),
            gpus=int(data.get("gpus") or 0),
            images=tuple(data.get("images") or ()),
            admin=bool(data.get("admin")),
            matched=tuple(data.get("matched") or ()),
            idp_groups=tuple(data.get("idp_groups") or ()),
        )

    def describe(self):
        """A short sentence for logs and pages, e.g. ``groups gpu-users; profiles gpu-1; 1 GPU``."""
        if not self.allowed:
            return "no access"
        parts = [f"groups {', '.join(self.groups) or 'none'}"]
        if self.profiles:
            parts.append(f"profiles {', '.join(self.profiles)}")
        if self.images:
            parts.append(f"images {', '.join(self.images)}")
        parts.append(f"{self.gpus} GPU" + ("" if self.gpus == 1 else "s"))
        if self.admin:
            parts.append("admin")
        return "; ".join(parts)


def from_auth_state(auth_state):
    """The entitlements a HardenedOAuthenticator stored, or None if there are none."""
    if not auth_state or AUTH_STATE_KEY not in auth_state:
        return None
    return Entitlements.from_dict(auth_state[AUTH_STATE_KEY])


def _names(setting, value, problems):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) and v for v in value):
        problems.append((setting, f"must be a list of non-empty names, not {value!r}"))
        return ()
    return tuple(sorted(set(value)))


def parse_rules(setting, raw_rules):
    """``(rules, problems)`` from the admin's list of dicts; problems name the rule and key.

    A rule without ``claim`` matches the user's IdP groups."""
    rules, problems = [], []
    if not isinstance(raw_rules, (list, tuple)):
        return [], [(setting, f"must be a list of rules, not {type(raw_rules).__name__}")]
    for i, raw in enumerate(raw_rules):
        where = f"{setting}[{i}]"
        if not isinstance(raw, dict):
            problems.append((where, f"must be a dict like {{'value': 'my-group', 'groups': [...]}}, not {raw!r}"))
            continue
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            problems.append((where, f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(_RULE_KEYS))}"))
        claim = raw.get("claim")
        if "claim" in raw and (not isinstance(claim, str) or not claim or any(not p for p in claim.split("."))):
            problems.append((f"{where}.claim", f"must be a claim name or dotted path, not {claim!r}"))
        if "value" not in raw or not isinstance(raw["value"], _SCALARS):
            problems.append((f"{where}.value", "is required: the claim value (a string, number or boolean) this rule matches"))
        gpus = raw.get("gpus", 0)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= 64:
            problems.append((f"{where}.gpus", f"must be a whole number of GPUs from 0 to 64, not {gpus!r}"))
            gpus = 0
        admin = raw.get("admin", False)
        if not isinstance(admin, bool):
            problems.append((f"{where}.admin", f"must be True or False, not {admin!r}"))
        rules.append(Rule(
            claim=claim,
            value=raw.get("value"),
            groups=_names(f"{where}.groups", raw.get("groups", ()), problems),
            profiles=_names(f"{where}.profiles", raw.get("profiles", ()), problems),
            gpus=gpus,
            images=_names(f"{where}.images", raw.get("images", ()), problems),
            admin=admin is True,
        ))
    return (rules, []) if not problems else ([], problems)


def claim_values(claims, path):
    """The values at a dotted ``path`` in ``claims`` as a list (empty when absent)."""
    value = reduce(lambda d, key: d.get(key) if isinstance(d, dict) else None, path.split("."), claims)
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [v for v in value if isinstance(v, _SCALARS)]
    return [value] if isinstance(value, _SCALARS) else []


def reads_groups(rules):
    """True when some rule matches the IdP groups (has no ``claim``)."""
    return any(rule.claim is None for rule in rules)


def _matches(rule, claims, idp_groups):
    values = idp_groups if rule.claim is None else claim_values(claims, rule.claim)
    # bool is an int in Python: True must not match 1
    return any(v == rule.value and type(v) is type(rule.value) for v in values)


def evaluate(rules, claims, idp_groups=()):
    """The user's :class:`Entitlements` under ``rules`` given their IdP ``claims`` and ``idp_groups``."""
    idp_groups = tuple(sorted(idp_groups, key=str))
    matched = [i for i, rule in enumerate(rules) if _matches(rule, claims, idp_groups)]
    if not matched:
        return Entitlements(idp_groups=idp_groups)
    hits = [rules[i] for i in matched]
    return Entitlements(
        allowed=True,
        groups=tuple(sorted({g for r in hits for g in r.groups})),
        profiles=tuple(sorted({p for r in hits for p in r.profiles})),
        gpus=max(r.gpus for r in hits),
        images=tuple(sorted({m for r in hits for m in r.images})),
        admin=any(r.admin for r in hits),
        matched=tuple(matched),
        idp_groups=idp_groups,
    )


def grants_groups(rules):
    """True when some rule grants hub groups (which JupyterHub applies only with ``manage_groups``)."""
    return any(rule.groups for rule in rules)


def manages_admin(rules):
    """True when some rule grants admin: then admin comes from the IdP and is revoked too."""
    return any(rule.admin for rule in rules)
