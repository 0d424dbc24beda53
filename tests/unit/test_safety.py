import pytest

from hardened_spawner.decisions import host_paths, safety


@pytest.mark.parametrize("path", [
    "/", "/etc", "/etc/", "/etc/passwd", "/proc", "/sys/fs", "/dev", "/boot", "/usr", "/usr/lib",
    "/lib", "/var/run", "/var/run/docker.sock", "/run/docker.sock", "/srv/docker.sock",
    "/home/x/containerd.sock", "/var/lib/docker/volumes", "/root", "//etc", "/srv/../etc",
])
def test_sensitive_host_paths_refused(path):
    assert host_paths.host_path_problem(path) is not None


@pytest.mark.parametrize("path", ["/srv/data", "/home/shared", "/data/etc", "/mnt/usr", "jupyterhub-user-{username}", "volname"])
def test_ordinary_paths_and_named_volumes_allowed(path):
    assert host_paths.host_path_problem(path) is None


def test_extra_forbidden_paths_add_to_the_list():
    assert host_paths.host_path_problem("/srv/secrets/x", extra_forbidden=("/srv/secrets",))
    assert host_paths.host_path_problem("/srv/secretsx") is None


def test_mount_forms_are_all_checked():
    assert host_paths.check_mounts("v", volumes={"/var/run/docker.sock": "/var/run/docker.sock"})
    assert host_paths.check_mounts("b", binds=["/etc:/host-etc:ro"])
    assert host_paths.check_mounts("b", binds={"/proc": {"bind": "/p"}})
    assert host_paths.check_mounts("m", mounts=[{"type": "bind", "source": "/sys", "target": "/s"}])
    assert host_paths.check_mounts("m", mounts=[{"Type": "bind", "Source": "/dev", "Target": "/d"}])
    assert not host_paths.check_mounts("m", mounts=[{"type": "volume", "source": "home", "target": "/h"}])


@pytest.mark.parametrize("config, key", [
    ({"privileged": True}, "privileged"),
    ({"network_mode": "host"}, "network_mode"),
    ({"pid_mode": "host"}, "pid_mode"),
    ({"ipc_mode": "host"}, "ipc_mode"),
    ({"uts_mode": "host"}, "uts_mode"),
    ({"userns_mode": "host"}, "userns_mode"),
    ({"network_mode": "container:other"}, "network_mode"),
    ({"devices": ["/dev/sda:/dev/sda"]}, "devices"),
    ({"security_opt": ["seccomp=unconfined"]}, "security_opt"),
    ({"security_opt": ["seccomp:unconfined"]}, "security_opt"),
    ({"security_opt": ["apparmor=unconfined"]}, "security_opt"),
    ({"security_opt": ["no-new-privileges:false"]}, "security_opt"),
    ({"security_opt": ["seccomp=/tmp/custom.json"]}, "security_opt"),
    ({"mem_limit": "100g"}, "mem_limit"),
    ({"pids_limit": -1}, "pids_limit"),
    ({"cap_add": ["SYS_ADMIN"]}, "cap_add"),
    ({"binds": ["/var/run/docker.sock:/var/run/docker.sock"]}, "binds"),
    ({"device_requests": [{"count": -1}]}, "device_requests"),
])
def test_unsafe_host_config_names_the_key(config, key):
    problems = safety.check_host_config("DockerSpawner.extra_host_config", config)
    assert problems, config
    assert any(key in setting for setting, _ in problems)


def test_safe_host_config_passes():
    assert safety.check_host_config("x", {
        "privileged": False, "network_mode": "bridge", "ipc_mode": "private",
        "security_opt": ["apparmor=docker-default"], "binds": {"/srv/data": {"bind": "/data", "mode": "ro"}},
        "init": True, "dns": ["10.0.0.2"],
    }) == []


def test_capabilities():
    assert safety.check_capabilities("c", ["NET_BIND_SERVICE", "CAP_CHOWN"]) == []
    assert safety.check_capabilities("c", ["sys_admin"])
    assert safety.check_capabilities("c", ["ALL"])
    assert "unknown" in safety.check_capabilities("c", ["FLY"])[0][1]


def test_create_kwargs_root_user_and_host_config_refused():
    assert safety.check_create_kwargs("e", {"user": "root"})
    assert safety.check_create_kwargs("e", {"user": "0:0"})
    assert safety.check_create_kwargs("e", {"host_config": {"Privileged": True}})
    assert safety.check_create_kwargs("e", {"user": "1000", "working_dir": "/home/jovyan"}) == []


def test_network_and_uid():
    assert safety.check_network("n", "host")
    assert safety.check_network("n", "bridge") == []
    assert safety.check_uid("u", 0)
    assert safety.check_uid("u", True)
    assert safety.check_uid("u", 1000) == []
