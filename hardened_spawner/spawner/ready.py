"""Wait for a started server's port before ``start()`` returns.

JupyterHub polls a server that ``start()`` handed back with exponential
back-off and jitter (``jupyterhub.utils.exponential_backoff``: sleeps drawn
from 0-0.2 s, 0-0.4 s, 0-0.8 s, 0-1.6 s ...), so a server that listens
0.8 s after its container starts is seen, on average, well after that. A
connect attempt every ``interval`` seconds from here finds it within one
interval; JupyterHub's first check, made at once, then succeeds.
"""

import asyncio
import time

CONNECT_TIMEOUT = 1.0


async def listening(host, port, seconds, poll, interval=0.05, check_every=1.0):
    """True once ``host:port`` accepts a TCP connection, within ``seconds``.

    False when ``seconds`` pass first, or when the spawner's ``poll()`` (awaited at most
    every ``check_every`` seconds) says the server is no longer running: JupyterHub's own
    wait and poll then report the failure as they would have."""
    deadline = time.monotonic() + seconds
    next_check = time.monotonic() + check_every
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            pass
        else:
            writer.close()
            return True
        if time.monotonic() >= next_check:
            if await poll() is not None:
                return False
            next_check = time.monotonic() + check_every
        await asyncio.sleep(interval)
    return False
