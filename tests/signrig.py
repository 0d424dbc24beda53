"""Sign images the way an image pipeline does, with Debian's skopeo, for the signature tests.

skopeo 1.9 (bookworm) signs with ``--sign-by-sigstore-private-key`` and, with
``use-sigstore-attachments`` in its registries.d configuration, stores the
signature as cosign does: a ``sha256-<digest>.sig`` tag holding a simple-signing
payload. It cannot generate keys (``generate-sigstore-key`` came in 1.10), so
:func:`cosign_key_pair` writes the private key in cosign's encrypted format
(go-tuf's ``encrypted``: scrypt N=32768 r=8 p=1 and a NaCl secretbox) from a
fresh P-256 key made with ``cryptography``. Keys live only in the test's tmp dir.
"""

import base64
import hashlib
import json
import os
import subprocess

import nacl.secret
import nacl.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def cosign_key_pair(directory, name, passphrase=b"test-passphrase"):
    """``(private key path, public key path, passphrase file)`` of a new cosign key pair."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt = os.urandom(32)
    box_key = hashlib.scrypt(passphrase, salt=salt, n=32768, r=8, p=1, maxmem=64 << 20, dklen=32)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    blob = json.dumps({"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt)},
                       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)}, "ciphertext": b64(sealed)})
    pem = "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"
    pem += "\n".join(b64(blob.encode())[i:i + 64] for i in range(0, len(b64(blob.encode())), 64))
    pem += "\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n"
    private = directory / f"{name}.key"
    private.write_text(pem)
    private.chmod(0o600)
    public = directory / f"{name}.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    passfile = directory / f"{name}.pass"
    passfile.write_bytes(passphrase)
    return private, public, passfile


def skopeo_config(directory, registry):
    """``--registries.d`` and ``--policy`` arguments that store sigstore signatures as attachments."""
    regd = directory / "registries.d"
    regd.mkdir(exist_ok=True)
    (regd / "hs-test.yaml").write_text(f"docker:\n  {registry}:\n    use-sigstore-attachments: true\n")
    policy = directory / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return ["--registries.d", str(regd), "--policy", str(policy)]


def skopeo_sign(directory, registry, ref, key):
    """Sign ``ref`` (``registry/repo:tag``, already in ``registry``) in place with ``key``."""
    private, _, passfile = key
    subprocess.run(
        ["skopeo", *skopeo_config(directory, registry), "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         "--sign-by-sigstore-private-key", str(private), "--sign-passphrase-file", str(passfile),
         f"docker://{ref}", f"docker://{ref}"],
        check=True, capture_output=True, timeout=300)
