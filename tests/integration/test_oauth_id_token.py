"""id_token user data is verified against the provider's JWKS; the IdP down gives a clear page.

The hub reads user data from the id_token (``userdata_from_id_token``). Its
token requests go through a small proxy on loopback that forwards to the
real provider and, when told to, tampers with the id_token on the way back
(what an attacker between hub and IdP would do).
"""

import base64
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from hubrig import Hub, free_port
from oidcrig import hub_env, login

pytestmark = [pytest.mark.hub]


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unb64(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def tamper(id_token, mode):
    """The id_token as an attacker would rewrite it: admin group added, signature per ``mode``."""
    head, body, sig = id_token.split(".")
    header, claims = _unb64(head), _unb64(body)
    kid = {"kid": header["kid"]} if "kid" in header else {}
    claims["groups"] = [*claims.get("groups", []), "hub-admins", "ml-gpu"]
    if mode == "claims":  # payload edited, the provider's signature kept
        return f"{head}.{_b64(claims)}.{sig}"
    if mode == "none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    if mode == "foreign-key":  # signed with the attacker's own RSA key under the provider's key id
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, key, algorithm="RS256", headers=kid)
    if mode == "hs256-client-secret":  # algorithm confusion: HMAC with the (known) client secret
        return jwt.encode(claims, "demo-secret", algorithm="HS256", headers=kid)
    raise ValueError(mode)


class TokenProxy:
    """Forwards POST /oauth2/token to the provider; rewrites the id_token when ``mode`` is set."""

    def __init__(self, upstream):
        proxy = self
        self.mode = None

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                r = requests.post(upstream + self.path, data=body, headers=headers, timeout=10)
                data = r.json()
                if proxy.mode and "id_token" in data:
                    data["id_token"] = tamper(data["id_token"], proxy.mode)
                out = json.dumps(data).encode()
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxy(idp):
    proxy = TokenProxy(idp.issuer)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def hub(idp, proxy, tmp_path_factory):
    extra = (
        "c.HardenedOAuthenticator.userdata_url = ''\n"
        "c.HardenedOAuthenticator.userdata_from_id_token = True\n"
        f"c.HardenedOAuthenticator.token_url = 'http://127.0.0.1:{proxy.port}/oauth2/token'\n"
    )
    hub = Hub(tmp_path_factory.mktemp("idtoken-hub"), extra, env=hub_env(idp))
    hub.start()
    yield hub
    hub.stop()


def failures(hub, reason):
    return [e for e in hub.audit() if e["event"] == "login.failed" and e["reason"] == reason]


def test_verified_id_token_logs_the_user_in_with_its_claims(hub, proxy):
    proxy.mode = None
    _, r = login(hub, "alice")
    assert r.status_code == 302, r.text[:500]
    model = hub.api("GET", "/users/alice").json()
    assert sorted(model["groups"]) == ["cpu-users", "gpu-users"] and model["admin"] is False
    assert model["auth_state"]["oauth_user"]["iss"] == hub.env["HS_OIDC_ISSUER"]


@pytest.mark.parametrize("mode, words", [
    ("claims", "Signature verification failed"),
    ("none", "algorithm 'none' is not one of"),
    ("foreign-key", "Signature verification failed"),
    ("hs256-client-secret", "algorithm 'HS256' is not one of"),
])
def test_tampered_id_token_is_rejected(hub, proxy, mode, words):
    proxy.mode = mode
    try:
        _, r = login(hub, "bob")
    finally:
        proxy.mode = None
    assert r.status_code == 403, r.text[:500]
    page = html.unescape(r.text)
    assert "id_token failed verification" in page and words in page and "Traceback" not in page
    assert any(words in e["message"] for e in failures(hub, "id-token-invalid"))
    assert hub.api("GET", "/users/bob").status_code == 404  # no user was created, let alone an admin


def test_idp_down_gives_a_clear_error_page(hub, idp, proxy):
    """Last in the module: it stops the provider. Both moments: mid-login, and before login."""
    s = requests.Session()
    authorize = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30).headers["location"]
    callback = s.post(authorize, data={"sub": "carol"}, allow_redirects=False, timeout=30).headers["location"]
    idp.stop()
    proxy.stop()
    r = s.get(callback, timeout=30)  # the hub now exchanges the code: nobody answers
    assert r.status_code == 503 and "did not answer while logging you in" in r.text, r.text[:800]
    r = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    assert r.status_code == 503
    assert "cannot be reached, so you cannot log in right now" in r.text and idp.issuer in r.text
    assert "Traceback" not in r.text
    assert len(failures(hub, "idp-unreachable")) == 2
