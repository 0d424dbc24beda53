"""The home page's list of a user's working SSH keys, read in the hub as a spawn reads them.

The same store (and, with keys from the identity provider, the same
auth_state), the same threads and timeout, the same policy as the user's
default spawner: what is listed is what their next start and the gateway
accept.
"""

import asyncio
from dataclasses import dataclass, field

from ..keys.entries import list_entries
from ..spawner import HardenedSpawner, clients


@dataclass
class WorkingKeys:
    keys: list = field(default_factory=list)  # usable KeyEntry
    problem: str = ""


async def working_keys(user):
    spawner = user.spawner
    if not isinstance(spawner, HardenedSpawner):
        return WorkingKeys()
    store = spawner.ssh_key_store()
    if not store.configured():
        return WorkingKeys(problem="SSH is not set up on this hub")
    store.use_auth_state(user.name, await user.get_auth_state())
    try:
        future = asyncio.get_running_loop().run_in_executor(clients.executor("keys"), store.fetch, user.name)
        text = await asyncio.wait_for(future, spawner.ssh_store_timeout)
    except asyncio.TimeoutError:
        return WorkingKeys(problem=f"the {store.describe()} did not answer in time")
    except Exception as e:  # any store failure: say so, the page still renders
        return WorkingKeys(problem=str(e))
    return WorkingKeys([e for e in list_entries(text or "", spawner.ssh_key_policy()) if e.usable])
