"""A small HashiCorp Vault stand-in for tests: KV version 2 and AppRole, over HTTP on loopback.

No Vault binary can run on the test machines, so this server speaks the
parts of Vault's documented HTTP API that the key store uses, the way Vault
answers them (status codes and JSON bodies):

* ``POST /v1/auth/<approle mount>/login`` ``{"role_id", "secret_id"}`` -> ``auth.client_token``;
  bad credentials: 400 ``invalid role or secret ID``;
* ``GET /v1/<mount>/data/<path>[?version=N]`` -> ``data.data`` and ``data.metadata``;
  a missing secret or version: 404 ``{"errors": []}``; a deleted or destroyed version:
  404 whose body still carries ``data.metadata`` (``deletion_time`` / ``destroyed``);
* ``POST|PUT /v1/<mount>/data/<path>`` ``{"data": {...}, "options": {"cas": N}}`` -> new version;
  check-and-set as the KV v2 plugin does it (``validateCheckAndSetOption``): ``cas`` must equal the
  key's current version (0: the key must not exist; a deleted or destroyed latest version still
  counts), else 400 ``check-and-set parameter did not match the current version``; a ``cas`` that
  is not an integer: 400 ``error parsing check-and-set parameter``; no ``cas`` where the mount's
  config or the key's metadata sets ``cas_required``: 400 ``check-and-set parameter required for
  this call``. A refused write changes nothing (no metadata is created);
* ``POST /v1/<mount>/config`` and ``POST /v1/<mount>/metadata/<path>`` ``{"cas_required": true}``;
* ``DELETE /v1/<mount>/data/<path>`` (latest), ``POST /v1/<mount>/delete|undelete|destroy/<path>``
  ``{"versions": [...]}`` -> 204;
* ``GET /v1/<mount>/metadata/<path>``, ``DELETE /v1/<mount>/metadata/<path>``,
  ``LIST /v1/<mount>/metadata/<prefix>``;
* a token missing, unknown, expired or without the capability: 403 ``permission denied``.

Tokens carry ACL rules ``(path glob, capabilities)`` like Vault policies
(a trailing ``*`` matches any suffix). ``delay`` makes every answer slow.
"""

import datetime
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ROOT_RULES = (("*", ("create", "read", "update", "delete", "list", "sudo")),)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Version:
    data: dict
    created_time: str
    deletion_time: str = ""
    destroyed: bool = False

    def metadata(self, number):
        return {"created_time": self.created_time, "custom_metadata": None,
                "deletion_time": self.deletion_time, "destroyed": self.destroyed, "version": number}


@dataclass
class Secret:
    created_time: str
    updated_time: str
    versions: dict = field(default_factory=dict)
    current: int = 0
    cas_required: bool = False


@dataclass
class Token:
    rules: tuple
    expires: float = 0.0  # monotonic deadline; 0: never
    policies: tuple = ("default",)

    def allows(self, path, capability):
        if self.expires and time.monotonic() > self.expires:
            return False
        for pattern, capabilities in self.rules:
            matched = path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern
            if matched and capability in capabilities:
                return True
        return False


class VaultState:
    def __init__(self, mounts=("secret",), approle_mount="approle"):
        self.lock = threading.Lock()
        self.mounts = {m: {} for m in mounts}
        self.mount_cas_required = {m: False for m in mounts}
        self.approle_mount = approle_mount
        self.approles = {}  # role_id -> (secret_id, rules, ttl, role name)
        self.tokens = {}
        self.root_token = self.add_token(ROOT_RULES, policies=("root",))
        self.delay = 0.0
        self.requests = []  # (method, path) of every request, for tests

    def add_token(self, rules, ttl=0.0, policies=("default",)):
        token = "hvs." + secrets.token_urlsafe(24)
        self.tokens[token] = Token(tuple(rules), time.monotonic() + ttl if ttl else 0.0, tuple(policies))
        return token

    def add_approle(self, name, rules, token_ttl=0.0):
        role_id, secret_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.approles[role_id] = (secret_id, tuple(rules), token_ttl, name)
        return role_id, secret_id


def _envelope(data=None, auth=None):
    return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": data, "wrap_info": None, "warnings": None, "auth": auth, "mount_type": "kv"}


