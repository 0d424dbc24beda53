"""Which requests hardened_spawner.pages.framing refuses as sent by another site (issue 20, hole 1)."""

import pytest

from hardened_spawner.pages.framing import cross_site_refusal

OWN = "https://hub.example.org"


@pytest.mark.parametrize("method,headers,refused", [
    ("GET", {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, ""),  # reading is not changing
    ("POST", {}, ""),  # a script with a token sends neither header: its token decides
    ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": OWN}, ""),
    ("POST", {"Sec-Fetch-Site": "none"}, ""),
    ("DELETE", {"Origin": OWN + "/"}, ""),
    ("POST", {"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),  # bob.hub.example.org with subdomains
    ("DELETE", {"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
    ("POST", {"Origin": "https://bob.hub.example.org"}, "came from https://bob.hub.example.org, not from " + OWN),
    ("PUT", {"Sec-Fetch-Site": "same-origin", "Origin": "null"}, "came from null"),  # a sandboxed frame
    ("post", {"Origin": "http://hub.example.org"}, "came from http://hub.example.org"),  # another scheme
])
def test_state_changing_requests_must_come_from_the_pages_own_origin(method, headers, refused):
    why = cross_site_refusal(method, headers, OWN)
    assert (refused in why and why.endswith("use its form.")) if refused else why == ""
