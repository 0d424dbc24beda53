"""The SSH keys page and its REST API: tornado handlers behind JupyterHub OAuth.

Pages (forms protected by JupyterHub's XSRF token; a cookie-authenticated
POST without it is not authenticated at all). No answer may be framed, and
a POST or DELETE another site or origin sent is refused (403), see
:mod:`hardened_spawner.pages.framing`::

    GET  <prefix>                       your keys
    GET  <prefix>users/<name>           someone's keys (yours, or anyone's with the scope)
    POST <prefix>users/<name>/add       form field ``key``: the pasted public key
    POST <prefix>users/<name>/remove    form field ``fingerprint``

REST API (JSON; a token in ``Authorization: token ...``, or the page's cookie
with ``X-XSRFToken``)::

    GET    <prefix>api/users/<name>/keys                  200 {"keys": [...], "writable", ...}
    POST   <prefix>api/users/<name>/keys                  {"key": "ssh-ed25519 ..."} (or the raw
                                                          key as the body): 201, 400 with the reason
    DELETE <prefix>api/users/<name>/keys/<fingerprint>    200 {"delivered": [...]}, 404
    GET    <prefix>api/users/<name>/certificate           with ``ssh_user_certificates``: 200, the
           [?server=<server>][&key=<fingerprint>][&hours=<h>]  user certificate (text/plain, an
                                                          ``id_*-cert.pub`` file); 400, 403 (withdrawn)

Errors answer ``{"message": ...}``: 403 (not your keys), 404 (no such
user or key), 503 (the key store cannot be read).
"""

import json
from types import SimpleNamespace

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from ..keys.entries import KeyRefused
from ..keys.stores import KeyStoreError
from ..keys.targets import TargetRefused
from ..pages.framing import FrameGuard
from .certificates import CertificateRefused, CertificateWithheld
from .keyring import KeyNotFound, NoSuchUser
from .keys_access import READ, manages_everyone, may_manage, may_read


class KeysHandler(FrameGuard, HubOAuthenticated, web.RequestHandler):
    """Common ground: the caller, their scopes, the key ring, errors; never framed, no requests from other sites."""

    def initialize(self, ring, pages):
        self.ring = ring
        self.pages = pages

    @property
    def hub_scopes(self):
        return {f"access:services!service={self.pages.service_name}", READ}

    @property
    def scopes(self):
        return set((self.current_user or {}).get("scopes") or ())

    @property
    def actor(self):
        return (self.current_user or {}).get("name") or ""

    def require(self, may, username):
        if not may(self.scopes, username):
            raise web.HTTPError(403, f"You may only see and change your own SSH keys, not {username!r}'s.")

    async def run(self, call):
        """Await ``call`` and turn the key ring's failures into HTTP errors."""
        try:
            return await call
        except NoSuchUser as e:
            raise web.HTTPError(404, f"There is no JupyterHub user {e.args[0]!r}.") from None
        except KeyNotFound as e:
            raise web.HTTPError(404, f"No key with fingerprint {e.args[0]} among these keys.") from None
        except KeyStoreError as e:
            raise web.HTTPError(503, f"The key store cannot be used right now ({e}). Try again later "
                                "or tell the hub admin.") from None
        except TargetRefused as e:
            raise web.HTTPError(503, f"The hub cannot be asked right now ({e}).") from None


class KeysPage(KeysHandler):
    def write_error(self, status_code, **kwargs):
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.finish(self.pages.render("ssh-keys-error.html", self, status_code=status_code, message=message))

    @web.authenticated
    async def get(self, username=None):
        if username is None:
            other = self.get_query_argument("user", "").strip()
            if other:
                return self.redirect(self.pages.user_url(other))
            username = self.actor
        self.require(may_read, username)
        await self.show(username)

    async def show(self, username, status=200, **notes):
        listing = await self.run(self.ring.listing(username))
        self.set_status(status)
        self.finish(self.pages.render(
            "ssh-keys.html", self, target=username, listing=listing,
            can_manage=may_manage(self.scopes, username), manages_everyone=manages_everyone(self.scopes),
            action_url=self.pages.user_url(username), **self.certificate_vars(username), **notes))

    def certificate_vars(self, username):
        """The certificate download's URLs (none when the hub issues no certificates)."""
        issuer = self.ring.certificates
        if issuer is None:
            return {"certificate_url": ""}
        url = url_path_join(self.pages.prefix, "api/users", username, "certificate")
        return {"certificate_url": url, "certificate_hours": f"{issuer.max_hours:g}",
                "certificate_command_url": f"{self.request.protocol}://{self.request.host}{url}"}


class AddKeyForm(KeysPage):
    @web.authenticated
    async def post(self, username):
        self.require(may_manage, username)
        pasted = (self.request.body_arguments.get("key") or [b""])[0]
        try:
            key, delivered = await self.run(self.ring.add(username, pasted, self.actor))
        except KeyRefused as e:
            return await self.show(username, 400, error=str(e))
        await self.show(username, message=f"Key {key.fingerprint} ({key.key_type}) added.", deliveries=delivered)


class RemoveKeyForm(KeysPage):
    @web.authenticated
    async def post(self, username):
        self.require(may_manage, username)
        fingerprint = self.get_body_argument("fingerprint", "")
        try:
            delivered = await self.run(self.ring.remove(username, fingerprint, self.actor))
        except KeyRefused as e:
            return await self.show(username, 400, error=str(e))
        await self.show(username, message=f"Key {fingerprint} removed.", deliveries=delivered)


