"""The plan of a spawn, built by the pure plan_spawn() from the minimum, and asserted whole.

In the style of kubespawner's tests/test_objects.py: an unexpected key, a
merge order that lets an admin extra undo a protection, or a field that
silently changes fails here. tests/unit/test_invariants.py checks each
invariant; tests/attacks/test_container_holes.py the same on the real daemon.
"""

import pytest

from hardened_spawner.decisions.container import ContainerSpec, Hardening, deep_merge, device_requests
from hardened_spawner.decisions.invariants import Daemon
from hardened_spawner.decisions.limits import Limits
from hardened_spawner.decisions.plan import NotHardened, SpawnInputs, plan_spawn
from hardened_spawner.errors import UnsafeConfig
from hardened_spawner.decisions.profiles import Profile, Selection

IMAGE_ID = "sha256:" + "ab" * 32
LIMITS = Limits(memory=2 * 1024**3, cpus=1.5, pids=256, shm=128 * 1024**2)
PASSWD = "root:x:0:0::/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"
PROFILE = Profile("small", "Small", "", LIMITS)


def inputs(spec=None, limits=LIMITS, user="1000:100", **kw):
    spec = spec or ContainerSpec(image="img:1", name="jupyter-alice", command=["jupyterhub-singleuser"],
                                 environment={"JUPYTERHUB_API_TOKEN": "tok"}, port=8888)
    base = dict(user="alice", server="", selection=Selection(PROFILE, None, "img:1"),
                image_info={"Id": IMAGE_ID, "Config": {"User": user}, "RepoDigests": []}, create_image=IMAGE_ID,
                spec=spec, limits=limits, hardening=Hardening(), package_version="1", network="hardened-spawner",
                gpu_env={"NVIDIA_VISIBLE_DEVICES": ",".join(limits.gpus) or "void"}, accounts=(PASSWD, ""))
    return SpawnInputs(**(base | kw))


HOME = {"volume_binds": {"jupyterhub-user-alice": {"bind": "/home/jovyan", "mode": "rw"}},
        "volume_mount_points": ["/home/jovyan"]}


def spec(**kw):
    base = dict(image="img:1", name="jupyter-alice", command=["jupyterhub-singleuser"],
                environment={"JUPYTERHUB_API_TOKEN": "tok"}, port=8888)
    return ContainerSpec(**(base | kw))


def test_the_whole_create_request_from_the_minimum():
    plan = plan_spawn(inputs())
    labels = plan.create_kwargs["labels"]
    assert labels.pop("hardened-spawner.policy-version") == plan.policy_version
    assert plan.create_kwargs == {
        "image": IMAGE_ID,
        "name": "jupyter-alice",
        "command": ["jupyterhub-singleuser"],
        "environment": {"JUPYTERHUB_API_TOKEN": "tok", "NVIDIA_VISIBLE_DEVICES": "void"},
        "volumes": [],
        "ports": {"8888/tcp": None},
        "user": "1000:100",
        "labels": {"hardened-spawner.managed": "true", "hardened-spawner.owner": "alice",
                   "hardened-spawner.server": "", "hardened-spawner.memory-limit": str(2 * 1024**3),
                   "hardened-spawner.profile": "small"},
        "host_config": {
            "auto_remove": True, "binds": {}, "links": {}, "mounts": [], "network_mode": "hardened-spawner",
            "privileged": False, "cgroupns": "private", "cap_drop": ["ALL"], "cap_add": [],
            "security_opt": ["no-new-privileges:true"], "mem_limit": 2 * 1024**3, "memswap_limit": 2 * 1024**3, "cpu_period": 100_000, "cpu_quota": 150_000,
            "pids_limit": 256, "shm_size": 128 * 1024**2, "read_only": False,
            "log_config": {"Type": "json-file", "Config": {"max-size": "10485760", "max-file": "3"}},
        },
    }
    assert (plan.user, plan.user_replaced, plan.login) == ("1000:100", False, "jovyan")
    assert (plan.keys, plan.keys_mount, plan.guard_files, plan.gpus) == (None, None, {}, ())
    assert (plan.network, plan.image_id, plan.digest, plan.profile) == ("hardened-spawner", IMAGE_ID, IMAGE_ID, PROFILE)
    assert plan.facts == {"image": "img:1", "digest": IMAGE_ID, "image_id": IMAGE_ID, "container_user": "1000:100",
                          "limits": LIMITS.as_audit(), "policy_version": plan.policy_version, "profile": "small",
                          "sbom": ""}


