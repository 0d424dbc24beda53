"""``hardened-spawner sbom IMAGE``: the CycloneDX 1.6 SBOM of what admission reads from an image.

Loads the hub's configuration (for the conda prefix and channel alias the
hub's admission uses), reads the image on the Docker daemon the way
admission does (conda-meta records, site-packages names, dpkg status) and
writes the SBOM as JSON. Its serial number is the one the hub's admission
audit line names for the same image.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import DockerException, ImageNotFound

from ..admission import engine, facts, layers, sbom
from .check_image import CheckError, policy_from_config
from ..decisions.reference import BadReference, parse


def read(image, config):
    """``(policy, image_info, inputs)`` for ``image`` as admission reads it."""
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
    with ThreadPoolExecutor(facts.THREADS, thread_name_prefix="hs-sbom") as pool:
        async def run():
            loop = asyncio.get_running_loop()
            layer_dirs = layers.overlay_layers(info) if read_layers else None
            return await facts.read_facts(lambda fn, *a: loop.run_in_executor(pool, fn, client, *a), info["Id"],
                                          plan, layer_dirs)

        try:
            read_facts = asyncio.run(run())
        except (facts.FactsError, DockerException) as e:
            raise CheckError(f"cannot read image {image}: {e}") from None
    return policy, info, engine.prepare(read_facts, plan)


def document(image, config):
    """The SBOM of ``image`` as CycloneDX 1.6 JSON text."""
    policy, info, inputs = read(image, config)
    packages = sbom.packages(inputs, policy.conda_prefix, policy.channel_alias)
    return sbom.to_json(sbom.build(image, info, packages))
