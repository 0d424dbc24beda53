"""``hardened-spawner firewall``: keep the per-user networks' host firewall current from outside the hub.

For a hub in a container (deploy/), which cannot write the host's iptables: run this on
the Docker host (or as a container with the host's network and NET_ADMIN). Once, or with
``--watch`` after every network created or removed (Docker 20.10's network events carry
no labels, so each create and destroy of a bridge triggers a full rewrite from the
daemon's network list) and every ``--resync`` seconds in any case. ``--clear`` removes
the hub's chain and its jump.
"""

import sys
import time

from ..decisions import subnets

EVENTS = {"create", "destroy"}


def _apply(client, pool):
    from ..spawner import firewall

    ruleset = firewall.apply(client, pool)
    for finding in ruleset.findings:
        print(f"firewall: {finding}", file=sys.stderr)
    print(f"firewall: {len(ruleset.networks)} per-user networks of {pool} let in, each from its own bridge",
          flush=True)


def command(args):
    import docker

    from ..spawner import firewall

    problem = subnets.check(args.pool, 29) or firewall.usable_problem()
    if problem:
        print(f"firewall: {problem}", file=sys.stderr)
        return 2
    try:
        if args.clear:
            print("firewall: chain removed" if firewall.clear() else "firewall: no chain to remove")
            return 0
        client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        since = time.time()
        _apply(client, args.pool)
    except docker.errors.DockerException as e:
        print(f"firewall: the Docker daemon cannot be reached (DOCKER_HOST): {e}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as e:
        print(f"firewall: {e}", file=sys.stderr)
        return 1
    while args.watch:  # events from where the last wait ended: none is missed between two waits
        until = since + args.resync
        for event in client.events(since=since, until=until, decode=True, filters={"type": "network"}):
            if event.get("Action") in EVENTS and ((event.get("Actor") or {}).get("Attributes") or {}).get(
                    "type") == "bridge":
                _watched(client, args.pool)
        since = until
        _watched(client, args.pool)  # the periodic full rewrite
    return 0


def _watched(client, pool):
    """An apply in the loop: a failure is said and retried at the next event or resync (until then a new
    network stays closed, an old one keeps its rule)."""
    try:
        _apply(client, pool)
    except (RuntimeError, OSError) as e:
        print(f"firewall: {e}", file=sys.stderr, flush=True)


def add_parser(sub):
    parser = sub.add_parser("firewall", help="write the per-user networks' host firewall (iptables raw table)")
    parser.add_argument("--pool", default="10.128.0.0/12", help="the hub's network_pool (default: its default)")
    parser.add_argument("--watch", action="store_true", help="keep it current after every network change")
    parser.add_argument("--resync", type=float, default=60.0, help="seconds between full rewrites with --watch")
    parser.add_argument("--clear", action="store_true", help="remove the hub's chain and its jump")
    parser.set_defaults(func=command)
