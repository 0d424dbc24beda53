import html
import re

import pytest
from hypothesis import given, strategies as st

from hardened_spawner.decisions.limits import Ceilings
from hardened_spawner.decisions.profiles import (
    LIMIT_OPTIONS, OptionsError, access_for, build_catalog, choose, default_for, options_from_form,
    render_form,
)

DEFAULTS = {"mem_limit": "2G", "cpu_limit": 1.0, "pids_limit": 1024, "shm_size": "256m"}
IMAGES = {"base": "example.org/base:1", "cuda": "example.org/cuda:12", "r": "example.org/r:4"}
# The documented example: a host with 4 GPUs and three groups.
RAW = [
    {"slug": "small", "display_name": "Small", "description": "For notebooks and teaching.",
     "mem_limit": "4G", "cpu_limit": 2, "images": ["base", "r"], "default": True},
    {"slug": "large", "display_name": "Large", "mem_limit": "16G", "mem_guarantee": "8G",
     "cpu_limit": 4, "cpu_guarantee": 2, "pids_limit": 4096, "shm_size": "2G",
     "images": ["base", "r"], "groups": ["researchers", "gpu-users"]},
    {"slug": "gpu", "display_name": "One GPU", "mem_limit": "16G", "cpu_limit": 4, "shm_size": "4G",
     "gpus": 1, "images": ["cuda"], "groups": ["gpu-users"]},
    {"slug": "gpu-2", "display_name": "Two GPUs", "mem_limit": "32G", "cpu_limit": 8, "gpus": 2,
     "images": ["cuda"], "groups": ["gpu-admins"]},
]


def catalog(raw=RAW, images=IMAGES, gpu_count=4):
    profiles, problems = build_catalog("S.profiles", raw, DEFAULTS, Ceilings(), images, gpu_count)
    assert problems == []
    return profiles


def test_catalog_limits_in_words():
    small, large, gpu, gpu2 = catalog()
    assert small.describe() == "2 CPUs, 4 GiB"
    assert gpu.describe() == "4 CPUs, 16 GiB, 1 GPU"
    assert gpu2.describe() == "8 CPUs, 32 GiB, 2 GPUs"
    assert large.limits.memory_guarantee == 8 * 1024**3 and large.limits.cpu_guarantee == 2.0
    assert large.limits.pids == 4096 and small.limits.pids == 1024  # left out: the spawner's setting
    assert gpu.images == ("cuda",) and gpu.groups == ("gpu-users",)


def test_no_profiles_is_one_default_made_of_the_settings():
    (only,), problems = build_catalog("S.profiles", [], DEFAULTS, Ceilings(), {}, None)
    assert problems == []
    assert (only.slug, only.default, only.gpus) == ("default", True, 0)
    assert only.describe() == "1 CPU, 2 GiB"
    # its problems name the spawner's own settings
    _, problems = build_catalog("S.profiles", [], {**DEFAULTS, "mem_limit": "1k"}, Ceilings(), {}, None)
    assert [s for s, _ in problems] == ["S.mem_limit", "S.shm_size"]


