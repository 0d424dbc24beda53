"""Apply the per-user networks' host firewall (:mod:`..decisions.firewall`) with iptables.

Run where the bridges are: by the hub when it runs on the Docker host as root
(``network_firewall = "iptables-raw"``), right after it makes a user's network and
before anything starts on it, and after it removes one; or by
``hardened-spawner firewall --watch`` (a small service with the host's network and
NET_ADMIN) when the hub runs in a container. Each run reads every network of the
daemon and rewrites the hub's chain whole, in one ``iptables-restore --noflush``
transaction, so it is idempotent and the last run always wins with the current state.
"""

import asyncio
import os
import shutil
import subprocess

from traitlets import Enum, HasTraits

from ..decisions import firewall
from ..errors import SpawnRefused

IPTABLES = "iptables"
_LOCK = []  # one asyncio.Lock per process: two syncs never interleave their read and write
_SYNCED = []  # this process wrote the chain once (its first spawn: the rules may predate it, or be gone)


class FirewallSettings(HasTraits):
    """The firewall's setting (a base of the spawners' network settings)."""

    network_firewall = Enum(
        ["iptables-raw"], None, allow_none=True, config=True,
        help="""With ``network_per_user``, also keep users' networks apart with rules of the hub's own, which
        Docker never rewrites: ``"iptables-raw"`` keeps the chain ``HS-ISOLATION`` in iptables' ``raw``
        table, where a packet addressed into ``network_pool`` passes only if it entered on that subnet's
        own bridge. Docker 20.10 removes its isolation jump for a moment each time it makes a network, and
        in those moments one user's server reaches another's (docs/security.md). The hub rewrites the
        chain right after it makes a user's network (before anything starts on it) and after it removes
        one; it must then run as root on the Docker host, and refuses to start when it cannot use
        iptables. None (the default, since a hub in a container cannot do it): run ``hardened-spawner
        firewall --watch`` on the Docker host instead (docs/deployment.md), or accept the hole.""",
    )

    def file_problems(self):
        """Start-up problems of the settings above (run in the hub process: it is the one that uses iptables)."""
        problems = super().file_problems()
        if self.network_firewall is None:
            return problems
        cls = type(self).__name__
        if not self.network_per_user or self.isolated_network() is None or "Swarm" in cls:
            return problems + [(f"{cls}.network_firewall", "the firewall keeps per-user bridge networks apart: "
                                "set network_per_user = True (Swarm overlays are not bridges), or unset it")]
        problem = usable_problem()
        return problems + ([(f"{cls}.network_firewall", f"{problem}; or unset it and run "
                             "'hardened-spawner firewall --watch' on the host")] if problem else [])


def _run(*args, stdin=None):
    return subprocess.run([*args], input=stdin, capture_output=True, text=True, timeout=30)


def usable_problem():
    """Why this process cannot manage the host's iptables, in words (None: it can)."""
    if not shutil.which(f"{IPTABLES}-restore"):
        return f"{IPTABLES}-restore is not installed (Debian: apt-get install iptables)"
    try:
        done = _run(IPTABLES, "-w", "-t", "raw", "-S", "PREROUTING")
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{IPTABLES} could not be run ({e})"
    if done.returncode:
        return (f"'{IPTABLES} -t raw -S PREROUTING' failed ({done.stderr.strip() or done.returncode}): the hub "
                "must run as root (CAP_NET_ADMIN) in the Docker host's network namespace")
    return None


def state():
    """``(chain_exists, jumped)``: whether the hub's chain exists and PREROUTING jumps to it."""
    exists = _run(IPTABLES, "-w", "-t", "raw", "-S", firewall.CHAIN).returncode == 0
    jumped = exists and _run(IPTABLES, "-w", "-t", "raw", "-C", "PREROUTING", "-j", firewall.CHAIN).returncode == 0
    return exists, jumped


def apply(client, pool):
    """Make the chain match the daemon's networks now (docker-py ``APIClient``); returns the Ruleset.
    Raises RuntimeError with iptables' answer when the rules could not be written."""
    rules = firewall.ruleset(client.networks(), pool)
    missing = [bridge for bridge, _ in rules.networks if not os.path.exists(f"/sys/class/net/{bridge}")]
    if missing:
        raise RuntimeError(f"bridge {missing[0]} is not in this process's network namespace, so its rules "
                           "would filter nothing: run the hub (or the firewall service) in the host's network")
    text = firewall.restore_input(rules, *state())
    if text is not None:
        done = _run(f"{IPTABLES}-restore", "-w", "--noflush", stdin=text)
        if done.returncode:
            raise RuntimeError(f"{IPTABLES}-restore refused the rules: {done.stderr.strip()}")
    return rules


def clear():
    """Remove the hub's chain and its jump (nothing else); False when there was none."""
    text = firewall.restore_input(None, *state())
    if text is None:
        return False
    done = _run(f"{IPTABLES}-restore", "-w", "--noflush", stdin=text)
    if done.returncode:
        raise RuntimeError(f"{IPTABLES}-restore refused to remove the chain: {done.stderr.strip()}")
    return True


async def sync(io, spawner, audit, cause, refuse=True):
    """In the hub: apply, serialised within the process. ``cause``: the network event that asked for it
    (for the audit record). When it fails the spawn is refused (``refuse``), or, after a removal, a warning
    is logged: the rule left for a removed bridge lets nothing in."""
    if spawner.network_firewall is None:
        return
    if not _LOCK:
        _LOCK.append(asyncio.Lock())
    async with _LOCK[0]:
        try:
            rules = await io.run(apply, io.client, spawner.network_pool)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            audit.write("network.firewall", cause=cause, problem=str(e))
            if not refuse:
                spawner.log.warning("network firewall not updated after %s: %s", cause, e)
                return
            raise SpawnRefused(f"The hub could not update the firewall that keeps users' networks apart: {e}. "
                               "No server was started. Tell the hub admin (network_firewall).",
                               reason="network-not-isolated") from None
    audit.write("network.firewall", cause=cause, networks=len(rules.networks), findings=list(rules.findings))
    _SYNCED.append(True)


async def sync_once(io, spawner, audit):
    """The first per-user spawn of this hub process: write the chain from what the daemon has now (a host
    rebooted since, networks removed while no hub ran); later ones are kept current by each creation."""
    if spawner.network_firewall is not None and not _SYNCED:
        await sync(io, spawner, audit, "hub start")
