"""Publish attestations (CEP 27) and their sidecars (CEP 50), made with the real libraries.

The in-toto statement is built with sigstore's ``StatementBuilder``, signed into a DSSE envelope by
securesystemslib's ``CryptoSigner`` (an ed25519 key the test creates), and wrapped in a Sigstore bundle
(sigstore-models) whose verification material names the key. :func:`serve_attested` gives a copy of a
channel directory the sidecars and the ``attestations_sha256`` fields a channel implementing CEP 50 serves.
"""

import hashlib
import json
import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner
from sigstore import dsse
from sigstore_models.bundle import v1 as bundle_v1

from hardened_spawner.admission import conda_attestations

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def new_key():
    return CryptoSigner.generate_ed25519()


def public_pem(signer):
    return signer._private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def statement(file_name, sha256, target_channel):
    """The CEP 27 publish statement (bytes) of one package, built with sigstore's StatementBuilder."""
    return dsse.StatementBuilder(
        subjects=[dsse.Subject(name=file_name, digest=dsse.DigestSet(root={"sha256": sha256}))],
        predicate_type=conda_attestations.PREDICATE, predicate={"targetChannel": target_channel}).build()._contents


def keyless_bundle(sigstore, token, file_name, sha256, target_channel):
    """A Sigstore bundle (JSON object) of the publish statement signed keyless by sigstore-python against the
    rig's local Sigstore (tests/sigstorerig.py) with the OIDC identity token ``token``."""
    return json.loads(sigstore.sign_statement(token, statement(file_name, sha256, target_channel)))


def bundle(signer, file_name, sha256, target_channel):
    """A Sigstore bundle (as its JSON object) of the CEP 27 publish statement of one package, signed with a key."""
    envelope = Envelope(payload=statement(file_name, sha256, target_channel),
                        payload_type=conda_attestations.PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    made = bundle_v1.Bundle.model_validate({
        "mediaType": BUNDLE_TYPE, "verificationMaterial": {"publicKey": {"hint": signer.public_key.keyid},
                                                           "tlogEntries": []},
        "dsseEnvelope": envelope.to_dict()})
    return json.loads(made.model_dump_json(by_alias=True, exclude_none=True))


def sidecar(*bundles):
    """``(bytes, sha256)`` of a CEP 50 sidecar holding ``bundles``."""
    data = json.dumps(list(bundles)).encode()
    return data, hashlib.sha256(data).hexdigest()


def attested_channel(source, dest, sign):
    """Copy the channel directory ``source`` (``<subdir>/repodata.json`` and packages) to ``dest`` with
    sidecars beside its packages: ``sign(subdir, file name, sha256)`` returns the bundles of one (none:
    unsigned). Each signed package's repodata record gets ``attestations_sha256``."""
    shutil.copytree(source, dest)
    for index in sorted(Path(dest).glob("*/repodata.json")):
        data = json.loads(index.read_text())
        for key in ("packages", "packages.conda"):
            for file_name, record in (data.get(key) or {}).items():
                bundles = sign(index.parent.name, file_name, record["sha256"])
                if bundles:
                    body, digest = sidecar(*bundles)
                    for name in (f"{file_name}.sigs", f"{file_name}.sigs.{digest}"):
                        (index.parent / name).write_bytes(body)
                    record["attestations_sha256"] = digest
        index.write_text(json.dumps(data))
        for stale in index.parent.glob("repodata.json.*"):  # compressed copies would still say the old index
            stale.unlink()
    return dest