@pytest.mark.parametrize("raw, setting, words", [
    ([{"slug": "Big"}], "S.profiles[0].slug", "not a slug"),
    ([{"slug": "a", "mem_limt": "2G"}], "S.profiles[0]", "unknown key(s) 'mem_limt'"),
    ([{"slug": "a", "gpus": 5}], "S.profiles[0].gpus", "only 4"),
    ([{"slug": "a", "gpus": True}], "S.profiles[0].gpus", "whole number"),
    ([{"slug": "a", "gpus": -1}], "S.profiles[0].gpus", "whole number"),
    ([{"slug": "a", "images": ["nope"]}], "S.profiles[0].images", "not a name in allowed_images"),
    ([{"slug": "a", "groups": "x"}, {"slug": "a"}], "S.profiles", "used by more than one"),
    ([{"slug": "a", "default": True}, {"slug": "b", "default": True}], "S.profiles", "more than one profile"),
    ([{"slug": "a", "default": "yes"}], "S.profiles[0].default", "True or False"),
    ([{"slug": "a", "mem_limit": "2T"}], "S.profiles[0].mem_limit", "outside"),
    ([{"slug": "a", "mem_limit": "1G", "mem_guarantee": "2G"}], "S.profiles[0].mem_guarantee", "at most"),
    ([{"slug": "a", "cpu_limit": "lots"}], "S.profiles[0].cpu_limit", "not a number"),
    ([{"slug": "a", "pids_limit": 5}], "S.profiles[0].pids_limit", "fork bombs"),
    ([{"slug": "a", "groups": [1]}], "S.profiles[0].groups", "list of names"),
    ([{"slug": "a", "log_max_size": "0"}], "S.profiles[0].log_max_size", "always bounded"),
    ([{"slug": "a", "log_max_size": "lots"}], "S.profiles[0].log_max_size", "not a size"),
    ([{"slug": "a", "log_max_file": 0}], "S.profiles[0].log_max_file", "1..100"),
    ([{"slug": "a", "disk_limit": "1m"}], "S.profiles[0].disk_limit", "below 64 MiB"),
    ([{"slug": "a", "disk_limit": "lots"}], "S.profiles[0].disk_limit", "not a size"),
    ([{"slug": "a", "home_quota": "1m"}], "S.profiles[0].home_quota", "below 16 MiB"),
    ([{"slug": "a", "home_files": 5000}], "S.profiles[0].home_files", "needs home_quota"),
    (["small"], "S.profiles[0]", "must be a dict"),
    ({"slug": "a"}, "S.profiles", "must be a list"),
])
def test_catalog_problems_name_the_setting(raw, setting, words):
    profiles, problems = build_catalog("S.profiles", raw, DEFAULTS, Ceilings(1024**4), IMAGES, 4)
    assert profiles == ()
    assert any(s == setting and words in m for s, m in problems), problems


def test_a_profile_sets_its_own_log_bound_and_others_take_the_settings():
    (small, big), problems = build_catalog(
        "S.profiles", [{"slug": "small"}, {"slug": "big", "log_max_size": "50m", "log_max_file": 2}],
        {**DEFAULTS, "log_max_size": "1m", "log_max_file": 4}, Ceilings(), IMAGES, 4)
    assert problems == []
    assert (small.limits.log_max_size, small.limits.log_max_file) == (1024**2, 4)
    assert (big.limits.log_max_size, big.limits.log_max_file, big.limits.log_bound()) == (50 * 1024**2, 2, 100 * 1024**2)


def test_a_profile_bounds_its_writable_layer_and_others_take_the_setting():
    (small, big), problems = build_catalog(
        "S.profiles", [{"slug": "small"}, {"slug": "big", "disk_limit": "50G"}], DEFAULTS, Ceilings(), IMAGES, 4)
    assert problems == [] and (small.limits.disk, big.limits.disk) == (None, 50 * 1024**3)
    (one,), _ = build_catalog("S.profiles", [], {**DEFAULTS, "disk_limit": "20G"}, Ceilings(), IMAGES, 4)
    assert one.limits.disk == 20 * 1024**3


def test_a_profile_sizes_its_home_and_others_take_the_settings():
    (small, big), problems = build_catalog(
        "S.profiles", [{"slug": "small"}, {"slug": "big", "home_quota": "100G", "home_files": 2_000_000}],
        {**DEFAULTS, "home_quota": "10G", "home_files": 500_000}, Ceilings(), IMAGES, 4)
    assert problems == []
    assert (small.limits.home, small.limits.home_files) == (10 * 1024**3, 500_000)
    assert (big.limits.home, big.limits.home_files) == (100 * 1024**3, 2_000_000)


def test_access_from_groups():
    cat = catalog()
    assert access_for(cat, []).profiles == ("small",)
    assert access_for(cat, ["researchers"]).profiles == ("small", "large")
    assert access_for(cat, ["gpu-users"]).profiles == ("small", "large", "gpu")
    assert access_for(cat, ["gpu-admins", "gpu-users"]).profiles == ("small", "large", "gpu", "gpu-2")


