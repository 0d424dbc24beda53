"""Issue 25 item 3, the watcher: a home the filesystem does not bound (``home_quota_mode = "watch"``), through a
real hub on the real daemon.

The home is a plain Docker volume. As the notebook user inside a real spawned container the filler writes
toward, then past, the quota; the hub's watcher (Docker's volume size every ``home_watch_interval`` seconds)
shows the notice on the user's home page at 90%, announces the stop at the quota, stops the server past 110%
and refuses the next spawn with the reason; no file is deleted, and a second user's server answers and writes
to its own home throughout.
"""

import re
import time

import docker
import pytest
import requests

from conftest import containers_of, only_container, run_in
from hubrig import Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

MiB = 1024**2
QUOTA, INTERVAL = 64 * MiB, 2.0
BOUND = 15.0  # seconds the watcher may take past one interval (its df, the stop) on a loaded 2-core machine
USERS = ["hw-fill", "hw-other"]


def volume_of(user):
    return "jupyterhub-user-" + user.replace("-", "-2d")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    config = f"""
c.HardenedDockerSpawner.home_quota = "{QUOTA}"
c.HardenedDockerSpawner.home_quota_mode = "watch"
c.HardenedDockerSpawner.home_watch_interval = {INTERVAL}
c.HardenedDockerSpawner.home_watch_grace = 3600
c.HardenedDockerSpawner.home_metrics_per_user = True
"""
    remove_user_artifacts(dclient, USERS)
    hub = Hub(tmp_path_factory.mktemp("home-watch-hub"), config)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


def home_page(hub, user):
    """The hub's home page as ``user`` sees it (logged in with the demo password)."""
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30)
    session.post(f"{hub.url}/hub/login", timeout=30, data={"username": user, "password": "test-password",
                                                           "_xsrf": session.cookies.get("_xsrf", "")})
    page = session.get(f"{hub.url}/hub/home", timeout=30)
    assert page.status_code == 200, page.text[:300]
    return page.text


def notices(page):
    return re.findall(r'hs-home-notice" role="alert">([^<]*)<', page)


def usage_line(page):
    return re.findall(r'hs-home-usage">([^<]*)<', page)


def wait_for(what, timeout):
    start, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found, time.monotonic() - start
        time.sleep(0.25)
    return None, time.monotonic() - start


def docker_df(dclient):
    """``docker system df``, waiting while the hub's watcher runs one (Docker runs one at a time)."""
    for _ in range(40):
        try:
            return dclient.df()
        except docker.errors.APIError as e:
            if "already running" not in str(e):
                raise
            time.sleep(0.25)
    return dclient.df()


def step_records(hub, user):
    return [r["step"] for r in hub.audit() if r.get("event") == "home.watch" and r.get("user") == user]


def other_works(hub, dclient):
    """The second user's server answers through the proxy and writes to its own home."""
    code, out = run_in(dclient, only_container(dclient, "hw-other"),
                       "dd if=/dev/zero of=/home/jovyan/work bs=1M count=5 2>&1 && echo other-wrote")
    assert code == 0 and "other-wrote" in out, out
    assert hub.user_get("hw-other", "/api/status").status_code == 200


