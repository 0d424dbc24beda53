"""A local Sigstore stand-in for the tests: a Fulcio-like CA, a CT log key and a Rekor v1 log.

No public Fulcio or Rekor is reachable from the rig, so keyless signing is tested against
this instance. It speaks the wire formats sigstore-python's own signing and verifying code
use, so the bundles the tests make come from ``sigstore.sign.Signer`` and are checked by
``sigstore.verify.Verifier`` with the ``trusted_root.json`` written here:

- ``POST /api/v2/signingCert`` (Fulcio): the bearer token must be an OIDC identity token for
  audience ``sigstore`` from an issuer this CA is told to trust, its signature checked against
  the issuer's JWKS (the rig's real oidc-provider-mock); the CSR's signature proves possession
  of the key. The certificate (10 minutes, code signing, the token's verified ``email`` as SAN,
  the issuer in Fulcio's extensions 1.3.6.1.4.1.57264.1.1 and .8) carries an embedded SCT
  (RFC 6962 precertificate entry) signed with the CT log key.
- ``POST /api/v1/log/entries`` (Rekor, ``dsse`` 0.0.1 entries): the envelope's signature must
  verify with the submitted certificate; the answer carries the canonicalized body, the
  signed entry timestamp, and an RFC 6962 inclusion proof with a signed checkpoint (note
  format) for the tree after the entry was appended.

Keys and certificates live in memory and in the test's tmp directory only.
"""

import base64
import datetime
import hashlib
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
KEY_DETAILS = "PKIX_ECDSA_P256_SHA_256"


def _der(tag, body):
    n = len(body)
    size = bytes([n]) if n < 0x80 else (bytes([0x81, n]) if n < 0x100 else b"\x82" + struct.pack("!H", n))
    return bytes([tag]) + size + body


def _spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _log_id(private_key):
    return hashlib.sha256(_spki(private_key.public_key())).digest()


def _sign(key, data):
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


