"""Access withdrawn and logins refused, in words: pure, no I/O.

When a refresh finds that the identity provider (or the hub's block list) no
longer lets a user in, :class:`Withdrawal` is what the user is told on the
next page they open and what the ``auth.revoked`` audit line says. When that
user then tries to log in and is refused again, :class:`LoginDenial` says
why, and reminds them of the withdrawal.
"""

import datetime
from dataclasses import dataclass, field

ADMIN = "Ask the hub admin and quote reference {ref}: it finds this in the audit log."

# reason code -> (what happened, what the user can do first)
_WHY = {
    "no-matching-rule": (
        "your identity-provider account is no longer in a group that may use this hub",
        "Ask your identity-provider admin to put you back in a group that may use this hub, then log in again.",
    ),
    "token-rejected": (
        "the identity provider no longer accepts your login: your account may have been disabled, "
        "or your session there was ended",
        "Log in again. If the identity provider refuses you, ask its admin to re-enable your account.",
    ),
    "identity-changed": (
        "the identity provider now gives your account another user name",
        "Log in again; if you land in the wrong account, tell the hub admin.",
    ),
    "blocked": (
        "your account is on this hub's block list",
        "Only the hub admin can lift the block.",
    ),
    "not-allowed": (
        "your account is no longer on this hub's list of allowed users",
        "Only the hub admin can let you in again.",
    ),
    "unreadable": (
        "this hub recorded that your access was withdrawn",
        "Log in again.",
    ),
}
_DENIED = {
    "no-matching-rule": "your identity-provider account is not in a group that may use this hub",
    "blocked": "your account is on this hub's block list",
}


def _utc(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d at %H:%M UTC")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Withdrawal:
    """A user's access withdrawn at a refresh: ``reason`` a code of :data:`_WHY`, ``detail`` for admins."""

    user: str
    reason: str
    detail: str
    ref: str
    servers_stopped: int = 0
    at: datetime.datetime = field(default_factory=_now)

    @property
    def by(self):
        return "the hub admin" if self.reason in ("blocked", "not-allowed") else "your identity provider"

    def when(self):
        return _utc(self.at)

    def as_dict(self):
        """What is kept in the user's auth_state (the hub database), so a hub restart remembers it."""
        return {"reason": self.reason, "detail": self.detail, "ref": self.ref,
                "servers_stopped": self.servers_stopped, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, user, data):
        """The withdrawal kept by :meth:`as_dict`. A record that cannot be read still withdraws
        (fails closed), with the reason ``unreadable``."""
        try:
            return cls(user, str(data["reason"]), str(data["detail"]), str(data["ref"]),
                       int(data.get("servers_stopped") or 0), datetime.datetime.fromisoformat(data["at"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls(user, "unreadable", f"the recorded withdrawal cannot be read: {data!r:.200}", "see-audit-log")

    def why(self):
        return _WHY.get(self.reason, (self.detail, ""))[0]

    def todo(self):
        """What the user can do, in order; the last step is always: ask the admin, quoting the reference."""
        first = _WHY.get(self.reason, ("", "Log in again."))[1]
        return [step for step in (first, ADMIN.format(ref=self.ref)) if step]

    def headline(self):
        return f"Your access to this hub was withdrawn by {self.by} on {self.when()}: {self.why()}."

    def notice(self):
        """The page's words in one paragraph (the audit line carries it too)."""
        stopped = (f" Your running server{'s were' if self.servers_stopped > 1 else ' was'} stopped."
                   if self.servers_stopped else "")
        return f"{self.headline()}{stopped} " + " ".join(self.todo())


@dataclass(frozen=True)
class LoginDenial:
    """A login refused by the allow or block checks; ``previous``: the user's :class:`Withdrawal`, if any."""

    user: str
    reason: str
    ref: str
    previous: Withdrawal = None

    def why(self):
        return _DENIED.get(self.reason, "this hub does not let your account in")

    def todo(self):
        first = _WHY.get(self.reason, ("", ""))[1]
        return [step for step in (first, ADMIN.format(ref=self.ref)) if step]

    def history(self):
        """The reminder of an earlier withdrawal ('' without one)."""
        if self.previous is None:
            return ""
        same = "for the same reason" if self.previous.reason == self.reason else f"because {self.previous.why()}"
        return (f"Your access was withdrawn by {self.previous.by} on {self.previous.when()} {same} "
                f"(reference {self.previous.ref}).")

    def notice(self):
        return " ".join(p for p in (f"You could not log in: {self.why()}.", self.history(), *self.todo()) if p)
