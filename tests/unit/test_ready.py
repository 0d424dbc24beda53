"""start() waits for the server's port (ready_wait) so JupyterHub's first check finds it answering."""

import asyncio
import socket

from hardened_spawner.spawner import ready


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def listen_later(port, delay, order):
    await asyncio.sleep(delay)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    order.append("listening")
    return server


async def running():
    return None  # the spawner's poll(): still running


async def test_a_port_that_opens_later_is_found():
    port, order = free_port(), []
    later = asyncio.ensure_future(listen_later(port, 0.3, order))
    assert await ready.listening("127.0.0.1", port, 10, running) is True
    order.append("found")
    (await later).close()
    assert order == ["listening", "found"]


async def test_a_port_that_never_opens_gives_up_after_the_wait():
    assert await ready.listening("127.0.0.1", free_port(), 0.3, running) is False


async def test_a_server_that_exited_ends_the_wait_early():
    polled = []

    async def exited():
        polled.append(1)
        return 1  # poll(): the container's exit status

    found = await asyncio.wait_for(ready.listening("127.0.0.1", free_port(), 60, exited, check_every=0.1), 10)
    assert found is False and polled


async def test_start_returns_once_the_server_listens(make, fake):
    fake.address = "127.0.0.1"
    port, order = free_port(), []
    spawner = make(ready_wait=10, port=port)
    later = asyncio.ensure_future(listen_later(port, 0.5, order))
    assert await spawner.start() == ("127.0.0.1", port)
    order.append("returned")
    (await later).close()
    assert order == ["listening", "returned"]
    assert "wait" in spawner._progress.timings  # timed in the spawn's audit line


async def test_with_ready_wait_0_start_returns_at_once(make, fake):
    fake.address = "127.0.0.1"
    port, order = free_port(), []
    spawner = make(ready_wait=0, port=port)
    later = asyncio.ensure_future(listen_later(port, 0.5, order))
    await spawner.start()
    order.append("returned")
    (await later).close()
    assert order == ["returned", "listening"]
