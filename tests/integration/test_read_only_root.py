"""Issue 25: a read-only root filesystem by default, through a real hub on the real daemon.

With the shipped configuration (no ``read_only_root`` setting) a spawned server's root is read-only:
the notebook user cannot write to ``/``, writes its home (the home volume) and ``/tmp`` (a bounded
tmpfs). An image whose notebook user has its home elsewhere (``/srv/jovyan``, built here from the
rig's single-user image) could not write Jupyter's runtime files there: the spawn is refused before
anything is created, in words that name the image, the home and the fixes, and the same image
spawns on a hub that turns ``read_only_root`` off for it.
"""

import io

import pytest

from conftest import containers_of, run_in
from hubrig import IMAGE, Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

ELSEWHERE = "hardened-spawner/ro-home-elsewhere:test"
CONFIG = f"""
c.HardenedDockerSpawner.allowed_images = {{"stock": {IMAGE!r}, "elsewhere": {ELSEWHERE!r}}}


def _writable_root_for_one_user(spawner):  # the fix the refusal names, for one user of this hub
    if spawner.user.name == "ro-writable":
        spawner.read_only_root = False


c.Spawner.pre_spawn_hook = _writable_root_for_one_user
"""
USERS = ["ro-stock", "ro-elsewhere", "ro-writable"]


@pytest.fixture(scope="module")
def elsewhere(dclient, image):
    """The single-user image with jovyan's home moved to /srv/jovyan (passwd and ENV HOME; the directory
    exists, jovyan's), as an image built for another layout would have it."""
    dockerfile = (f"FROM {IMAGE}\nUSER root\n"
                  "RUN sed -i 's#^jovyan:\\(.*\\):/home/jovyan:#jovyan:\\1:/srv/jovyan:#' /etc/passwd"
                  " && grep -q '^jovyan:.*:/srv/jovyan:' /etc/passwd && mkdir -p /srv/jovyan && chown 1000:100 /srv/jovyan\n"
                  "ENV HOME=/srv/jovyan\nUSER 1000:100\n")
    for _ in dclient.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ELSEWHERE, rm=True, decode=True):
        pass
    yield dclient.inspect_image(ELSEWHERE)["Id"]
    dclient.remove_image(ELSEWHERE, force=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, elsewhere):
    hub = Hub(tmp_path_factory.mktemp("ro-hub"), CONFIG)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


def volumes_of(dclient, user):
    escaped = user.replace("-", "-2d")
    return sorted(v["Name"] for v in dclient.volumes()["Volumes"] or ()
                  if v["Name"] in (f"jupyterhub-user-{escaped}", f"jupyter-{escaped}-ssh-keys",
                                   f"jupyter-{escaped}-conda-policy"))


def test_the_default_root_is_read_only_and_home_and_tmp_stay_writable(hub, dclient):
    user = "ro-stock"
    events = hub.spawn_and_wait(user, {"image": "stock"})
    assert events[-1].get("ready"), events[-1]
    (container,) = containers_of(dclient, user)
    info = dclient.inspect_container(container["Id"])
    assert info["HostConfig"]["ReadonlyRootfs"] is True, info["HostConfig"]
    assert info["HostConfig"]["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1g"}
    code, out = run_in(dclient, container["Id"], "id -u; touch /hs-fill; echo root-exit=$?; touch /etc/hs-fill; "
                                                  "echo etc-exit=$?; touch ~/kept /tmp/scratch && echo home-and-tmp-ok; "
                                                  "ls ~/.local/share/jupyter/runtime | head -1")
    print(out)
    assert out.split()[0] == "1000" and out.count("Read-only file system") == 2, out
    assert "root-exit=1" in out and "etc-exit=1" in out and "home-and-tmp-ok" in out, out
    assert hub.user_get(user, "/api/status").status_code == 200  # the server wrote its runtime files and answers
    hub.stop_server(user)
    assert volumes_of(dclient, user) == ["jupyterhub-user-ro-2dstock"]  # the keys volume went with the server


def test_an_image_whose_users_home_is_not_on_a_writable_mount_is_refused_before_anything_is_created(
        hub, dclient, elsewhere):
    user = "ro-elsewhere"
    r = hub.spawn(user, {"image": "elsewhere"})
    assert r.status_code == 202, r.text
    body = hub.progress(user)[-1]
    assert body.get("failed") and (body["status"], body["reason"]) == (503, "unsafe-config"), body
    [finding] = body["findings"]
    assert finding["rule"] == "read_only_root", finding
    message = finding["message"]
    assert message.startswith(f"the image {ELSEWHERE} runs its notebook user with home directory /srv/jovyan, "
                              "which is not on a writable mount (writable: /home/jovyan, /tmp)"), message
    assert "/srv/jovyan/.local/share/jupyter" in message
    assert "Mount the home volume at /srv/jovyan" in message and "read_only_root = False" in message, message
    assert containers_of(dclient, user) == []
    assert volumes_of(dclient, user) == []  # not the home volume, the keys volume or a policy volume
    denied = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == user]
    assert denied and denied[-1]["findings"][0]["rule"] == "read_only_root"


def test_the_same_image_spawns_where_the_hub_turns_read_only_root_off(hub, dclient, elsewhere):
    user = "ro-writable"
    events = hub.spawn_and_wait(user, {"image": "elsewhere"})
    assert events[-1].get("ready"), events[-1]
    (container,) = containers_of(dclient, user)
    assert dclient.inspect_container(container["Id"])["HostConfig"]["ReadonlyRootfs"] is False
    code, out = run_in(dclient, container["Id"], "echo $HOME; ls -d /srv/jovyan/.local/share/jupyter")
    assert code == 0 and out.split()[0] == "/srv/jovyan", out
    hub.stop_server(user)
