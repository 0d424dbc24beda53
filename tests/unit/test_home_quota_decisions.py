"""The home quota decisions (decisions/home_quota.py) on synthetic facts: create, grow only, reattach, refuse."""

from hardened_spawner.decisions.home_quota import HomeFacts, home_actions, quota_problems, volume_action
from hardened_spawner.decisions.limits import build_limits

MiB = 1024**2
VOLUME = "jupyterhub-user-ada"


def test_a_new_home_is_made_with_its_size_and_files_and_attached():
    actions = home_actions(VOLUME, 256 * MiB, 100_000, HomeFacts())
    assert (actions.create, actions.files, actions.attach, actions.grow_to) == (256 * MiB, 100_000, True, 0)
    assert not actions.refusal


def test_a_plain_volume_from_before_the_quota_is_refused_and_nothing_is_made():
    actions = home_actions(VOLUME, 256 * MiB, 0, HomeFacts(volume_device=""))
    assert "exists without a size limit" in actions.refusal and VOLUME in actions.refusal
    assert not (actions.create or actions.grow_to or actions.attach)


def test_a_bigger_quota_grows_a_home_no_server_uses_and_attaches_it_afresh():
    facts = HomeFacts(image_size=256 * MiB, loop="/dev/loop3", volume_device="/dev/loop3")
    actions = home_actions(VOLUME, 512 * MiB, 0, facts)
    assert (actions.grow_to, actions.attach, actions.create) == (512 * MiB, True, 0)


def test_a_home_in_use_is_not_grown_and_the_user_is_told_when_it_will_be():
    facts = HomeFacts(image_size=256 * MiB, loop="/dev/loop3", volume_device="/dev/loop3", in_use=True)
    actions = home_actions(VOLUME, 512 * MiB, 0, facts)
    assert (actions.grow_to, actions.attach) == (0, False)
    assert "grows to 512" in actions.notice


def test_a_smaller_quota_never_shrinks_the_home():
    facts = HomeFacts(image_size=512 * MiB, loop="/dev/loop3", volume_device="/dev/loop3")
    actions = home_actions(VOLUME, 256 * MiB, 0, facts)
    assert (actions.grow_to, actions.create, actions.attach) == (0, 0, False)
    assert "never shrunk" in actions.notice


def test_an_image_whose_loop_device_is_gone_is_attached_again_and_its_volume_recreated():
    facts = HomeFacts(image_size=256 * MiB, loop="", volume_device="/dev/loop3")
    actions = home_actions(VOLUME, 256 * MiB, 0, facts)
    assert actions.attach and not (actions.create or actions.grow_to)
    assert volume_action("/dev/loop3", "/dev/loop5") == "recreate"
    assert volume_action("/dev/loop5", "/dev/loop5") == ""
    assert volume_action(None, "/dev/loop5") == "create"


def test_quota_settings_are_checked_where_they_are_declared():
    assert quota_problems("p.", None, 0) == []
    assert [s for s, _ in quota_problems("p.", 1 * MiB, 0)] == ["p.home_quota"]
    assert [s for s, _ in quota_problems("p.", None, 5000)] == ["p.home_files"]
    assert [s for s, _ in quota_problems("p.", 64 * MiB, 10)] == ["p.home_files"]
    limits, problems = build_limits("p.", "1G", 1, 100, "64m", home_quota="10G", home_files=200_000)
    assert problems == [] and (limits.home, limits.home_files) == (10 * 1024**3, 200_000)
    limits, problems = build_limits("p.", "1G", 1, 100, "64m", home_quota="", home_files=0)
    assert problems == [] and limits.home is None
    _, problems = build_limits("p.", "1G", 1, 100, "64m", home_quota="10G", home_files="many")
    assert [s for s, _ in problems] == ["p.home_files"]


def test_usage_is_marked_near_and_full_by_bytes_or_files_and_said_in_words():
    from hardened_spawner.decisions.home_quota import HomeUsage, describe_usage, usage_level

    assert usage_level(HomeUsage("v", 10 * MiB, 100 * MiB, 10, 1000)) == "ok"
    assert usage_level(HomeUsage("v", 95 * MiB, 100 * MiB, 10, 1000)) == "near"
    assert usage_level(HomeUsage("v", 10 * MiB, 100 * MiB, 1000, 1000)) == "full"  # files, not bytes
    assert usage_level(HomeUsage("v", 0, 0, 0, 0, error="dumpe2fs: no such file")) == "unknown"
    assert describe_usage(HomeUsage("v", 50 * MiB, 100 * MiB, 11, 65536)) == \
        "50 MiB of 100 MiB (50%); 11 of 65,536 files (0%)"
    assert describe_usage(HomeUsage("v", 0, 0, 0, 0, error="gone")) == "not measured: gone"