# ---- RFC 6962 Merkle tree ----------------------------------------------------------------------
def _leaf(data):
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n):
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def tree_hash(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def audit_path(index, leaves):
    """RFC 6962 section 2.1.1 PATH(m, D[n]), from the leaf's sibling up."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return audit_path(index, leaves[:k]) + [tree_hash(leaves[k:])]
    return audit_path(index - k, leaves[k:]) + [tree_hash(leaves[:k])]


class Sigstore:
    """One Sigstore instance: its keys, trust root, and HTTP services (start/stop)."""

    def __init__(self, directory, issuers, name="sigstore-rig"):
        self.directory, self.issuers, self.name = directory, list(issuers), name
        self.ca_key, self.ct_key, self.log_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.start_time = now - datetime.timedelta(days=1)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hardened-spawner rig"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        self.root = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(self.start_time).not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()),
                                    critical=False)
                     .sign(self.ca_key, hashes.SHA256()))
        self.leaves, self.bodies, self.lock = [], [], threading.Lock()
        self.tree_id = int.from_bytes(_log_id(self.log_key)[:7], "big")
        self.server = None

    # ---- configuration the clients read -----------------------------------------------------
    def _key(self, key):
        return {"rawBytes": base64.b64encode(_spki(key.public_key())).decode(), "keyDetails": KEY_DETAILS,
                "validFor": {"start": self.start_time.isoformat().replace("+00:00", "Z")}}

    def trusted_root(self):
        """The ``trusted_root.json`` document (protobuf-specs TrustedRoot v0.1) of this instance."""
        valid = {"start": self.start_time.isoformat().replace("+00:00", "Z")}
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": self.url, "hashAlgorithm": "SHA2_256", "publicKey": self._key(self.log_key),
                       "logId": {"keyId": base64.b64encode(_log_id(self.log_key)).decode()}}],
            "certificateAuthorities": [{
                "subject": {"organization": "hardened-spawner rig", "commonName": f"{self.name} root"},
                "uri": self.url, "validFor": valid,
                "certChain": {"certificates": [{"rawBytes": base64.b64encode(
                    self.root.public_bytes(serialization.Encoding.DER)).decode()}]}}],
            "ctlogs": [{"baseUrl": self.url, "hashAlgorithm": "SHA2_256", "publicKey": self._key(self.ct_key),
                        "logId": {"keyId": base64.b64encode(_log_id(self.ct_key)).decode()}}],
            "timestampAuthorities": []}

    def signing_config(self):
        service = {"url": self.url, "majorApiVersion": 1, "operator": self.name,
                   "validFor": {"start": self.start_time.isoformat().replace("+00:00", "Z")}}
        return {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                "caUrls": [service], "oidcUrls": [{**service, "url": self.issuers[0]}],
                "rekorTlogUrls": [service], "tsaUrls": [],
                "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}}

    def write_trusted_root(self, path=None):
        path = path or self.directory / f"{self.name}-trusted_root.json"
        path.write_text(json.dumps(self.trusted_root()))
        return path

    def client_trust_config(self):
        from sigstore.models import ClientTrustConfig

        return ClientTrustConfig.from_json(json.dumps({
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.trusted_root(), "signingConfig": self.signing_config()}))

    # ---- signing with sigstore-python's own client ------------------------------------------
    def sign_statement(self, token, statement_bytes):
        """A Sigstore bundle (JSON bytes) of the in-toto statement, made by ``sigstore.sign.Signer``
        against this instance with the OIDC identity token ``token``."""
        from sigstore.dsse import Statement
        from sigstore.oidc import IdentityToken
        from sigstore.sign import SigningContext

        context = SigningContext.from_trust_config(self.client_trust_config())
        with context.signer(IdentityToken(token)) as signer:  # cache=False signs with a key other than the CSR's
            return signer.sign_dsse(Statement(statement_bytes)).to_json().encode()

    # ---- Fulcio -----------------------------------------------------------------------------
    def _identity(self, token):
        try:
            issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
        except (jwt.PyJWTError, KeyError):
            raise PermissionError("not an identity token") from None
        if issuer not in self.issuers:
            raise PermissionError(f"issuer {issuer} is not trusted by this CA")
        jwks_uri = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()["jwks_uri"]
        claims, why = None, "the issuer publishes no key"
        for key in jwt.PyJWKSet.from_dict(requests.get(jwks_uri, timeout=10).json()).keys:  # its tokens name no kid
            try:
                claims = jwt.decode(token, key.key, algorithms=["RS256", "ES256"], audience="sigstore", issuer=issuer)
                break
            except jwt.PyJWTError as e:
                why = str(e)
        if claims is None:
            raise PermissionError(f"identity token rejected: {why}")
        if not claims.get("email") or claims.get("email_verified") is not True:
            raise PermissionError("identity token has no verified email")
        return issuer, claims["email"]

    def _certificate(self, public_key, issuer, email, sct=None):
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        serial = int.from_bytes(hashlib.sha256(_spki(public_key) + email.encode()).digest()[:16], "big") >> 1
        builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.root.subject)
                   .public_key(public_key).serial_number(serial)
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=10))
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                                  critical=False)
                   .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=True)
                   .add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()), critical=False)
                   .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _der(0x0C, issuer.encode())),
                                  critical=False))
        return builder.add_extension(x509.UnrecognizedExtension(SCT_LIST, sct or _der(0x04, b"\0\0")),
                                     critical=False).sign(self.ca_key, hashes.SHA256())

    def issue(self, csr_pem, token):
        """``[leaf PEM, root PEM]`` for a CSR and an identity token (raises PermissionError)."""
        issuer, email = self._identity(token)
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise PermissionError("the CSR's signature does not verify (no proof of possession)")
        draft = self._certificate(csr.public_key(), issuer, email)
        timestamp = int(time.time()) * 1000
        entry = _log_id(self.ca_key) + struct.pack("!I", len(draft.tbs_precertificate_bytes))[1:] + \
            draft.tbs_precertificate_bytes
        signed = struct.pack("!BBQH", 0, 0, timestamp, 1) + entry + b"\0\0"
        signature = _sign(self.ct_key, signed)
        sct = struct.pack("!B32sQH", 0, _log_id(self.ct_key), timestamp, 0) + struct.pack(
            "!BBH", 4, 3, len(signature)) + signature
        listed = struct.pack("!HH", len(sct) + 2, len(sct)) + sct
        leaf = self._certificate(csr.public_key(), issuer, email, _der(0x04, listed))
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, self.root)]

    # ---- Rekor ------------------------------------------------------------------------------
    def log_dsse(self, proposed):
        """Append a ``dsse`` 0.0.1 proposed entry; the Rekor v1 answer ``{uuid: entry}``."""
        from cryptography.exceptions import InvalidSignature

        content = proposed["spec"]["proposedContent"]
        envelope = json.loads(content["envelope"])
        payload = base64.b64decode(envelope["payload"])
        cert = x509.load_pem_x509_certificate(base64.b64decode(content["verifiers"][0]))
        pae = b"DSSEv1 %d %s %d %s" % (len(envelope["payloadType"]), envelope["payloadType"].encode(),
                                       len(payload), payload)
        signatures = []
        for sig in envelope["signatures"]:
            try:
                cert.public_key().verify(base64.b64decode(sig["sig"]), pae, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                raise PermissionError("an envelope signature does not verify with the verifier") from None
            signatures.append({"signature": sig["sig"], "verifier": content["verifiers"][0]})
        body = rfc8785.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(rfc8785.dumps(envelope)).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": sorted(signatures, key=lambda s: s["signature"])}})
        with self.lock:
            index = len(self.leaves)
            self.leaves.append(_leaf(body))
            self.bodies.append(body)
            leaves = list(self.leaves)
        root, size, integrated = tree_hash(leaves), len(leaves), int(time.time())
        log_id = _log_id(self.log_key).hex()
        note = f"{self.name} - {self.tree_id}\n{size}\n{base64.b64encode(root).decode()}\n"
        checkpoint = note + f"\n\u2014 {self.name} " + base64.b64encode(
            _log_id(self.log_key)[:4] + _sign(self.log_key, note.encode())).decode() + "\n"
        promise = rfc8785.dumps({"body": base64.b64encode(body).decode(), "integratedTime": integrated,
                                 "logID": log_id, "logIndex": index})
        return {leaves[index].hex(): {
            "body": base64.b64encode(body).decode(), "integratedTime": integrated, "logID": log_id,
            "logIndex": index, "verification": {
                "signedEntryTimestamp": base64.b64encode(_sign(self.log_key, promise)).decode(),
                "inclusionProof": {"logIndex": index, "treeSize": size, "rootHash": root.hex(),
                                   "hashes": [h.hex() for h in audit_path(index, leaves)],
                                   "checkpoint": checkpoint}}}}

    # ---- HTTP -------------------------------------------------------------------------------
    def start(self):
        instance = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                path = urlsplit(self.path).path
                try:
                    if path == "/api/v2/signingCert":
                        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                        chain = instance.issue(base64.b64decode(body["certificateSigningRequest"]), token)
                        return self._answer(201, {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}})
                    if path == "/api/v1/log/entries" and body.get("kind") == "dsse":
                        return self._answer(201, instance.log_dsse(body))
                except PermissionError as e:
                    return self._answer(401 if "token" in str(e) or "issuer" in str(e) else 400,
                                        {"code": 400, "message": str(e)})
                except (KeyError, ValueError) as e:
                    return self._answer(400, {"code": 400, "message": f"bad request: {e}"})
                self._answer(404, {"code": 404, "message": f"no such endpoint {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def identity_token(idp, sub):
    """An OIDC identity token for audience ``sigstore`` from the rig IdP (tests/oidcrig.py), by the
    authorization-code flow a browser would walk (the provider's form: pick ``sub``)."""
    s = requests.Session()
    redirect = "http://127.0.0.1/callback"
    params = {"client_id": "sigstore", "redirect_uri": redirect, "response_type": "code",
              "scope": "openid email", "state": "s", "nonce": "n"}
    r = s.post(f"{idp.issuer}/oauth2/authorize", params=params, data={"sub": sub}, allow_redirects=False,
               timeout=30)
    assert r.status_code == 302, r.text
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    r = s.post(f"{idp.issuer}/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                                   "redirect_uri": redirect, "client_id": "sigstore",
                                                   "client_secret": "rig"}, timeout=30)
    assert r.ok, r.text
    return r.json()["id_token"]
