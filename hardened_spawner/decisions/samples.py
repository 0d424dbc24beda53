"""A sample spawn per profile, planned before any user spawns. Pure.

The settings checks (:mod:`.safety`, :mod:`.host_paths`) name the setting that
is wrong; the invariants (:mod:`.invariants`) are checked on the final create
request of every real spawn. :func:`violations_by_profile` brings the second
check forward to the hub's start and to CI: it runs the real planner
(:func:`.plan.plan_spawn`) once per profile, with placeholders for what only a
spawn knows (the image, its account files, the user's keys, the GPU ids of a
lease), so a merge of admin extras that breaks a protection is found before a
user meets it, whatever setting produced it.
"""

from .plan import NotHardened, SpawnInputs, plan_spawn
from .profiles import Selection

SAMPLE_IMAGE = "hardened-spawner.invalid/sample:sample"
SAMPLE_ACCOUNTS = ("root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n")  # /etc/passwd, /etc/group
SAMPLE_IMAGE_INFO = {
    "Id": "sha256:" + "0" * 64,
    "Config": {"User": ""},
    "RepoDigests": [f"hardened-spawner.invalid/sample@sha256:{'0' * 64}"],
}


def sample_gpus(count):
    """Placeholder GPU ids for a lease of ``count`` GPUs."""
    return tuple(str(i) for i in range(count))


def sample_inputs(profile, **fields):
    """:class:`.plan.SpawnInputs` for one sample spawn of ``profile``; ``fields`` are the
    configuration's own values (``spec``, ``hardening``, ``daemon``, ``network``, ...)."""
    return SpawnInputs(user="config-check", server="", selection=Selection(profile, None, SAMPLE_IMAGE),
                       image_info=SAMPLE_IMAGE_INFO, accounts=SAMPLE_ACCOUNTS, home_check=False,
                       **fields)


def violations_by_profile(inputs_by_profile):
    """``[(profile slug, what, message)]`` for the sample plans ``{slug: SpawnInputs}``: each
    invariant a plan breaks (``what`` is its id), and a request docker-py cannot build
    (``what`` is ``"unbuildable"``: a value of the wrong type, which every spawn would fail on)."""
    out = []
    for slug, inputs in inputs_by_profile.items():
        try:
            plan_spawn(inputs)
        except NotHardened as e:
            out += [(slug, v.invariant, v.message) for v in e.violations]
        except (TypeError, ValueError) as e:  # docker-py's builders refuse the merged arguments
            out.append((slug, "unbuildable", f"docker-py cannot build it: {e}"))
    return out
