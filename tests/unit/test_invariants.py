"""Each invariant, on what Docker recorded: a container that the plan got right, then changed one field
at a time the way a daemon that ignores a field, or someone who edits it, would leave it.

Every invariant id in hardened_spawner.decisions.invariants has a row here (the last test checks),
so a new invariant without a test fails.
"""

import ast
import copy
import dataclasses
from pathlib import Path

import docker.types
import pytest

from hardened_spawner.decisions import invariants
from hardened_spawner.decisions.container import ContainerSpec, Hardening
from hardened_spawner.decisions.invariants import Daemon
from hardened_spawner.decisions.limits import Limits
from hardened_spawner.decisions.plan import SpawnInputs, plan_spawn
from hardened_spawner.decisions.profiles import Profile, Selection

IMAGE_ID = "sha256:" + "ab" * 32
LIMITS = Limits(memory=2 * 1024**3, cpus=1.5, pids=256, shm=128 * 1024**2, gpus=("1",))
DAEMON = Daemon(root_dir="/srv/docker", socket="/run/x/docker.sock", socket_gid=998, default_runtime="runc")


def plan():
    spec = ContainerSpec(image="img:1", name="jupyter-alice", command=["jupyterhub-singleuser"],
                         environment={"A": "1"}, port=8888,
                         volume_binds={"/srv/data": {"bind": "/data", "mode": "ro"}})
    return plan_spawn(SpawnInputs(
        user="alice", server="", selection=Selection(Profile("gpu", "GPU", "", LIMITS, gpus=1), None, "img:1"),
        image_info={"Id": IMAGE_ID, "Config": {"User": "1000:100"}}, create_image=IMAGE_ID, spec=spec,
        limits=LIMITS, hardening=Hardening(cap_add=("NET_BIND_SERVICE",)), package_version="1", daemon=DAEMON,
        network="hardened-spawner", gpu_env={"NVIDIA_VISIBLE_DEVICES": "1"}))


def recorded(p):
    """The container as Docker records it for plan ``p`` (docker-py's own API builders)."""
    create = p.create_kwargs
    host = dict(docker.types.HostConfig("1.44", **create["host_config"]))
    host["Runtime"] = "runc"
    config = {"User": create["user"], "Env": [f"{k}={v}" for k, v in create["environment"].items()],
              "Image": create["image"], "Labels": create["labels"]}
    return {"Image": IMAGE_ID, "Config": config, "HostConfig": host,
            "NetworkSettings": {"Networks": {"hardened-spawner": {"IPAddress": "10.0.0.2"}}},
            "Mounts": [{"Type": "bind", "Source": "/srv/data", "Destination": "/data"}]}


def edit(path, value):
    def apply(c):
        *parents, last = path.split(".")
        node = c
        for key in parents:
            node = node[key]
        node[last] = value(node.get(last)) if callable(value) else value
    return apply


