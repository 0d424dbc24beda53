from hardened_spawner.decisions.container import ContainerSpec, Hardening, build_create_kwargs
from hardened_spawner.decisions.limits import Limits
from hardened_spawner.decisions.swarm_service import NNP_ENGINE_LABEL, SwarmOptions, service_kwargs, unsupported

LIMITS = Limits(memory=2 * 1024**3, cpus=1.5, pids=256, shm=128 * 1024**2, memory_guarantee=1024**3)


def create(**hardening):
    spec = ContainerSpec(image="img@sha256:" + "a" * 64, name="jupyter-alice", command=["jupyterhub-singleuser"],
                         environment={"A": "1"}, port=8888,
                         volume_binds={"jupyterhub-user-alice": {"bind": "/home/jovyan", "mode": "rw"},
                                       "/srv/data": {"bind": "/data", "mode": "ro"}})
    return build_create_kwargs(spec, LIMITS, Hardening(**hardening), {"hardened-spawner.owner": "alice"}, "1000:100")


def test_service_carries_the_hardening():
    kw = service_kwargs(create(cap_add=("NET_BIND_SERVICE",)), SwarmOptions(name="jupyter-alice", cpu_guarantee=0.5))
    task = kw["task_template"]
    container = task["ContainerSpec"]
    assert container["CapabilityDrop"] == ["ALL"] and container["CapabilityAdd"] == ["NET_BIND_SERVICE"]
    assert container["User"] == "1000:100"
    assert container["Args"] == ["jupyterhub-singleuser"]
    assert "A=1" in container["Env"]
    assert container["Labels"] == {"hardened-spawner.owner": "alice"}
    assert container["ReadOnly"] is False
    mounts = {m["Target"]: m for m in container["Mounts"]}
    assert mounts["/home/jovyan"]["Type"] == "volume" and mounts["/home/jovyan"]["Source"] == "jupyterhub-user-alice"
    assert mounts["/data"]["Type"] == "bind" and mounts["/data"]["ReadOnly"] is True
    assert mounts["/dev/shm"]["Type"] == "tmpfs" and mounts["/dev/shm"]["TmpfsOptions"]["SizeBytes"] == 128 * 1024**2
    assert task["Resources"]["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2 * 1024**3, "Pids": 256}
    assert task["Resources"]["Reservations"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 1024**3}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert f"engine.labels.{NNP_ENGINE_LABEL} == true" in task["Placement"]["Constraints"]
    assert kw["endpoint_spec"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 8888, "PublishMode": "host"}]
    assert kw["name"] == "jupyter-alice" and kw["labels"] == {"hardened-spawner.owner": "alice"}


def test_read_only_root_gets_tmp_as_tmpfs():
    container = service_kwargs(create(read_only_root=True), SwarmOptions(name="x"))["task_template"]["ContainerSpec"]
    assert container["ReadOnly"] is True
    tmp = next(m for m in container["Mounts"] if m["Target"] == "/tmp")
    assert tmp["Type"] == "tmpfs" and tmp["TmpfsOptions"]["SizeBytes"] == 1024**3


def test_gpus_are_a_generic_resource_reservation_and_constraints_add_up():
    kw = service_kwargs(create(), SwarmOptions(name="x", gpus=2, constraints=("node.labels.gpu == true",),
                                               require_no_new_privileges=False))
    task = kw["task_template"]
    assert task["Resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}]
    assert task["Placement"]["Constraints"] == ["node.labels.gpu == true"]
    assert "device_requests" not in str(kw)


def test_ssh_secret_and_port():
    secret = {"SecretID": "s1", "SecretName": "n", "File": {"Name": "/etc/ssh/authorized_keys/jovyan",
                                                            "UID": "0", "GID": "0", "Mode": 0o644}}
    kw = service_kwargs(create(), SwarmOptions(name="x", ssh_port=2222, secrets=(secret,)))
    assert kw["task_template"]["ContainerSpec"]["Secrets"] == [secret]
    assert [p["TargetPort"] for p in kw["endpoint_spec"]["Ports"]] == [8888, 2222]
    internal = service_kwargs(create(), SwarmOptions(name="x", publish_port=False, network="jupyterhub"))
    assert internal["endpoint_spec"] is None
    assert internal["task_template"]["Networks"] == [{"Target": "jupyterhub"}]


def test_unsupported_settings_are_named():
    host = create()["host_config"]
    keys = dict(unsupported(host))
    assert "no-new-privileges is daemon-wide" in keys["security_opt"]
    assert "swap" in keys["memswap_limit"]
    assert dict(unsupported({**host, "dns": ["10.0.0.2"]}))["dns"] == "not supported by Swarm services; ignored"


def test_service_carries_the_bounded_log_and_a_service_without_it_is_caught():
    import copy

    from hardened_spawner.decisions import invariants
    from hardened_spawner.decisions.swarm_service import recorded_problems

    kw = service_kwargs(create(log_driver="local"), SwarmOptions(name="x"))
    task = kw["task_template"]
    assert task["LogDriver"] == {"Name": "local", "Options": {"max-size": "10485760", "max-file": "3"}}
    expected = invariants.Expected(image="img@sha256:" + "a" * 64, user="1000:100", limits=LIMITS)
    service = {"Spec": {"TaskTemplate": copy.deepcopy(dict(task))}}
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = expected.image
    assert "container.log-bound" not in {v.invariant for v in recorded_problems(service, expected)}
    del service["Spec"]["TaskTemplate"]["LogDriver"]  # a service without it logs as the node's daemon says
    assert "container.log-bound" in {v.invariant for v in recorded_problems(service, expected)}