def test_access_from_identity_provider_grants_and_gpu_cap():
    cat = catalog()
    assert access_for(cat, [], granted=["gpu"], max_gpus=1).profiles == ("small", "gpu")
    # the GPU quota per server hides bigger profiles even to their group
    assert access_for(cat, ["gpu-admins"], max_gpus=1).profiles == ("small",)
    assert access_for(cat, ["gpu-users"], max_gpus=0).profiles == ("small", "large")


def test_default_profile():
    cat = catalog()
    assert default_for(cat, access_for(cat, [])).slug == "small"
    no_small = access_for(cat[1:], ["gpu-users"])
    assert default_for(cat[1:], no_small).slug == "large"  # no default allowed: their first
    assert default_for(cat[2:], access_for(cat[2:], [])) is None


def test_choose_defaults_and_first_image():
    cat = catalog()
    sel = choose(cat, access_for(cat, ["gpu-users"]), {})
    assert (sel.profile.slug, sel.name) == ("small", "base")
    sel = choose(cat, access_for(cat, ["gpu-users"]), {"profile": "gpu"})
    assert (sel.profile.slug, sel.name) == ("gpu", "cuda")
    sel = choose(cat, access_for(cat, []), {"profile": "small", "image": "r"})
    assert sel.name == "r"
    # a profile without an image list takes any allowed image, or the configured one
    (only,) = catalog([{"slug": "x"}], images={})
    assert choose((only,), access_for((only,), []), None).name is None


def test_choose_refuses_with_what_to_send_instead():
    cat = catalog()
    bob = access_for(cat, [])
    with pytest.raises(OptionsError, match=r"may not use profile 'gpu' \(One GPU: 4 CPUs, 16 GiB, 1 GPU\): "
                                           r"it is only for members of gpu-users\. Profiles you may use: 'small'"):
        choose(cat, bob, {"profile": "gpu"})
    with pytest.raises(OptionsError, match=r"Unknown profile 'huge'\. Profiles you may use: 'small'"):
        choose(cat, bob, {"profile": "huge"})
    with pytest.raises(OptionsError, match=r"Image 'cuda' cannot be used with profile 'small'; its images are: base, r"):
        choose(cat, bob, {"profile": "small", "image": "cuda"})
    with pytest.raises(OptionsError, match=r"'profile' must be a name"):
        choose(cat, bob, {"profile": 3})
    with pytest.raises(OptionsError, match=r"'image' must be a name"):
        choose(cat, bob, {"image": ["base"]})
    capped = access_for(cat, ["gpu-admins"], max_gpus=1)
    with pytest.raises(OptionsError, match=r"it has 2 GPUs and your quota is 1 per server"):
        choose(cat, capped, {"profile": "gpu-2"})
    with pytest.raises(OptionsError, match=r"it has 1 GPU and your quota is 0 per server"):
        choose(cat, access_for(cat, ["gpu-admins"], max_gpus=0), {"profile": "gpu"})


@pytest.mark.parametrize("key", LIMIT_OPTIONS)
def test_limits_cannot_be_sent_as_options(key):
    cat = catalog()
    with pytest.raises(OptionsError, match=rf"'{key}' cannot be set in the server options: limits come from profiles"):
        choose(cat, access_for(cat, ["gpu-users"]), {"profile": "small", key: 1})


def test_choose_when_no_profile_is_open_to_the_user():
    cat = catalog()[2:]
    with pytest.raises(OptionsError, match=r"No profile is available to you: every profile is for members of "
                                           r"gpu-admins, gpu-users"):
        choose(cat, access_for(cat, ["staff"]), {})


def test_profiles_without_images_leave_the_image_to_allowed_images():
    (only,) = catalog([{"slug": "x"}], images={})
    # the spawner's own allowed_images check answers for these
    assert choose((only,), access_for((only,), []), {"image": "anything"}).name == "anything"
    (star,) = catalog([{"slug": "x"}], images="*")
    assert choose((star,), access_for((star,), []), {"image": "x/y:1"}).name == "x/y:1"


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.integers(), st.text(max_size=300),
                                                      st.lists(st.text(max_size=5), max_size=2)), max_size=5))
