"""Read an image's signatures from its OCI registry (I/O), with oras-py.

For one manifest digest this reads what a verifier needs and nothing else:

- the manifest itself (and, for an index, its image manifests), so the
  signature can be tied to the image on the Docker host;
- cosign's key-based signatures: the ``sha256-<hex>.sig`` tag, whose layers
  are simple-signing payloads with the signature in an annotation;
- cosign's key-based attestations: the ``sha256-<hex>.att`` tag, whose layers
  are DSSE envelopes (in-toto statements such as SLSA provenance);
- Sigstore bundles attached as OCI referrers (signatures and attestations
  alike): the referrers API (``/v2/<name>/referrers/<digest>``), or the
  ``sha256-<hex>`` referrers tag when the registry has no referrers API (the
  OCI 1.1 fallback).

Every document fetched by digest is checked against that digest. A missing
tag is an answer ("no signatures"); anything else that goes wrong (refused
connection, timeout, HTTP 5xx, authentication failure) raises
:class:`RegistryError`, which admission turns into a fail-closed finding.

oras-py (the ORAS project's client) handles the registry's authentication
(bearer-token challenges, basic auth, credentials from a Docker
``config.json``) and request URLs. Two things it does not do are done here:
its request method retries failed requests with sleeps of 3 to 83 seconds and
sets no time limit, which would hold a spawn for minutes when a registry is
down, so :class:`_Registry` overrides it with one bounded attempt; and
oras-py 0.2 has no call for the referrers API, so that URL is built here.
"""

import hashlib
import json
from dataclasses import dataclass

import oras.auth
import oras.provider
import requests
from requests.adapters import HTTPAdapter

from ..decisions.reference import parse

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_TYPES = ("application/vnd.dev.sigstore.bundle.v0.3+json",
                "application/vnd.dev.sigstore.bundle+json;version=0.3",
                "application/vnd.dev.sigstore.bundle+json;version=0.2")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json") + INDEX_TYPES
MAX_DOCUMENT = 4 << 20     # a manifest, payload or bundle; signatures are a few kB
MAX_SIGNATURES = 32        # layers in a .sig manifest / bundles per image that are read
DOCKER_HUB = "registry-1.docker.io"


class RegistryError(RuntimeError):
    """The registry could not answer; the message names the registry and the problem."""


@dataclass(frozen=True)
class SimpleSignature:
    payload: bytes
    signature: str             # base64, from the layer annotation
    certificate: str = ""      # set by keyless (Fulcio) cosign signatures


@dataclass(frozen=True)
class Material:
    """What the registry holds for one manifest digest."""

    digest: str
    config_digests: tuple = ()         # config digests of the manifest (or the index's manifests)
    simple: tuple = ()                 # SimpleSignature, from the .sig tag
    bundles: tuple = ()                # Sigstore bundle JSON bytes, from referrers
    envelopes: tuple = ()              # DSSE envelope JSON bytes, from the .att tag

    def fingerprint(self):
        parts = [self.digest, list(self.config_digests),
                 [[hashlib.sha256(s.payload).hexdigest(), s.signature, s.certificate] for s in self.simple],
                 [hashlib.sha256(b).hexdigest() for b in self.bundles],
                 [hashlib.sha256(e).hexdigest() for e in self.envelopes]]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout):
        super().__init__(max_retries=0)
        self.timeout = timeout

    def send(self, request, **kwargs):
        kwargs["timeout"] = self.timeout  # also the token requests oras-py's auth makes
        return super().send(request, **kwargs)


class _Registry(oras.provider.Registry):
    """oras-py's client with one attempt per request and a time limit on every request."""

    def __init__(self, host, plain_http, timeout):
        super().__init__(hostname=host, insecure=plain_http)
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _TimeoutAdapter(timeout))

    def do_request(self, url, method="GET", data=None, headers=None, json=None, stream=False):
        headers = dict(headers or {})
        if isinstance(self.auth, oras.auth.TokenAuth) and self.auth.token is not None:
            headers.update(self.auth.get_auth_header())
        response = self.session.request(method, url, headers=headers, stream=stream, verify=self._tls_verify)
        if response.status_code == 401:
            headers, changed = self.auth.authenticate_request(response, headers)
            if changed:
                response = self.session.request(method, url, headers=headers, stream=stream, verify=self._tls_verify)
        return response