def test_a_root_image_runs_as_the_configured_uid_and_the_login_is_the_images_account_for_it():
    plan = plan_spawn(inputs(user="root", hardening=Hardening(run_as_uid=1000, run_as_gid=100)))
    assert (plan.create_kwargs["user"], plan.user_replaced, plan.login) == ("1000:100", True, "jovyan")
    plan = plan_spawn(inputs(user="4242:100"))
    assert (plan.user, plan.login) == ("4242:100", None)  # no account for uid 4242: no SSH login


def test_keys_and_policy_files_ride_on_the_plan():
    plan = plan_spawn(inputs(keys="restrict ssh-ed25519 AAAA\n", guard_files={"etc/conda/.condarc": "x"}))
    assert (plan.keys, plan.guard_files) == ("restrict ssh-ed25519 AAAA\n", {"etc/conda/.condarc": "x"})
    ro = plan_spawn(inputs(spec=spec(**HOME), keys="", hardening=Hardening(read_only_root=True),
                           keys_mount=("jupyter-alice-ssh-keys", "/etc/ssh/authorized_keys")))
    host = ro.create_kwargs["host_config"]
    assert host["binds"] == {**HOME["volume_binds"],
                             "jupyter-alice-ssh-keys": {"bind": "/etc/ssh/authorized_keys", "mode": "ro"}}
    assert host["read_only"] is True and host["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1g"}
    assert ro.create_kwargs["volumes"] == ["/home/jovyan", "/etc/ssh/authorized_keys"]


def test_the_default_tmpfs_is_at_most_the_profiles_memory_limit():
    small = Limits(memory=512 * 1024**2, cpus=1, pids=256, shm=1)
    plan = plan_spawn(inputs(spec=spec(**HOME), limits=small, hardening=Hardening(read_only_root=True)))
    assert plan.create_kwargs["host_config"]["tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={512 * 1024**2}"}
    big = plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True)))  # 2 GiB: the 1g stays
    assert big.create_kwargs["host_config"]["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1g"}


GUARD = {"etc/conda/.condarc": "rc", "etc/pip.conf": "pip", "opt/conda/pip.conf": "pip"}


def test_a_read_only_roots_guard_files_go_in_a_read_only_volume_at_etc_conda():
    ro = plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True), guard_files=GUARD,
                           policy_volume="jupyter-alice-conda-policy"))
    assert ro.guard_files == {} and ro.policy_files == {".condarc": "rc", "pip.conf": "pip"}
    assert ro.policy_mount == ("jupyter-alice-conda-policy", "/etc/conda")
    host = ro.create_kwargs["host_config"]
    assert host["binds"]["jupyter-alice-conda-policy"] == {"bind": "/etc/conda", "mode": "ro"}
    assert ro.create_kwargs["environment"]["PIP_CONFIG_FILE"] == "/etc/conda/pip.conf"
    assert (ro.expected.policy_volume, ro.expected.pip_config) == ("jupyter-alice-conda-policy", True)
    only_rc = plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True),
                                guard_files={"etc/conda/.condarc": "rc"}, policy_volume="v"))
    assert only_rc.policy_files == {".condarc": "rc"} and "PIP_CONFIG_FILE" not in only_rc.create_kwargs["environment"]
    # a writable root: into the container as before, no volume, no PIP_CONFIG_FILE
    rw = plan_spawn(inputs(guard_files=GUARD, policy_volume="jupyter-alice-conda-policy"))
    assert (rw.guard_files, rw.policy_mount, rw.policy_files) == (GUARD, None, {})
    assert "PIP_CONFIG_FILE" not in rw.create_kwargs["environment"] and not rw.expected.policy_volume
    # an admin's PIP_CONFIG_FILE cannot point pip elsewhere: the hub's value is set after the merge
    admin = spec(**HOME, extra_create_kwargs={"environment": {"PIP_CONFIG_FILE": "/home/jovyan/pip.conf"}})
    ro = plan_spawn(inputs(spec=admin, hardening=Hardening(read_only_root=True), guard_files=GUARD,
                           policy_volume="v"))
    assert ro.create_kwargs["environment"]["PIP_CONFIG_FILE"] == "/etc/conda/pip.conf"