class Handler(BaseHTTPRequestHandler):
    server_version = "VaultKV2Stub/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    @property
    def state(self):
        return self.server.state

    def _send(self, code, body=None):
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Cache-Control", "no-store")
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, code, *messages):
        self._send(code, {"errors": list(messages)})

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _dispatch(self, method):
        if self.state.delay:
            time.sleep(self.state.delay)
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        if method == "GET" and query.get("list") == ["true"]:
            method = "LIST"
        self.state.requests.append((method, path))
        if not path.startswith("/v1/"):
            return self._error(404)
        path = path[len("/v1/"):].rstrip("/") if method == "LIST" else path[len("/v1/"):]
        try:
            body = self._body() if method in ("POST", "PUT") else {}
        except ValueError:
            return self._error(400, "failed to parse JSON input")
        with self.state.lock:
            if path == f"auth/{self.state.approle_mount}/login" and method in ("POST", "PUT"):
                return self._approle_login(body)
            mount, _, rest = path.partition("/")
            kind, _, secret_path = rest.partition("/")
            if mount in self.state.mounts and rest == "config":
                return self._mount_config(mount, method, body)
            if mount not in self.state.mounts or kind not in ("data", "metadata", "delete", "undelete", "destroy"):
                return self._error(404, f"no handler for route \"{path}\". route entry not found.")
            capability = {"GET": "read", "LIST": "list", "DELETE": "delete"}.get(method, "update")
            if kind == "data" and method in ("POST", "PUT"):
                capability = "create" if secret_path not in self.state.mounts[mount] else "update"
            token = self.state.tokens.get(self.headers.get("X-Vault-Token") or "")
            if token is None or not token.allows(path, capability):
                return self._error(403, "permission denied")
            secrets_ = self.state.mounts[mount]
            handler = getattr(self, f"_{kind}_{method.lower()}", None)
            if handler is None:
                return self._error(405)
            return handler(secrets_, secret_path, query, body)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_LIST(self):
        self._dispatch("LIST")

    # ---- auth ----------------------------------------------------------------------
    def _approle_login(self, body):
        role = self.state.approles.get(body.get("role_id") or "")
        if role is None or not secrets.compare_digest(role[0], str(body.get("secret_id") or "")):
            return self._error(400, "invalid role or secret ID")
        _, rules, ttl, name = role
        token = self.state.add_token(rules, ttl, policies=("default", name))
        auth = {"client_token": token, "accessor": secrets.token_urlsafe(18), "policies": ["default", name],
                "token_policies": ["default", name], "identity_policies": None, "metadata": {"role_name": name},
                "lease_duration": int(ttl), "renewable": True, "entity_id": str(uuid.uuid4()),
                "token_type": "service", "orphan": True, "mfa_requirement": None, "num_uses": 0}
        self._send(200, _envelope(auth=auth))

    def _mount_of(self, secrets_):
        return next(name for name, held in self.state.mounts.items() if held is secrets_)

    def _mount_config(self, mount, method, body):
        token = self.state.tokens.get(self.headers.get("X-Vault-Token") or "")
        capability = "read" if method == "GET" else "update"
        if token is None or not token.allows(f"{mount}/config", capability):
            return self._error(403, "permission denied")
        if method == "GET":
            return self._send(200, _envelope({"cas_required": self.state.mount_cas_required[mount],
                                              "delete_version_after": "0s", "max_versions": 0}))
        if "cas_required" in body:
            self.state.mount_cas_required[mount] = bool(body["cas_required"])
        self._send(204)

    # ---- data ----------------------------------------------------------------------
    def _data_get(self, secrets_, path, query, body):
        secret = secrets_.get(path)
        if secret is None:
            return self._error(404)
        try:
            number = int((query.get("version") or ["0"])[0]) or secret.current
        except ValueError:
            return self._error(400, "invalid version")
        version = secret.versions.get(number)
        if version is None:
            return self._error(404)
        if version.deletion_time or version.destroyed:
            return self._send(404, _envelope({"data": None, "metadata": version.metadata(number)}))
        self._send(200, _envelope({"data": version.data, "metadata": version.metadata(number)}))

    def _data_post(self, secrets_, path, query, body):
        if not isinstance(body.get("data"), dict):
            return self._error(400, "no data provided")
        now = _now()
        existing = secrets_.get(path)
        options = body.get("options") or {}
        if "cas" in options:
            try:
                cas = _weak_int(options["cas"])
            except ValueError:
                return self._error(400, "error parsing check-and-set parameter")
            if cas != (existing.current if existing else 0):
                return self._error(400, "check-and-set parameter did not match the current version")
        elif self.state.mount_cas_required[self._mount_of(secrets_)] or (existing and existing.cas_required):
            return self._error(400, "check-and-set parameter required for this call")
        secret = secrets_.setdefault(path, Secret(now, now))
        secret.current += 1
        secret.updated_time = now
        secret.versions[secret.current] = Version(dict(body["data"]), now)
        self._send(200, _envelope(secret.versions[secret.current].metadata(secret.current)))

    _data_put = _data_post

    def _data_delete(self, secrets_, path, query, body):
        secret = secrets_.get(path)
        if secret and secret.current in secret.versions:
            version = secret.versions[secret.current]
            version.deletion_time = version.deletion_time or _now()
        self._send(204)

    def _change_versions(self, secrets_, path, body, change):
        versions = body.get("versions")
        if not isinstance(versions, list) or not versions:
            return self._error(400, "no version number provided")
        secret = secrets_.get(path)
        for number in versions:
            version = secret.versions.get(int(number)) if secret else None
            if version is not None:
                change(version)
        self._send(204)

    def _delete_post(self, secrets_, path, query, body):
        now = _now()
        self._change_versions(secrets_, path, body,
                              lambda v: setattr(v, "deletion_time", v.deletion_time or now))

    def _undelete_post(self, secrets_, path, query, body):
        def undelete(version):
            if not version.destroyed:
                version.deletion_time = ""
        self._change_versions(secrets_, path, body, undelete)

    def _destroy_post(self, secrets_, path, query, body):
        def destroy(version):
            version.destroyed, version.data = True, {}
        self._change_versions(secrets_, path, body, destroy)

    _delete_put = _delete_post
    _undelete_put = _undelete_post
    _destroy_put = _destroy_post

    # ---- metadata --------------------------------------------------------------------
    def _metadata_get(self, secrets_, path, query, body):
        secret = secrets_.get(path)
        if secret is None:
            return self._error(404)
        versions = {str(n): {k: v for k, v in ver.metadata(n).items() if k != "version" and k != "custom_metadata"}
                    for n, ver in secret.versions.items()}
        self._send(200, _envelope({
            "cas_required": secret.cas_required, "created_time": secret.created_time, "current_version": secret.current,
            "custom_metadata": None, "delete_version_after": "0s", "max_versions": 0,
            "oldest_version": min(secret.versions, default=0), "updated_time": secret.updated_time,
            "versions": versions,
        }))

    def _metadata_post(self, secrets_, path, query, body):
        now = _now()
        secret = secrets_.setdefault(path, Secret(now, now))
        if "cas_required" in body:
            secret.cas_required = bool(body["cas_required"])
        self._send(204)

    _metadata_put = _metadata_post

    def _metadata_delete(self, secrets_, path, query, body):
        secrets_.pop(path, None)
        self._send(204)

    def _metadata_list(self, secrets_, path, query, body):
        prefix = f"{path}/" if path else ""
        below = [p[len(prefix):] for p in secrets_ if p.startswith(prefix)]
        keys = sorted({rest.split("/", 1)[0] + "/" if "/" in rest else rest for rest in below})
        if not keys:
            return self._error(404)
        self._send(200, _envelope({"keys": keys}))


def _weak_int(value):
    """An integer the way mapstructure.WeakDecode reads one (numbers, numeric strings, booleans)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip() or "0", 0)
    raise ValueError(value)


class VaultServer:
    """Run the stand-in on 127.0.0.1 in a thread: ``url``, ``state``, ``stop()``."""

    def __init__(self, state=None, port=0):
        self.state = state or VaultState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="vault-kv2-stub", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        """Stop answering: the port refuses connections from now on (idempotent)."""
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
