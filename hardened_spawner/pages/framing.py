"""Pages that may not be framed, and state-changing requests that must come from the page's own origin.

With the shipped configuration (no ``subdomain_host``) the hub, its services
and every user's server share one origin. A page on Bob's server could
then frame a service page while Alice is logged in, read its XSRF token
from the frame and submit its form in her name (issue 20, hole 1). So every
page of the hub's services and of the operations page:

- refuses to be framed (``Content-Security-Policy: frame-ancestors 'none'``
  and, for older browsers, ``X-Frame-Options: DENY``);
- refuses a state-changing request (POST, PUT, PATCH, DELETE) whose
  ``Sec-Fetch-Site`` says another site or origin sent it (only
  ``same-origin`` and ``none``, a request the user typed or bookmarked, are
  taken), or whose ``Origin`` is not the page's own; clients that send
  neither header (scripts with a token) are judged by their token, as
  before. The XSRF token stays required as well.
"""

from tornado import web

FRAME_HEADERS = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OWN_SITE = frozenset({"same-origin", "none"})


def cross_site_refusal(method, headers, own_origin):
    """Why a request with ``headers`` (a mapping) must be refused as sent by another site, or "" (pure)."""
    if method.upper() in SAFE_METHODS:
        return ""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in OWN_SITE:
        return (f"This request came from another site (Sec-Fetch-Site: {site}), so it is refused: "
                "open this page itself and use its form.")
    origin = headers.get("Origin")
    if origin is not None and origin.strip().rstrip("/").lower() != own_origin.rstrip("/").lower():
        return (f"This request came from {origin}, not from {own_origin}, so it is refused: "
                "open this page itself and use its form.")
    return ""


class FrameGuard:
    """Mixin for tornado handlers (put it first): the frame headers on every answer, and the origin check.

    The handler's own origin is the scheme and host the request arrived with (the proxy in front must pass
    ``Host`` and ``X-Forwarded-Proto`` on, as JupyterHub's own checks need too).
    """

    def set_default_headers(self):
        super().set_default_headers()
        for name, value in FRAME_HEADERS.items():
            if name == "Content-Security-Policy" and "frame-ancestors 'none'" in self._headers.get(name, ""):
                continue  # the hub's own policy says so already (and keeps its report-uri)
            self.set_header(name, value)

    def prepare(self):
        refused = cross_site_refusal(self.request.method, self.request.headers,
                                     f"{self.request.protocol}://{self.request.host}")
        if refused:
            raise web.HTTPError(403, refused)
        return super().prepare()
