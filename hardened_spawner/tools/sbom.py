"""``hardened-spawner sbom IMAGE``: the CycloneDX 1.6 SBOM of what admission reads from an image.

Loads the hub's configuration (for the conda prefix and channel alias the
hub's admission uses), reads the image on the Docker daemon the way
admission does (conda-meta records, site-packages names, dpkg status) and
writes the SBOM as JSON. Its serial number is the one the hub's admission
audit line names for the same image. With ``conda_verify_channels``, each conda
package says whether the verified channel's repodata lists it.
"""

import functools

from ..admission import channels, conda, sbom
from .check_image import with_service


def document(image, config):
    """The SBOM of ``image`` as CycloneDX 1.6 JSON text."""
    policy, info, inputs = with_service(image, config, lambda service, info: service.inputs_for(info))
    check = None
    if policy.verify_channels:
        mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
        check = functools.partial(conda.channel_check, listed=channels.load(policy, inputs.envs),
                                  channels=channels.verified(policy), alias=policy.channel_alias, mirrors=mirrors)
    packages = sbom.packages(inputs, policy.channel_alias, check)
    return sbom.to_json(sbom.build(image, info, packages))
