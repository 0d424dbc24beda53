"""Issue 25 items 3-4: home volume quotas per profile, enforced by the kernel, through a real hub on the real daemon.

Each home of a profile with ``home_quota`` is an ext4 image on a loop device, given to Docker as a ``local``
volume. As the notebook user inside a real spawned container: a write past the byte quota fails with ENOSPC
and stops at the quota (the image on the host grows no further), while another user's server answers and
writes to its own home; a million empty files stop at the profile's ``home_files``. A stop keeps the home;
a reboot's lost loop device is attached again at the next start; a profile with a bigger quota grows it and
a smaller one keeps it; deleting a named server that shares it keeps it, deleting the user removes it. A plain home volume made before the quota is refused.
"""

import os
import re
import subprocess

import pytest
import requests

from conftest import containers_of, only_container, run_in
from hubrig import Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

SMALL, BIG, FILES = 256 * 1024**2, 512 * 1024**2, 100_000
USERS = ["hq-fill", "hq-other", "hq-files", "hq-plain"]


def volume_of(user):
    return "jupyterhub-user-" + user.replace("-", "-2d")


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    return tmp_path_factory.mktemp("homes")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image, homes):
    config = f"""
c.HardenedDockerSpawner.home_quota_dir = {str(homes)!r}
c.JupyterHub.allow_named_servers = True
c.HardenedDockerSpawner.profiles = [
    {{"slug": "small", "display_name": "Small home", "home_quota": "{SMALL}", "default": True}},
    {{"slug": "big", "display_name": "Big home", "home_quota": "{BIG}"}},
    {{"slug": "files", "display_name": "Few files", "home_quota": "2G", "home_files": {FILES}}},
]
"""
    hub = Hub(tmp_path_factory.mktemp("home-quota-hub"), config)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)
    for user in USERS:  # what a failed test left: the images and their loop devices
        image = homes / f"{volume_of(user)}.ext4"
        if image.exists():
            for loop in loops(image):
                subprocess.run(["losetup", "-d", loop], check=False)
            image.unlink()


def loops(image):
    out = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", str(image)], capture_output=True, text=True).stdout
    return out.split()


def test_a_write_past_the_home_quota_fails_and_another_users_server_keeps_working(hub, dclient, homes):
    for user in ("hq-fill", "hq-other"):
        events = hub.spawn_and_wait(user, {"profile": "small"})
        assert events[-1].get("ready"), events[-1]
    options = dclient.inspect_volume(volume_of("hq-fill"))["Options"]
    assert options["type"] == "ext4" and options["device"].startswith("/dev/loop"), options
    image = homes / f"{volume_of('hq-fill')}.ext4"
    code, out = run_in(dclient, only_container(dclient, "hq-fill"),
                       "id -u; dd if=/dev/zero of=/home/jovyan/fill bs=1M count=1000; echo dd-exit=$?; "
                       "echo written=$(stat -c %s /home/jovyan/fill)")
    written = int(re.search(r"written=(\d+)", out).group(1))
    on_host = os.stat(image).st_blocks * 512
    print(f"asked 1000 MB into a {SMALL}-byte home: written {written} bytes; the image holds {on_host} bytes "
          f"on the host; dd said: {out.splitlines()[-4:]}")
    assert out.split()[0] != "0", out  # not root
    assert "No space left on device" in out and "dd-exit=1" in out, out
    assert SMALL * 0.8 < written < SMALL, written  # ext4 keeps its journal and inode tables in the quota
    assert on_host <= SMALL, on_host
    # the filler's home is full: the other user's server answers and writes to its own home
    code, out = run_in(dclient, only_container(dclient, "hq-other"),
                       "dd if=/dev/zero of=/home/jovyan/work bs=1M count=50 && echo other-wrote")
    assert code == 0 and "other-wrote" in out, out
    for user in ("hq-fill", "hq-other"):
        assert hub.user_get(user, "/api/status").status_code == 200, user
    own = requests.Session()  # the user reads their own use and quota on the hub's home page
    own.get(f"{hub.url}/hub/login", timeout=30)
    own.post(f"{hub.url}/hub/login", timeout=30, data={"username": "hq-fill", "password": "test-password",
                                                       "_xsrf": own.cookies.get("_xsrf", "")})
    usage = re.findall(r'hs-home-usage">([^<]*)<', own.get(f"{hub.url}/hub/home", timeout=30).text)
    print(usage)
    assert usage and re.fullmatch(r"Your home: [\d.]+ MiB of [\d.]+ MiB \((99|100)%\); [\d,]+ of [\d,]+ files \(\d+%\)\.",
                                  usage[0]), usage
    admin = requests.Session()  # the operations page shows every home's use, as the hub's admin sees it
    admin.get(f"{hub.url}/hub/login", timeout=30)
    admin.post(f"{hub.url}/hub/login", timeout=30, data={"username": "admin", "password": "test-password",
                                                         "_xsrf": admin.cookies.get("_xsrf", "")})
    page = admin.get(f"{hub.url}/hub/operations", timeout=30)
    assert page.status_code == 200 and 'id="hs-homes"' in page.text, page.text[:500]
    rows = {r.split('data-volume="')[1].split('"')[0]: r.split("</tr>")[0] for r in page.text.split('<tr class="hs-home ')[1:]}
    print(rows)
    assert rows[volume_of("hq-fill")].startswith('hs-home-full"'), rows
    assert rows[volume_of("hq-other")].startswith('hs-home-ok"'), rows