class KeysAPI(KeysHandler):
    def write_error(self, status_code, **kwargs):
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def caller_or_403(self):
        if not self.current_user:
            raise web.HTTPError(403, "Authenticate with a JupyterHub token (or the page's session and XSRF token).")

    def reply(self, status, body):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def get(self, username):
        self.caller_or_403()
        self.require(may_read, username)
        listing = await self.run(self.ring.listing(username))
        self.reply(200, listing.as_dict())

    async def post(self, username):
        self.caller_or_403()
        self.require(may_manage, username)
        pasted = self.request.body
        if self.request.headers.get("Content-Type", "").split(";")[0].strip() == "application/json":
            try:
                body = json.loads(pasted)
            except ValueError:
                raise web.HTTPError(400, "The body is not JSON: send {\"key\": \"ssh-ed25519 AAAA... you@laptop\"} "
                                    "or the key itself as text/plain.") from None
            pasted = body.get("key") if isinstance(body, dict) else None
            if not isinstance(pasted, str):
                raise web.HTTPError(400, "The JSON body needs a \"key\" string.")
        try:
            key, delivered = await self.run(self.ring.add(username, pasted, self.actor))
        except KeyRefused as e:
            raise web.HTTPError(400, str(e)) from None
        self.reply(201, {"key": {"type": key.key_type, "fingerprint": key.fingerprint},
                         "delivered": [d.as_dict() for d in delivered]})

    async def delete(self, username, fingerprint):
        self.caller_or_403()
        self.require(may_manage, username)
        try:
            delivered = await self.run(self.ring.remove(username, fingerprint, self.actor))
        except KeyRefused as e:
            raise web.HTTPError(400, str(e)) from None
        self.reply(200, {"delivered": [d.as_dict() for d in delivered]})


class CertificateAPI(KeysAPI):
    """A user certificate for one of the user's registered keys (:mod:`.certificates`)."""

    async def get(self, username):
        self.caller_or_403()
        self.require(may_manage, username)
        issuer = self.ring.certificates
        if issuer is None:
            raise web.HTTPError(404, "This hub does not issue SSH certificates (ssh_user_certificates is off): "
                                "log in with your registered key.")
        hours = self.get_argument("hours", "") or None
        try:
            hours = None if hours is None else float(hours)
        except ValueError:
            raise web.HTTPError(400, f"hours={hours!r} is not a number of hours.") from None
        try:
            plan, certificate = await self.run(issuer.issue(
                username, self.get_argument("server", ""), self.get_argument("key", "") or None, hours, self.actor))
        except CertificateWithheld as e:
            raise web.HTTPError(403, str(e)) from None
        except CertificateRefused as e:
            raise web.HTTPError(400, str(e)) from None
        self.set_header("Content-Type", "text/plain; charset=us-ascii")
        self.set_header("Content-Disposition", 'attachment; filename="id-cert.pub"')
        self.set_header("X-SSH-Certificate-Valid-Before", str(plan.valid_before))
        self.finish(certificate)


class Pages:
    """The page templates, rendered inside the hub's own ``page.html`` (same look, same navigation)."""

    def __init__(self, service_name, prefix, base_url, template_paths, default_templates):
        """``template_paths`` are searched first (as ``c.JupyterHub.template_paths``), then the hub's
        own ``default_templates``, which are also ``templates/<name>`` (as in the hub), so a site's
        ``page.html`` that extends ``templates/page.html`` renders here too."""
        self.service_name, self.prefix, self.base_url = service_name, prefix, base_url
        self.hub_prefix = url_path_join(base_url, "hub/")
        self.env = Environment(loader=ChoiceLoader([
            PrefixLoader({"templates": FileSystemLoader([default_templates])}, "/"),
            FileSystemLoader([*template_paths, default_templates])]), autoescape=True)

    def user_url(self, username):
        return url_path_join(self.prefix, "users", username)

    def render(self, name, handler, **ns):
        model = handler.current_user or {}
        user = SimpleNamespace(name=model.get("name", ""), json_escaped_name=json.dumps(model.get("name", ""))[1:-1])
        service = SimpleNamespace(name="SSH keys", href=self.prefix)
        return self.env.get_template(name).render(
            base_url=self.hub_prefix, prefix=self.base_url, user=user,
            no_spawner_check=True, login_url=url_path_join(self.hub_prefix, "login"),
            logout_url=url_path_join(self.hub_prefix, "logout"), static_url=self.static_url,
            version_hash="", services=[service], parsed_scopes=handler.scopes, xsrf_token=handler.xsrf_token.decode(),
            keys_prefix=self.prefix, hub_home=url_path_join(self.hub_prefix, "home"), **ns)

    def static_url(self, path, include_version=True):
        return url_path_join(self.hub_prefix, "static", path)


def handlers(ring, pages):
    """The tornado routes under the service's prefix."""
    p, kw = pages.prefix, {"ring": ring, "pages": pages}
    return [
        (url_path_join(p, "oauth_callback"), HubOAuthCallbackHandler),
        (url_path_join(p, r"api/users/([^/]+)/keys"), KeysAPI, kw),
        (url_path_join(p, r"api/users/([^/]+)/keys/([^/]+)"), KeysAPI, kw),
        (url_path_join(p, r"api/users/([^/]+)/certificate"), CertificateAPI, kw),
        (url_path_join(p, r"users/([^/]+)/add"), AddKeyForm, kw),
        (url_path_join(p, r"users/([^/]+)/remove"), RemoveKeyForm, kw),
        (url_path_join(p, r"users/([^/]+)/?"), KeysPage, kw),
        (p.rstrip("/") + "/?", KeysPage, kw),
    ]
