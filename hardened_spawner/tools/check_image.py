"""Admission outside the hub: the ``hardened-spawner check-image`` command.

Loads the hub's configuration, builds the same policy the hub's spawner
class builds and runs the same admission pipeline
(:class:`~..admission.service.AdmissionService`) on an image present on the
Docker daemon (``DOCKER_HOST``, or the spawner's ``client_kwargs``), so image
CI applies exactly the hub's rules. Without a configuration, the default
policy applies.
"""

import asyncio
import datetime
from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import DockerException, ImageNotFound

from ..admission import facts
from ..admission.service import AdmissionService
from ..decisions.reference import BadReference, parse
from ..spawner import configured_settings


class CheckError(Exception):
    """A usage or configuration problem (exit code 2), worded for the admin."""


def policy_from_config(config):
    """``(policy, settings)`` of the hub configuration ``config``; CheckError if the settings are invalid."""
    settings = configured_settings(config, "check-image")
    policy = settings.admission_policy()
    problems = settings.admission_problems(settings.setting_prefix) + settings.file_problems()
    if problems:
        raise CheckError("invalid admission settings:\n" + "\n".join(f"  {s}: {m}" for s, m in problems))
    return policy, settings


def check(image, config, today=None):
    """``(decision, image_info)`` for ``image`` under the policy in ``config``."""
    try:
        parse(image)
    except BadReference as e:
        raise CheckError(str(e)) from None
    policy, settings = policy_from_config(config)
    try:
        client = docker.APIClient(version="auto", **{**docker.utils.kwargs_from_env(), **settings.client_kwargs})
        info = client.inspect_image(image)
    except ImageNotFound:
        raise CheckError(f"image {image} is not on the Docker daemon: build or pull it first") from None
    except DockerException as e:
        raise CheckError(f"cannot reach the Docker daemon: {e}") from None

    async def decide():
        with ThreadPoolExecutor(facts.THREADS, thread_name_prefix="check-image") as pool:
            service = AdmissionService(policy, client, pool, read_layers=settings.admission_read_layers)
            return await service.decide(image, info, today or datetime.date.today())

    try:
        verdict = asyncio.run(decide())
    except (facts.FactsError, DockerException) as e:
        raise CheckError(f"cannot read image {image}: {e}") from None
    return verdict.decision, info
