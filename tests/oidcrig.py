"""A real OpenID Connect provider (rig/oidc.sh, oidc-provider-mock) for the tests.

``IdP`` runs the same launcher as the demo on a free loopback port and
changes users at run time through the provider's own endpoints. ``login``
walks the authorization-code flow the way a browser does: hub -> IdP form
-> hub callback, keeping cookies.
"""

import os
import subprocess
import time
from urllib.parse import urljoin

import requests

from hubrig import REPO, free_port


class IdP:
    def __init__(self, log_path, token_max_age=3600, host="127.0.0.1"):
        self.port = free_port()
        self.host = host
        self.issuer = f"http://{host}:{self.port}"
        self.token_max_age = token_max_age
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=30):
        env = {**os.environ, "HS_OIDC_PORT": str(self.port), "HS_OIDC_HOST": self.host, "HS_OIDC_TOKEN_MAX_AGE": str(self.token_max_age)}
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["bash", str(REPO / "rig" / "oidc.sh")], env=env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rig/oidc.sh exited: {open(self.log_path).read()[-2000:]}")
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("rig/oidc.sh did not answer")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc:
            self.log_file.close()

    def set_user(self, sub, groups, **claims):
        """Replace a user's claims at the IdP (their groups, typically)."""
        body = {"preferred_username": sub, "email": f"{sub}@example.org", "groups": list(groups), **claims}
        r = requests.put(f"{self.issuer}/users/{sub}", json=body, timeout=10)
        assert r.status_code == 204, r.text

    def revoke_tokens(self, sub):
        """Revoke every access and refresh token the IdP issued to ``sub``."""
        r = requests.post(f"{self.issuer}/users/{sub}/revoke-tokens", timeout=10)
        assert r.status_code == 204, r.text


def hub_env(idp, refresh_age=300):
    return {"HS_AUTH": "oidc", "HS_OIDC_ISSUER": idp.issuer, "HS_AUTH_REFRESH_AGE": str(refresh_age)}


def login(hub, sub, session=None):
    """Log ``sub`` in through the IdP's form; returns ``(session, last response)``.

    The last response is the hub's answer to the OAuth callback (a redirect
    into the hub on success, an error page otherwise).
    """
    s = session or requests.Session()
    r = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    if r.status_code != 302:
        return s, r
    authorize = r.headers["location"]
    r = s.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    r = s.get(urljoin(authorize, r.headers["location"]), allow_redirects=False, timeout=30)
    return s, r


def get(hub, session, path):
    """GET a hub page as the logged-in browser session, without following redirects."""
    return session.get(f"{hub.url}{path}", allow_redirects=False, timeout=30)