class Reader:
    """Reads from the registry of ``image_name`` (``registry/repository``)."""

    def __init__(self, image_name, plain_http=(), timeout=10.0, auth_file=""):
        ref = parse(image_name)
        self.registry = ref.registry
        self.repository = ref.repository
        host = DOCKER_HUB if ref.registry == "docker.io" else ref.registry
        self.client = _Registry(host, ref.registry in plain_http, timeout)
        self.base = f"{self.client.prefix}://{host}/v2/{ref.repository}"
        self.container = self.client.get_container(f"{host}/{ref.repository}")
        self.client.auth.load_configs(self.container, [auth_file] if auth_file else None)

    def _get(self, url, accept=None):
        """Response bytes, or None for 404. Raises RegistryError for anything but 200/404."""
        try:
            response = self.client.do_request(url, "GET", headers={"Accept": ", ".join(accept)} if accept else {},
                                              stream=True)
            with response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise RegistryError(f"{self.registry} answered HTTP {response.status_code} for "
                                        f"{url.split('/v2/', 1)[-1]}")
                data = response.raw.read(MAX_DOCUMENT + 1, decode_content=True)
        except (requests.RequestException, oras.auth.AuthenticationException, ValueError, OSError) as e:
            raise RegistryError(f"cannot reach the registry {self.registry}: {e}") from None
        if len(data) > MAX_DOCUMENT:
            raise RegistryError(f"{url.split('/v2/', 1)[-1]} on {self.registry} is larger than "
                                f"{MAX_DOCUMENT >> 20} MiB")
        return data

    def _by_digest(self, kind, digest, accept=None):
        data = self._get(f"{self.base}/{kind}/{digest}", accept)
        if data is None:
            raise RegistryError(f"{self.registry}/{self.repository} has no {kind[:-1]} {digest}")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"{self.registry} sent a {kind[:-1]} that does not match its digest {digest}")
        return data

    def _json(self, data, what):
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RegistryError(f"{what} on {self.registry} is not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"{what} on {self.registry} is not a JSON object")
        return doc

    def read(self, digest, attestations=False):
        """The :class:`Material` for manifest ``digest`` (``sha256:<hex>``); its DSSE envelopes
        from the ``.att`` tag too when ``attestations`` (one more request)."""
        manifest = self._json(self._by_digest("manifests", digest, MANIFEST_TYPES), f"manifest {digest}")
        configs = [(manifest.get("config") or {}).get("digest")]
        for child in (manifest.get("manifests") or [])[:MAX_SIGNATURES]:
            if child.get("mediaType") in MANIFEST_TYPES and child.get("mediaType") not in INDEX_TYPES:
                doc = self._json(self._by_digest("manifests", child.get("digest", ""), MANIFEST_TYPES), "manifest")
                configs.append((doc.get("config") or {}).get("digest"))
        hexdigest = digest.split(":", 1)[1]
        return Material(digest, tuple(sorted(c for c in configs if isinstance(c, str))),
                        tuple(self._simple(hexdigest)), tuple(self._bundles(digest, hexdigest)),
                        tuple(self._envelopes(hexdigest)) if attestations else ())

    def _envelopes(self, hexdigest):
        data = self._get(f"{self.base}/manifests/sha256-{hexdigest}.att", MANIFEST_TYPES)
        if data is None:
            return []
        return [self._by_digest("blobs", layer.get("digest", ""))
                for layer in (self._json(data, "attestation manifest").get("layers") or [])[:MAX_SIGNATURES]
                if layer.get("mediaType") == DSSE_ENVELOPE]

    def _simple(self, hexdigest):
        data = self._get(f"{self.base}/manifests/sha256-{hexdigest}.sig", MANIFEST_TYPES)
        if data is None:
            return []
        out = []
        for layer in (self._json(data, "signature manifest").get("layers") or [])[:MAX_SIGNATURES]:
            annotations = layer.get("annotations") or {}
            if layer.get("mediaType") != SIMPLE_SIGNING or SIGNATURE_ANNOTATION not in annotations:
                continue
            payload = self._by_digest("blobs", layer.get("digest", ""))
            out.append(SimpleSignature(payload, str(annotations[SIGNATURE_ANNOTATION]),
                                       str(annotations.get(CERTIFICATE_ANNOTATION) or "")))
        return out

    def _bundles(self, digest, hexdigest):
        index = self._get(f"{self.base}/referrers/{digest}", INDEX_TYPES[:1])
        if index is None:  # no referrers API: the referrers tag schema
            index = self._get(f"{self.base}/manifests/sha256-{hexdigest}", INDEX_TYPES[:1])
        if index is None:
            return []
        out = []
        for entry in (self._json(index, "referrers index").get("manifests") or [])[:MAX_SIGNATURES]:
            if entry.get("artifactType") not in BUNDLE_TYPES:
                continue
            manifest = self._json(self._by_digest("manifests", entry.get("digest", ""), MANIFEST_TYPES),
                                  "bundle manifest")
            if (manifest.get("subject") or {}).get("digest") != digest:
                continue  # a referrers tag may list artifacts for another subject
            for layer in (manifest.get("layers") or [])[:1]:
                if layer.get("mediaType") in BUNDLE_TYPES:
                    out.append(self._by_digest("blobs", layer.get("digest", "")))
        return out
