"""Sign images for the signature tests the way cosign lays signatures out, with Debian's tools.

Debian bookworm's skopeo 1.9.3 has ``--sign-by-sigstore-private-key``, but
Debian builds it with sigstore disabled: signing (and verifying) a sigstore
signature fails with "Debian-local change: sigstore disabled", and cosign is
not packaged. So the rig makes cosign's key-based signature itself from its
documented parts: keys from ``openssl genpkey`` (P-256), the simple-signing
payload, an ECDSA/SHA-256 signature from ``openssl dgst -sign`` (what
``cosign sign --key`` computes), and an OCI manifest whose layer is the
payload with the signature in the ``dev.cosignproject.cosign/signature``
annotation, pushed with ``skopeo copy`` from an OCI layout to the
``sha256-<hex>.sig`` tag. Keys live only in the test's tmp directory.
"""

import base64
import hashlib
import json
import subprocess

COSIGN_TYPE = "cosign container image signature"


def key_pair(directory, name):
    """``(private key path, public key path)`` of a new P-256 key pair made by openssl."""
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(private)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   capture_output=True)
    return private, public


def payload(reference, digest):
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest}, "type": COSIGN_TYPE},
                       "optional": None}, separators=(",", ":")).encode()


def _layout(directory, blobs, manifest):
    """An OCI image layout holding ``manifest`` (and ``blobs``) under the name ``sig``."""
    directory.mkdir(parents=True)
    (directory / "blobs/sha256").mkdir(parents=True)
    for data in [*blobs, manifest]:
        (directory / "blobs/sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(manifest),
            "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
            "annotations": {"org.opencontainers.image.ref.name": "sig"}}
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _descriptor(media_type, data, **extra):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data),
            **extra}


def sign(workdir, repository, digest, private_key, signed_digest=None, reference=None):
    """Sign ``repository@digest`` with ``private_key`` and push the signature to the registry.

    ``signed_digest``/``reference`` put other claims in the payload (a signature made for
    other content or another repository, stored under this digest's tag)."""
    data = payload(reference or f"{repository}:signed", signed_digest or digest)
    (workdir / "payload.json").write_bytes(data)
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(private_key), str(workdir / "payload.json")],
                         check=True, capture_output=True).stdout
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(data).hexdigest()]}
                         }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_descriptor("application/vnd.dev.cosign.simplesigning.v1+json", data,
                               annotations={"dev.cosignproject.cosign/signature": base64.b64encode(der).decode()})],
    }).encode()
    layout = workdir / f"layout-{hashlib.sha256(manifest).hexdigest()[:12]}"
    _layout(layout, [config, data], manifest)
    push(workdir, f"oci:{layout}:sig", f"{repository}:sha256-{digest.split(':', 1)[1]}.sig")


def push(workdir, source, destination):
    """``skopeo copy`` ``source`` to ``docker://destination`` on a plain-HTTP registry."""
    policy = workdir / "skopeo-policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    subprocess.run(["skopeo", "--policy", str(policy), "copy", "--quiet", "--src-tls-verify=false",
                    "--dest-tls-verify=false", "--preserve-digests", source, f"docker://{destination}"],
                   check=True, capture_output=True, timeout=600)


def attach_bundle(repository, digest, *bundles, plain_http=True):
    """Attach ``bundles`` (bytes each) to ``repository@digest`` as cosign v3 does on a registry without the
    referrers API: an artifact manifest with ``subject`` per bundle, listed by the ``sha256-<hex>``
    referrers index tag."""
    import oras.provider

    from hardened_spawner.decisions.reference import parse

    ref = parse(repository)
    client = oras.provider.Registry(hostname=ref.registry, insecure=plain_http)
    base = f"{client.prefix}://{ref.registry}/v2/{ref.repository}"
    bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json"

    def put_blob(data):
        start = client.do_request(f"{base}/blobs/uploads/", "POST")
        location = start.headers["Location"]
        location = location if location.startswith("http") else f"{client.prefix}://{ref.registry}{location}"
        sep = "&" if "?" in location else "?"
        done = client.do_request(f"{location}{sep}digest=sha256:{hashlib.sha256(data).hexdigest()}", "PUT",
                                 data=data, headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text

    def put_manifest(tag, data, media_type):
        done = client.do_request(f"{base}/manifests/{tag}", "PUT", data=data, headers={"Content-Type": media_type})
        assert done.status_code == 201, done.text

    empty = b"{}"
    put_blob(empty)
    listed = []
    for bundle in bundles:
        put_blob(bundle)
        artifact = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": bundle_type,
            "config": _descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [_descriptor(bundle_type, bundle)],
            "subject": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": digest,
                        "size": 1}}).encode()
        put_manifest("sha256:" + hashlib.sha256(artifact).hexdigest(), artifact,
                     "application/vnd.oci.image.manifest.v1+json")
        listed.append(_descriptor("application/vnd.oci.image.manifest.v1+json", artifact, artifactType=bundle_type))
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": listed}).encode()
    put_manifest(f"sha256-{digest.split(':', 1)[1]}", index, "application/vnd.oci.image.index.v1+json")


