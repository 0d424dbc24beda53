"""The networks servers run on: users' servers never reach each other, the hub reaches all of them.

Two layouts (docs/deployment.md, docs/security.md):

- **shared** (the default, for a hub on the host): every server of a hub on one
  bridge (``network_name``, by default ``hardened-spawner``) created with
  inter-container communication off. The hub, its proxy and the SSH gateway
  reach each server from the host. A hub *in a container* cannot use it: a
  container on an ICC-off bridge reaches no other container on it, the hub's
  included.
- **per user** (``network_per_user = True``, what deploy/ runs): each user's
  servers on a bridge of their own, ``hardened-spawner-<user>``, whose subnet
  the hub takes from ``network_pool`` (Docker's default pools hold a few dozen
  networks, not thousands); the containers in ``network_peers`` (the hub's own
  container, which runs the proxy and the gateway) are joined to each, under
  the name ``network_peer_alias``. Docker keeps different bridges apart (its
  DOCKER-ISOLATION chains), so Bob's server cannot reach Alice's. On Swarm
  the same layout uses attachable overlays (VXLAN keeps them apart on every
  node), which the hub's container on a manager joins.

Docker enforces both with iptables; a daemon run with ``--iptables=false``
enforces neither and says nothing. So each hub process proves isolation
(:mod:`.isolation`) on every network before its first spawn there, and refuses
a network that does not keep its probes apart.
"""

import asyncio
import ipaddress
import re
import secrets
import time

from docker.errors import APIError, NotFound
from traitlets import Bool, Int, List, Unicode

from ..decisions import subnets
from ..decisions.container import LABEL_MANAGED, LABEL_OWNER, LABEL_PREFIX
from ..decisions.safety import ICC_OPTION, network_isolation_problem
from ..errors import SpawnRefused
from . import clients, firewall
from .isolation import PROBE_LABEL, IsolationProbe

LABEL_LAYOUT = LABEL_PREFIX + "network"   # "per-user" or "probe" on the networks this module makes
SHARED_DEFAULT = "hardened-spawner"


class NetworkSettings(firewall.FirewallSettings):
    """The settings of the server networks (HardenedDockerSpawner)."""

    network_per_user = Bool(
        False, config=True,
        help="""Give each user's servers a bridge network of their own (``hardened-spawner-<user>``) instead of
        one shared bridge with inter-container communication off.

        Use it when the hub runs in a container (deploy/): the containers in ``network_peers`` (the hub's,
        which runs the proxy and the SSH gateway) are joined to every user's network, and Docker keeps the
        networks apart, so users cannot reach each other's notebook servers or sshd. Leave ``network_name``
        unset: it is then the user's network. The network is removed when the user's last server stops.

        On Swarm (HardenedSwarmSpawner) the network is an attachable overlay: the hub must run in a container
        on a manager, listed in ``network_peers``, with ``use_internal_ip = True`` (published ports would let
        any container reach any server).""",
    )
    network_peers = List(
        Unicode(), config=True,
        help="""Containers (names or ids) joined to every per-user network: the hub's own container in a
        containerised deployment (``own_container_id()`` finds it). Empty: the hub runs on the host, which
        reaches every bridge without joining it.""",
    )
    network_peer_alias = Unicode(
        "hub", config=True,
        help="""The name under which the peers are reachable on each per-user network (servers reach the hub
        API at ``http://<alias>:8081``, the hub's ``hub_connect_url``).""",
    )
    network_pool = Unicode(
        "10.128.0.0/12", config=True,
        help="""The private IPv4 range per-user networks take their subnets from (one ``network_prefix_length``
        block each, the first free one). Choose a range no other network of the host or site uses.""",
    )
    network_prefix_length = Int(
        28, config=True,
        help="""The size of each per-user network: /28 holds 14 addresses (the peers and the user's servers);
        10.128.0.0/12 in /28 blocks holds 65,536 users.""",
    )
    isolation_probe = Bool(
        True, config=True,
        help="""Before the first spawn on a network, prove with two probe containers that it keeps containers
        apart (one listens, the hub reaches it, the other must not), and refuse the spawn when it does not:
        a daemon run with --iptables=false isolates nothing and says nothing. False: trust the network's
        settings.""",
    )


PREDEFINED_NETWORKS = ("bridge", "host", "none")  # Docker's own: `docker network rm` refuses them


