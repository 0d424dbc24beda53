"""Subnets for per-user networks: the first free block of the admin's pool (decisions/subnets.py)."""

import pytest

from hardened_spawner.decisions import subnets


def test_the_default_pool_holds_sixty_five_thousand_users():
    assert subnets.pool_size("10.128.0.0/12", 28) == 65536
    assert subnets.check("10.128.0.0/12", 28) is None


def test_the_first_block_no_network_overlaps_is_taken():
    used = ["172.17.0.0/16", "10.128.0.0/28", "10.128.0.32/28"]
    assert subnets.first_free("10.128.0.0/12", 28, used) == "10.128.0.16/28"
    # a wide network of someone else's inside the pool blocks every block it covers
    assert subnets.first_free("10.128.0.0/12", 28, ["10.128.0.0/24"]) == "10.128.1.0/28"


def test_a_pool_covered_by_another_network_is_exhausted():
    with pytest.raises(subnets.PoolExhausted, match="all 16 /28 networks of 10.128.0.0/24 are in use"):
        subnets.first_free("10.128.0.0/24", 28, ["10.0.0.0/8"])


@pytest.mark.parametrize("pool, prefix, problem", [
    ("nonsense", 28, "is not a network"),
    ("fd00::/64", 120, "is not an IPv4 network"),
    ("8.8.0.0/16", 28, "is not a private address range"),
    ("10.128.0.0/12", 30, "must be between"),
    ("10.128.0.0/12", 8, "must be between"),
])
def test_bad_pool_settings_are_named(pool, prefix, problem):
    assert problem in subnets.check(pool, prefix)


def test_a_per_user_network_request_is_a_bridge_or_an_attachable_swarm_overlay():
    labels = {"hardened-spawner.network": "per-user"}
    bridge = subnets.network_request("bridge", "10.128.0.0/28", labels)
    assert bridge == {"driver": "bridge", "check_duplicate": True, "labels": labels,
                      "ipam": {"Driver": "default", "Config": [{"Subnet": "10.128.0.0/28"}]}}
    overlay = subnets.network_request("overlay", "10.128.0.16/28", labels)
    assert overlay == {**bridge, "driver": "overlay", "attachable": True, "scope": "swarm",
                       "ipam": {"Driver": "default", "Config": [{"Subnet": "10.128.0.16/28"}]}}
    with pytest.raises(ValueError, match="not 'macvlan'"):
        subnets.network_request("macvlan", "10.128.0.0/28", labels)
