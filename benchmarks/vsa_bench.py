"""Cost per admission of the hub's signed verification summary (issue 24 item 4).

    python3 benchmarks/vsa_bench.py --runs 500

Times ``Issuer.envelope`` as the hub calls it after each decision (the key file checked and read, the
policy digest over the settings and the SHA-256 of the files the policy names, the statement built by
sigstore's StatementBuilder, signed by securesystemslib into a DSSE envelope) for an Ed25519, an ECDSA
P-256 and an RSA-3072 key, and a verifier's check of the envelope with the public key alone.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from hardened_spawner.admission import model, vsa_issuer
from hardened_spawner.admission.policy import Policy
from timing import timed

DIGEST = "sha256:" + "ab" * 32
IMAGE = "registry.example.org/jupyter/base:1"



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vsa-bench-"))
    trust_keys = []
    for i in range(2):  # a trust policy naming two public keys: their contents are part of the policy digest
        pub = work / f"trusted-{i}.pub"
        pub.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        trust_keys.append(str(pub))
    policy = Policy(signature_policy=(json.dumps({"images": "registry.example.org/**", "keys": trust_keys}),),
                    image_allowlist=("registry.example.org/**",))
    decision = model.Decision(True, digest=f"registry.example.org/jupyter/base@{DIGEST}", level=3,
                              inputs=((f"registry.example.org/jupyter/base:sha256-{'ab' * 32}.att", "cd" * 32),))
    keys = {"ed25519": ed25519.Ed25519PrivateKey.generate(), "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
            "rsa-3072": rsa.generate_private_key(65537, 3072)}
    print(f"runs: {args.runs}; load: {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}")
    for label, private in keys.items():
        path = work / f"{label}.pem"
        path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        path.chmod(0o600)
        issuer = vsa_issuer.Issuer(str(path), "https://hub.example.org/")
        sign = timed(lambda: issuer.envelope(policy, IMAGE, decision), args.runs)
        _, envelope = issuer.envelope(policy, IMAGE, decision)
        public = SSlibKey.from_crypto(private.public_key())
        verify = timed(lambda: Envelope.from_dict(json.loads(envelope)).verify([public], 1), args.runs)
        print(f"{label}: sign {sign[0]:.2f} ms / {sign[1]:.2f} ms, verify {verify[0]:.2f} ms / {verify[1]:.2f} ms "
              f"(median / p95), envelope {len(envelope)} bytes")


if __name__ == "__main__":
    main()