CASES = {
    "container.image": edit("Image", "sha256:" + "cd" * 32),
    "container.privileged": edit("HostConfig.Privileged", True),
    "container.capabilities": edit("HostConfig.CapAdd", ["SYS_ADMIN"]),
    "container.no-new-privileges": edit("HostConfig.SecurityOpt", []),
    "container.security-opt": edit("HostConfig.SecurityOpt", lambda v: [*v, "seccomp=unconfined"]),
    "container.user": edit("Config.User", "0:0"),
    "container.groups": edit("HostConfig.GroupAdd", ["998"]),
    "container.namespaces": edit("HostConfig.PidMode", "host"),
    "container.network": edit("HostConfig.NetworkMode", "bridge"),
    "container.gpus": edit("Config.Env", lambda v: [e for e in v if not e.startswith("NVIDIA_")]
                           + ["NVIDIA_VISIBLE_DEVICES=all"]),
    "container.mounts": edit("HostConfig.Binds", lambda v: [*v, "/srv/docker/volumes:/v:ro"]),
    "container.limits": edit("HostConfig.PidsLimit", 0),
    "container.read-only-root": None,  # needs a plan with read_only_root: its own test below
    "container.conda-policy": None,  # needs a plan with the guard on a read-only root: its own test below
    "container.runtime": edit("HostConfig.Runtime", "nvidia"),
    "container.host-access": edit("HostConfig.Devices", [{"PathOnHost": "/dev/mem"}]),
    "container.ports": edit("HostConfig.PortBindings", {"8888/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]}),
    "container.log-bound": edit("HostConfig.LogConfig", {"Type": "json-file", "Config": {}}),
}


def test_the_planned_container_keeps_every_invariant():
    p = plan()
    assert invariants.of_request(p.create_kwargs, p.expected) == []
    assert invariants.of_container(recorded(p), p.expected) == []


@pytest.mark.parametrize("invariant", [k for k, v in CASES.items() if v])
def test_a_recorded_container_that_breaks_it_is_caught(invariant):
    p = plan()
    container = recorded(p)
    CASES[invariant](container)
    assert invariant in {v.invariant for v in invariants.of_container(container, p.expected)}


def test_more_ways_the_recorded_container_can_be_wrong():
    p = plan()
    for change, invariant in [
        (lambda c: c["NetworkSettings"]["Networks"].update(bridge={}), "container.network"),
        (lambda c: c["Mounts"].append({"Type": "bind", "Source": "/run/x", "Destination": "/r"}), "container.mounts"),
        (lambda c: c["HostConfig"].update(DeviceRequests=[{"Driver": "nvidia", "DeviceIDs": ["0", "1"]}]),
         "container.gpus"),
        (lambda c: c["HostConfig"].update(CpuQuota=0, CpuPeriod=0, NanoCpus=0), "container.limits"),
        (lambda c: c["HostConfig"].update(MemorySwap=-1), "container.limits"),
        (lambda c: c["HostConfig"].update(CapDrop=[]), "container.capabilities"),
        (lambda c: c["Config"].update(User="jovyan"), "container.user"),
        (lambda c: c["HostConfig"].update(CgroupnsMode="host"), "container.namespaces"),
    ]:
        container = recorded(p)
        change(container)
        assert invariant in {v.invariant for v in invariants.of_container(container, p.expected)}, invariant


def test_a_read_only_root_that_docker_did_not_apply_is_caught():
    p = plan()
    expected = dataclasses.replace(p.expected, read_only_root=True)
    assert "container.read-only-root" in {v.invariant for v in invariants.of_container(recorded(p), expected)}


def ro_guard_plan():
    spec = ContainerSpec(image="img:1", name="jupyter-alice", command=["jupyterhub-singleuser"], environment={},
                         port=8888, volume_binds={"jupyterhub-user-alice": {"bind": "/home/jovyan", "mode": "rw"}})
    return plan_spawn(SpawnInputs(
        user="alice", server="", selection=Selection(Profile("cpu", "CPU", "", LIMITS), None, "img:1"),
        image_info={"Id": IMAGE_ID, "Config": {"User": "1000:100"}}, create_image=IMAGE_ID, spec=spec,
        limits=dataclasses.replace(LIMITS, gpus=()), hardening=Hardening(read_only_root=True), package_version="1",
        daemon=DAEMON, network="hardened-spawner", gpu_env={"NVIDIA_VISIBLE_DEVICES": "void"},
        accounts=("jovyan:x:1000:100::/home/jovyan:/bin/bash\n", ""), policy_volume="jupyter-alice-conda-policy",
        guard_files={"etc/conda/.condarc": "rc", "etc/pip.conf": "pip"}))


def ro_recorded(p):
    container = recorded(p)
    container["Mounts"] = [{"Type": "volume", "Name": "jupyterhub-user-alice", "Destination": "/home/jovyan",
                            "RW": True},
                           {"Type": "volume", "Name": "jupyter-alice-conda-policy", "Destination": "/etc/conda",
                            "RW": False}]
    return container


@pytest.mark.parametrize("change", [
    lambda c: c["HostConfig"].update(Binds=[b.replace("/etc/conda:ro", "/etc/conda:rw") for b in c["HostConfig"]["Binds"]]),
    lambda c: c["HostConfig"].update(Binds=[b for b in c["HostConfig"]["Binds"] if "/etc/conda" not in b]),
    lambda c: c["HostConfig"].update(Binds=[*c["HostConfig"]["Binds"], "other:/etc/conda:rw"]),
    lambda c: c["Config"].update(Env=[e for e in c["Config"]["Env"] if not e.startswith("PIP_CONFIG_FILE=")]),
    lambda c: c["Config"].update(Env=[*c["Config"]["Env"], "PIP_CONFIG_FILE=/home/jovyan/pip.conf"]),
    lambda c: c["Mounts"][1].update(RW=True),  # Binds say ro, the mount Docker made is writable
    lambda c: c["Mounts"][1].update(Name="someone-elses"),
])
def test_the_guard_on_a_read_only_root_is_its_volume_read_only_at_etc_conda_and_pip_config_file(change):
    p = ro_guard_plan()
    assert invariants.of_request(p.create_kwargs, p.expected) == []
    assert invariants.of_container(ro_recorded(p), p.expected) == []
    container = ro_recorded(p)
    change(container)
    assert "container.conda-policy" in {v.invariant for v in invariants.of_container(container, p.expected)}


def test_the_request_may_not_name_a_runtime_or_networks():
    p = plan()
    create = copy.deepcopy(p.create_kwargs)
    create["host_config"]["runtime"] = "nvidia"
    create["networking_config"] = {"EndpointsConfig": {"bridge": {}}}
    found = {v.invariant for v in invariants.of_request(create, p.expected)}
    assert {"container.runtime", "container.network"} <= found


def test_the_request_asks_for_a_private_cgroup_namespace():
    """Docker's default on a cgroup v1 host is the host's cgroup namespace: the request must not leave it to it."""
    p = plan()
    assert invariants.of_request(p.create_kwargs, p.expected) == []
    create = copy.deepcopy(p.create_kwargs)
    del create["host_config"]["cgroupns"]
    assert [v.invariant for v in invariants.of_request(create, p.expected)] == ["container.namespaces"]


def test_every_invariant_has_a_case():
    source = Path(invariants.__file__).read_text()
    named = {f"container.{node.args[0].value}" for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "bad"
             and isinstance(node.args[0], ast.Constant)}
    named |= {node.args[0].value for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Violation"
              and isinstance(node.args[0], ast.Constant)}
    assert named == set(CASES)


def _plan_with_log_config(log_config):
    spec = ContainerSpec(image="img:1", name="jupyter-alice", command=["jupyterhub-singleuser"],
                         environment={}, port=8888, extra_host_config={"log_config": log_config})
    limits = dataclasses.replace(LIMITS, gpus=())
    return plan_spawn(SpawnInputs(
        user="alice", server="", selection=Selection(Profile("cpu", "CPU", "", limits), None, "img:1"),
        image_info={"Id": IMAGE_ID, "Config": {"User": "1000:100"}}, create_image=IMAGE_ID, spec=spec,
        limits=limits, hardening=Hardening(), package_version="1", daemon=DAEMON))


def test_every_container_gets_a_bounded_log_by_default():
    p = plan()
    assert p.create_kwargs["host_config"]["log_config"] == {
        "Type": "json-file", "Config": {"max-size": str(10 * 1024**2), "max-file": "3"}}
    assert LIMITS.log_bound() == 30 * 1024**2


@pytest.mark.parametrize("log_config", [
    {"type": "json-file", "config": {}},                               # docker-py's LogConfig form, no bound
    {"Type": "json-file", "Config": {"max-file": "3"}},               # rotation without a size
    {"Type": "json-file", "Config": {"max-size": "1g", "max-file": "3"}},  # above the profile's bound
    {"Type": "json-file", "Config": {"max-size": "-1"}},
    {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "50"}},
    {"Type": "local", "Config": {"max-size": "10m"}},                  # local keeps 5 files unless told
    {"Type": "syslog", "Config": {}},
    {"Type": "", "Config": {}},                                        # the daemon's default
])
def test_an_admin_log_config_without_the_bound_is_refused(log_config):
    from hardened_spawner.decisions.plan import NotHardened
    with pytest.raises(NotHardened) as e:
        _plan_with_log_config(log_config)
    assert {v.invariant for v in e.value.violations} == {"container.log-bound"}


@pytest.mark.parametrize("log_config", [
    docker.types.LogConfig(type="local", config={"max-size": "5m", "max-file": "2"}),
    {"Type": "json-file", "Config": {"max-size": "10mb", "max-file": "3", "compress": "true"}},
    {"Type": "none"},
])
def test_an_admin_log_config_within_the_bound_is_kept(log_config):
    p = _plan_with_log_config(log_config)
    assert p.create_kwargs["host_config"]["log_config"] == log_config


def test_a_writable_layer_bound_that_docker_did_not_record_is_caught():
    bounded = dataclasses.replace(LIMITS, disk=2 * 1024**3)
    p = plan_spawn(SpawnInputs(
        user="alice", server="", selection=Selection(Profile("gpu", "GPU", "", bounded, gpus=1), None, "img:1"),
        image_info={"Id": IMAGE_ID, "Config": {"User": "1000:100"}}, create_image=IMAGE_ID,
        spec=ContainerSpec(image="img:1", name="jupyter-alice", command=["x"], environment={}, port=8888),
        limits=bounded, hardening=Hardening(), package_version="1",
        daemon=dataclasses.replace(DAEMON, storage_driver="btrfs"), network="hardened-spawner",
        gpu_env={"NVIDIA_VISIBLE_DEVICES": "1"}))
    assert p.create_kwargs["host_config"]["storage_opt"] == {"size": str(2 * 1024**3)}
    container = recorded(p)
    assert invariants.of_container(container, p.expected) == []
    for value in (None, {}, {"size": "20G"}, {"size": "lots"}):
        container["HostConfig"]["StorageOpt"] = value
        [v] = invariants.of_container(container, p.expected)
        assert v.invariant == "container.limits" and "writable layer is bounded at" in v.message, v