def test_choose_never_returns_a_profile_the_user_may_not_use(options):
    cat = catalog()
    access = access_for(cat, ["researchers"])
    try:
        sel = choose(cat, access, options)
    except OptionsError as e:
        assert str(e)
        return
    assert access.allows(sel.profile)
    assert sel.name is None or sel.name in (sel.profile.images or IMAGES)


def test_form_lists_only_entitled_profiles_in_words():
    cat = catalog()
    form = render_form(cat, access_for(cat, ["researchers"]), IMAGES)
    assert "Small</strong> &mdash; 2 CPUs, 4 GiB" in form
    assert "Large</strong> &mdash; 4 CPUs, 16 GiB" in form
    assert "GPU" not in form and 'value="gpu"' not in form
    form = render_form(cat, access_for(cat, ["gpu-users"]), IMAGES, gpus_free=(3, 4))
    assert "One GPU</strong> &mdash; 4 CPUs, 16 GiB, 1 GPU" in form
    assert "3 of 4 GPUs free now." in form
    assert re.search(r'value="small" checked', form)  # the default
    assert 'name="image-small"' in form and 'name="image-gpu"' not in form  # one image: no select


def test_form_preselects_last_choice_and_shows_notice_escaped():
    cat = catalog()
    form = render_form(cat, access_for(cat, ["gpu-users"]), IMAGES,
                       previous={"profile": "large", "image": "r"}, notice="Your last server <b>died</b>")
    assert re.search(r'value="large" checked', form) and not re.search(r'value="small" checked', form)
    assert '<option value="r" selected>' in form
    assert html.escape("Your last server <b>died</b>") in form and "<b>" not in form


def test_form_is_empty_when_there_is_nothing_to_choose():
    one = catalog([{"slug": "x"}], images={"base": "b:1"})
    assert render_form(one, access_for(one, []), {"base": "b:1"}) == ""
    cat = catalog()
    assert render_form(cat, access_for(cat, []), IMAGES) != ""  # one profile, two images


def test_options_from_form_round_trip():
    assert options_from_form({"profile": ["gpu"], "image-gpu": ["cuda"], "image-small": ["r"]}) == {
        "profile": "gpu", "image": "cuda"}
    assert options_from_form({"profile": ["small"]}) == {"profile": "small"}
    assert options_from_form({"image": ["base"]}) == {"image": "base"}  # DockerSpawner's own field
    assert options_from_form({}) == {}


def test_identity_provider_image_grants_restrict_the_choice():
    from hardened_spawner.decisions.profiles import OptionsError as _OptionsError
    from hardened_spawner.decisions.profiles import access_for as _access_for
    from hardened_spawner.decisions.profiles import build_catalog as _build_catalog
    from hardened_spawner.decisions.profiles import choose as _choose
    from hardened_spawner.decisions.profiles import images_for as _images_for
    from hardened_spawner.decisions.limits import Ceilings as _Ceilings

    allowed = {"base": "img/base:1", "torch": "img/torch:1", "r": "img/r:1"}
    catalog, problems = _build_catalog(
        "S.profiles",
        [{"slug": "cpu", "default": True}, {"slug": "r-only", "images": ["r"]}],
        {"mem_limit": "1G", "cpu_limit": 1, "pids_limit": 256, "shm_size": "64m",
         "mem_guarantee": None, "cpu_guarantee": None},
        _Ceilings(), allowed)
    assert problems == []
    access = _access_for(catalog, [], images=("torch",))
    assert _choose(catalog, access, {}).name == "torch"  # nothing picked: a granted image
    assert _choose(catalog, access, {"image": "torch"}).name == "torch"
    with pytest.raises(_OptionsError, match="You may not use image 'base'"):
        _choose(catalog, access, {"image": "base"})
    with pytest.raises(_OptionsError, match="runs none of the images you may use"):
        _choose(catalog, access, {"profile": "r-only"})
    assert _images_for(catalog[0], allowed, access) == ("torch",)
    assert _images_for(catalog[0], allowed, _access_for(catalog, [])) == ("base", "torch", "r")
    assert _choose(catalog, _access_for(catalog, []), {}).name is None  # no grant: the configured image
