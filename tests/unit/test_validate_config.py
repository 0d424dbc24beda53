import json
import textwrap

import pytest

from hardened_spawner.tools.cli import main
from hardened_spawner.config_check import enforce_config, load_config_file
from hardened_spawner.errors import UnsafeConfig

SAFE = """
c.JupyterHub.spawner_class = "hardened-docker"
c.HardenedDockerSpawner.image = "hardened-spawner/singleuser:local"
c.HardenedDockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan"}
"""


def write(tmp_path, body):
    path = tmp_path / "jupyterhub_config.py"
    path.write_text("c = get_config()\n" + textwrap.dedent(body))
    return str(path)


def test_safe_config_passes(tmp_path, capsys):
    assert main(["validate-config", "--config", write(tmp_path, SAFE)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("line, setting", [
    ("c.HardenedDockerSpawner.extra_host_config = {'privileged': True}", "extra_host_config['privileged']"),
    ("c.DockerSpawner.extra_host_config = {'network_mode': 'host'}", "extra_host_config['network_mode']"),
    ("c.HardenedDockerSpawner.volumes = {'/var/run/docker.sock': '/var/run/docker.sock'}", "HardenedDockerSpawner.volumes"),
    ("c.HardenedDockerSpawner.network_name = 'host'", "HardenedDockerSpawner.network_name"),
    ("c.HardenedDockerSpawner.run_as_uid = 0", "HardenedDockerSpawner.run_as_uid"),
    ("c.HardenedDockerSpawner.extra_create_kwargs = {'user': 'root'}", "extra_create_kwargs['user']"),
    ("c.HardenedDockerSpawner.pids_limit = -1", "HardenedDockerSpawner.pids_limit"),
    ("c.HardenedDockerSpawner.mem_limit = '900T'", "HardenedDockerSpawner.mem_limit"),
    ("c.HardenedDockerSpawner.cpu_limit = 5000.0", "HardenedDockerSpawner.cpu_limit"),
    ("c.HardenedDockerSpawner.image = 'Not A Valid/Ref'", "HardenedDockerSpawner.image"),
    ("c.HardenedDockerSpawner.allowed_images = {'x': 'bad::ref'}", "allowed_images['x']"),
    ("c.HardenedDockerSpawner.cap_add = ['SYS_ADMIN']", "HardenedDockerSpawner.cap_add"),
])
def test_unsafe_config_named(tmp_path, capsys, line, setting):
    path = write(tmp_path, SAFE + line + "\n")
    assert main(["validate-config", "--config", path, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]
    assert any(setting in p["setting"] for p in report["problems"]), report
    with pytest.raises(UnsafeConfig, match="refuses this configuration"):
        enforce_config(load_config_file(path))


@pytest.mark.parametrize("log_config, message", [
    ({"type": "json-file", "config": {"max-file": "3"}}, "its json-file log has max-size None, not a bound of at most 10 MiB"),
    ({"type": "syslog"}, "its log driver is 'syslog', not json-file or local"),
    ({"type": "local", "config": {"max-size": "10m"}}, "its local log keeps max-file '5', not at most 3 files"),
])
def test_an_admin_log_config_without_a_bound_is_refused(tmp_path, capsys, log_config, message):
    """Issue 25: extra_host_config applies to every spawn, so its log must fit every profile's bound."""
    path = write(tmp_path, SAFE + f"c.HardenedDockerSpawner.extra_host_config = {{'log_config': {log_config!r}}}\n")
    assert main(["validate-config", "--config", path, "--format", "json"]) == 1
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert problem["setting"] == "HardenedDockerSpawner.extra_host_config['log_config']", problem
    assert message in problem["message"] and "(profile 'default')" in problem["message"], problem


def test_an_admin_log_config_within_the_bound_passes(tmp_path, capsys):
    path = write(tmp_path, SAFE + "c.HardenedDockerSpawner.extra_host_config = "
                 "{'log_config': {'type': 'json-file', 'config': {'max-size': '5m', 'max-file': '2'}}}\n")
    assert main(["validate-config", "--config", path]) == 0, capsys.readouterr().out


def only_swarm_problem(tmp_path, capsys, body):
    """``body`` validates for Docker; the same settings for Swarm give one problem, returned."""
    assert main(["validate-config", "--config", write(tmp_path, body)]) == 0
    assert "ok" in capsys.readouterr().out
    swarm = body.replace("hardened-docker", "hardened-swarm").replace("HardenedDockerSpawner", "HardenedSwarmSpawner")
    assert main(["validate-config", "--config", write(tmp_path, swarm), "--format", "json"]) == 1
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    return problem


def test_a_disk_limit_is_refused_on_swarm_where_a_service_would_drop_it(tmp_path, capsys):
    problem = only_swarm_problem(tmp_path, capsys, SAFE + "c.HardenedDockerSpawner.disk_limit = '20G'\n")
    assert problem == {"setting": "HardenedSwarmSpawner.disk_limit", "message": (
        "profile 'default' has disk_limit 21474836480 bytes, but Swarm services cannot bound a container's "
        "writable layer; remove it")}, problem


def test_a_home_quota_is_refused_on_swarm_whose_nodes_do_not_have_the_hubs_loop_devices(tmp_path, capsys):
    problem = only_swarm_problem(tmp_path, capsys, SAFE + "c.HardenedDockerSpawner.home_quota = '10G'\n"
                                 "c.HardenedDockerSpawner.notebook_dir = '/home/jovyan'\n")
    assert problem["setting"] == "HardenedSwarmSpawner.home_quota", problem
    assert "profile 'default' has home_quota 10737418240 bytes" in problem["message"], problem


def test_a_home_quota_without_a_named_home_volume_is_refused_at_start(tmp_path, capsys):
    body = SAFE + "c.HardenedDockerSpawner.home_quota = '10G'\nc.HardenedDockerSpawner.volumes = {}\n"
    assert main(["validate-config", "--config", write(tmp_path, body), "--format", "json"]) == 1
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert problem["setting"] == "HardenedDockerSpawner.volumes", problem
    assert "home_quota needs a named volume in volumes mounted at notebook_dir" in problem["message"], problem


@pytest.mark.parametrize("size, message", [
    ("lots", "not a size"),
    ("0", "'0' is no bound (a tmpfs of size 0 may fill memory)"),
    ("3G", "'3G' is more than the mem_limit of profile 'default' (2 GiB), which the files in /tmp count against"),
])
def test_a_read_only_roots_tmpfs_is_bounded_within_the_memory_limit(tmp_path, capsys, size, message):
    body = SAFE + f"c.HardenedDockerSpawner.read_only_root = True\nc.HardenedDockerSpawner.tmpfs_size = {size!r}\n"
    assert main(["validate-config", "--config", write(tmp_path, body), "--format", "json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [p["setting"] for p in problems] == ["HardenedDockerSpawner.tmpfs_size"], problems
    assert message in problems[0]["message"], problems
    writable = body.replace("read_only_root = True", "read_only_root = False")
    assert main(["validate-config", "--config", write(tmp_path, writable)]) == 0


def test_the_default_tmpfs_fits_a_profile_below_it(tmp_path, capsys):
    """The read-only root is the default: a 512 MiB profile gets a /tmp of 512 MiB, not a refusal of the
    default tmpfs_size 1g; the same 1g set by the admin is still refused."""
    small = SAFE + ("c.HardenedDockerSpawner.profiles = [{'slug': 'small', 'display_name': 'Small', "
                    "'mem_limit': '512M', 'default': True}]\n")
    assert main(["validate-config", "--config", write(tmp_path, small)]) == 0
    capsys.readouterr()
    assert main(["validate-config", "--config", write(tmp_path, small + "c.HardenedDockerSpawner.tmpfs_size = '1g'\n"),
                 "--format", "json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [p["setting"] for p in problems] == ["HardenedDockerSpawner.tmpfs_size"], problems


def test_broken_config_file_is_a_usage_error(tmp_path, capsys):
    assert main(["validate-config", "--config", write(tmp_path, "c.x = (\n")]) == 2
    assert main(["validate-config", "--config", str(tmp_path / "missing.py")]) == 2
    assert main(["no-such-command"]) == 2


@pytest.mark.parametrize("line, found", [
    # keys the named checks allow, with values docker-py refuses: every spawn would fail
    ("c.HardenedDockerSpawner.extra_host_config = {'blkio_weight': 'heavy'}", "blkio_weight"),
    ("c.HardenedDockerSpawner.extra_host_config = {'tmpfs': 5}", "tmpfs"),
])
def test_a_request_no_spawn_could_build_is_found_before_the_hub_runs(tmp_path, capsys, line, found):
    """Each profile's create request is planned as a spawn plans it (decisions/samples.py)."""
    profiles = ("c.HardenedDockerSpawner.profiles = [{'slug': 'cpu', 'display_name': 'CPU', 'default': True},"
                " {'slug': 'gpu', 'display_name': 'GPU', 'gpus': 2}]\n")
    path = write(tmp_path, SAFE + profiles + line + "\n")
    assert main(["validate-config", "--config", path, "--format", "json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [p["setting"] for p in problems] == [f"HardenedDockerSpawner.profiles[{slug!r}] (its create request, planned)"
                                                for slug in ("cpu", "gpu")]
    assert all("[unbuildable]" in p["message"] and found in p["message"] for p in problems), problems


def test_profiles_with_gpus_and_a_read_only_root_plan_cleanly(tmp_path, capsys):
    """The sample plans carry a lease's placeholder GPUs and the keys volume: no false alarms."""
    body = SAFE + ("c.HardenedDockerSpawner.read_only_root = True\n"
                   "c.HardenedDockerSpawner.extra_create_kwargs = {'user': 'jovyan'}\n"
                   "c.HardenedDockerSpawner.profiles = [{'slug': 'cpu', 'display_name': 'CPU', 'default': True},"
                   " {'slug': 'gpu', 'display_name': 'GPU', 'gpus': 2}]\n")
    assert main(["validate-config", "--config", write(tmp_path, body)]) == 0, capsys.readouterr()
