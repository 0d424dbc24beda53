"""Address space for per-user server networks: the first free subnet of a pool.

Docker's default address pools hold a few dozen bridge networks; a hub that
gives each user a network of their own needs thousands, so it picks each
network's subnet itself from a pool the admin sizes (by default
``10.128.0.0/12`` in ``/28`` blocks: 65,536 networks of 14 addresses, the
hub's peer container and up to 13 servers of one user). Pure: the subnets in
use are passed in.
"""

import ipaddress


class PoolExhausted(RuntimeError):
    """Every subnet of the pool is taken."""


def pool_size(pool, prefix):
    """How many networks of ``/prefix`` the pool holds."""
    net = ipaddress.ip_network(pool)
    return 1 << (prefix - net.prefixlen) if prefix >= net.prefixlen else 0


def check(pool, prefix):
    """The problem with a pool setting, in words, or None."""
    try:
        net = ipaddress.ip_network(pool)
    except ValueError as e:
        return f"network_pool {pool!r} is not a network ({e})"
    if net.version != 4:
        return f"network_pool {pool!r} is not an IPv4 network"
    if not net.is_private:
        return f"network_pool {pool!r} is not a private address range"
    if not net.prefixlen <= prefix <= 29:
        return f"network_prefix_length {prefix} must be between the pool's /{net.prefixlen} and /29"
    return None


def first_free(pool, prefix, used):
    """The first ``/prefix`` subnet of ``pool`` that overlaps none of ``used`` (subnet strings)."""
    net = ipaddress.ip_network(pool)
    shift = 32 - prefix
    base = int(net.network_address) >> shift
    blocked = set()
    for text in used:
        try:
            u = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if u.version != 4 or not u.overlaps(net):
            continue
        first = max(int(u.network_address), int(net.network_address)) >> shift
        last = min(int(u.broadcast_address), int(net.broadcast_address)) >> shift
        blocked.update(range(first - base, last - base + 1))
    for index in range(pool_size(pool, prefix)):
        if index not in blocked:
            return str(ipaddress.ip_network(((base + index) << shift, prefix)))
    raise PoolExhausted(f"all {pool_size(pool, prefix)} /{prefix} networks of {pool} are in use")


def network_request(driver, subnet, labels):
    """``create_network`` keyword arguments for a per-user (or probe) network of ``driver`` on ``subnet``.

    ``bridge``: a local bridge (HardenedDockerSpawner). ``overlay``: a swarm-scoped
    overlay (HardenedSwarmSpawner), *attachable*, so the hub's container (a standalone
    container on a manager, not a service) and the isolation probes can join it. VXLAN
    keeps overlays apart on every node: a task on another overlay has no route into it.
    """
    request = {"driver": driver, "check_duplicate": True, "labels": dict(labels),
               "ipam": {"Driver": "default", "Config": [{"Subnet": subnet}]}}
    if driver == "overlay":
        request.update(attachable=True, scope="swarm")
    elif driver != "bridge":
        raise ValueError(f"per-user networks are bridge or overlay networks, not {driver!r}")
    return request
