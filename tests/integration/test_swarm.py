"""Issue 8 end to end: HardenedSwarmSpawner on a real two-node swarm (rig/swarm.sh).

The manager and the worker are private dockerd's in their own network
namespaces; the worker advertises two GPUs as NVIDIA-GPU generic resources
and has the node label gpu=true. The hub runs on the host and reaches tasks
through ports published in host mode on the node that runs them.
"""

import time

import docker
import pytest

from hardened_spawner.keys.stores import SwarmSecretKeyStore
from sshrig import Client, keygen, module_hub, write_keys
from swarmrig import running_swarm

pytestmark = [pytest.mark.docker, pytest.mark.hub]

PROFILES = """
c.HardenedSwarmSpawner.profiles = [
    {'slug': 'cpu', 'display_name': 'CPU', 'default': True, 'mem_limit': '1G'},
    {'slug': 'gpu', 'display_name': 'One GPU', 'gpus': 1, 'groups': []},
]
c.HardenedSwarmSpawner.placement_constraints = {'gpu': ['node.labels.gpu == true']}
"""
ALLOWED = ("c.HardenedDockerSpawner.allowed_images = "
           "{'default': 'hardened-spawner/singleuser:local', 'latest': 'hardened-spawner/sw-latest:latest'}\n")


def swarm_allowed(image):
    """On a swarm, tasks run name@<registry digest>: the image comes from the swarm's registry (rig/swarm.sh)."""
    return ("c.HardenedDockerSpawner.allowed_images = "
            f"{{'default': {image!r}, 'latest': 'hardened-spawner/sw-latest:latest'}}\n")


@pytest.fixture(scope="module")
def swarm():
    yield from running_swarm()


@pytest.fixture(scope="module")
def hub(swarm, tmp_path_factory):
    env, clients = swarm
    directory = tmp_path_factory.mktemp("swarm-hub")
    extra = "c.JupyterHub.spawner_class = 'hardened-swarm'\n" \
            "c.HardenedSwarmSpawner.use_internal_ip = False\n" + PROFILES + swarm_allowed(env["HS_SWARM_IMAGE"])
    with module_hub(directory, clients["manager"], extra, env={
        "DOCKER_HOST": env["HS_SWARM_MANAGER"], "HS_HUB_IP": env["HS_SWARM_HOST_IP"],
        "HS_SINGLEUSER_IMAGE": env["HS_SWARM_IMAGE"],
    }) as hub:
        yield hub
        for user in hub.users:
            for service in clients["manager"].services(filters={"label": f"hardened-spawner.owner={user}"}):
                clients["manager"].remove_service(service["ID"])


def task_container(clients, user):
    """(daemon client of the node, container inspect) of the user's running task."""
    manager = clients["manager"]
    (service,) = manager.services(filters={"label": f"hardened-spawner.owner={user}"})
    (task,) = manager.tasks(filters={"service": service["ID"], "desired-state": "running"})
    node_of = {c.info()["Swarm"]["NodeID"]: c for c in clients.values()}
    node = node_of[task["NodeID"]]
    return node, node.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"]), service


def run(client, container_id, cmd):
    exec_id = client.exec_create(container_id, cmd)
    return client.exec_start(exec_id).decode()


def secrets_of(clients, user):
    return clients["manager"].secrets(filters={"label": f"hardened-spawner.owner={user}"})


