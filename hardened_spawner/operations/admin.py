"""The operations page (``/hub/operations``) and its two buttons, inside the hub process.

The page needs what only the hub process holds: the GPU pools (pending
leases included), the admission caches, the servers' spawners and the
reclaimer's view of activity. So it is a set of hub handlers
(``c.JupyterHub.extra_handlers``, added by :func:`.hub.configure`), not a
service, which would see none of that. Access is by JupyterHub scopes:
``admin-ui`` to read the page and re-check an image, ``admin:servers`` to
release a lease (it stops a server). The buttons are plain HTML forms
carrying the hub's XSRF token, which the hub checks on every POST; the
page is never framed and a POST another site or origin sent is refused
(:mod:`hardened_spawner.pages.framing`).
"""

import datetime
from urllib.parse import urlencode

from docker.errors import DockerException
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from ..admission import facts as admission_facts
from ..pages.framing import FrameGuard
from ..spawner import clients, configured_settings
from ..spawner.reclaim import stop_server
from ..telemetry.history import HISTORY
from . import charts, view

PAGE = "operations"


def _settings(handler):
    """A spawner object made from the hub's configuration, for its settings and collaborators."""
    return configured_settings(handler.settings["config"], handler.current_user.name)


class OperationsPage(FrameGuard, BaseHandler):
    @web.authenticated
    @needs_scope("admin-ui")
    async def get(self):
        settings = _settings(self)
        HISTORY.backfill(settings.audit_log_file)
        data = await view.gather(self.users)
        data["homes"] = await view.homes(settings.home_quota_dir, dict(clients.home_watcher().usage))
        pictures = [(p["label"], p["cells"]) for p in data["pools"] if p["cells"]]
        html = await self.render_template(
            "hs-operations.html", **data,
            occupancy=charts.occupancy_svg(pictures) if pictures else "",
            denial_chart=charts.denials_svg(data["denials"], data["now"]),
            when=lambda value: view.when(value, data["now"]),
            released=self.get_argument("released", ""), rechecked=self.get_argument("rechecked", ""),
            failed=self.get_argument("failed", ""),
            can_release="admin:servers" in self.expanded_scopes,
        )
        self.finish(html)


class ReleaseLease(FrameGuard, BaseHandler):
    """Free a lease: stop its server through the hub, or remove an orphan container, then free the GPUs."""

    @web.authenticated
    @needs_scope("admin:servers")
    async def post(self):
        label, holder = self.get_body_argument("pool"), self.get_body_argument("holder")
        pool = next((p for k, p in clients.gpu_pools.items() if clients.pool_label(k) == label), None)
        holding = pool.allocator.holding(holder) if pool and pool.allocator else None
        if holding is None:
            return self._back(failed=f"{holder} holds no GPU of {label} any more")
        actor = self.current_user.name
        spawner = view._hub_servers(self.users).get(holder)
        if spawner is not None and spawner.pending:
            return self._back(failed=f"{holder} is {spawner.pending}ing; try again when it has settled")
        fields = dict(holder=holder, gpus=list(holding.gpus), reason="admin", actor=actor)
        if spawner is not None and spawner.active:
            spawner.audit.write("gpu.reclaim", user=spawner.user.name, server=spawner.name or "", **fields)
            await stop_server(spawner)  # the stop frees the GPUs
        else:
            try:
                await pool.io("remove_container", holder, force=True, v=True)
            except DockerException as e:
                if getattr(e, "status_code", None) != 404:
                    return self._back(failed=f"Docker could not remove {holder}: {e}")
            pool.release(holder)
            _settings(self).audit.write("gpu.release", **fields)
        self.log.info("%s released GPU %s of %s", actor, ",".join(holding.gpus), holder)
        self._back(released=holder)

    def _back(self, **query):
        self.redirect(f"{self.hub.base_url}{PAGE}?{urlencode(query)}", status=303)


class RecheckImage(FrameGuard, BaseHandler):
    """Forget the cached decision on an image and decide again under the current policy."""

    @web.authenticated
    @needs_scope("admin-ui")
    async def post(self):
        image = self.get_body_argument("image")
        settings = _settings(self)
        started = datetime.datetime.now(datetime.timezone.utc)
        fields = dict(image=image, trigger="recheck", actor=self.current_user.name)
        try:
            info = await settings.image_resolver().resolve(image)
            facts_cache, decisions = clients.admission_caches(settings.admission_cache_size)
            decisions.forget(lambda key: key[0] == image)
            facts_cache.forget(lambda key: key[0] == info["Id"])
            policy = settings.admission_policy()
            verdict = await settings.admission_service(policy).decide(image, info)
        except (admission_facts.FactsError, DockerException, OSError, ValueError) as e:
            settings.audit.write("admission", **fields, decision="error", reasons=[str(e)])
            return self._back(failed=f"{image} could not be checked: {e}")
        decision = verdict.decision
        settings.audit.write("admission", **fields, digest=decision.digest, image_id=info["Id"],
                             decision="admit" if decision.admitted else "deny", cache=verdict.how,
                             facts=verdict.facts, policy=policy.digest(), seconds=verdict.seconds,
                             findings=[f.as_dict() for f in decision.findings],
                             vsa=settings.summary_issuer().issue(policy, image, decision, self.hub.base_url))
        self.log.info("%s re-checked %s in %.1f s", self.current_user.name, image,
                      (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds())
        self._back(rechecked=image)

    _back = ReleaseLease._back


def handlers():
    return [
        (rf"/{PAGE}", OperationsPage),
        (rf"/{PAGE}/release", ReleaseLease),
        (rf"/{PAGE}/recheck", RecheckImage),
    ]
