"""The home watcher's steps (decisions/home_watch.py) on synthetic figures: notice, refusal, stop, never delete."""

from hardened_spawner.decisions.home_watch import HARD, WatchState, level, spawn_refusal, watch_step
from hardened_spawner.operations import view
from hardened_spawner.spawner import clients

MiB = 1024**2
QUOTA = 100 * MiB
GRACE = 300.0


def test_below_the_soft_share_nothing_is_said():
    decision = watch_step(89 * MiB, QUOTA, WatchState(), 1000.0, GRACE)
    assert (decision.state.step, decision.notice, decision.changed, decision.stop) == ("ok", "", False, False)


def test_from_ninety_percent_the_user_is_told_and_the_step_is_audited_once():
    first = watch_step(90 * MiB, QUOTA, WatchState(), 1000.0, GRACE)
    assert first.state.step == "near" and first.changed and not first.stop
    assert "90 MiB of its 100 MiB quota (90%)" in first.notice and "delete or move files" in first.notice
    again = watch_step(95 * MiB, QUOTA, first.state, 1060.0, GRACE)
    assert again.state.step == "near" and not again.changed


def test_at_the_quota_the_stop_is_announced_with_the_time_left_and_then_made_after_the_grace():
    over = watch_step(QUOTA, QUOTA, WatchState("near"), 1000.0, GRACE)
    assert over.state == WatchState("over", 1000.0) and over.changed and not over.stop
    assert "stopped in 5 min" in over.notice and "nothing is deleted" in over.notice
    still = watch_step(QUOTA + MiB, QUOTA, over.state, 1299.0, GRACE)
    assert still.state == WatchState("over", 1000.0) and not still.changed
    assert "stopped in 60 s" not in still.notice and "stopped in 1 s" in still.notice
    stop = watch_step(QUOTA + MiB, QUOTA, still.state, 1300.0, GRACE)
    assert stop.stop and stop.changed and stop.state.over_since == 1000.0
    assert "Your server was stopped" in stop.notice and "for longer than 5 min" in stop.notice
    assert "No file was deleted" in stop.notice


def test_far_past_the_quota_the_server_is_stopped_at_once_whatever_the_grace():
    decision = watch_step(int(QUOTA * HARD), QUOTA, WatchState("ok"), 1000.0, 3600.0)
    assert decision.stop and "more than 110% of it" in decision.notice


def test_a_grace_of_zero_stops_at_the_quota():
    assert watch_step(QUOTA, QUOTA, WatchState("near"), 1000.0, 0.0).stop


def test_back_below_the_quota_the_grace_starts_again():
    over = watch_step(QUOTA, QUOTA, WatchState(), 1000.0, GRACE)
    below = watch_step(80 * MiB, QUOTA, over.state, 1100.0, GRACE)
    assert below.state == WatchState("ok") and below.changed
    again = watch_step(QUOTA, QUOTA, below.state, 1350.0, GRACE)
    assert again.state == WatchState("over", 1350.0) and not again.stop


def test_a_spawn_is_refused_at_the_quota_with_the_reason_and_allowed_below():
    assert spawn_refusal("jupyterhub-user-ada", QUOTA - 1, QUOTA) == ""
    refusal = spawn_refusal("jupyterhub-user-ada", QUOTA, QUOTA)
    assert "jupyterhub-user-ada uses 100 MiB of its 100 MiB quota (100%)" in refusal
    assert "Nothing was deleted" in refusal and "bigger home" in refusal


def _samples(per_user):
    from hardened_spawner.telemetry.metrics import HomeCollector

    figures = [(user, used, QUOTA, level(used, QUOTA)) for user, used in (("ada", 95 * MiB), ("bob", 10 * MiB),
                                                                         ("cy", 120 * MiB))]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in HomeCollector(lambda: (per_user, figures)).collect() for s in family.samples}


def test_the_homes_gauge_counts_by_level_without_user_names_unless_the_admin_opts_in():
    off = _samples(False)
    assert {dict(labels)["level"]: value for (_, labels), value in off.items()} == {"ok": 1, "near": 1, "over": 1}
    on = _samples(True)
    ratios = {dict(labels)["user"]: value for (name, labels), value in on.items() if name.endswith("_home_usage_ratio")}
    assert ratios == {"ada": 0.95, "bob": 0.1, "cy": 1.2}


def test_a_watched_home_refuses_home_files_at_start_as_a_config_problem():
    from traitlets.config import Config

    from hardened_spawner.spawner.docker import HardenedDockerSpawner

    c = Config()
    c.HardenedDockerSpawner.home_quota_mode = "watch"
    c.HardenedDockerSpawner.profiles = [{"slug": "small", "home_quota": "1G", "default": True},
                                        {"slug": "many", "home_quota": "1G", "home_files": 200_000}]
    problems = HardenedDockerSpawner(config=c).config_problems()
    assert [m for s, m in problems if s == "HardenedDockerSpawner.home_quota_mode"] == [
        "profile 'many' has home_files 200000, but a watched home counts bytes only; "
        "remove home_files or set home_quota_mode = 'filesystem'"], problems
    c.HardenedDockerSpawner.home_quota_mode = "filesystem"
    assert not [s for s, _ in HardenedDockerSpawner(config=c).config_problems() if s.endswith("home_quota_mode")]


async def test_the_operations_page_lists_watched_homes_as_last_measured(tmp_path):
    watched = {"jupyterhub-user-bob": (80 * MiB, 64 * MiB, 1_800_000_000, "bob"),
               "jupyterhub-user-amy": (1 * MiB, 64 * MiB, 1_800_000_060, "amy")}
    rows = await view.homes(str(tmp_path), watched)  # no filesystem homes in an empty home_quota_dir
    assert [(usage.volume, level, words) for usage, level, words in rows] == [
        ("jupyterhub-user-amy", "ok", "1 MiB of 64 MiB (1%), watched, measured 08:01 UTC"),
        ("jupyterhub-user-bob", "full", "80 MiB of 64 MiB (125%), watched, measured 08:00 UTC")]


async def test_the_watchers_notice_is_on_the_spawn_form_and_in_the_next_spawns_progress(make):
    """A user whose server the watcher stopped reads why where they choose their next server, and when it starts."""
    said = "Your server was stopped: its home uses 78 MiB of its 64 MiB quota. No file was deleted."
    clients.home_watcher().notices[("alice", "")] = said
    spawner = make(profiles=[{"slug": "small"}, {"slug": "big"}])
    assert said in await spawner.render_options_form()
    assert said not in await make(name="bob", profiles=[{"slug": "small"}, {"slug": "big"}]).render_options_form()
    await spawner.start()
    assert said in [e["message"] for e in spawner._progress.events]