def test_swarm_task_is_hardened_and_ssh_key_secret_works(hub, swarm, tmp_path):
    _, clients = swarm
    user = "sw-alice"
    key, public = keygen(tmp_path, "alice")
    write_keys(hub.state / "ssh-keys", user, [public])
    events = hub.spawn_and_wait(user)
    assert events[-1].get("ready"), events
    assert hub.user_get(user, "/api/status").status_code == 200

    node, info, service = task_container(clients, user)
    host = info["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert host["Memory"] == 1024**3
    assert host["NanoCpus"] == 10**9
    assert host["PidsLimit"] == 1024
    assert host["Privileged"] is False
    assert info["Config"]["User"] == "1000:100"
    status = run(node, info["Id"], ["grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/1/status"])
    assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status, status
    image = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert image.startswith(swarm[0]["HS_SWARM_IMAGE"].rsplit(":", 1)[0] + "@sha256:"), image  # the admitted digest
    constraints = service["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    assert "engine.labels.hardened-spawner.no-new-privileges == true" in constraints
    listing = run(node, info["Id"], ["stat", "-c", "%U %a %s", "/etc/ssh/authorized_keys/jovyan"])
    assert listing.split()[:2] == ["root", "644"], listing
    listing = run(node, info["Id"], ["stat", "-c", "%u %a", "/etc/ssh/authorized_keys/.host/ssh_host_ed25519_key",
                                     "/etc/ssh/authorized_keys/.host/ssh_host_ed25519_key-cert.pub"])
    assert listing.split() == ["1000", "600", "0", "644"], listing  # the hub's host key, sshd's own
    assert public.split()[1] not in str(info), "key material in the container's inspect"

    secrets = secrets_of(clients, user)
    assert len(secrets) == 3  # the keys file, the host key and its certificate
    client = Client(hub, user, key, tmp_path)  # strict, with the hub CA's @cert-authority line
    result = client.ssh(user, "id -u; cat /proc/1/status | grep NoNewPrivs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "1000"

    hub.stop_server(user)
    assert clients["manager"].services(filters={"label": f"hardened-spawner.owner={user}"}) == []
    deadline = time.monotonic() + 20
    while secrets_of(clients, user) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert secrets_of(clients, user) == [], "the key secret outlived the server"
    removed = [e for e in hub.audit() if e["event"] == "swarm.secret.removed"]
    assert {e["name"] for e in removed} >= {secret["Spec"]["Name"] for secret in secrets}


def test_gpu_profile_lands_on_the_gpu_node_and_exhaustion_is_clear(hub, swarm):
    _, clients = swarm
    worker_id = clients["worker"].info()["Swarm"]["NodeID"]
    seen = set()
    for user in ("sw-gpu1", "sw-gpu2"):
        events = hub.spawn_and_wait(user, {"profile": "gpu"})
        assert events[-1].get("ready"), events
        node, info, service = task_container(clients, user)
        assert node.info()["Swarm"]["NodeID"] == worker_id
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        seen.add(env["DOCKER_RESOURCE_NVIDIA-GPU"])  # what nvidia-container-runtime's swarm-resource reads
        reservation = service["Spec"]["TaskTemplate"]["Resources"]["Reservations"]["GenericResources"]
        assert reservation == [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]
    assert seen == {"GPU-w0", "GPU-w1"}

    events = hub.spawn_and_wait("sw-gpu3", {"profile": "gpu"})
    assert events[-1].get("failed"), events
    assert "No swarm node has 1 free GPU(s) for profile 'gpu' (One GPU" in events[-1]["message"]
    assert clients["manager"].services(filters={"label": "hardened-spawner.owner=sw-gpu3"}) == []

    events = hub.spawn_and_wait("sw-cpu")  # a CPU profile is not constrained to the GPU node
    assert events[-1].get("ready"), events
    env = dict(e.split("=", 1) for e in task_container(clients, "sw-cpu")[1]["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["DOCKER_RESOURCE_NVIDIA-GPU"] == ""
    for user in ("sw-gpu1", "sw-gpu2", "sw-cpu"):
        hub.stop_server(user)


def test_admission_denial_is_the_same_as_on_one_host(hub, swarm, make_hub, dclient, image):
    _, clients = swarm
    latest = "hardened-spawner/sw-latest"
    for client in (clients["manager"], dclient):  # the same image, tagged :latest, on both
        client.tag(image, latest, "latest")
    single = make_hub(ALLOWED)
    try:
        failures = {}
        for name, h, user in (("swarm", hub, "sw-latest"), ("docker", single, "h8-latest")):
            events = h.spawn_and_wait(user, {"image": "latest"})
            assert events[-1].get("failed"), events
            failures[name] = events[-1]["message"].replace(events[-1]["ref"], "<ref>")
            denial = [e for e in h.audit() if e["event"] == "spawn.denied" and e["user"] == user]
            assert denial, h.audit()
    finally:
        for client in (clients["manager"], dclient):
            client.remove_image(f"{latest}:latest")
    assert "image.tag-latest" in failures["swarm"], failures
    assert failures["swarm"] == failures["docker"]
    assert clients["manager"].services(filters={"label": "hardened-spawner.owner=sw-latest"}) == []


def test_swarm_secret_key_store_reads_what_swarm_mounts(swarm, tmp_path):
    """A real secret in a real task, copied out with its modes, read by SwarmSecretKeyStore."""
    env, clients = swarm
    manager = clients["manager"]
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bob@test\n"
    secret = manager.create_secret("ssh-keys-sw-bob", key.encode(), labels={"hardened-spawner.owner": "sw-bob"})
    # the swarm's registry copy: only the manager has the local tag, and the task may land on the worker
    spec = docker.types.ContainerSpec(
        env["HS_SWARM_IMAGE"], command=["sleep", "120"],
        healthcheck=docker.types.Healthcheck(test=["NONE"]),  # else the task waits in "starting" for a server
        secrets=[docker.types.SecretReference(secret["ID"], "ssh-keys-sw-bob")])
    service = manager.create_service(docker.types.TaskTemplate(spec, restart_policy=docker.types.RestartPolicy("none")),
                                     name="hs-secret-probe", labels={"hardened-spawner.owner": "sw-bob"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = manager.tasks(filters={"service": service["ID"]})
            if tasks and tasks[0]["Status"]["State"] == "running":
                break
            time.sleep(0.5)
        task = tasks[0]
        assert task["Status"]["State"] == "running", task["Status"]
        node = {c.info()["Swarm"]["NodeID"]: c for c in clients.values()}[task["NodeID"]]
        container_id = task["Status"]["ContainerStatus"]["ContainerID"]
        assert run(node, container_id, ["stat", "-c", "%U %a", "/run/secrets/ssh-keys-sw-bob"]).split() == ["root", "444"]
        # the mounted file as the hub's task would see it, with the mode the mount gives it
        (tmp_path / "secrets").mkdir(mode=0o755)
        copy = tmp_path / "secrets" / "ssh-keys-sw-bob"
        copy.write_text(run(node, container_id, ["cat", "/run/secrets/ssh-keys-sw-bob"]))
        copy.chmod(0o444)
        store = SwarmSecretKeyStore(root=str(tmp_path / "secrets"))
        assert store.fetch("sw-bob") == key
        assert store.fetch("sw-carol") is None
    finally:
        manager.remove_service(service["ID"])
        for _ in range(40):
            try:
                manager.remove_secret(secret["ID"])
                break
            except docker.errors.APIError:
                time.sleep(0.25)
