"""Verifying OpenID Connect id_tokens against the provider's JSON Web Key Set.

OAuthenticator's ``userdata_from_id_token`` decodes the id_token without
checking its signature; :class:`IdTokenVerifier` checks the signature (keys
from the provider's JWKS, refetched at most once a minute for an unknown key
id), the algorithm (never ``none`` or HMAC), audience, issuer and times.
"""

import time

import jwt

JWKS_REFETCH_SECONDS = 60  # an unknown key id refetches the JWKS at most this often


class IdTokenInvalid(Exception):
    """An id_token that failed verification; the message says which check."""


class IdTokenVerifier:
    """``fetch_jwks()``: an async callable returning the provider's JWKS as a dict."""

    def __init__(self, fetch_jwks, jwks_url, audience, issuer, algorithms, leeway, clock=time.monotonic):
        self.fetch_jwks = fetch_jwks
        self.jwks_url = jwks_url
        self.audience = audience
        self.issuer = issuer
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.clock = clock
        self._keys = {}
        self._fetched = None

    async def signing_key(self, kid):
        stale = self._fetched is None or self.clock() - self._fetched > JWKS_REFETCH_SECONDS
        if kid not in self._keys and stale:
            keys = jwt.PyJWKSet.from_dict(await self.fetch_jwks()).keys
            self._keys = {k.key_id: k for k in keys}
            self._fetched = self.clock()
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise IdTokenInvalid(f"its key id {kid!r} is not in the provider's JWKS ({self.jwks_url})")

    async def verify(self, id_token):
        """The id_token's claims, after checking signature, algorithm, audience, issuer and times."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as e:
            raise IdTokenInvalid(f"it is not a well-formed JWT ({e})") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise IdTokenInvalid(f"its algorithm {alg!r} is not one of {', '.join(self.algorithms)}")
        key = await self.signing_key(header.get("kid"))
        try:
            return jwt.decode(
                id_token, key=key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise IdTokenInvalid(str(e)) from None
