"""The network servers run on: a bridge on which containers cannot reach each other.

Every server of a hub shares one Docker network (``network_name``, by
default ``hardened-spawner``), created on first use with inter-container
communication off. The hub, its proxy and the SSH gateway reach each server
from the host; one user's container cannot open a connection to another's
notebook server or sshd, so the proxy's and the gateway's checks cannot be
walked around. Docker enforces this with iptables (its default); a daemon
run with ``--iptables=false`` does not.
"""

import ipaddress

from docker.errors import APIError, NotFound

from ..decisions.container import LABEL_MANAGED
from ..decisions.safety import ICC_OPTION, network_isolation_problem
from ..errors import SpawnRefused


PREDEFINED_NETWORKS = ("bridge", "host", "none")  # Docker's own: `docker network rm` refuses them


def _remedy(name):
    if name in PREDEFINED_NETWORKS:
        return (f"{name!r} is Docker's own network, which cannot be isolated or removed: set network_name to a "
                "network the hub creates (the default, hardened-spawner), or set isolate_containers = False.")
    return (f"remove the network (docker network rm {name}) so the hub recreates it isolated, "
            "or set isolate_containers = False.")


class ServerNetwork:
    """``io``: a :class:`~.clients.DockerIO`; ``flights``: a process-wide SingleFlight that serialises creation."""

    def __init__(self, io, flights):
        self.io = io
        self.flights = flights

    async def ensure(self, name, isolate):
        """Make sure network ``name`` exists (creating it isolated); refuse one that lets containers meet.

        Returns True when this call created it.
        """
        (network, created), _ = await self.flights.get(("network", name), lambda: self._inspect_or_create(name))
        problem = network_isolation_problem(network) if isolate else None
        if problem:
            raise SpawnRefused(f"This hub's container network is not isolated: {problem}. Tell the hub admin: "
                               f"{_remedy(name)}", reason="network-not-isolated")
        return created

    async def _inspect_or_create(self, name):
        try:
            return await self.io("inspect_network", name), False
        except NotFound:
            pass
        try:
            await self.io("create_network", name, driver="bridge", options={ICC_OPTION: "false"},
                          labels={LABEL_MANAGED: "true"}, check_duplicate=True)
        except APIError as e:
            if e.status_code != 409:  # created meanwhile by another hub process
                raise
        return await self.io("inspect_network", name), True


def bridge_gateway(client):
    """The host's address on Docker's default bridge (docker0), where containers reach the hub.

    ``client``: a docker-py ``APIClient``. A bridge still being set up has no ``Gateway`` in
    its IPAM configuration yet; Docker then gives it the subnet's first address."""
    config = client.inspect_network("bridge")["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