def test_a_million_empty_files_stop_at_the_profiles_file_quota(hub, dclient):
    events = hub.spawn_and_wait("hq-files", {"profile": "files"})
    assert events[-1].get("ready"), events[-1]
    code, out = run_in(dclient, only_container(dclient, "hq-files"), """python3 - <<'EOF'
import os, time
os.makedirs("/home/jovyan/many", exist_ok=True)
start, made, error = time.monotonic(), 0, None
try:
    for i in range(1_000_000):
        open(f"/home/jovyan/many/{i}", "x").close()
        made += 1
except OSError as e:
    error = e
print(f"made={made} seconds={time.monotonic() - start:.1f} error={error!r}")
EOF""")
    print(out)
    made = int(re.search(r"made=(\d+)", out).group(1))
    assert "No space left on device" in out, out
    code, df = run_in(dclient, only_container(dclient, "hq-files"), "df -i /home/jovyan | tail -1")
    print(df)
    inodes, used = int(df.split()[1]), int(df.split()[2])
    assert FILES <= inodes < FILES * 1.01, df  # mkfs.ext4 rounds -N up to whole inode tables
    assert used == inodes and FILES * 0.9 < made < inodes, (out, df)


def test_the_home_outlives_a_stop_and_a_lost_loop_device_grows_and_goes_with_the_user(hub, dclient, homes):
    user, volume = "hq-fill", volume_of("hq-fill")
    if not hub.server(user):
        hub.spawn_and_wait(user, {"profile": "small"})
    code, out = run_in(dclient, only_container(dclient, user), "rm -f /home/jovyan/fill; echo kept > /home/jovyan/marker")
    assert code == 0, out
    hub.stop_server(user)
    image = homes / f"{volume}.ext4"
    for loop in loops(image):  # as after a reboot: the image is there, its loop device is not
        subprocess.run(["losetup", "-d", loop], check=True)
    events = hub.spawn_and_wait(user, {"profile": "big"})
    assert events[-1].get("ready"), events[-1]
    code, out = run_in(dclient, only_container(dclient, user), "cat /home/jovyan/marker; df -B1 /home/jovyan | tail -1")
    print(out)
    assert out.startswith("kept"), out
    assert os.path.getsize(image) == BIG
    size = int(out.split()[2])
    assert SMALL < size <= BIG, out
    hub.stop_server(user)
    events = hub.spawn_and_wait(user, {"profile": "small"})
    assert any("never shrunk" in e.get("message", "") for e in events), events
    said = [e["message"] for e in events if e.get("message", "").startswith("Your home: ")]
    print(said)
    assert len(said) == 1, said
    size = re.match(r"Your home: [\d.]+ \w+ of ([\d.]+) MiB", said[0] if said else "")
    assert size and SMALL < float(size.group(1)) * 1024**2 <= BIG, said  # their use of the (kept) 512 MiB home
    assert os.path.getsize(image) == BIG
    hub.stop_server(user)
    # a named server shares the user's home (the volume names no {servername}): deleting it keeps the home
    events = hub.spawn_and_wait(user, {"profile": "small"}, server="second")
    assert events[-1].get("ready"), events[-1]
    code, out = run_in(dclient, [c["Id"] for c in containers_of(dclient, user)][0], "cat /home/jovyan/marker")
    assert out.startswith("kept"), out
    hub.stop_server(user, server="second")
    r = hub.api("DELETE", f"/users/{user}/servers/second", json={"remove": True})
    assert r.status_code == 204, r.text  # deleted (delete_forever ran) before the answer
    assert image.exists() and os.path.getsize(image) == BIG
    r = hub.api("DELETE", f"/users/{user}")
    assert r.status_code == 204, r.text
    hub.users.discard(user)
    assert not image.exists()
    assert not [v for v in dclient.volumes()["Volumes"] or () if v["Name"] == volume]


def test_a_home_volume_without_a_quota_is_refused_not_converted(hub, dclient):
    volume = volume_of("hq-plain")
    dclient.create_volume(volume)
    events = hub.spawn_and_wait("hq-plain", {"profile": "small"})
    print(events[-1])
    assert events[-1].get("failed"), events[-1]
    assert "exists without a size limit" in events[-1]["message"], events[-1]
    assert not containers_of(dclient, "hq-plain")
    assert dclient.inspect_volume(volume)["Options"] in (None, {}), "the plain volume was changed"
