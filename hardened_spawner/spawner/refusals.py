"""A refusal leaves the spawner audited once and logged once, as a WARNING without a traceback.

:func:`deny` writes the ``spawn.denied`` audit line of a :class:`SpawnRefused`
(once, whichever phase raised it) and registers its reference id with
:data:`REFUSAL_LOG`.

JupyterHub logs a ``SpawnException`` itself: ``User.spawn`` at ERROR ("Not
starting <user>'s server ..."), then, depending on the route, the spawn form
again with a traceback (or asyncio's "Task exception was never retrieved" with
one, when the refusal came after the form's one-second wait), tornado once
more for the REST request, and the spawn-pending page at every visit. :class:`RefusalLog` is a logging filter on
the loggers those lines go to. A line that names a reference id this process
issued is kept the first time, at WARNING and without a traceback, and
dropped every later time, so each refusal is one WARNING line carrying
its reference id. Lines without an issued reference id (every genuine
crash) pass untouched, tracebacks included.
"""

import logging
from collections import OrderedDict

from docker.errors import DockerException
from requests.exceptions import RequestException
from tornado import web

from ..decisions.plan import NotHardened
from ..decisions.users import UnknownUser
from ..errors import REF_PATTERN, SpawnRefused, UnsafeConfig

# JupyterHub's User logs on tornado.application; tornado's HTTPError line is tornado.general;
# asyncio reports the spawn form's task that failed after the form stopped waiting for it
# ("Task exception was never retrieved", with the traceback); the hub's request handlers
# log on the app's own logger (the spawner's ``log``).
LOGGERS = ("tornado.application", "tornado.general", "asyncio")


class RefusalLog(logging.Filter):
    """One WARNING line per issued reference id; repeats dropped; other records untouched."""

    def __init__(self, capacity=4096):
        super().__init__()
        self.capacity = capacity
        self._logged = OrderedDict()  # ref -> whether a line has named it yet

    def issue(self, ref):
        self._logged.setdefault(ref, False)
        while len(self._logged) > self.capacity:
            self._logged.popitem(last=False)

    def _ref(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SpawnRefused):
            return exc.ref
        try:
            match = REF_PATTERN.search(record.getMessage())
        except (TypeError, ValueError):  # a record that cannot format: logging reports it, not us
            return None
        return match.group(1) if match else None

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        ref = self._ref(record)
        if ref not in self._logged:
            return True
        if self._logged[ref]:
            return False
        self._logged[ref] = True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


REFUSAL_LOG = RefusalLog()


def install(log):
    """Put :data:`REFUSAL_LOG` on the hub's loggers (once each)."""
    loggers = [logging.getLogger(name) for name in LOGGERS] + [getattr(log, "logger", log)]
    for logger in loggers:
        if REFUSAL_LOG not in logger.filters:
            logger.addFilter(REFUSAL_LOG)


def deny(spawner, refusal, **facts):
    """Audit ``refusal`` as ``spawn.denied`` (once) and have the hub log it once; returns it."""
    if not refusal.audited:
        refusal.audited = True
        reasons = [f"[{f['rule']}] {f['message']}" for f in refusal.denials] or [refusal.message]
        spawner.audit.write("spawn.denied", **spawner.audit_fields(
            **facts, decision="deny", reason=refusal.reason, status=refusal.status_code, ref=refusal.ref,
            message=refusal.message, findings=refusal.findings, reasons=reasons,
            **({"detail": refusal.detail} if refusal.detail else {})))
    install(spawner.log)
    REFUSAL_LOG.issue(refusal.ref)
    return refusal


def not_hardened(error, what):
    """The refusal for the invariants ``error`` (:class:`NotHardened`) says ``what`` (the request, or the
    container Docker created) breaks."""
    return SpawnRefused(
        f"The hub did not start your server: {what} would not be locked down as this hub requires. "
        "Only the hub admin can fix this (hardened-spawner validate-config checks the configuration).",
        reason="container-not-hardened", findings=[
            {"rule": v.invariant, "severity": "high", "message": v.message,
             "remediation": "Remove the configuration that produces this (extra_host_config, "
                            "extra_create_kwargs, volumes, environment) from jupyterhub_config.py."}
            for v in error.violations])


def refusal_for(error, image, docker_url):
    """The :class:`SpawnRefused` for a check of a spawn of ``image`` that said no, else None (a crash)."""
    if isinstance(error, UnknownUser):
        return SpawnRefused(f"The image {image} cannot be started: {error}. Only the hub admin can fix "
                            "the image's USER (or extra_create_kwargs['user']).", reason="image-user-unknown")
    if isinstance(error, SpawnRefused):
        return error
    if isinstance(error, NotHardened):
        return not_hardened(error, "the container this configuration asks for")
    if isinstance(error, UnsafeConfig):
        return SpawnRefused(
            "The hub's configuration is unsafe, so no server was started. Only the hub admin can fix this.",
            reason="unsafe-config", findings=[
                {"rule": setting, "severity": "high", "message": message,
                 "remediation": "Change this setting in jupyterhub_config.py "
                                "(hardened-spawner validate-config checks the file)."}
                for setting, message in error.problems])
    if isinstance(error, web.HTTPError) and error.status_code < 500:
        return SpawnRefused(error.log_message or str(error), reason="bad-options")
    if isinstance(error, (DockerException, RequestException)):
        return SpawnRefused(
            f"The hub cannot reach the Docker daemon ({docker_url}): {error}. "
            "Ask the hub admin to start dockerd or fix DOCKER_HOST.", reason="docker-unreachable")
    return None
