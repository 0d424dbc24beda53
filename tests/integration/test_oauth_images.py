"""Issue 7: image entitlements from the identity provider restrict what a user may run.

alice's IdP group ml-gpu grants the image name "alt"; bob's staff grants none.
Both names are the rig's single-user image (the second under another tag), so
both would spawn: the refusal can only come from the entitlement.
"""

import pytest

from hubrig import IMAGE, Hub, remove_user_artifacts
from oidcrig import hub_env, login

pytestmark = [pytest.mark.docker, pytest.mark.hub]

USERS = ("alice", "bob")
ALT = "hardened-spawner/singleuser:alt"  # the same image under a second name
EXTRA = f"""
c.HardenedDockerSpawner.allowed_images = {{"base": {IMAGE!r}, "alt": {ALT!r}}}
c.HardenedOAuthenticator.entitlement_rules = [
    {{"value": "staff", "groups": ["cpu-users"]}},
    {{"value": "ml-gpu", "groups": ["gpu-users"], "gpus": 1, "images": ["alt"]}},
]
# as in production: a spawn refused within 10 s answers the REST request itself
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 10}}
"""


@pytest.fixture(scope="module")
def hub(idp, tmp_path_factory, dclient):
    dclient.tag(IMAGE, *ALT.split(":"))
    hub = Hub(tmp_path_factory.mktemp("oauth-images"), EXTRA, env={**hub_env(idp), "HS_GPU_IDS": "GPU-img-0"})
    hub.users.update(USERS)
    hub.start()
    for user in USERS:
        _, r = login(hub, user)
        assert r.status_code == 302, r.text[:300]
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)
    dclient.remove_image(ALT)


def test_granted_images_restrict_the_user(hub):
    assert hub.api("GET", "/users/alice").json()["auth_state"]["entitlements"]["images"] == ["alt"]
    r = hub.spawn("alice", {"image": "base"})
    assert r.status_code == 403 and r.json()["reason"] == "not-entitled", r.text
    assert "You may not use image 'base': the images you may use are alt." in r.json()["message"]
    assert not hub.server("alice")
    events = hub.spawn_and_wait("alice", {"profile": "cpu"})  # no image picked: the granted one
    assert events[-1].get("ready"), events
    spawn = [e for e in hub.audit() if e["event"] == "spawn" and e["user"] == "alice"]
    assert spawn and spawn[-1]["image"] == ALT
    hub.stop_server("alice")


def test_user_granted_no_images_is_not_restricted_by_them(hub):
    events = hub.spawn_and_wait("bob", {"image": "base"})
    assert events[-1].get("ready"), events
    hub.stop_server("bob")
