"""Errors shown to users and admins.

JupyterHub shows an exception's ``jupyterhub_message`` on the spawn page, so
every refusal carries a sentence that says what is wrong and how to fix it.
"""


class SpawnRefused(Exception):
    """A spawn was refused before anything was created.

    ``reason`` is a short machine-readable code for the audit log;
    the message is the sentence the user reads.
    """

    def __init__(self, message, reason="refused", findings=()):
        super().__init__(message)
        self.jupyterhub_message = message
        self.reason = reason
        self.findings = list(findings)


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


def reason_code(error):
    """A refusal's short code for the audit line and metrics (HTTP errors: ``http-<status>``)."""
    status = getattr(error, "status_code", None)
    if status is not None and not isinstance(error, SpawnRefused):
        return f"http-{status}"
    return getattr(error, "reason", None) or "refused"