def _remedy(name):
    if name in PREDEFINED_NETWORKS:
        return (f"{name!r} is Docker's own network, which cannot be isolated or removed: set network_name to a "
                "network the hub creates (the default, hardened-spawner), or set isolate_containers = False.")
    return (f"remove the network (docker network rm {name}) so the hub recreates it isolated, "
            "or set isolate_containers = False.")


def per_user_name(spawner):
    """The per-user network's name: ``hardened-spawner-<escaped user name>``."""
    return f"{SHARED_DEFAULT}-{spawner._escape(spawner.user.name).lower()}"


def default_network_name(spawner):
    """``network_name``'s default: the user's network with ``network_per_user``, else the shared one."""
    return per_user_name(spawner) if spawner.network_per_user else SHARED_DEFAULT


class ServerNetwork:
    """``io``: a :class:`~.clients.DockerIO`; ``flights``: a process-wide SingleFlight that serialises creation;
    ``audit``: the spawner's audit log; ``driver``: what per-user networks are (``bridge``, or ``overlay``
    on a swarm manager)."""

    def __init__(self, io, flights, audit, driver="bridge"):
        self.io = io
        self.flights = flights
        self.audit = audit
        self.driver = driver  # "overlay" on a swarm manager (HardenedSwarmSpawner)

    async def prepare(self, spawner, name, isolate, image_id):
        """Make sure network ``name`` (the create request's) exists and, when ``isolate``, that its peers are
        on it and it keeps containers apart; refuse otherwise."""
        if not isolate:  # the admin's network, as it is (created like the shared one if missing)
            (_, created), _ = await self.flights.get(("network", name), lambda: self._inspect_or_create(name))
            return
        if spawner.network_per_user:
            if name != per_user_name(spawner):
                raise SpawnRefused(
                    f"This hub gives each user a network (network_per_user), but network_name is set to {name!r}; "
                    "tell the hub admin to remove the network_name setting.", reason="unsafe-config")
            network = await self._per_user(spawner, name)
            layout = "per-user"
            if self.driver == "bridge":
                await firewall.sync_once(self.io, spawner, self.audit)
        else:
            network = await self._shared(name)
            layout = "shared"
        if spawner.isolation_probe and network["Id"] not in clients.verified_networks():
            problem, _ = await self.flights.get(
                ("proof", network["Id"]), lambda: self._prove(spawner, image_id, network, layout))
            if problem:
                if layout == "per-user":
                    await self._remove_if_idle(spawner, name)
                why = ("on Swarm the hub must run in a container on a manager, named in network_peers "
                       "(docs/swarm.md)" if self.driver == "overlay" else
                       "Docker enforces isolation with iptables, so a daemon run with --iptables=false "
                       "isolates nothing (docs/deployment.md)")
                raise SpawnRefused(
                    f"This hub's server network {name!r} does not keep containers apart: {problem}. No server "
                    f"was started. Tell the hub admin: {why}.", reason="network-not-isolated")

    async def _prove(self, spawner, image_id, network, layout):
        """Run the two probes (on a second, throw-away network made the same way for per-user networks)."""
        other = made = None
        if layout == "per-user":
            other = made = await self._per_user(spawner, f"{SHARED_DEFAULT}-probe-{secrets.token_hex(4)}", probe=True)
        try:
            problem = await IsolationProbe(self.io, spawner.log).run(image_id, network, other or network)
        finally:
            if made:
                try:
                    await self._remove(made)  # an overlay stays "in use" a moment after its probe went
                except APIError as e:
                    spawner.log.warning("probe network %s not removed: %s", made["Name"], e.explanation or e)
                else:
                    await self._firewall_after_removal(spawner, made["Name"])
        if problem:
            self.audit.write("network.not-isolated", network=network["Name"], problem=problem)
        else:
            clients.verified_networks().add(network["Id"])
            self.audit.write("network.isolated", network=network["Name"], layout=layout)
        return problem

    async def _shared(self, name):
        (network, created), _ = await self.flights.get(("network", name), lambda: self._inspect_or_create(name))
        if created:
            self.audit.write("network.created", network=name, isolated=True)
        problem = network_isolation_problem(network)
        if problem:
            raise SpawnRefused(f"This hub's container network is not isolated: {problem}. Tell the hub admin: "
                               f"{_remedy(name)}", reason="network-not-isolated")
        return network

    async def _inspect_or_create(self, name, **create):
        try:
            return await self.io("inspect_network", name), False
        except NotFound:
            pass
        create = create or {"options": {ICC_OPTION: "false"}, "labels": {LABEL_MANAGED: "true"}}
        try:
            await self.io("create_network", name, driver="bridge", check_duplicate=True, **create)
        except APIError as e:
            if e.status_code != 409:  # created meanwhile by another hub process
                raise
        return await self.io("inspect_network", name), True

    async def _per_user(self, spawner, name, probe=False):
        """The per-user (or probe) network ``name``, created with a subnet from the pool; peers joined."""
        problem = subnets.check(spawner.network_pool, spawner.network_prefix_length)
        if problem:
            raise SpawnRefused(f"This hub's network settings are wrong: {problem}. Tell the hub admin.",
                               reason="unsafe-config")
        network = await self.flights.get(("network", name), lambda: self._create_per_user(spawner, name, probe))
        network = network[0]
        labels = network.get("Labels") or {}
        if labels.get(LABEL_LAYOUT) not in ("per-user", "probe") or network.get("Driver") != self.driver:
            raise SpawnRefused(f"Network {name!r} exists but was not made by this hub for one user. Tell the hub "
                               f"admin: remove it (docker network rm {name}).", reason="network-not-isolated")
        if not probe:
            await self._join_peers(spawner, network)
        return network

    async def _create_per_user(self, spawner, name, probe):
        labels = {LABEL_MANAGED: "true", LABEL_LAYOUT: "probe" if probe else "per-user"}
        labels.update({PROBE_LABEL: "true"} if probe else {LABEL_OWNER: spawner.user.name})
        tried = []  # subnets this creation tried: each was held by one the daemon did not list yet
        taken = clients.taken_subnets()  # this process's creations in flight: concurrent spawns never race for one
        for _ in range(8):
            try:
                return await self.io("inspect_network", name)
            except NotFound:
                pass
            used = await self.io.run(lambda: used_subnets(self.io.client))
            try:
                subnet = subnets.first_free(spawner.network_pool, spawner.network_prefix_length,
                                            used + tried + sorted(taken))
            except subnets.PoolExhausted as e:
                raise SpawnRefused(f"No network can be made for this server: {e}. Tell the hub admin "
                                   "(network_pool).", reason="network-busy") from None
            tried.append(subnet)
            taken.add(subnet)
            try:
                await self.io("create_network", name, **subnets.network_request(self.driver, subnet, labels))
            except APIError as e:
                if e.status_code == 409 or "overlap" in str(e).lower():
                    continue
                raise
            finally:
                taken.discard(subnet)  # created (the daemon lists it now), or held by someone else, or failed
            self.audit.write("network.created", network=name, subnet=subnet, layout=labels[LABEL_LAYOUT])
            made = await self._inspect_made(name)
            if self.driver == "bridge":
                try:
                    await firewall.sync(self.io, spawner, self.audit, f"created {name}")
                except SpawnRefused:
                    await self._remove(made)
                    raise
            return made
        raise SpawnRefused(f"No free subnet could be taken for network {name!r}; try again.", reason="network-busy")

    async def _inspect_made(self, name, seconds=10.0):
        """A swarm manager lists a new overlay before it has filled in its driver: wait for it."""
        network = await self.io("inspect_network", name)
        deadline = time.monotonic() + seconds
        while not network.get("Driver") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            network = await self.io("inspect_network", name)
        return network

    async def _join_peers(self, spawner, network):
        for peer in spawner.network_peers:
            if not attached(network, peer):
                await join(self.io, peer, network["Name"], spawner.network_peer_alias)

    async def release(self, spawner):
        """After a server stops: remove the user's network when nothing but the peers is left on it."""
        if not (spawner.network_per_user and spawner.isolated_network()):
            return
        others = getattr(spawner.user, "spawners", None) or {}
        if any(s is not spawner and (s.active or s.pending == "spawn") for s in others.values()):
            return
        await self._remove_if_idle(spawner, spawner.network_name)

    async def _remove_if_idle(self, spawner, name):
        try:
            network = await self.io("inspect_network", name)
        except NotFound:
            return
        if (network.get("Labels") or {}).get(LABEL_LAYOUT) != "per-user":
            return
        on_it = {cid: c for cid, c in (network.get("Containers") or {}).items()
                 if not cid.startswith("lb-")}  # an overlay's load balancer on this node, no server
        peers = [cid for cid, c in on_it.items()
                 if any(cid.startswith(p) or c.get("Name") == p for p in spawner.network_peers)]
        if len(on_it) > len(peers) or await self._services_on(network):
            return  # a server of this user still runs on it
        try:
            for cid in peers:
                await self.io("disconnect_container_from_network", cid, name, force=True)
            await self._remove(network)
        except APIError as e:  # a new server took it meanwhile: it stays
            spawner.log.info("network %s kept: %s", name, e.explanation or e)
            return
        await self._firewall_after_removal(spawner, name)
        clients.verified_networks().discard(network["Id"])
        self.audit.write("network.removed", network=name)


    async def _services_on(self, network):
        """The swarm services whose tasks join ``network`` (an overlay's tasks run on any node, so the
        manager's view of the network's containers does not show them)."""
        if self.driver != "overlay":
            return []
        return [s["ID"] for s in await self.io("services")
                if any(n.get("Target") in (network["Id"], network["Name"])
                       for n in ((s.get("Spec") or {}).get("TaskTemplate") or {}).get("Networks") or ())]

    async def _firewall_after_removal(self, spawner, name):
        if self.driver == "bridge":
            await firewall.sync(self.io, spawner, self.audit, f"removed {name}", refuse=False)

    async def _remove(self, network, attempts=60):
        """Remove the network; an overlay stays "in use" for a few seconds after its last service went
        (its tasks' endpoints are released asynchronously), so that is retried."""
        tries = attempts if self.driver == "overlay" else 1
        for attempt in range(tries):
            try:
                return await self.io("remove_network", network["Id"])
            except NotFound:
                return None
            except APIError as e:
                if attempt == tries - 1 or "in use" not in str(e) and "active endpoints" not in str(e):
                    raise
                await asyncio.sleep(0.5)


