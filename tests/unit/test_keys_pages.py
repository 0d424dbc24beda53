"""The SSH keys service renders its pages inside the hub's page.html, site overrides included."""

import os
from types import SimpleNamespace

from jupyterhub._data import DATA_FILES_PATH

from hardened_spawner.operations.hub import TEMPLATES as OPERATIONS_TEMPLATES
from hardened_spawner.ssh.keys_service import TEMPLATES as KEYS_TEMPLATES
from hardened_spawner.ssh.keys_web import Pages

DEFAULTS = os.path.join(DATA_FILES_PATH, "templates")


def handler(name="alice", scopes=frozenset()):
    return SimpleNamespace(current_user={"name": name}, scopes=set(scopes), xsrf_token=b"xsrf-token")


def test_a_site_page_html_that_extends_the_hubs_renders_in_the_service():
    # jupyterhub_config.py puts the operations page.html (which extends "templates/page.html") on the path
    pages = Pages("ssh-keys", "/services/ssh-keys/", "/", [KEYS_TEMPLATES, OPERATIONS_TEMPLATES], DEFAULTS)
    html = pages.render("ssh-keys-error.html", handler(scopes={"admin-ui"}), status_code=503, message="store down")
    assert "store down" in html and 'id="hs-ssh-keys-error"' in html
    assert "/hub/operations" in html  # the site's page.html was used, and it extended the hub's


def test_without_site_templates_the_hubs_page_html_is_used():
    pages = Pages("ssh-keys", "/services/ssh-keys/", "/", [KEYS_TEMPLATES], DEFAULTS)
    html = pages.render("ssh-keys-error.html", handler(), status_code=404, message="no such user")
    assert "no such user" in html and "/hub/operations" not in html and "/hub/logout" in html
