"""Errors shown to users and admins.

Every refusal of a spawn is one :class:`SpawnRefused`: JupyterHub's
``SpawnException`` (so its metrics count a *failure* with a reason, not an
error, and it logs no traceback) with a stable reason code, the HTTP status
of that code (:data:`REFUSALS`), the findings that explain it, what the user
can do, and a reference id that is also on the ``spawn.denied`` audit line.
"""

import html
import re
import secrets
from dataclasses import dataclass

from jupyterhub.spawner import SpawnException

_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: read aloud without doubt
REF_PATTERN = re.compile(r"\[ref ([2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4})\]")


def new_reference():
    """A short id a user can quote and an admin can grep for, e.g. ``K7QM-3XPA``."""
    chars = "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def failure_reason(error, start_timeout):
    """Why a start that passed its checks failed, in words for the ``spawn.failed`` audit line: an exception's
    own text, else what its kind means (JupyterHub cancels a start that outlived ``start_timeout``)."""
    import asyncio

    if isinstance(error, asyncio.CancelledError):
        return (f"cancelled before the server started: JupyterHub stops waiting after start_timeout "
                f"({start_timeout} s), or the server was stopped meanwhile")
    return str(error) or f"{type(error).__name__} (no message)"


# What a user can do about a refusal, by kind (the page lists them before "ask an admin").
CHOOSE = "Pick another profile or image and start again."
WAIT = "Try again in a few minutes."
ADMIN = "Ask the hub admin and quote reference {ref}: it finds this refusal in the audit log."


@dataclass(frozen=True)
class Kind:
    """One reason code: its HTTP status and what the user can do (besides asking an admin)."""

    status: int
    advice: tuple = ()


# The reason codes of every refusal. Stable: dashboards and scripts key on them.
# 400 the options are malformed; 403 policy says no to this user, image or quota;
# 409 the request conflicts with what is held now (GPUs in use); 503 the hub cannot
# serve it now: something it needs is down or missing, or its own configuration is
# wrong (retry later, or an admin fixes it). Not 500: JupyterHub logs a 500's request
# headers at ERROR, which is for crashes.
REFUSALS = {
    "bad-options": Kind(400, (CHOOSE,)),
    "not-entitled": Kind(403, (CHOOSE,)),
    "image-not-allowed": Kind(403, (CHOOSE,)),
    "image-denied": Kind(403, (CHOOSE,)),
    "image-user-unknown": Kind(403, (CHOOSE,)),
    "gpu-quota": Kind(403, (CHOOSE,)),
    "gpu-busy": Kind(409, (CHOOSE, WAIT)),
    "unsafe-config": Kind(503),
    "bad-reference": Kind(503),
    "conda-guard-failed": Kind(503),
    "swarm-no-new-privileges": Kind(503),
    "network-not-isolated": Kind(503),
    "network-peer-failed": Kind(503),
    "network-busy": Kind(503, (WAIT,)),
    "image-no-digest": Kind(503, (CHOOSE,)),
    "image-changed": Kind(503, (WAIT,)),
    "container-not-hardened": Kind(503),
    "gpu-none": Kind(503, (CHOOSE,)),
    "gpu-discovery": Kind(503, (CHOOSE,)),
    "no-gpu-runtime": Kind(503, (CHOOSE,)),
    "image-missing": Kind(503, (CHOOSE,)),
    "image-pull-failed": Kind(503, (CHOOSE, WAIT)),
    "admission-failed": Kind(503, (WAIT,)),
    "ssh-key-store": Kind(503, (WAIT,)),
    "docker-unreachable": Kind(503, (WAIT,)),
    "disk-low": Kind(503, (WAIT,)),
    "home-unquoted": Kind(503),
    "home-failed": Kind(503),
    "home-full": Kind(403, (CHOOSE,)),
    "swarm-no-node": Kind(503, (CHOOSE, WAIT)),
}


