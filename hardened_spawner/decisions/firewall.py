"""The host firewall that keeps per-user networks apart when Docker's own rules are missing.

Docker 20.10 deletes and re-inserts its ``-j DOCKER-ISOLATION-STAGE-1`` jump in
``FORWARD`` at every network creation; while it is missing, its own
``-i br-A ! -o br-A -j ACCEPT`` lets one user's server reach another's
(docs/security.md, "Per-user networks under churn"). These rules live where Docker
never writes: a chain of the hub's own in the ``raw`` table, jumped to from
``raw PREROUTING`` (which every routed IPv4 packet, and with br_netfilter every
bridged one, passes before ``FORWARD``):

- traffic to an address outside ``network_pool`` is none of this chain's business;
- a packet the host sent itself (``lo``: to its own address on a per-user bridge) passes;
- a packet to a per-user network's subnet passes only when it entered on that network's
  own bridge (its servers, the hub's container joined to it, replies to the host);
- anything else addressed into the pool is dropped: another user's server, a container
  on any other bridge, a host routing into the pool.

Keyed on the destination, so a network made a moment ago is closed (even to itself)
until its rule is in, never open. Pure: the daemon's network list and the pool go in,
the ``iptables-restore`` input and findings come out.
"""

import ipaddress
from dataclasses import dataclass

CHAIN = "HS-ISOLATION"
JUMP = f"-j {CHAIN}"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


@dataclass(frozen=True)
class Ruleset:
    """``networks``: ``(bridge, subnet)`` pairs let in, sorted; ``findings``: networks left out, and why."""

    pool: str
    networks: tuple
    findings: tuple

    def rules(self):
        """The chain's rules in order (``iptables -A`` arguments)."""
        return ([f"-A {CHAIN} ! -d {self.pool} -j RETURN", f"-A {CHAIN} -i lo -j RETURN"]
                + [f"-A {CHAIN} -d {subnet} -i {bridge} -j RETURN" for bridge, subnet in self.networks]
                + [f"-A {CHAIN} -j DROP"])


def bridge_of(network):
    """The host interface of a bridge network (``inspect_network`` or ``networks()`` output)."""
    return (network.get("Options") or {}).get(BRIDGE_NAME_OPTION) or f"br-{network['Id'][:12]}"


def ruleset(networks, pool):
    """The rules for the daemon's ``networks`` (list output) and the per-user address ``pool``."""
    pool_net = ipaddress.ip_network(pool)
    allowed, findings = set(), []
    for network in networks:
        if network.get("Driver") != "bridge":
            continue
        for config in (network.get("IPAM") or {}).get("Config") or ():
            try:
                subnet = ipaddress.ip_network(config.get("Subnet") or "", strict=False)
            except ValueError:
                continue
            if subnet.version != 4 or not subnet.overlaps(pool_net):
                continue
            if subnet.subnet_of(pool_net):
                allowed.add((bridge_of(network), str(subnet)))
            else:
                findings.append(f"network {network.get('Name')!r} ({subnet}) is larger than network_pool {pool} "
                                "and overlaps it: addresses of the pool on it are unreachable; "
                                "move it out of the pool")
    return Ruleset(str(pool_net), tuple(sorted(allowed)), tuple(findings))


def restore_input(rules, chain_exists, jumped):
    """``iptables-restore --noflush`` input that makes the hub's chain exactly ``rules`` (a :class:`Ruleset`)
    in one transaction, or removes the chain and its jump when no per-user network is left (None).
    Declaring an existing chain flushes it; no other chain is touched. None: nothing to do."""
    lines = ["*raw"]
    if rules is None or not rules.networks:
        if not chain_exists:
            return None
        lines += ([f"-D PREROUTING {JUMP}"] if jumped else []) + [f"-F {CHAIN}", f"-X {CHAIN}"]
    else:
        lines += [f":{CHAIN} - [0:0]", *rules.rules()] + ([] if jumped else [f"-I PREROUTING 1 {JUMP}"])
    return "\n".join(lines + ["COMMIT", ""])
