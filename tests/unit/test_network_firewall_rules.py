"""The per-user networks' host firewall, as rules (decisions/firewall.py): the whole result asserted."""

from hardened_spawner.decisions.firewall import restore_input, ruleset

POOL = "10.128.0.0/12"


def net(name, ident, subnet, driver="bridge", options=None):
    return {"Name": name, "Id": ident, "Driver": driver, "Options": options or {},
            "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet}] if subnet else []}}


DAEMON = [
    net("bridge", "f" * 64, "172.17.0.0/16", options={"com.docker.network.bridge.name": "docker0"}),
    net("hardened-spawner-bob", "b" * 64, "10.128.0.16/28"),
    net("hardened-spawner-alice", "a" * 64, "10.128.0.0/28"),
    net("hardened-spawner-carol", "c" * 64, "10.128.0.32/28", options={"com.docker.network.bridge.name": "hs-carol"}),
    net("host", "d" * 64, None, driver="host"),
    net("hs-overlay", "e" * 64, "10.128.0.48/28", driver="overlay"),
    net("v6", "9" * 64, "fd00::/64"),
]


def test_each_pool_subnet_is_reachable_only_from_its_own_bridge():
    rules = ruleset(DAEMON, POOL)
    assert rules.networks == (("br-aaaaaaaaaaaa", "10.128.0.0/28"), ("br-bbbbbbbbbbbb", "10.128.0.16/28"),
                              ("hs-carol", "10.128.0.32/28"))
    assert rules.findings == ()
    assert rules.rules() == [
        "-A HS-ISOLATION ! -d 10.128.0.0/12 -j RETURN",
        "-A HS-ISOLATION -i lo -j RETURN",
        "-A HS-ISOLATION -d 10.128.0.0/28 -i br-aaaaaaaaaaaa -j RETURN",
        "-A HS-ISOLATION -d 10.128.0.16/28 -i br-bbbbbbbbbbbb -j RETURN",
        "-A HS-ISOLATION -d 10.128.0.32/28 -i hs-carol -j RETURN",
        "-A HS-ISOLATION -j DROP",
    ]


def test_a_network_larger_than_the_pool_is_named_and_left_closed():
    rules = ruleset([net("site", "5" * 64, "10.0.0.0/8"), net("hardened-spawner-alice", "a" * 64, "10.128.0.0/28")],
                    POOL)
    assert rules.networks == (("br-aaaaaaaaaaaa", "10.128.0.0/28"),)
    assert rules.findings == ("network 'site' (10.0.0.0/8) is larger than network_pool 10.128.0.0/12 and overlaps "
                              "it: addresses of the pool on it are unreachable; move it out of the pool",)


def test_the_chain_is_written_whole_in_one_transaction_and_jumped_to_once():
    rules = ruleset(DAEMON[:3], POOL)
    assert restore_input(rules, chain_exists=False, jumped=False) == (
        "*raw\n:HS-ISOLATION - [0:0]\n"
        "-A HS-ISOLATION ! -d 10.128.0.0/12 -j RETURN\n-A HS-ISOLATION -i lo -j RETURN\n"
        "-A HS-ISOLATION -d 10.128.0.0/28 -i br-aaaaaaaaaaaa -j RETURN\n"
        "-A HS-ISOLATION -d 10.128.0.16/28 -i br-bbbbbbbbbbbb -j RETURN\n"
        "-A HS-ISOLATION -j DROP\n-I PREROUTING 1 -j HS-ISOLATION\nCOMMIT\n")
    again = restore_input(rules, chain_exists=True, jumped=True)
    assert again == restore_input(rules, chain_exists=False, jumped=False).replace("-I PREROUTING 1 -j HS-ISOLATION\n", "")


def test_no_per_user_network_left_removes_the_chain_and_its_jump():
    empty = ruleset(DAEMON[:1], POOL)
    assert empty.networks == ()
    assert restore_input(empty, chain_exists=True, jumped=True) == (
        "*raw\n-D PREROUTING -j HS-ISOLATION\n-F HS-ISOLATION\n-X HS-ISOLATION\nCOMMIT\n")
    assert restore_input(empty, chain_exists=True, jumped=False) == "*raw\n-F HS-ISOLATION\n-X HS-ISOLATION\nCOMMIT\n"
    assert restore_input(empty, chain_exists=False, jumped=False) is None
