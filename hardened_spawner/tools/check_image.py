"""Admission outside the hub: the ``hardened-spawner check-image`` command.

Loads the hub's configuration, builds the same policy the spawner uses and
checks an image that is present on the Docker daemon (``DOCKER_HOST``, or the
spawner's ``client_kwargs``), so image CI applies exactly the hub's rules.
"""

import asyncio
import datetime
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import docker
from docker.errors import DockerException, ImageNotFound
from traitlets.config import Config

from ..admission import engine, evidence, facts, layers
from ..decisions.reference import BadReference, parse


class CheckError(Exception):
    """A usage or configuration problem (exit code 2), worded for the admin."""


def policy_from_config(config):
    from ..spawner import HardenedDockerSpawner

    spawner = HardenedDockerSpawner(config=Config(config), user=SimpleNamespace(name="check-image"))
    policy = spawner.admission_policy()
    problems = policy.problems(f"{type(spawner).__name__}.") + policy.file_problems(f"{type(spawner).__name__}.")
    if problems:
        raise CheckError("invalid admission settings:\n" + "\n".join(f"  {s}: {m}" for s, m in problems))
    return policy, spawner.client_kwargs, spawner.admission_read_layers


def check(image, config, today=None):
    """``(decision, image_info)`` for ``image`` under the policy in ``config``."""
    try:
        parse(image)
    except BadReference as e:
        raise CheckError(str(e)) from None
    policy, client_kwargs, read_layers = policy_from_config(config)
    try:
        client = docker.APIClient(version="auto", **{**docker.utils.kwargs_from_env(), **client_kwargs})
        info = client.inspect_image(image)
    except ImageNotFound:
        raise CheckError(f"image {image} is not on the Docker daemon: build or pull it first") from None
    except DockerException as e:
        raise CheckError(f"cannot reach the Docker daemon: {e}") from None
    plan = engine.plan_for(policy)
    with ThreadPoolExecutor(facts.THREADS, thread_name_prefix="check-image") as pool:
        async def read():
            loop = asyncio.get_running_loop()
            layer_dirs = layers.overlay_layers(info) if read_layers else None
            return await facts.read_facts(lambda fn, *a: loop.run_in_executor(pool, fn, client, *a), info["Id"], plan,
                                          layer_dirs)

        try:
            read_facts = asyncio.run(read())
        except (facts.FactsError, DockerException) as e:
            raise CheckError(f"cannot read image {image}: {e}") from None
    inputs = engine.prepare(read_facts, plan)
    context = engine.load_context(policy, engine.image_digests(info), evidence.load(policy, image, info))
    return engine.evaluate(policy, image, info, inputs, context, today or datetime.date.today()), info