async def join(io, container, network, alias):
    try:
        await io("connect_container_to_network", container, network, aliases=[alias])
    except APIError as e:
        if "already exists" not in str(e):
            raise SpawnRefused(f"The hub could not join network {network!r} ({e.explanation or e}); tell the hub "
                               "admin (network_peers).", reason="network-peer-failed") from None


def attached(network, container):
    """Whether ``container`` (a name, an id or an id prefix) is on ``network`` (inspect output)."""
    return any(cid.startswith(container) or c.get("Name") == container
               for cid, c in (network.get("Containers") or {}).items())


def used_subnets(client):
    """Every IPv4 subnet the daemon's networks use (docker-py ``APIClient``)."""
    found = []
    for net in client.networks():
        for config in (net.get("IPAM") or {}).get("Config") or ():
            if config.get("Subnet"):
                found.append(config["Subnet"])
    return found


def join_server_networks(client, container, alias="hub"):
    """Join ``container`` to every per-user network on the daemon (a hub container replaced by a new one
    must reach the servers that kept running); returns the names joined. For jupyterhub_config.py."""
    joined = []
    for net in client.networks(filters={"label": f"{LABEL_LAYOUT}=per-user"}):
        if attached(client.inspect_network(net["Id"]), container):
            continue
        try:
            client.connect_container_to_network(container, net["Id"], aliases=[alias])
        except APIError as e:
            if "already exists" not in str(e):
                raise
        joined.append(net["Name"])
    return joined


_CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")


def own_container_id(mountinfo="/proc/self/mountinfo"):
    """The id of the container this process runs in (Docker bind-mounts its hostname, hosts and
    resolv.conf from ``/var/lib/docker/containers/<id>/``), or None outside a container."""
    try:
        with open(mountinfo) as f:
            found = _CONTAINER_ID.search(f.read())
    except OSError:
        return None
    return found.group(1) if found else None


def bridge_gateway(client):
    """The host's address on Docker's default bridge (docker0), where containers reach the hub.

    ``client``: a docker-py ``APIClient``. A bridge still being set up has no ``Gateway`` in
    its IPAM configuration yet; Docker then gives it the subnet's first address."""
    config = client.inspect_network("bridge")["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
