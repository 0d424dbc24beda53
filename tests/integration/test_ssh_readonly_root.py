"""A read-only root filesystem: keys in a per-server volume mounted read-only.

This hub also lets the gateway start a server that is not running.
"""

import pytest
from hardened_spawner.keys.validation import DEFAULT_FORCED_OPTIONS
from sshrig import Client, audit_events, containers_of, keygen, keys_api, keys_file_in, module_hub, write_keys

pytestmark = [pytest.mark.docker, pytest.mark.hub]

RORY = "ssh-rory"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("ssh-readonly")
    env = {"HS_READ_ONLY_ROOT": "1", "HS_SSH_GATEWAY_START_SERVERS": "1"}
    with module_hub(work / "hub", dclient, env=env) as hub:
        key, public = keygen(work, "rory")
        write_keys(hub.state / "ssh-keys", RORY, [public])
        hub.ensure_user(RORY)
        yield {"hub": hub, "client": Client(hub, RORY, key, work), "public": public, "work": work}


def test_the_gateway_starts_a_stopped_server_and_keys_arrive_on_a_read_only_root(rig, dclient):
    hub = rig["hub"]
    assert hub.server(RORY) is None
    r = rig["client"].ssh(RORY, "id -u; cat /etc/ssh/authorized_keys/jovyan; touch /etc/ssh/x || echo ro")
    for _ in range(20):  # the server may answer before its sshd does
        if r.returncode == 0:
            break
        r = rig["client"].ssh(RORY, "id -u; cat /etc/ssh/authorized_keys/jovyan; touch /etc/ssh/x || echo ro")
    assert r.returncode == 0, r.stderr
    uid, delivered, readonly = r.stdout.splitlines()
    assert uid == "1000" and readonly == "ro"
    assert delivered == f"{DEFAULT_FORCED_OPTIONS} {' '.join(rig['public'].split()[:2])}"
    assert hub.server(RORY)["ready"]
    (container,) = containers_of(dclient, RORY)
    info = dclient.inspect_container(container["Id"])
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    (mount,) = [m for m in info["Mounts"] if m["Destination"] == "/etc/ssh/authorized_keys"]
    assert mount["Type"] == "volume" and mount["RW"] is False
    assert dclient.containers(all=True, filters={"label": f"hardened-spawner.ssh-keys-helper={RORY}"}) == []
    rig["volume"] = mount["Name"]
    starts = [e for e in audit_events(hub, "ssh.gateway.forward") if e["decision"] == "allow"]
    assert starts and starts[0]["user"] == RORY


def test_a_key_added_later_reaches_the_read_only_volume_of_the_running_server(rig, dclient):
    hub = rig["hub"]
    key, public = keygen(rig["work"], "rory2")
    r = keys_api(hub, "POST", RORY, json={"key": public})
    assert r.status_code == 201, r.text
    assert r.json()["delivered"] == [{"server": "", "ok": True, "message": "updated"}]
    (container,) = containers_of(dclient, RORY)
    assert keys_file_in(dclient, container["Id"]).splitlines()[-1] == f"{DEFAULT_FORCED_OPTIONS} {' '.join(public.split()[:2])}"
    client = Client(hub, RORY, key, rig["work"])
    r = client.ssh(RORY, "id -u")
    assert r.returncode == 0 and r.stdout.strip() == "1000", r.stderr
    assert dclient.containers(all=True, filters={"label": f"hardened-spawner.ssh-keys-helper={RORY}"}) == []
    assert containers_of(dclient, RORY)[0]["Id"] == container["Id"]


def test_stopping_the_server_removes_its_keys_volume(rig, dclient):
    rig["hub"].stop_server(RORY)
    names = [v["Name"] for v in (dclient.volumes() or {}).get("Volumes") or []]
    assert rig["volume"] not in names
