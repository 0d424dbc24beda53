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


def with_service(image, config, use):
    """``(policy, image_info, await use(service, image_info))``: the admission service on ``image``."""
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

    async def run():
        with ThreadPoolExecutor(facts.THREADS, thread_name_prefix="hardened-spawner-cli") as pool:
            return await use(AdmissionService(policy, client, pool, read_layers=settings.admission_read_layers), info)

    try:
        return policy, info, asyncio.run(run())
    except (facts.FactsError, DockerException) as e:
        raise CheckError(f"cannot read image {image}: {e}") from None


def check(image, config, today=None):
    """``(decision, image_info)`` for ``image`` under the policy in ``config``."""
    _, info, verdict = with_service(
        image, config, lambda service, info: service.decide(image, info, today or datetime.date.today()))
    return verdict.decision, info


def attest(image, config, today=None):
    """``(decision, DSSE envelope bytes)``: the decision on ``image`` and the hub's signed verification
    summary of it (:mod:`..admission.vsa_issuer`), made with the configuration's key as the hub makes it."""
    _, settings = policy_from_config(config)
    issuer = settings.summary_issuer()
    if not issuer.configured:
        raise CheckError("--attest signs with the hub's key: set admission_vsa_key_file and "
                         "admission_vsa_verifier_id in the configuration")
    policy, _, verdict = with_service(
        image, config, lambda service, info: service.decide(image, info, today or datetime.date.today()))
    try:
        _, envelope = issuer.envelope(policy, image, verdict.decision)
    except ValueError as e:
        raise CheckError(f"cannot sign the verification summary: {e}") from None
    return verdict.decision, envelope
