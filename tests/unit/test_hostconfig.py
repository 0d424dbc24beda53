from hardened_spawner.decisions.container import (
    NO_NEW_PRIVILEGES, ContainerSpec, Hardening, build_create_kwargs, deep_merge, device_requests,
    policy_version,
)
from hardened_spawner.decisions.limits import Limits

LIMITS = Limits(memory=2 * 1024**3, cpus=1.5, pids=256, shm=128 * 1024**2)


def spec(**kw):
    base = dict(image="img:1", name="jupyter-alice", command=["jupyterhub-singleuser"],
                environment={"A": "1"}, port=8888)
    return ContainerSpec(**(base | kw))


def test_hardened_defaults():
    kw = build_create_kwargs(spec(), LIMITS, Hardening(), {"hardened-spawner.owner": "alice"})
    host = kw["host_config"]
    assert host["cap_drop"] == ["ALL"] and host["cap_add"] == []
    assert host["security_opt"][0] == NO_NEW_PRIVILEGES
    assert host["privileged"] is False
    assert host["mem_limit"] == host["memswap_limit"] == 2 * 1024**3
    assert (host["cpu_period"], host["cpu_quota"]) == (100_000, 150_000)  # as DockerSpawner writes cpu_limit
    assert host["pids_limit"] == 256 and host["shm_size"] == 128 * 1024**2
    assert host["read_only"] is False and "tmpfs" not in host
    assert host["network_mode"] == "bridge"
    assert kw["user"] == "1000:100"
    assert kw["labels"] == {"hardened-spawner.owner": "alice"}
    assert "device_requests" not in host


def test_admin_extras_merge_but_cannot_undo_hardening():
    s = spec(extra_host_config={"security_opt": ["apparmor=docker-default", "no-new-privileges:false"],
                                "dns": ["10.0.0.2"], "cap_drop": []},
             extra_create_kwargs={"labels": {"hardened-spawner.owner": "mallory", "team": "x"},
                                  "working_dir": "/home/jovyan"})
    kw = build_create_kwargs(s, LIMITS, Hardening(cap_add=("NET_BIND_SERVICE",)), {"hardened-spawner.owner": "alice"})
    host = kw["host_config"]
    assert host["cap_drop"] == ["ALL"] and host["cap_add"] == ["NET_BIND_SERVICE"]
    assert host["security_opt"] == [NO_NEW_PRIVILEGES, "apparmor=docker-default"]
    assert host["dns"] == ["10.0.0.2"]
    assert kw["labels"] == {"hardened-spawner.owner": "alice", "team": "x"}
    assert kw["working_dir"] == "/home/jovyan"


def test_read_only_root_gets_tmpfs():
    host = build_create_kwargs(spec(), LIMITS, Hardening(read_only_root=True), {})["host_config"]
    assert host["read_only"] is True
    assert host["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1g"}


def test_guarantees_and_published_port():
    limits = Limits(memory=2 * 1024**3, cpus=2, pids=256, shm=1, memory_guarantee=1024**3, cpu_guarantee=0.5)
    host = build_create_kwargs(spec(use_internal_ip=False), limits, Hardening(), {})["host_config"]
    assert host["mem_reservation"] == 1024**3 and host["cpu_shares"] == 512
    assert host["port_bindings"] == {8888: ("127.0.0.1",)}


def test_gpu_device_requests():
    assert device_requests((), Hardening()) == []
    assert device_requests(("1", "3"), Hardening()) == [
        {"driver": "nvidia", "device_ids": ["1", "3"], "capabilities": [["gpu"]]}]
    assert device_requests(("2",), Hardening(gpu_request_style="cdi")) == [
        {"driver": "cdi", "device_ids": ["nvidia.com/gpu=2"]}]


def test_policy_version_changes_with_policy():
    a = policy_version(spec(), LIMITS, Hardening(), "1")
    assert a == policy_version(spec(), LIMITS, Hardening(), "1")
    assert a != policy_version(spec(), LIMITS, Hardening(read_only_root=True), "1")
    assert a != policy_version(spec(image="img:2"), LIMITS, Hardening(), "1")
    assert a != policy_version(spec(), Limits(1024**3, 1, 64, 1), Hardening(), "1")
    # the per-start API token in the environment does not make every start look new
    assert a == policy_version(spec(environment={"JUPYTERHUB_API_TOKEN": "x"}), LIMITS, Hardening(), "1")


def test_deep_merge_copies():
    base = {"a": {"b": 1}, "l": [1]}
    out = deep_merge(base, {"a": {"c": 2}, "l": [2]})
    assert out == {"a": {"b": 1, "c": 2}, "l": [2]}
    assert base == {"a": {"b": 1}, "l": [1]}
