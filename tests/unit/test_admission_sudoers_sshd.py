"""sudoers grants and sshd settings, as the image checks read them."""

import pytest
from hypothesis import given, strategies as st

from hardened_spawner.admission import sshd, sudoers


def grants(text, path="/etc/sudoers.d/x"):
    return [(g.who, g.command, g.nopasswd, sudoers.dangerous(g.command) is not None)
            for g in sudoers.grants({path: text})]


def test_the_miniconda_recipe_rule_is_root():
    assert grants("devuser ALL=(ALL) NOPASSWD: /opt/conda/bin/*\n") == [("devuser", "/opt/conda/bin/*", True, True)]


@pytest.mark.parametrize("command", ["/usr/bin/python3.11 -c x", "/bin/bash", "/opt/conda/bin/pip", "/usr/bin/apt-get",
                                     "/usr/bin/vim", "ALL", "/usr/bin/env", "/opt/conda/bin/conda install *"])
def test_interpreters_shells_package_managers_are_dangerous(command):
    assert sudoers.dangerous(command)


@pytest.mark.parametrize("command", ["/usr/bin/id", "/usr/sbin/service ssh restart", "sudoedit /etc/motd"])
def test_narrow_commands_are_not(command):
    assert sudoers.dangerous(command) is None


def test_tags_carry_over_and_passwd_resets():
    text = "alice ALL = (root) NOPASSWD: /usr/bin/id, /usr/bin/who, PASSWD: /usr/bin/ls\n"
    assert [g[2] for g in grants(text)] == [True, True, False]


def test_aliases_continuations_comments_and_includes():
    text = ("# Cmnd_Alias in a comment: alice ALL=ALL\n"
            "Cmnd_Alias PKG = /usr/bin/apt-get, \\\n    /usr/bin/dpkg\n"
            "#includedir /etc/sudoers.d\n@includedir /etc/sudoers.d\n"
            "alice, bob ALL = NOPASSWD: PKG  # trailing comment\n")
    assert grants(text) == [("alice, bob", "/usr/bin/apt-get", True, True), ("alice, bob", "/usr/bin/dpkg", True, True)]
    assert sudoers.principals("alice, %wheel, !bob") == ["alice", "%wheel", "bob"]


def test_defaults_not_authenticate_makes_grants_passwordless():
    assert grants("Defaults !authenticate\ncarol ALL=/usr/bin/id\n") == [("carol", "/usr/bin/id", True, False)]
    scoped = grants("Defaults:dave !authenticate\ncarol ALL=/usr/bin/id\ndave ALL=/usr/bin/id\n")
    assert [g[2] for g in scoped] == [False, True]


def test_multiple_host_specs():
    text = "ops web = /usr/bin/systemctl restart nginx : db = NOPASSWD: /usr/bin/psql\n"
    assert grants(text) == [("ops", "/usr/bin/systemctl restart nginx", False, True), ("ops", "/usr/bin/psql", True, False)]


@given(st.text())
def test_sudoers_parser_never_crashes(text):
    for grant in sudoers.grants({"/etc/sudoers": text}):
        sudoers.dangerous(grant.command)


def files(main, **dropins):
    out = {"/etc/ssh/sshd_config": main.encode()}
    out.update({f"/etc/ssh/sshd_config.d/{k}.conf": v.encode() for k, v in dropins.items()})
    return out


def test_openssh_defaults_allow_root_keys_and_passwords():
    root, password = sshd.evaluate("/etc/ssh/sshd_config", files("Port 2222\n"))
    assert root == ["PermitRootLogin is prohibit-password by default (not set)"]
    assert password == ["PasswordAuthentication yes by default (not set)"]


def test_hardened_config_passes():
    text = "PermitRootLogin no\nAuthenticationMethods publickey\nUsePAM no\n"
    assert sshd.evaluate("/etc/ssh/sshd_config", files(text)) == ([], [])


def test_first_value_wins_and_includes_expand_in_place():
    main = "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nPasswordAuthentication yes\n"
    assert sshd.evaluate("/etc/ssh/sshd_config", files(main, a="PermitRootLogin no\nPasswordAuthentication no\n"
                                                             "KbdInteractiveAuthentication no\n")) == ([], [])
    late = "PermitRootLogin no\nPasswordAuthentication=no\nKbdInteractiveAuthentication no\nInclude sshd_config.d/*.conf\n"
    assert sshd.evaluate("/etc/ssh/sshd_config", files(late, a="PermitRootLogin yes\n")) == ([], [])


def test_match_blocks_count():
    main = "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nMatch User admin\n  PasswordAuthentication yes\n"
    root, password = sshd.evaluate("/etc/ssh/sshd_config", files(main))
    assert root == [] and password == ["PasswordAuthentication yes in 'Match User admin' at /etc/ssh/sshd_config:5"]


def test_keyboard_interactive_needs_pam():
    base = "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication yes\n"
    assert sshd.evaluate("/etc/ssh/sshd_config", files(base + "UsePAM no\n"))[1] == []
    assert sshd.evaluate("/etc/ssh/sshd_config", files(base + "UsePAM yes\n"))[1]


def test_no_config_no_finding():
    assert sshd.evaluate("/etc/ssh/sshd_config", {}) == ([], [])


@given(st.sampled_from(["yes", "no", "prohibit-password", "forced-commands-only"]),
       st.sampled_from(["yes", "no", "prohibit-password"]))
def test_first_permitrootlogin_wins(first, second):
    root, _ = sshd.evaluate("/etc/ssh/sshd_config", files(f"PermitRootLogin {first}\nPermitRootLogin {second}\n"))
    assert bool(root) == (first != "no")


@given(st.text())
def test_sshd_parser_never_crashes(text):
    sshd.evaluate("/etc/ssh/sshd_config", {"/etc/ssh/sshd_config": text.encode("utf-8", "surrogatepass")})
