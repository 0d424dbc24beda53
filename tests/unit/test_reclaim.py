"""Reclaiming idle GPUs: the pure judgement, the profile keys, and the operations page's pictures."""

import datetime
import xml.etree.ElementTree as ET

import pytest

from hardened_spawner.decisions import profiles
from hardened_spawner.decisions.idle import Activity, ReclaimPolicy, judge, stopped_text, warning_text
from hardened_spawner.decisions.limits import Ceilings
from hardened_spawner.operations import charts

T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
MIN = datetime.timedelta(minutes=1)
POLICY = ReclaimPolicy(idle_minutes=30, max_age_minutes=240, warn_minutes=10)


def at(minutes):
    return T0 + minutes * MIN


def test_an_idle_server_is_kept_then_warned_then_reclaimed_after_the_warning():
    activity = Activity(since=T0, last=at(5))
    assert judge(POLICY, activity, at(20)).action == "keep"
    warn = judge(POLICY, activity, at(26))
    assert (warn.action, warn.reason, warn.deadline) == ("warn", "idle", at(35))
    # due, but the user was warned only 4 minutes ago: warn until the warning had its full time
    assert judge(POLICY, activity, at(36), warned_at=at(32)).action == "warn"
    assert judge(POLICY, activity, at(42), warned_at=at(32)).action == "reclaim"


def test_never_reclaimed_without_a_warning_first_even_long_past_the_deadline():
    activity = Activity(since=T0, last=at(0))
    assert judge(POLICY, activity, at(200)).action == "warn"
    assert judge(POLICY, activity, at(211), warned_at=at(200)).action == "reclaim"
    no_warning = ReclaimPolicy(idle_minutes=30, warn_minutes=0)
    assert judge(no_warning, activity, at(30)).action == "reclaim"


def test_activity_after_a_warning_keeps_the_server():
    assert judge(POLICY, Activity(since=T0, last=at(34)), at(36), warned_at=at(26)).action == "keep"


def test_a_busy_kernel_is_active_now_but_the_maximum_age_still_applies():
    busy = Activity(since=T0, last=at(0), busy=True)
    assert judge(POLICY, busy, at(100)).action == "keep"
    verdict = judge(POLICY, busy, at(232))
    assert (verdict.action, verdict.reason) == ("warn", "max-age")
    assert judge(POLICY, busy, at(241), warned_at=at(231)).action == "reclaim"


def test_a_new_server_without_kernels_counts_from_its_lease():
    assert judge(POLICY, Activity(since=at(100), last=None), at(119)).action == "keep"
    assert judge(POLICY, Activity(since=at(100), last=at(50)), at(126)).action == "warn"


def test_no_policy_keeps_everything():
    assert judge(ReclaimPolicy(), Activity(since=T0, last=None), at(10_000)).action == "keep"
    assert not ReclaimPolicy().active and ReclaimPolicy(max_age_minutes=1).active


def test_what_the_user_reads():
    verdict = judge(POLICY, Activity(since=T0, last=at(5)), at(26))
    text = warning_text("", ("0",), verdict, POLICY, at(26))
    assert text.startswith("Your server holds GPU 0 and its kernels have been idle since 12:05 UTC")
    assert "stopped at about 12:36 UTC" in text and "Save your work" in text
    age = warning_text("big", ("1", "2"), judge(POLICY, Activity(T0, at(239), True), at(235)), POLICY, at(235))
    assert "Your server 'big' holds GPU 1, GPU 2; servers of its profile may hold a GPU for at most 4 h" in age
    assert stopped_text("", ("0",), "idle", POLICY, at(40)) == (
        "Your server was stopped at 12:40 UTC because its kernels had been idle for 30 min; GPU 0 went back to "
        "the pool. Your files are kept: start it again when you need the GPU.")
    assert POLICY.describe() == "freed after 30 min without kernel activity, and after 4 h at the latest"


# ---- profile keys -----------------------------------------------------------------------------
DEFAULTS = {"mem_limit": "1G", "cpu_limit": 1.0, "pids_limit": 100, "shm_size": "64M",
            "gpu_idle_minutes": 60, "gpu_max_age_minutes": 0, "gpu_idle_warning_minutes": 5}
CEILINGS = Ceilings(64 << 30, 64, 100000)


def catalog(raw):
    return profiles.build_catalog("S.profiles", raw, DEFAULTS, CEILINGS, "*", gpu_count=4)


def test_gpu_profiles_take_their_own_reclaim_keys_or_the_spawner_settings():
    found, problems = catalog([{"slug": "cpu"}, {"slug": "gpu", "gpus": 1},
                               {"slug": "gpu-long", "gpus": 1, "gpu_idle_minutes": 0, "gpu_max_age_minutes": 720}])
    assert problems == []
    cpu, gpu, long = found
    assert cpu.reclaim == ReclaimPolicy()
    assert gpu.reclaim == ReclaimPolicy(60, 0, 5)
    assert long.reclaim == ReclaimPolicy(0, 720, 5)


@pytest.mark.parametrize("raw, words", [
    ({"slug": "g", "gpus": 1, "gpu_idle_minutes": -1}, "must be a number of minutes"),
    ({"slug": "g", "gpus": 1, "gpu_max_age_minutes": "8h"}, "must be a number of minutes"),
    ({"slug": "c", "gpu_idle_minutes": 30}, "applies to profiles with GPUs only"),
])
def test_bad_reclaim_keys_are_refused_with_the_setting_named(raw, words):
    found, problems = catalog([raw])
    assert found == () and any(words in message for _, message in problems), problems


# ---- pictures -----------------------------------------------------------------------------------
def test_the_occupancy_grid_is_valid_svg_with_one_cell_per_gpu_and_escaped_names():
    svg = charts.occupancy_svg([("unix:///x.sock", [("0", "held", ["<script>alert(1)</script>/gpu"]),
                                                    ("1", "free", []), ("2", "stuck", ["jupyter-bob"])])])
    root = ET.fromstring(svg)
    cells = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "gpu" in g.get("class", "")]
    assert [(g.get("data-gpu"), g.get("class")) for g in cells] == [
        ("0", "gpu gpu-held"), ("1", "gpu gpu-free"), ("2", "gpu gpu-stuck")]
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_the_denials_chart_stacks_refusals_per_hour_by_reason():
    now = T0
    denials = [(now - datetime.timedelta(minutes=m), reason)
               for m, reason in ((5, "gpu-busy"), (10, "gpu-busy"), (70, "image-denied"), (25 * 60, "gpu-busy"))]
    starts, series = charts.denial_buckets(denials, now)
    assert len(starts) == 24 and series["gpu-busy"][-1] == 2 and series["image-denied"][-2] == 1
    assert sum(series["gpu-busy"]) == 2  # the one 25 hours ago is out of the window
    root = ET.fromstring(charts.denials_svg(denials, now))
    assert len([r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "denial-bar"]) == 2
    assert "No spawn was refused" in charts.denials_svg([], now)
