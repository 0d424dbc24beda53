"""Cost per spawn of the signature rule: reading the registry and verifying (issue 15).

Run with a docker-registry listening on loopback (any empty one):

    python3 benchmarks/signature_bench.py --registry 127.0.0.1:5000 --runs 200

It pushes a small image manifest and a cosign-layout signature with oras-py,
then times ``evidence.load`` (the registry requests admission makes at every
spawn: manifest, ``.sig`` tag and its payload, referrers API and referrers
tag) and ``signing.verdict`` (the ECDSA verification, which the decision
cache saves while nothing changed).
"""

import argparse
import base64
import hashlib
import json
import statistics
import time

import oras.provider
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hardened_spawner.admission import evidence, signing
from hardened_spawner.admission.policy import Policy


def put(client, base, data, media_type=None, tag=None):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if media_type:
        client.do_request(f"{base}/manifests/{tag or digest}", "PUT", data=data, headers={"Content-Type": media_type})
    else:
        loc = client.do_request(f"{base}/blobs/uploads/", "POST").headers["Location"]
        loc = loc if loc.startswith("http") else base.split("/v2/")[0] + loc
        client.do_request(f"{loc}{'&' if '?' in loc else '?'}digest={digest}", "PUT", data=data,
                          headers={"Content-Type": "application/octet-stream"})
    return {"digest": digest, "size": len(data)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    name = f"{args.registry}/bench/signed"
    client = oras.provider.Registry(hostname=args.registry, insecure=True)
    base = f"http://{args.registry}/v2/bench/signed"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = put(client, base, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                           "layers": []}).encode()
    digest = put(client, base, manifest, "application/vnd.oci.image.manifest.v1+json", "1")["digest"]
    key = ec.generate_private_key(ec.SECP256R1())
    payload = json.dumps({"critical": {"identity": {"docker-reference": name}, "image": {"docker-manifest-digest":
                          digest}, "type": signing.COSIGN_TYPE}, "optional": None}).encode()
    sig = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    layer = put(client, base, payload)
    sig_manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                               "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **layer,
                                           "annotations": {"dev.cosignproject.cosign/signature": sig}}]}).encode()
    put(client, base, sig_manifest, "application/vnd.oci.image.manifest.v1+json", f"sha256-{digest[7:]}.sig")
    pem = "/tmp/signature_bench.pub"
    with open(pem, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    policy = Policy(signature_policy=(json.dumps({"images": name, "keys": [pem]}),),
                    registry_plain_http=(args.registry,))
    info = {"Id": cfg["digest"], "RepoDigests": [f"{name}@{digest}"]}
    loads, verdicts = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        found = evidence.load(policy, f"{name}:1", info)
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert signing.verdict(found, info["Id"]).status == "verified"
        verdicts.append(time.perf_counter() - t)
    for label, xs in (("evidence.load (registry reads)", loads), ("signing.verdict (verify)", verdicts)):
        xs.sort()
        print(f"{label}: median {statistics.median(xs) * 1000:.2f} ms, p95 {xs[int(len(xs) * .95)] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
