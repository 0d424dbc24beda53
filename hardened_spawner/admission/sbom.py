"""A CycloneDX 1.6 SBOM of what admission read from an image. Pure: no I/O.

:func:`packages` lists the image's software from the admission inputs:
conda records (``<prefix>/conda-meta``) as ``pkg:conda`` with channel, build,
subdir and hashes; Python distributions in the conda environment's
site-packages that no conda record owns (pip-installed) as ``pkg:pypi``; and
the Debian packages dpkg lists as installed (``/var/lib/dpkg/status``) as
``pkg:deb`` with their source package as the ``upstream`` qualifier (as Syft
writes it). What admission proved of a conda package goes beside it as a
property: ``hardened-spawner:channel-check`` is ``listed`` (its file and hashes
are in the verified channel's repodata), ``not listed``, or ``not checked``;
``hardened-spawner:attestation`` is ``attested``, ``missing``, ``untrusted``,
``wrong-channel`` or ``not checked`` (its publish attestation, CEP 27). :func:`build` makes the CycloneDX document with
cyclonedx-python-lib. The serial number is derived from the image id and
the package list, so the SBOM that ``hardened-spawner sbom`` writes and the
one an admission audit line names are the same document.
"""

import datetime
import hashlib
import posixpath
import re
import uuid
from dataclasses import dataclass, field

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from debian.deb822 import Deb822
from packageurl import PackageURL

from . import conda
from ..decisions.reference import parse

DPKG_STATUS = "/var/lib/dpkg/status"
_NAMESPACE = uuid.UUID("5b0e1f8e-6c53-4a39-9d2b-3f1a6b1c7e15")  # hardened-spawner SBOM serials


@dataclass(frozen=True)
class Package:
    type: str                    # conda, pypi, deb
    name: str
    version: str
    namespace: str = ""
    qualifiers: tuple = ()       # ((key, value), ...)
    hashes: tuple = ()           # (("MD5"|"SHA-256", hex), ...)
    source: str = field(default="", compare=False)   # where admission found it
    proved: tuple = field(default=(), compare=False)  # ((property, value), ...): what admission checked

    @property
    def purl(self):
        return PackageURL(self.type, self.namespace or None, self.name, self.version or None,
                          dict(self.qualifiers) or None).to_string()


def _conda(records, alias, proof):
    out = []
    for r in records:
        channel = conda.channel_of(r, alias, ()) or ""
        kind = "conda" if r.url.endswith(".conda") else "tar.bz2" if r.url.endswith(".tar.bz2") else ""
        qualifiers = tuple((k, v) for k, v in (("build", r.build), ("channel", channel), ("subdir", r.subdir),
                                               ("type", kind)) if v)
        hashes = tuple((a, h) for a, h in (("MD5", r.md5), ("SHA-256", r.sha256))
                       if re.fullmatch(r"[0-9a-f]{32,64}", h or ""))
        proved = proof(r) if proof else (("hardened-spawner:channel-check", "not checked"),
                                         ("hardened-spawner:attestation", "not checked"))
        out.append(Package("conda", r.name, r.version, "", qualifiers, hashes, f"conda-meta/{r.source}", proved))
    return out


def _dist(entry):
    """``(name, version)`` of a ``*.dist-info``/``*.egg-info`` directory name, or None."""
    stem = entry.rsplit(".", 1)[0]
    parts = stem.split("-")
    if len(parts) < 2:
        return None
    return conda.dist_name(entry), parts[1]


def _pip(records, prefix, site_packages):
    out = []
    for directory, entries in sorted(site_packages.items()):
        rel = posixpath.relpath(directory, prefix) + "/"
        owned = {f[len(rel):].split("/", 1)[0] for r in records for f in r.files if f.startswith(rel)}
        for entry in entries:
            if entry.endswith((".dist-info", ".egg-info")) and entry not in owned and _dist(entry):
                name, version = _dist(entry)
                out.append(Package("pypi", name, version, source=posixpath.join(directory, entry)))
    return out


def _deb(status):
    out = []
    for para in Deb822.iter_paragraphs(status.decode("utf-8", "replace")):
        if para.get("Status", "").split()[-1:] != ["installed"] or not para.get("Package"):
            continue
        source = (para.get("Source") or "").split(" ")[0]
        qualifiers = tuple((k, v) for k, v in (("arch", para.get("Architecture", "")),
                                               ("upstream", source if source and source != para["Package"] else ""))
                           if v)
        out.append(Package("deb", para["Package"], para.get("Version", ""), "debian", qualifiers, (), DPKG_STATUS))
    return out


def packages(inputs, channel_alias, proof=None):
    """Every package admission read from the image (every conda environment, dpkg), sorted by purl.

    ``proof(record)``: the ``((property, value), ...)`` of what admission proved of a conda record."""
    found = []
    for env in inputs.envs:
        if env.records:
            found += _conda(env.records, channel_alias, proof)
            found += _pip(env.records, env.prefix, env.site_packages)
    status = inputs.facts.files.get(DPKG_STATUS)
    if status:
        found += _deb(status)
    return sorted(set(found), key=lambda p: p.purl)


def serial_number(image_id, pkgs):
    digest = hashlib.sha256("\n".join([image_id] + [p.purl for p in pkgs]).encode()).hexdigest()
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, digest)}"


def build(ref, image_info, pkgs):
    """The CycloneDX :class:`Bom` of image ``ref`` (``image_info`` from docker inspect)."""
    image_id = image_info["Id"]
    when = re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", image_info.get("Created") or "")
    image = parse(ref)
    bom = Bom(serial_number=uuid.UUID(serial_number(image_id, pkgs).rsplit(":", 1)[1]))
    if when:  # the image's build time: the same image gives the same document
        bom.metadata.timestamp = datetime.datetime.fromisoformat(when[0]).replace(tzinfo=datetime.timezone.utc)
    bom.metadata.component = Component(
        type=ComponentType.CONTAINER, name=image.name, version=image.tag or image.digest, bom_ref=image_id,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_id.split(":", 1)[-1])],
        properties=[Property(name="hardened-spawner:repo-digest", value=d)
                    for d in image_info.get("RepoDigests") or ()],
    )
    components = []
    for p in pkgs:
        components.append(Component(
            type=ComponentType.LIBRARY, name=p.name, version=p.version or None, group=p.namespace or None,
            purl=PackageURL.from_string(p.purl), bom_ref=p.purl,
            hashes=[HashType(alg=HashAlgorithm(a), content=h) for a, h in p.hashes],
            properties=[Property(name=k, value=v) for k, v in
                        ((("hardened-spawner:found-in", p.source),) if p.source else ()) + p.proved] or None,
        ))
    bom.components.update(components)
    bom.register_dependency(bom.metadata.component, components)  # the image contains each package
    return bom


def to_json(bom):
    return JsonV1Dot6(bom).output_as_string(indent=2)