# ---- attestations: in-toto statements in DSSE envelopes, as cosign attest --key stores them ----------
GITHUB_WORKFLOW = "https://actions.github.io/buildtypes/workflow/v1"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"


def provenance(builder, repository, ref, build_type=GITHUB_WORKFLOW, version="v1"):
    """``(predicate type, predicate)`` of SLSA provenance, built and validated with sigstore's SLSA models.

    v1 in the shape of GitHub Actions' build type (``externalParameters.workflow``, the source as the
    first resolved dependency); v0.2 with the source as ``invocation.configSource``."""
    from sigstore.dsse import _predicate as slsa

    commit = hashlib.sha1(f"{repository}@{ref}".encode()).hexdigest()
    source = f"git+{repository}@{ref}"
    if version == "v0.2":  # the models take the SLSA field names (camelCase aliases)
        model = slsa.SLSAPredicateV0_2(
            builder=slsa.BuilderV0_1(id=builder), buildType=build_type,
            invocation=slsa.Invocation(configSource=slsa.ConfigSource(
                uri=source, digest={"sha1": commit}, entryPoint=".github/workflows/image.yml")))
        kind = slsa.PredicateType.SLSA_v0_2
    else:
        model = slsa.SLSAPredicateV1_0(
            buildDefinition=slsa.BuildDefinition(
                buildType=build_type,
                externalParameters={"workflow": {"ref": ref, "repository": repository,
                                                 "path": ".github/workflows/image.yml"}},
                resolvedDependencies=[slsa.ResourceDescriptor(uri=source, digest={"gitCommit": commit})]),
            runDetails=slsa.RunDetails(builder=slsa.BuilderV1_0(id=builder)))
        kind = slsa.PredicateType.SLSA_v1_0
    return kind.value, model.model_dump(mode="json", by_alias=True, exclude_none=True)


def statement(digest, predicate_type, predicate, name="image"):
    """The in-toto statement (bytes) for ``digest``, built with sigstore's StatementBuilder."""
    from sigstore.dsse import DigestSet, StatementBuilder, Subject

    subject = Subject(name=name, digest=DigestSet({"sha256": digest.split(":", 1)[1]}))
    return StatementBuilder([subject], predicate_type, predicate).build()._contents


def envelope(statement_bytes, private_key):
    """A DSSE envelope (JSON bytes) over the statement, signed with securesystemslib's CryptoSigner.

    ``private_key``: a PEM file (path) or a ``cryptography`` private key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    if hasattr(private_key, "read_bytes"):
        private_key = load_pem_private_key(private_key.read_bytes(), None)
    signer = CryptoSigner(private_key)
    env = Envelope(statement_bytes, "application/vnd.in-toto+json", {})
    env.sign(signer)
    return json.dumps(env.to_dict()).encode()


def attest(workdir, repository, digest, envelopes, predicate_type):
    """Push ``envelopes`` to ``repository``'s ``sha256-<hex>.att`` tag in cosign's layout: one layer per
    envelope (``application/vnd.dsse.envelope.v1+json``, annotated with its predicate type)."""
    config = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(e).hexdigest() for e in envelopes]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_descriptor(DSSE_ENVELOPE, e, annotations={"dev.cosignproject.cosign/signature": "",
                                                              "predicateType": predicate_type})
                   for e in envelopes],
    }).encode()
    layout = workdir / f"layout-{hashlib.sha256(manifest).hexdigest()[:12]}"
    _layout(layout, [config, *envelopes], manifest)
    push(workdir, f"oci:{layout}:sig", f"{repository}:sha256-{digest.split(':', 1)[1]}.att")


def cyclonedx(timestamp, vulnerabilities=()):
    """A CycloneDX 1.6 document (dict) made with cyclonedx-python-lib: openssl 3.0.11 and ``vulnerabilities``,
    ``(id, severity)`` pairs that affect it, as a scanner writes them."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component
    from cyclonedx.model.vulnerability import (BomTarget, Vulnerability, VulnerabilityRating,
                                               VulnerabilitySeverity)
    from cyclonedx.output.json import JsonV1Dot6

    bom = Bom()
    bom.metadata.timestamp = timestamp
    openssl = Component(name="openssl", version="3.0.11", bom_ref="pkg:deb/debian/openssl@3.0.11")
    bom.components.add(openssl)
    for vuln_id, severity in vulnerabilities:
        bom.vulnerabilities.add(Vulnerability(
            id=vuln_id, ratings=[VulnerabilityRating(severity=VulnerabilitySeverity(severity))],
            affects=[BomTarget(ref=openssl.bom_ref.value)]))
    return json.loads(JsonV1Dot6(bom).output_as_string())


def vuln_predicate(result, finished, scanner="pkg:github/aquasecurity/trivy@0.58.1"):
    """The predicate of ``cosign attest --type vuln``: the scanner's result and when the scan ran."""
    return {"invocation": {"parameters": None, "uri": "", "event_id": "", "builder.id": ""},
            "scanner": {"uri": scanner, "version": scanner.rsplit("@", 1)[-1], "db": {"uri": "", "version": ""},
                        "result": result},
            "metadata": {"scanStartedOn": finished.isoformat(), "scanFinishedOn": finished.isoformat()}}
