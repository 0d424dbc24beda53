"""Who may see and change whose keys: the scopes the hub puts on tokens, checked by the keys service."""

import pytest

from hardened_spawner.ssh.keys_access import MANAGE, READ, manages_everyone, may_manage, may_read

# what JupyterHub puts in a token's model: scopes already expanded (subscopes included)
ALICE = {f"{MANAGE}!user=alice", f"{READ}!user=alice", "read:users:name!user=alice",
         "access:services!service=ssh-keys"}
ADMIN = {"admin:users", "access:services!service=ssh-keys"}
GATEWAY = {READ, "read:servers", "admin:server_state"}
HELPDESK = {MANAGE, READ}
BOB_ADMIN = {"admin:users!user=bob"}


@pytest.mark.parametrize("scopes, user, read, manage", [
    (ALICE, "alice", True, True),
    (ALICE, "bob", False, False),
    (ALICE, "alice2", False, False),
    (ADMIN, "bob", True, True),
    (GATEWAY, "bob", True, False),
    (HELPDESK, "bob", True, True),
    (BOB_ADMIN, "bob", True, True),
    (BOB_ADMIN, "alice", False, False),
    (set(), "alice", False, False),
])
def test_rules(scopes, user, read, manage):
    assert may_read(scopes, user) is read
    assert may_manage(scopes, user) is manage


def test_who_manages_everyone():
    assert manages_everyone(ADMIN) and manages_everyone(HELPDESK)
    assert not manages_everyone(ALICE) and not manages_everyone(GATEWAY) and not manages_everyone(BOB_ADMIN)
