"""Cost per spawn of the provenance and scan attestation rules: registry round trips and verification (issue 24).

Run with a docker-registry listening on loopback (any empty one) and skopeo and openssl installed:

    python3 benchmarks/provenance_bench.py --registry 127.0.0.1:5000 --runs 200

It pushes a small image manifest, a cosign key-based signature and a ``.att`` tag holding a SLSA v1
provenance statement and a vulnerability attestation (tests/signrig.py: sigstore's StatementBuilder,
securesystemslib's DSSE, skopeo), then times ``evidence.load`` with the trust policy alone and with a
provenance policy (one more tag and its blobs), counting the registry requests, and the pure
verdicts: ``provenance.verdict`` (DSSE verification of both envelopes, the predicate judged) and
``scan_attestations.judge``.
"""

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from timing import timed  # noqa: E402

import signrig  # noqa: E402
from signature_bench import put  # noqa: E402

import oras.provider  # noqa: E402

from hardened_spawner.admission import evidence, provenance, registry, scan_attestations, signing  # noqa: E402
from hardened_spawner.admission.policy import Policy  # noqa: E402

BUILDER = "https://ci.example.org/builders/image-build@v3"
SOURCE = "https://git.example.org/jupyter/images"



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provenance-bench-"))
    name = f"{args.registry}/bench/attested"
    client = oras.provider.Registry(hostname=args.registry, insecure=True)
    base = f"http://{args.registry}/v2/bench/attested"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = put(client, base, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                           "layers": []}).encode()
    digest = put(client, base, manifest, "application/vnd.oci.image.manifest.v1+json", "1")["digest"]
    key, pub = signrig.key_pair(work, "ci")
    signrig.sign(work, name, digest, key)
    kind, predicate = signrig.provenance(BUILDER, SOURCE, "refs/heads/main")
    made = datetime.datetime.now(datetime.timezone.utc)
    scan = signrig.vuln_predicate(signrig.cyclonedx(made, [("CVE-2024-2", "low")]), made)
    envelopes = [signrig.envelope(signrig.statement(digest, kind, predicate), key),
                 signrig.envelope(signrig.statement(digest, scan_attestations.VULN, scan), key)]
    signrig.attest(work, name, digest, envelopes, kind)

    trust = (json.dumps({"images": name, "keys": [str(pub)]}),)
    prov = (json.dumps({"images": name, "builders": {BUILDER: 3}, "sources": [f"{SOURCE}@refs/heads/main"],
                        "min_level": 3}),)
    signed_only = Policy(signature_policy=trust, registry_plain_http=(args.registry,))
    attested = Policy(signature_policy=trust, provenance_policy=prov, scan_attestation_max_age_days=7,
                      registry_plain_http=(args.registry,))
    info = {"Id": cfg["digest"], "RepoDigests": [f"{name}@{digest}"]}

    requests = []
    original = registry.Reader._get

    def counted(self, url, accept=None):
        requests.append(url)
        return original(self, url, accept)

    registry.Reader._get = counted
    rows = []
    for label, policy in (("trust policy only", signed_only), ("+ provenance and scan attestations", attested)):
        requests.clear()
        found = evidence.load(policy, f"{name}:1", info)
        count = len(requests)
        assert signing.verdict(found, info["Id"]).status == "verified"
        rows.append((f"evidence.load, {label}", count, *timed(lambda: evidence.load(policy, f"{name}:1", info),
                                                                args.runs)))
    registry.Reader._get = original
    found = evidence.load(attested, f"{name}:1", info)
    rule = provenance.rule_for(provenance.parse_rules(prov)[0], name)
    assert provenance.verdict(found, rule, info["Id"]).problems == {}
    assert scan_attestations.judge(found, info["Id"], 7, datetime.date.today()).status == "fresh"
    rows.append(("provenance.verdict (2 DSSE envelopes)", 0,
                 *timed(lambda: provenance.verdict(found, rule, info["Id"]), args.runs)))
    rows.append(("scan_attestations.judge", 0,
                 *timed(lambda: scan_attestations.judge(found, info["Id"], 7, datetime.date.today()), args.runs)))
    for label, count, median, p95 in rows:
        print(f"{label}: {count} requests, median {median:.2f} ms, p95 {p95:.2f} ms")


if __name__ == "__main__":
    main()