@pytest.mark.parametrize("settings, home, fine", [
    ({}, "/home/jovyan", False),  # no volume at all
    (HOME, "/home/jovyan", True),
    ({"volume_binds": {"data": {"bind": "/home/jovyan", "mode": "ro"}}}, "/home/jovyan", False),
    ({"volume_binds": {"homes": {"bind": "/home", "mode": "rw"}}}, "/home/jovyan", True),  # a parent is fine
    ({"volume_binds": {"work": {"bind": "/home/jovyan/work", "mode": "rw"}}}, "/home/jovyan", False),
    ({"extra_host_config": {"tmpfs": {"/home/jovyan": "size=64m"}}}, "/home/jovyan", True),
    ({"mounts": [{"Target": "/home/jovyan", "Source": "h", "Type": "volume", "ReadOnly": False}]}, "/home/jovyan",
     True),
    ({"extra_create_kwargs": {"environment": {"HOME": "/tmp/home"}}}, "/tmp/home", True),  # HOME wins: on /tmp
])
def test_a_read_only_root_needs_the_users_home_on_a_writable_mount(settings, home, fine):
    def plan():
        return plan_spawn(inputs(spec=spec(**settings), hardening=Hardening(read_only_root=True)))

    if fine:
        assert plan().create_kwargs["host_config"]["read_only"] is True
        return
    with pytest.raises(UnsafeConfig) as refused:
        plan()
    [(setting, message)] = refused.value.problems
    assert setting == "read_only_root"
    assert message.startswith(f"the image img:1 runs its notebook user with home directory {home}, which is not "
                              "on a writable mount"), message
    assert f"Mount the home volume at {home}" in message and "read_only_root = False" in message
    writable = plan_spawn(inputs(spec=spec(**settings)))  # the same on a writable root: no finding
    assert writable.create_kwargs["host_config"]["read_only"] is False


def test_the_home_is_the_images_passwd_entry_for_the_uid_else_root():
    moved = "jovyan:x:1000:100::/srv/jovyan:/bin/bash\n"
    with pytest.raises(UnsafeConfig, match="home directory /srv/jovyan, which"):
        plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True), accounts=(moved, "")))
    with pytest.raises(UnsafeConfig, match="home directory /, which"):  # no passwd entry: Docker's HOME is /
        plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True), user="4242:100"))
    # the image's ENV HOME is what the server gets (Docker reads passwd only without one): it decides
    info = {"Id": IMAGE_ID, "Config": {"User": "1000:100", "Env": ["PATH=/bin", "HOME=/home/jovyan"]}}
    plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True), accounts=(moved, ""),
                      image_info=info))
    info["Config"]["Env"] = ["HOME=/srv/jovyan"]
    with pytest.raises(UnsafeConfig, match="home directory /srv/jovyan, which"):
        plan_spawn(inputs(spec=spec(**HOME), hardening=Hardening(read_only_root=True), image_info=info))
    sample = plan_spawn(inputs(hardening=Hardening(read_only_root=True), home_check=False))  # validate-config's
    assert sample.create_kwargs["host_config"]["read_only"] is True


def test_a_gpu_lease_is_exactly_its_devices_and_its_environment():
    limits = Limits(memory=2 * 1024**3, cpus=1, pids=256, shm=1, gpus=("1", "3"))
    plan = plan_spawn(inputs(limits=limits))
    assert plan.create_kwargs["host_config"]["device_requests"] == [
        {"driver": "nvidia", "device_ids": ["1", "3"], "capabilities": [["gpu"]]}]
    assert plan.create_kwargs["environment"]["NVIDIA_VISIBLE_DEVICES"] == "1,3"
    assert plan.create_kwargs["labels"]["hardened-spawner.gpus"] == "1,3" and plan.gpus == ("1", "3")
    cdi = plan_spawn(inputs(limits=limits, hardening=Hardening(gpu_request_style="cdi")))
    assert cdi.create_kwargs["host_config"]["device_requests"] == [
        {"driver": "cdi", "device_ids": ["nvidia.com/gpu=1", "nvidia.com/gpu=3"]}]


