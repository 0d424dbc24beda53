"""``hardened-spawner sbom IMAGE``: the CycloneDX 1.6 SBOM of what admission reads from an image.

Loads the hub's configuration (for the conda prefix and channel alias the
hub's admission uses), reads the image on the Docker daemon the way
admission does (conda-meta records, site-packages names, dpkg status) and
writes the SBOM as JSON. Its serial number is the one the hub's admission
audit line names for the same image. With ``conda_verify_channels`` (and
``conda_attestation_keys``), each conda package says whether the verified
channel's repodata lists it (and what its publish attestation is).
"""

from ..admission import channels, conda, conda_attestations, sbom
from .check_image import with_service


def document(image, config):
    """The SBOM of ``image`` as CycloneDX 1.6 JSON text."""
    policy, info, inputs = with_service(image, config, lambda service, info: service.inputs_for(info))
    alias = policy.channel_alias
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, alias)
    listed = channels.load(policy, inputs.envs) if policy.verify_channels else None
    attested = channels.load_attestations(policy, inputs.envs) if policy.attestation_keys else {}
    verified = channels.verified(policy)

    def proof(record):
        found = conda_attestations.of_record(record, attested, alias, mirrors) if isinstance(attested, dict) else None
        return (("hardened-spawner:channel-check", conda.channel_check(record, listed, verified, alias, mirrors)),
                ("hardened-spawner:attestation", found[0] if found else "not checked"))

    packages = sbom.packages(inputs, alias, proof)
    return sbom.to_json(sbom.build(image, info, packages))
