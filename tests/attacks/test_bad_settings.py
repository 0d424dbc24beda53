"""An admin's mistake: settings that would open the container are refused before the hub starts.

Each case is a line of ``jupyterhub_config.py``; ``enforce_config`` (what
the hub runs at start) must refuse it, naming the setting. Hole 5 of the
review (a deny-list with gaps) is why extra_host_config and
extra_create_kwargs are allowlists now: a key nobody has looked at is refused.
One case also starts a real hub, to show the refusal is the hub's.
"""

import pytest
from traitlets.config import Config

from hardened_spawner.errors import UnsafeConfig
from hardened_spawner.tools.config_check import enforce_config

pytestmark = [pytest.mark.attack]  # no daemon, no hub: runs with -m "not docker"

H = "HardenedDockerSpawner"
CASES = [
    # hole 5: host-config keys that passed the old deny-list
    ({"extra_host_config": {"cgroup_parent": "/"}}, "extra_host_config['cgroup_parent']"),
    ({"extra_host_config": {"sysctls": {"net.ipv4.ip_forward": "1"}}}, "extra_host_config['sysctls']"),
    ({"extra_host_config": {"runtime": "runc"}}, "extra_host_config['runtime']"),
    ({"extra_host_config": {"oom_score_adj": -1000}}, "extra_host_config['oom_score_adj']"),
    ({"extra_host_config": {"group_add": ["0"]}}, "extra_host_config['group_add']"),
    ({"extra_host_config": {"group_add": ["docker"]}}, "extra_host_config['group_add']"),
    ({"extra_host_config": {"security_opt": ["label=type:spc_t"]}}, "extra_host_config['security_opt']"),
    ({"extra_host_config": {"security_opt": ["apparmor=my-loose-profile"]}}, "extra_host_config['security_opt']"),
    ({"extra_host_config": {"ulimits": [{"name": "nofile", "soft": 1 << 20, "hard": 1 << 20}]}},
     "extra_host_config['ulimits']"),
    ({"extra_host_config": {"publish_all_ports": True}}, "extra_host_config['publish_all_ports']"),
    ({"extra_host_config": {"port_bindings": {8888: ("0.0.0.0",)}}}, "extra_host_config['port_bindings']"),
    ({"extra_host_config": {"volume_driver": "local-persist"}}, "extra_host_config['volume_driver']"),
    ({"extra_host_config": {"some_future_key": 1}}, "extra_host_config['some_future_key']"),
    ({"extra_host_config": {"pid_mode": "host"}}, "extra_host_config['pid_mode']"),
    ({"extra_host_config": {"userns_mode": "host"}}, "extra_host_config['userns_mode']"),
    ({"extra_host_config": {"cgroupns": "host"}}, "extra_host_config['cgroupns']"),
    ({"extra_host_config": {"privileged": True}}, "extra_host_config['privileged']"),
    ({"extra_host_config": {"devices": ["/dev/mem:/dev/mem"]}}, "extra_host_config['devices']"),
    ({"extra_host_config": {"binds": ["/var/run/docker.sock:/docker.sock:ro"]}}, "extra_host_config['binds']"),
    ({"extra_host_config": {"binds": {"/srv/data": {"bind": "/data", "propagation": "rshared"}}}},
     "extra_host_config['binds']"),
    ({"extra_host_config": {"mounts": [{"type": "volume", "target": "/h", "source": "hostroot", "driver_config": {
        "name": "local", "options": {"type": "none", "o": "bind", "device": "/"}}}]}},
     "extra_host_config['mounts']"),
    # extra_create_kwargs: labels the hub trusts, keys that bypass the checks
    ({"extra_create_kwargs": {"labels": {"hardened-spawner.gpus": "0,1,2,3"}}}, "extra_create_kwargs['labels']"),
    ({"extra_create_kwargs": {"labels": {"hardened-spawner.owner": "alice"}}}, "extra_create_kwargs['labels']"),
    ({"extra_create_kwargs": {"image": "evil/image:1"}}, "extra_create_kwargs['image']"),
    ({"extra_create_kwargs": {"host_config": {"Privileged": True}}}, "extra_create_kwargs['host_config']"),
    ({"extra_create_kwargs": {"networking_config": {}}}, "extra_create_kwargs['networking_config']"),
    ({"extra_create_kwargs": {"user": "00"}}, "extra_create_kwargs['user']"),
    ({"extra_create_kwargs": {"user": "+0:0"}}, "extra_create_kwargs['user']"),
    ({"extra_create_kwargs": {"name": "jupyter-alice"}}, "extra_create_kwargs['name']"),
    # hole 4: read_only_volumes were never checked
    ({"read_only_volumes": {"/var/run/docker.sock": "/var/run/docker.sock"}}, f"{H}.read_only_volumes"),
    ({"read_only_volumes": {"/": "/host"}}, f"{H}.read_only_volumes"),
    ({"read_only_volumes": {"/run/containerd/containerd.sock": "/c.sock"}}, f"{H}.read_only_volumes"),
    ({"volumes": {"/etc/../etc/shadow": "/shadow"}}, f"{H}.volumes"),
    ({"mounts": [{"type": "bind", "source": "/proc", "target": "/p"}]}, f"{H}.mounts"),
    # issue 20, hole 2: parents of the daemon's socket and data root, shared roots, the socket's group
    ({"volumes": {"/var": "/mnt/scratch"}}, f"{H}.volumes"),
    ({"volumes": {"/var/lib": "/mnt/scratch"}}, f"{H}.volumes"),
    ({"volumes": {"/var/run": "/mnt/run"}}, f"{H}.volumes"),
    ({"volumes": {"/home": "/mnt/home"}}, f"{H}.volumes"),
    ({"volumes": {"/tmp": "/mnt/tmp"}}, f"{H}.volumes"),
    ({"read_only_volumes": {"/run": "/mnt/run"}}, f"{H}.read_only_volumes"),
    # issue 20, hole 3: admin extras that would undo the GPU lease or the isolated network
    ({"extra_create_kwargs": {"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}}}, "extra_create_kwargs"),
    ({"extra_create_kwargs": {"environment": ["NVIDIA_VISIBLE_DEVICES=all"]}}, "extra_create_kwargs"),
    ({"extra_create_kwargs": {"environment": {"CUDA_VISIBLE_DEVICES": "0,1"}}}, "extra_create_kwargs"),
    ({"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}}, f"{H}.environment"),
    ({"extra_host_config": {"network_mode": "bridge"}}, "extra_host_config['network_mode']"),
    # other settings
    ({"run_as_uid": 0}, f"{H}.run_as_uid"),
    ({"cap_add": ["SYS_ADMIN"]}, f"{H}.cap_add"),
    ({"cap_add": ["CAP_BPF"]}, f"{H}.cap_add"),
    ({"network_name": "host"}, f"{H}.network_name"),
    ({"pids_limit": 0}, f"{H}.pids_limit"),
    ({"mem_limit": "900T"}, f"{H}.mem_limit"),
    ({"ssh_min_rsa_bits": 1024}, f"{H}.ssh_min_rsa_bits"),
    ({"ssh_key_options": "restrict,agent-forwarding"}, f"{H}.ssh_key_options"),
    ({"admission_rule_modes": {"image.user-root": "maybe"}}, f"{H}.admission_rule_modes"),
    ({"admission_image_allowlist": ["EVERYTHING"]}, f"{H}.admission_image_allowlist"),
    ({"conda_denied_packages": ["numpy >>1"]}, f"{H}.conda_denied_packages"),
    ({"scan_deny_severity": "apocalyptic"}, f"{H}.scan_deny_severity"),
]


def config(settings):
    c = Config()
    for name, value in settings.items():
        setattr(c.HardenedDockerSpawner, name, value)
    return c


@pytest.mark.parametrize("settings, setting", CASES, ids=[s for _, s in CASES])
def test_unsafe_setting_refuses_the_hub_naming_it(settings, setting):
    with pytest.raises(UnsafeConfig) as refused:
        enforce_config(config(settings))
    named = [s for s, _ in refused.value.problems]
    assert any(setting in s for s in named), refused.value.problems


def test_what_the_allowlists_let_through_still_works():
    enforce_config(config({
        "extra_host_config": {"dns": ["10.0.0.2"], "init": True, "group_add": ["1001"], "cpuset_cpus": "0-3",
                              "security_opt": ["no-new-privileges"], "port_bindings": {8888: ("127.0.0.1",)}},
        "extra_create_kwargs": {"working_dir": "/home/jovyan", "labels": {"team": "ml"}, "user": "1000:100"},
        "read_only_volumes": {"/srv/datasets": "/datasets"},
    }))