def _finding(f):
    """A finding as the API and the page show it (an admission ``Finding`` or a dict)."""
    d = f.as_dict() if hasattr(f, "as_dict") else dict(f)
    return {"rule": d.get("rule", ""), "severity": d.get("severity", ""), "action": d.get("action", "deny"),
            "message": d.get("message", ""), "remediation": d.get("remediation", "")}


class SpawnRefused(SpawnException):
    """A spawn was refused by policy; nothing was created, or it was removed.

    ``reason`` is a code of :data:`REFUSALS` (its HTTP status); ``message`` the
    sentence the user reads; ``findings`` the rules that said no; ``ref`` the
    reference id of the audit line; ``detail`` what only admins see (the audit
    line and the hub log). ``message_html`` renders the rest for the spawn
    pages; ``as_dict()`` is the REST answer.
    """

    def __init__(self, message, reason, findings=(), detail=""):
        kind = REFUSALS[reason]
        self.ref = new_reference()
        self.findings = [_finding(f) for f in findings]
        self.advice = [*kind.advice, ADMIN.format(ref=self.ref)]
        self.detail = detail
        self.audited = False  # the pipeline writes one spawn.denied line per refusal
        headline = " ".join(message.split())
        rules = ", ".join(f["rule"] for f in self.denials)
        super().__init__(
            message, reason=reason, status_code=kind.status, message_html=self._html(message, reason),
            log_message=f"[ref {self.ref}] {headline}" + (f" (rules: {rules})" if rules else "")
            + (f" ({' '.join(detail.split())})" if detail else ""),
        )
        self.jupyterhub_message = self.text()
        self.jupyterhub_html_message = self.message_html

    @property
    def denials(self):
        return [f for f in self.findings if f["action"] == "deny"]

    def text(self):
        """The refusal in plain text: what happened, the findings, what to do."""
        lines = [self.message.strip()]
        lines += [f"- [{f['rule']}] {f['message']}" + (f" Fix: {f['remediation']}" if f["remediation"] else "")
                  for f in self.denials]
        lines += self.advice
        return "\n".join(lines)

    def as_dict(self):
        """The REST answer and the progress stream's failure fields."""
        return {"status": self.status_code, "reason": self.reason, "message": self.text(),
                "findings": self.findings, "ref": self.ref}

    def _html(self, message, reason):
        e = html.escape
        paragraphs = "".join(f"<p>{e(p)}</p>" for p in message.strip().split("\n") if p.strip())
        rows = "".join(
            f'<tr><td><code>{e(f["rule"])}</code></td><td>{e(f["message"])}</td><td>{e(f["remediation"])}</td></tr>'
            for f in self.denials)
        table = ('<table class="table table-sm hs-findings"><thead><tr><th>Rule</th><th>What is wrong</th>'
                 f"<th>How to fix it</th></tr></thead><tbody>{rows}</tbody></table>") if rows else ""
        todo = "".join(f"<li>{e(a)}</li>" for a in self.advice[:-1])
        todo += (f'<li>Ask the hub admin and quote reference <strong class="hs-ref">{e(self.ref)}</strong>: '
                 "it finds this refusal in the audit log.</li>")
        # left-aligned and at most 60rem wide, also on JupyterHub's centred spawn-pending and failed pages
        return (f'<div class="hs-refusal text-start mx-auto" style="max-width: 60rem" data-reason="{e(reason)}">'
                f'{paragraphs}{table}<p class="hs-todo-title">What you can do:</p><ul class="hs-todo">{todo}</ul></div>')


class UnsafeConfig(ValueError):
    """Admin configuration that would weaken the hardened defaults.

    ``problems`` is a list of ``(setting, message)`` pairs, each naming the
    offending setting.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        lines = [f"{setting}: {message}" for setting, message in self.problems]
        super().__init__(
            "hardened_spawner refuses this configuration:\n  " + "\n  ".join(lines)
        )