def test_the_watcher_warns_announces_stops_and_refuses_and_another_users_server_keeps_working(hub, dclient):
    for user in USERS:
        events = hub.spawn_and_wait(user)
        assert events[-1].get("ready"), events[-1]
    assert dclient.inspect_volume(volume_of("hw-fill"))["Options"] in (None, {})  # a plain volume, no device
    filler = only_container(dclient, "hw-fill")

    # 90%: the notice on the user's home page
    code, out = run_in(dclient, filler, "dd if=/dev/zero of=/home/jovyan/a bs=1M count=58 2>&1")
    assert code == 0, out
    found, took = wait_for(lambda: [n for n in notices(home_page(hub, "hw-fill")) if "delete or move" in n],
                           INTERVAL + BOUND)
    print(f"58 MiB of a 64 MiB quota: the near notice after {took:.1f} s: {found}")
    assert found and "of its 64 MiB quota (90%)" in found[0], found
    assert not notices(home_page(hub, "hw-other"))
    print(usage_line(home_page(hub, "hw-fill")))  # the user's own use and quota, on their home page
    assert re.fullmatch(r"Your home: 5[89](\.\d)? MiB of 64 MiB \(9\d%\), measured \d\d:\d\d UTC\.",
                        usage_line(home_page(hub, "hw-fill"))[0]), usage_line(home_page(hub, "hw-fill"))
    assert re.fullmatch(r"Your home: [\d.]+ (KiB|MiB|B) of 64 MiB \(\d%\).*", usage_line(home_page(hub, "hw-other"))[0])
    other_works(hub, dclient)

    # at the quota: the stop is announced with the time left; the server still runs
    code, out = run_in(dclient, filler, "dd if=/dev/zero of=/home/jovyan/b bs=1M count=8 2>&1")
    assert code == 0, out
    found, took = wait_for(lambda: [n for n in notices(home_page(hub, "hw-fill")) if "will be stopped in" in n],
                           INTERVAL + BOUND)
    print(f"66 MiB: the over notice after {took:.1f} s: {found}")
    assert found and "60 min" in found[0], found
    assert hub.server("hw-fill") and hub.server("hw-fill").get("ready")
    other_works(hub, dclient)

    # past 110%: stopped at the next look, whatever the grace
    code, out = run_in(dclient, filler, "dd if=/dev/zero of=/home/jovyan/c bs=1M count=12 2>&1; "
                                        "du -sb /home/jovyan | cut -f1")
    written = int(out.split()[-1])
    wrote_at = time.monotonic()
    stopped, _ = wait_for(lambda: not hub.server("hw-fill"), INTERVAL + BOUND)
    took = time.monotonic() - wrote_at
    print(f"{written} bytes in the home ({written / QUOTA:.0%} of the quota): the server stopped after {took:.1f} s")
    assert stopped, "the server still runs past 110% of its quota"
    assert written > QUOTA * 1.1, written
    assert not containers_of(dclient, "hw-fill")
    page_notices = notices(home_page(hub, "hw-fill"))
    print(page_notices)
    assert any("Your server was stopped" in n and "No file was deleted" in n for n in page_notices), page_notices
    other_works(hub, dclient)
    assert step_records(hub, "hw-fill") == ["near", "over", "stop"], step_records(hub, "hw-fill")

    # the next spawn is refused with the reason, and nothing was deleted
    events = hub.spawn_and_wait("hw-fill")
    print(events[-1])
    assert events[-1].get("failed"), events[-1]
    assert "uses 78 MiB of its 64 MiB quota" in events[-1]["message"], events[-1]
    assert "Nothing was deleted" in events[-1]["message"], events[-1]
    assert not containers_of(dclient, "hw-fill")
    denied = [r for r in hub.audit() if r.get("event") == "spawn.denied" and r.get("user") == "hw-fill"]
    assert denied and denied[-1]["reason"] == "home-full", denied
    files = docker_df(dclient)["Volumes"]
    size = next(v["UsageData"]["Size"] for v in files if v["Name"] == volume_of("hw-fill"))
    assert size >= 78 * MiB, (size, written)  # the three files dd wrote are all there
    other_works(hub, dclient)

    # the metrics: homes by level without names, and (opted in) each user's bytes used / quota
    text = hub.api("GET", "/../metrics").text
    found = dict(re.findall(r'^jupyterhub_hardened_(homes\{level="\w+"\}|home_usage_ratio\{user="[\w-]+"\}) (\S+)$',
                            text, re.M))
    print(found)
    assert float(found['homes{level="over"}']) == 1.0 and float(found['homes{level="ok"}']) == 1.0, found
    assert float(found['home_usage_ratio{user="hw-fill"}']) > 1.1, found
    assert float(found['home_usage_ratio{user="hw-other"}']) < 0.9, found

    # the operations page: every watched home, as the watcher last measured it (the stopped server's too)
    rows = operations_homes(hub)
    print(rows)
    assert rows[volume_of("hw-fill")][0] == "full" and "of 64 MiB" in rows[volume_of("hw-fill")][1], rows
    assert rows[volume_of("hw-other")][0] == "ok", rows
    assert re.search(r", watched, measured \d\d:\d\d UTC$", rows[volume_of("hw-other")][1]), rows


def operations_homes(hub):
    """``{volume: (level, words)}`` of the operations page's home table, as the hub's admin sees it."""
    admin = requests.Session()
    admin.get(f"{hub.url}/hub/login", timeout=30)
    admin.post(f"{hub.url}/hub/login", timeout=30, data={"username": "admin", "password": "test-password",
                                                         "_xsrf": admin.cookies.get("_xsrf", "")})
    page = admin.get(f"{hub.url}/hub/operations", timeout=30)
    assert page.status_code == 200 and 'id="hs-homes"' in page.text, page.text[:500]
    found = re.findall(r'<tr class="hs-home hs-home-(\w+)" data-volume="([^"]+)">\s*<td>[^<]*</td><td>([^<]*)</td>',
                       page.text)
    return {volume: (level, words) for level, volume, words in found}
