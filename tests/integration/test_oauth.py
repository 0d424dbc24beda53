"""HardenedOAuthenticator against a real OIDC provider and a real hub.

One provider and one hub for the module; tokens live 3 s and auth is
refreshed after 1 s, so expiry and refresh happen within each test.
Users: alice (GPU), bob (CPU), carol (admin), oidc-* for the rest.
"""

import json
import time

import pytest

from hubrig import Hub, remove_user_artifacts
from oidcrig import IdP, get, hub_env, login

pytestmark = [pytest.mark.hub, pytest.mark.docker]

TOKEN_MAX_AGE = 3
REFRESH_AGE = 1
USERS = ("alice", "bob", "carol", "oidc-erin", "oidc-frank", "oidc-gina", "oidc-visitor")
ACTIVITY_INTERVAL = 2  # how often a server in use reports activity to the hub (default 300 s)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    idp = IdP(tmp_path_factory.mktemp("idp") / "idp.log", token_max_age=TOKEN_MAX_AGE).start()
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def hub(idp, tmp_path_factory, dclient):
    extra = f"c.HardenedDockerSpawner.environment = {{'JUPYTERHUB_ACTIVITY_INTERVAL': '{ACTIVITY_INTERVAL}'}}\n"
    hub = Hub(tmp_path_factory.mktemp("oauth-hub"), extra, env=hub_env(idp, REFRESH_AGE))
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


def events(hub, user, event=None):
    return [e for e in hub.audit() if e.get("user") == user and (event is None or e["event"] == event)]


