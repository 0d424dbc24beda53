"""Logical SSH targets: a user reaches only their own servers, by name, never by address."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardened_spawner.keys.targets import TargetRefused, jump_host, parse_target, ssh_command
from hardened_spawner.ssh.hub import find_server, ssh_address


@pytest.mark.parametrize("dest, port, server", [
    ("ssh-alice", 22, ""), ("ssh-alice", 2222, ""), ("SSH-Alice", 22, ""),
    ("ssh-alice.gpu", 22, "gpu"), ("ssh-alice.my.server", 2222, "my.server"),
])
def test_own_servers(dest, port, server):
    assert parse_target("ssh-alice", dest, port) == server


@pytest.mark.parametrize("dest, port, reason", [
    ("ssh-bob", 22, "not one of your servers"),
    ("ssh-bob.gpu", 22, "not one of your servers"),
    ("ssh-alicex", 22, "not one of your servers"),
    ("ssh-alice.", 22, "not one of your servers"),
    ("172.17.0.3", 2222, "not one of your servers"),
    ("localhost", 22, "not one of your servers"),
    ("ssh-alice", 8888, "port 8888 is not SSH"),
])
def test_everything_else_is_refused(dest, port, reason):
    with pytest.raises(TargetRefused, match=reason):
        parse_target("ssh-alice", dest, port)


@given(st.text(min_size=1, max_size=20), st.text(max_size=30), st.sampled_from([22, 2222]))
def test_a_target_never_names_another_user(user, dest, port):
    try:
        server = parse_target(user, dest, port)
    except TargetRefused:
        return
    assert dest.lower() == user.lower() or dest.lower().startswith(user.lower() + ".")
    assert server == "" or dest.endswith(server)


def test_commands():
    assert ssh_command("alice", "", "hub.example.org", 8022, "jovyan") == "ssh -J alice@hub.example.org:8022 jovyan@alice"
    assert ssh_command("alice", "gpu", "hub.example.org", 22, "jovyan") == "ssh -J alice@hub.example.org jovyan@alice.gpu"
    assert jump_host("alice", "::1", 8022) == "alice@[::1]:8022"


def test_server_lookup_and_address():
    servers = {"": {"ready": True, "state": {"ssh_host": "172.17.0.5", "ssh_port": 2222}}, "GPU": {}}
    assert find_server(servers, "gpu") == ("GPU", {})
    assert find_server(servers, "none") == ("none", None)
    assert ssh_address(servers[""], "x") == ("172.17.0.5", 2222)
    with pytest.raises(TargetRefused, match="cannot take SSH keys"):
        ssh_address({"state": {}}, "alice's default server")
    with pytest.raises(TargetRefused, match="no valid SSH address"):
        ssh_address({"state": {"ssh_host": "evil.example.org"}}, "x")


def test_ssh_config_and_known_hosts_line_for_the_home_page():
    from hardened_spawner.keys.targets import known_hosts_ca_lines, known_hosts_line, ssh_config

    config = ssh_config("alice", "hub.example.org", 8022, "jovyan")
    assert "StrictHostKeyChecking no" not in config and "/dev/null" not in config
    assert config.count("StrictHostKeyChecking yes") == 2  # the gateway and every server
    assert known_hosts_ca_lines("Alice", ["ssh-ed25519 AAAAC3Nza ca@hub", "ssh-ed25519 BBBB"]) == [
        "@cert-authority alice,alice.* ssh-ed25519 AAAAC3Nza", "@cert-authority alice,alice.* ssh-ed25519 BBBB"]
    assert "Host jupyter-gateway\n    HostName hub.example.org\n    Port 8022\n    User alice\n" in config
    assert "Host alice alice.*\n    User jovyan\n    ProxyJump jupyter-gateway\n" in config
    assert known_hosts_line("hub.example.org", 8022, "ssh-ed25519 AAAAC3Nza x@y") == \
        "[hub.example.org]:8022 ssh-ed25519 AAAAC3Nza"
    assert known_hosts_line("hub.example.org", 22, "ssh-ed25519 AAAAC3Nza") == "hub.example.org ssh-ed25519 AAAAC3Nza"
