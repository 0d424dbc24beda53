"""``GET /hub/api/hardened-spawner/vsa/<repository>@sha256:<hex>``: the hub's signed verification summary.

Serves the DSSE envelope (:mod:`..admission.vsa_issuer`) of the latest
admission decision on the image with that digest (its registry manifest
digest, or its image id when it has none) in that repository, PASSED or
FAILED, so a registry or a CI gate can rely on the hub's decision;
``.../vsa/sha256:<hex>`` serves the latest for that digest in any
repository. 404 when this hub process has decided on no such image. A summary says which images the hub's
users run and under which policy, so it is not public: the caller needs the
hub's ``admin-ui`` scope or :data:`SCOPE` (grant it to a service's role, e.g.
the CI gate's token).
"""

from jupyterhub.apihandlers import APIHandler
from tornado import web

from ..admission.vsa_issuer import API_PATH, MEDIA_TYPE, STORE

SCOPE = "custom:hardened-spawner:read-vsa"


class VerificationSummary(APIHandler):
    def get(self, resource):
        if not {"admin-ui", SCOPE} & set(self.expanded_scopes):
            raise web.HTTPError(403, f"reading verification summaries needs the scope admin-ui or {SCOPE}")
        envelope = STORE.get(resource)
        if envelope is None:
            raise web.HTTPError(404, f"this hub has not decided on {resource} since it started")
        self.set_header("Content-Type", MEDIA_TYPE)
        self.finish(envelope)


def handlers():
    return [(rf"{API_PATH}((?:[^@?#]+@)?sha256:[0-9a-f]{{64}})", VerificationSummary)]