def wait_for(predicate, timeout=30, step=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s")


def test_login_maps_idp_groups_to_hub_groups_admin_and_auth_state(hub):
    expect = {
        "alice": (["cpu-users", "gpu-users"], False, 1, ["staff", "ml-gpu"]),
        "bob": (["cpu-users"], False, 0, ["staff"]),
        "carol": (["cpu-users"], True, 0, ["staff", "hub-admins"]),
    }
    for user, (groups, admin, gpus, idp_groups) in expect.items():
        _, r = login(hub, user)
        assert r.status_code == 302 and r.headers["location"].startswith("/hub/"), (r.status_code, r.text[:500])
        model = hub.api("GET", f"/users/{user}").json()
        assert sorted(model["groups"]) == groups and model["admin"] is admin
        state = model["auth_state"]
        assert state["entitlements"]["groups"] == groups and state["entitlements"]["gpus"] == gpus
        assert state["entitlements"]["allowed"] is True and state["refresh_token"]
        [line] = events(hub, user, "login")
        assert line["idp_groups"] == sorted(idp_groups) and line["entitlements"]["groups"] == groups  # a set, sorted
        assert line["admin"] is admin
        # the audit trail never carries a token
        audit_text = (hub.state / "audit.log").read_text()
        for secret in (state["access_token"], state["refresh_token"], state["id_token"]):
            assert secret not in audit_text
        assert "access_token" not in audit_text and "refresh_token" not in audit_text


def test_user_in_no_mapped_group_cannot_log_in(hub, idp):
    idp.set_user("oidc-visitor", ["visitors"])
    _, r = login(hub, "oidc-visitor")
    assert r.status_code == 403
    assert "not in a group that may use this hub" in r.text and "Traceback" not in r.text
    [line] = events(hub, "oidc-visitor", "login.denied")
    assert line["reason"] == "no-matching-rule" and line["idp_groups"] == ["visitors"]
    assert hub.api("GET", "/users/oidc-visitor").status_code == 404


def test_expired_tokens_are_refreshed_for_a_user_still_entitled(hub, idp):
    idp.set_user("oidc-erin", ["staff"])
    s, r = login(hub, "oidc-erin")
    assert r.status_code == 302
    first = hub.api("GET", "/users/oidc-erin").json()["auth_state"]["access_token"]
    time.sleep(TOKEN_MAX_AGE + 0.5)  # the access token has expired at the IdP
    r = get(hub, s, "/hub/home")
    assert r.status_code == 200, r.headers.get("location")
    assert events(hub, "oidc-erin", "auth.refresh")
    assert hub.api("GET", "/users/oidc-erin").json()["auth_state"]["access_token"] != first


def test_group_removal_revokes_at_next_refresh_stops_server_and_refuses_spawn(hub, idp, dclient):
    s, r = login(hub, "alice")
    assert r.status_code == 302
    hub.spawn_and_wait("alice")
    assert hub.server("alice")["ready"]
    assert dclient.containers(filters={"label": "hardened-spawner.owner=alice"})

    idp.set_user("alice", [])  # removed from every group at the IdP
    time.sleep(max(REFRESH_AGE, TOKEN_MAX_AGE) + 0.5)  # the token expires; the next request refreshes
    r = get(hub, s, "/hub/home")
    assert r.status_code == 302 and r.headers["location"].startswith("/hub/login")
    [revoked] = events(hub, "alice", "auth.revoked")
    assert revoked["reason"] == "no-matching-rule" and revoked["entitlements"]["allowed"] is False
    # her running server is stopped, and no new one starts
    wait_for(lambda: not hub.server("alice"), timeout=60)
    assert events(hub, "alice", "auth.server-stopped")
    wait_for(lambda: not dclient.containers(filters={"label": "hardened-spawner.owner=alice"}))
    r = hub.api("POST", "/users/alice/server", json={})
    assert r.status_code == 403 and "auth has expired" in r.json()["message"]
    # logging in again does not help while the IdP keeps her out
    _, r = login(hub, "alice")
    assert r.status_code == 403
    idp.set_user("alice", ["staff", "ml-gpu"])


def test_revoked_refresh_token_sends_user_back_to_login_and_refuses_spawn(hub, idp):
    s, r = login(hub, "bob")
    assert r.status_code == 302
    idp.revoke_tokens("bob")
    time.sleep(REFRESH_AGE + 0.5)
    r = get(hub, s, "/hub/home")
    assert r.status_code == 302 and r.headers["location"].startswith("/hub/login")
    revoked = events(hub, "bob", "auth.revoked")[-1]
    assert revoked["reason"] == "token-rejected" and "invalid_grant" in revoked["message"]
    r = hub.api("POST", "/users/bob/server", json={})
    assert r.status_code == 403 and "auth has expired" in r.json()["message"]
    # a fresh login restores access
    s, r = login(hub, "bob")
    assert r.status_code == 302 and get(hub, s, "/hub/home").status_code == 200


def test_admin_follows_the_idp_admin_group_both_ways(hub, idp):
    s, r = login(hub, "carol")
    assert hub.api("GET", "/users/carol").json()["admin"] is True
    idp.set_user("carol", ["staff"])
    time.sleep(REFRESH_AGE + 0.5)
    assert get(hub, s, "/hub/home").status_code == 200  # still allowed: staff
    model = hub.api("GET", "/users/carol").json()
    assert model["admin"] is False and model["auth_state"]["entitlements"]["admin"] is False
    assert get(hub, s, "/hub/admin").status_code == 403
    idp.set_user("carol", ["staff", "hub-admins"])
    time.sleep(REFRESH_AGE + 0.5)
    assert get(hub, s, "/hub/home").status_code == 200
    assert hub.api("GET", "/users/carol").json()["admin"] is True
    flips = [e["admin"] for e in events(hub, "carol", "auth.refresh")]
    assert False in flips and flips[-1] is True
    assert json.dumps(events(hub, "carol")).count("refresh_token") == 0


def test_server_in_use_is_stopped_at_the_next_refresh_without_a_hub_visit(hub, idp):
    """The window for a running server: its own activity reports to the hub trigger the refresh."""
    idp.set_user("oidc-frank", ["staff"])
    s, r = login(hub, "oidc-frank")
    hub.spawn_and_wait("oidc-frank")
    lab = s.get(f"{hub.url}/user/oidc-frank/lab", timeout=30)  # the server's own OAuth with the hub
    assert lab.status_code == 200 and "/user/oidc-frank/" in lab.url
    idp.set_user("oidc-frank", [])
    started = time.monotonic()
    while hub.server("oidc-frank") and time.monotonic() - started < 60:
        s.get(f"{hub.url}/user/oidc-frank/api/status", timeout=30)  # she keeps working in her server
        time.sleep(0.5)
    assert not hub.server("oidc-frank"), "the server kept running after the IdP removed its user"
    # one revocation, one stop: later requests are refused without asking the IdP again
    [revoked] = events(hub, "oidc-frank", "auth.revoked")
    assert revoked["reason"] == "no-matching-rule"
    assert len(events(hub, "oidc-frank", "auth.server-stopped")) == 1
    assert time.monotonic() - started < REFRESH_AGE + 2 * ACTIVITY_INTERVAL + 15


def test_idp_outage_fails_closed_but_stops_no_server(hub, idp):
    """Last in the module: it stops the provider."""
    idp.set_user("oidc-gina", ["staff"])
    s, r = login(hub, "oidc-gina")
    hub.spawn_and_wait("oidc-gina")
    idp.stop()
    time.sleep(REFRESH_AGE + 0.5)
    r = get(hub, s, "/hub/home")
    assert r.status_code == 302 and r.headers["location"].startswith("/hub/login")
    failed = events(hub, "oidc-gina", "auth.refresh.failed")  # each request tries the IdP again
    assert failed and {e["reason"] for e in failed} == {"idp-unreachable"}
    assert not events(hub, "oidc-gina", "auth.revoked") and not events(hub, "oidc-gina", "auth.server-stopped")
    time.sleep(3)
    assert hub.server("oidc-gina")["ready"], "an IdP outage must not stop servers"
    r = get(hub, s, "/hub/oauth_login")
    assert r.status_code == 503 and "cannot be reached" in r.text
