"""Write the admission rule tables in docs/ from the rule registry (:mod:`..admission.rules`).

Each family's table sits in the family's page between ``<!-- rules: FAMILY -->``
and ``<!-- /rules -->``; the list of families with their rule ids sits in
docs/admission.md between ``<!-- rules: index -->`` and ``<!-- /rules -->``.
The prose around the tables is written by hand.
Run: ``python -m hardened_spawner.tools.docs_rules docs`` (rewrites the tables), or
``python -m hardened_spawner.tools.docs_rules --check docs`` (a diff and exit 1 when a table is stale).
"""

import argparse
import difflib
import os
import re
import sys

from ..admission.rules import FAMILIES

INDEX_PAGE = "admission.md"
_TABLE = re.compile(r"(<!-- rules: ([a-z-]+) -->\n).*?(<!-- /rules -->)", re.S)


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def _default(rule):
    text = {"enforce": "enforce", "audit": "audit (warns)", "off": "off"}[rule.default_mode]
    if len(rule.modes) == 1:
        text += " (cannot be changed)"
    if rule.when:
        text += f", when {rule.when}"
    return text + (f". {rule.why_audit}" if rule.why_audit else "")


def family_table(family):
    lines = ["| Rule | Severity | Default | Protects against | Fix |", "|---|---|---|---|---|"]
    lines += [f"| `{r.id}`: {_cell(r.summary)} | {r.severity} | {_cell(_default(r))} | {_cell(r.protects)} | "
              f"{_cell(r.remediation)} |" for r in family.rules]
    return "\n".join(lines) + "\n"


def index_table():
    lines = ["| Page | Rule ids |", "|---|---|"]
    lines += [f"| [{f.title}]({f.page}) | {', '.join(f'`{r.id}`' for r in f.rules)} |" for f in FAMILIES]
    return "\n".join(lines) + "\n"


def render(docs):
    """``{path: (text now, text with current tables)}`` of every page that holds a rule table.

    Raises ValueError naming the page when a family's table is missing or a marker names no family."""
    tables = {f.id: family_table(f) for f in FAMILIES} | {"index": index_table()}
    pages = {}
    for page in sorted({f.page for f in FAMILIES} | {INDEX_PAGE}):
        path = os.path.join(docs, page)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found = []

        def fill(match, path=path, found=found):
            if match[2] not in tables:
                raise ValueError(f"{path}: <!-- rules: {match[2]} --> names no rule family "
                                 f"(known: {', '.join(sorted(tables))})")
            found.append(match[2])
            return match[1] + tables[match[2]] + match[3]

        new = _TABLE.sub(fill, text)
        wanted = [f.id for f in FAMILIES if f.page == page] + (["index"] if page == INDEX_PAGE else [])
        for name in wanted:
            if found.count(name) != 1:
                raise ValueError(f"{path} must hold the table <!-- rules: {name} --> ... <!-- /rules --> once, "
                                 f"not {found.count(name)} times")
        pages[path] = (text, new)
    return pages


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hardened_spawner.tools.docs_rules", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables (exit 1), write nothing")
    parser.add_argument("docs", help="the docs directory")
    args = parser.parse_args(argv)
    try:
        pages = render(args.docs)
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    stale = {path: texts for path, texts in pages.items() if texts[0] != texts[1]}
    for path, (old, new) in sorted(stale.items()):
        if args.check:
            sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path, path + " (registry)"))
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
