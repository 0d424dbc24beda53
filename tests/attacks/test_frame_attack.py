"""Hole 1 of issue 20: a page of Bob's on the hub's origin framed the SSH keys page while Alice was logged
in, read the XSRF token from the frame and added Bob's key to Alice's account.

Real hub (the shipped jupyterhub_config.py), real configurable-http-proxy, the real keys service, and a
real browser (Debian's Chromium under Playwright). Bob's "server" is a tiny HTTP server the proxy routes
``/user/fa-bob/`` to (``c.Proxy.extra_routes``), so his page is served on the hub's own origin, as a
user's server is with the shipped configuration (no ``subdomain_host``).
"""

import re
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests
from e2e.browsing import new_page
from hubrig import Hub, free_port
from sshrig import keys_api, service_session

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.attack]

ALICE, BOB = "fa-alice", "fa-bob"
PREFIX = "/services/ssh-keys/"

# Bob's page: frames his own control page (that framing works on this origin) and Alice's SSH keys page,
# reads the XSRF token from the keys frame and posts the add-key form with his key.
ATTACK = """<!doctype html><title>Bob's page</title>
<iframe id="control" src="control.html"></iframe>
<iframe id="keys" src="%(prefix)s"></iframe>
<script>
window.result = null;
const loaded = (id) => new Promise((done) => {
  document.getElementById(id).addEventListener("load", done);
  setTimeout(done, 15000);
});
Promise.all([loaded("control"), loaded("keys")]).then(async () => {
  const result = {control: null, xsrf: null, posted: null};
  try {
    result.control = document.getElementById("control").contentDocument.body.textContent.trim();
  } catch (e) { result.control = "unreadable: " + e; }
  try {
    const doc = document.getElementById("keys").contentDocument;
    const form = doc.getElementById("hs-keys-add");
    result.xsrf = form.querySelector("input[name=_xsrf]").value;
    const body = new URLSearchParams({_xsrf: result.xsrf, key: %(key)s});
    const answer = await fetch(form.action, {method: "POST", body, credentials: "include"});
    result.posted = answer.status + " " + (await answer.text());
  } catch (e) { result.blocked = String(e); }
  window.result = result;
});
</script>
"""


@pytest.fixture(scope="module")
def bob_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("fa-keys") / "bob"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bob@laptop", "-f", str(path)], check=True)
    public = path.with_suffix(".pub").read_text().strip()
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path.with_suffix(".pub"))],
                                 check=True, capture_output=True, text=True).stdout.split()[1]
    return public, fingerprint


@pytest.fixture(scope="module")
def bobs_server(tmp_path_factory, bob_key):
    """Bob's pages, served at /user/fa-bob/ of a local HTTP server."""
    root = tmp_path_factory.mktemp("fa-bob-server")
    site = root / "user" / BOB
    site.mkdir(parents=True)
    (site / "attack.html").write_text(ATTACK % {"prefix": PREFIX, "key": repr(bob_key[0])})
    (site / "control.html").write_text("<!doctype html><p>Bob's control page</p>")
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, bobs_server):
    extra = f"c.Proxy.extra_routes = {{'/user/{BOB}/': {bobs_server!r}}}\n"
    hub = Hub(tmp_path_factory.mktemp("fa-hub"), extra)
    hub.start()
    yield hub
    hub.stop()


def test_a_page_on_the_hubs_origin_cannot_frame_the_keys_page_to_add_a_key(hub, browser, bob_key):
    public, fingerprint = bob_key
    hub.ensure_user(ALICE)
    page = new_page(browser)
    page.goto(f"{hub.url}/hub/login")  # Alice logs in and opens her SSH keys page, as she would
    page.fill("input[name=username]", ALICE)
    page.fill("input[name=password]", "test-password")
    page.click("input[type=submit], button[type=submit]")
    page.goto(f"{hub.url}{PREFIX}")
    assert page.locator("#hs-keys-add").count() == 1

    page.goto(f"{hub.url}/user/{BOB}/attack.html")  # then follows a link of Bob's
    page.wait_for_function("window.result !== null", timeout=60_000)
    result = page.evaluate("window.result")
    headers = page.request.get(f"{hub.url}{PREFIX}").headers
    page.context.close()
    assert result["control"] == "Bob's control page", result  # framing itself works on this origin
    assert result["xsrf"] is None and result["posted"] is None and result.get("blocked"), result
    listing = keys_api(hub, "GET", ALICE)
    assert listing.status_code == 200, listing.text
    assert fingerprint not in listing.text and public.split()[1] not in listing.text
    assert not [e for e in hub.audit() if e["event"] == "ssh.keys.added" and e.get("user") == ALICE], \
        "a key was added to Alice's account"
    assert headers.get("x-frame-options") == "DENY", headers
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), headers


def test_state_changing_requests_from_another_site_or_origin_are_refused(hub, bob_key):
    public, fingerprint = bob_key
    hub.ensure_user(ALICE)
    session = service_session(hub, ALICE)
    page = session.get(f"{hub.url}{PREFIX}", timeout=30).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
    add = f"{hub.url}{PREFIX}users/{ALICE}/add"

    def post(**headers):
        return session.post(add, data={"_xsrf": xsrf, "key": public}, headers=headers, timeout=30)

    for headers, said in [({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),
                          ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
                          ({"Origin": "http://localhost:1"}, "came from http://localhost:1"),
                          ({"Origin": "null"}, "came from null")]:
        refused = post(**headers)
        assert refused.status_code == 403 and said in refused.text, (headers, refused.status_code)
        assert refused.headers.get("X-Frame-Options") == "DENY"
    api = session.delete(f"{hub.url}{PREFIX}api/users/{ALICE}/keys/{quote(fingerprint, safe='')}", timeout=30,
                         headers={"X-XSRFToken": xsrf, "Sec-Fetch-Site": "same-site"})
    assert api.status_code == 403 and "another site" in api.json()["message"], api.text
    assert fingerprint not in keys_api(hub, "GET", ALICE).text
    # the page's own form, as a browser sends it, still works
    added = post(**{"Sec-Fetch-Site": "same-origin", "Origin": hub.url})
    assert added.status_code == 200 and f"Key {fingerprint} (ssh-ed25519) added." in added.text, added.text[-500:]
    assert keys_api(hub, "DELETE", ALICE, fingerprint).status_code == 200

    operations = requests.post(f"{hub.url}/hub/operations/release", headers={"Sec-Fetch-Site": "cross-site"},
                               allow_redirects=False, timeout=30)
    assert operations.status_code == 403 and operations.headers.get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in operations.headers.get("Content-Security-Policy", "")
