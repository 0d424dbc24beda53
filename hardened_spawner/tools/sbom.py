"""``hardened-spawner sbom IMAGE``: the CycloneDX 1.6 SBOM of what admission reads from an image.

Loads the hub's configuration (for the conda prefix and channel alias the
hub's admission uses), reads the image on the Docker daemon the way
admission does (conda-meta records, site-packages names, dpkg status) and
writes the SBOM as JSON. Its serial number is the one the hub's admission
audit line names for the same image.
"""

from ..admission import sbom
from .check_image import with_service


def document(image, config):
    """The SBOM of ``image`` as CycloneDX 1.6 JSON text."""
    policy, info, inputs = with_service(image, config, lambda service, info: service.inputs_for(info))
    packages = sbom.packages(inputs, policy.channel_alias)
    return sbom.to_json(sbom.build(image, info, packages))