@pytest.mark.parametrize("extra", [
    {"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}},
    {"environment": ["NVIDIA_VISIBLE_DEVICES=all", "A=1"]},  # a list used to replace the whole environment
    {"environment": ["A=1"]},
])
def test_admin_extras_cannot_undo_the_lease_in_any_form(extra):
    env = plan_spawn(inputs(spec=spec(extra_create_kwargs=extra))).create_kwargs["environment"]
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["JUPYTERHUB_API_TOKEN"] == "tok"


def test_admin_extras_merge_but_cannot_undo_hardening():
    s = spec(extra_host_config={"security_opt": ["apparmor=docker-default", "no-new-privileges:false"],
                                "dns": ["10.0.0.2"], "cap_drop": [], "network_mode": "bridge", "privileged": True},
             extra_create_kwargs={"labels": {"hardened-spawner.owner": "mallory", "team": "x"},
                                  "working_dir": "/home/jovyan"})
    kw = plan_spawn(inputs(spec=s, hardening=Hardening(cap_add=("NET_BIND_SERVICE",)))).create_kwargs
    host = kw["host_config"]
    assert host["cap_drop"] == ["ALL"] and host["cap_add"] == ["NET_BIND_SERVICE"] and host["privileged"] is False
    assert host["security_opt"] == ["no-new-privileges:true", "apparmor=docker-default"]
    assert host["dns"] == ["10.0.0.2"] and host["network_mode"] == "hardened-spawner"  # the isolated network wins
    assert kw["labels"]["hardened-spawner.owner"] == "alice" and kw["labels"]["team"] == "x"
    assert kw["working_dir"] == "/home/jovyan"


def test_without_isolation_the_admins_network_mode_stands():
    plan = plan_spawn(inputs(spec=spec(extra_host_config={"network_mode": "none"}), network=None))
    assert plan.create_kwargs["host_config"]["network_mode"] == "none"


@pytest.mark.parametrize("extra_host_config, invariant", [
    ({"binds": {"/var": {"bind": "/mnt/var", "mode": "ro"}}}, "container.mounts"),
    ({"binds": {"/srv/hub": {"bind": "/x", "mode": "rw"}}}, "container.mounts"),  # holds the daemon's socket
    ({"mounts": [{"type": "bind", "source": "/srv/docker-data/volumes", "target": "/v"}]}, "container.mounts"),
    ({"group_add": ["998"]}, "container.groups"),  # the socket's group
    ({"security_opt": ["seccomp=unconfined"]}, "container.security-opt"),
    ({"pid_mode": "host"}, "container.namespaces"),
])
def test_the_final_request_is_checked_against_the_daemon_facts(extra_host_config, invariant):
    daemon = Daemon(root_dir="/srv/docker-data", socket="/srv/hub/docker.sock", socket_gid=998)
    with pytest.raises(NotHardened) as refused:
        plan_spawn(inputs(spec=spec(extra_host_config=extra_host_config), daemon=daemon))
    assert invariant in {v.invariant for v in refused.value.violations}


def test_policy_version_follows_the_policy_not_the_token():
    a = plan_spawn(inputs()).policy_version
    assert a == plan_spawn(inputs(spec=spec(environment={"JUPYTERHUB_API_TOKEN": "other"}))).policy_version
    assert a != plan_spawn(inputs(hardening=Hardening(read_only_root=True), home_check=False)).policy_version
    assert a != plan_spawn(inputs(create_image="sha256:" + "cd" * 32,
                                  image_info={"Id": "sha256:" + "cd" * 32, "Config": {}})).policy_version
    assert a != plan_spawn(inputs(limits=Limits(1024**3, 1, 64, 1))).policy_version


def test_guarantees_and_published_port():
    limits = Limits(memory=2 * 1024**3, cpus=2, pids=256, shm=1, memory_guarantee=1024**3, cpu_guarantee=0.5)
    host = plan_spawn(inputs(spec=spec(use_internal_ip=False), limits=limits)).create_kwargs["host_config"]
    assert host["mem_reservation"] == 1024**3 and host["cpu_shares"] == 512
    assert host["port_bindings"] == {8888: ("127.0.0.1",)}


def test_device_requests_and_deep_merge():
    assert device_requests((), Hardening()) == []
    base = {"a": {"b": 1}, "l": [1]}
    assert deep_merge(base, {"a": {"c": 2}, "l": [2]}) == {"a": {"b": 1, "c": 2}, "l": [2]}
    assert base == {"a": {"b": 1}, "l": [1]}


def test_a_disk_limit_becomes_storage_opt_on_a_driver_that_enforces_it():
    limits = Limits(memory=2 * 1024**3, cpus=1.5, pids=256, shm=128 * 1024**2, disk=5 * 1024**3)
    plan = plan_spawn(inputs(limits=limits, daemon=Daemon(storage_driver="btrfs")))
    assert plan.create_kwargs["host_config"]["storage_opt"] == {"size": str(5 * 1024**3)}
    assert "storage_opt" not in plan_spawn(inputs()).create_kwargs["host_config"]  # no disk_limit: no bound asked


def test_a_disk_limit_the_daemon_cannot_enforce_refuses_before_anything_is_created():
    limits = Limits(memory=2 * 1024**3, cpus=1.5, pids=256, shm=128 * 1024**2, disk=5 * 1024**3)
    with pytest.raises(UnsafeConfig) as e:
        plan_spawn(inputs(limits=limits, daemon=Daemon(storage_driver="overlay2", backing_fs="extfs")))
    [(setting, message)] = e.value.problems
    assert setting == "disk_limit of profile 'small'"
    assert message.startswith("the Docker daemon's storage driver 'overlay2' on extfs cannot bound")
