"""The admission rule registry: every rule, by family, each defined once (see :mod:`.base`).

To add a rule, decorate its check in the family module it belongs to (a new
family: a module here and an entry in :data:`FAMILIES`) and add its rows to
tests/unit/test_admission_rules.py; the engine runs it, ``check-image``
reports it, and ``python -m hardened_spawner.tools.docs_rules docs`` writes it
into the family's table in docs/.
"""

from . import conda, content, provenance, python, reference, scan, signature
from .base import NEEDS, Family, Hit, Image, Reference, Rule, findings

FAMILIES = (reference.FAMILY, content.FAMILY, conda.FAMILY, python.FAMILY, scan.FAMILY, signature.FAMILY,
            provenance.FAMILY)


def _registry(families):
    found = {}
    for family in families:
        for rule in family.rules:
            if rule.id in found:
                raise ValueError(f"rule {rule.id} is defined twice ({found[rule.id].family} and {family.id})")
            found[rule.id] = rule
    return found


RULES = _registry(FAMILIES)  # rule id -> Rule
REFERENCE_RULES = tuple(r for r in RULES.values() if r.needs <= Reference.has)  # those that run before the pull
__all__ = ["FAMILIES", "NEEDS", "RULES", "REFERENCE_RULES", "Family", "Hit", "Image", "Reference", "Rule", "findings"]
