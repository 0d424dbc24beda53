"""decisions/samples.py: the real planner, run per profile with placeholders, reports what it breaks."""

import dataclasses

from hardened_spawner.decisions.container import ContainerSpec, Hardening
from hardened_spawner.decisions.limits import Limits
from hardened_spawner.decisions.profiles import Profile
from hardened_spawner.decisions.samples import (
    SAMPLE_IMAGE, SAMPLE_IMAGE_INFO, sample_gpus, sample_inputs, violations_by_profile,
)

CPU = Profile("cpu", "CPU", "", Limits(memory=2 << 30, cpus=1.0, pids=1024, shm=64 << 20))
GPU = dataclasses.replace(CPU, slug="gpu", gpus=2)


def inputs(profile, gpu_env=None, **spec):
    limits = dataclasses.replace(profile.limits, gpus=sample_gpus(profile.gpus))
    env = {"NVIDIA_VISIBLE_DEVICES": ",".join(limits.gpus) or "void"} if gpu_env is None else gpu_env
    container = ContainerSpec(image=SAMPLE_IMAGE, name="jupyter-config-2dcheck", command=["jupyterhub-singleuser"],
                              environment={}, port=8888, **spec)
    return sample_inputs(profile, create_image=SAMPLE_IMAGE_INFO["Id"], spec=container, limits=limits,
                         hardening=Hardening(), package_version="0", gpu_env=env)


def test_clean_profiles_break_nothing():
    assert violations_by_profile({"cpu": inputs(CPU), "gpu": inputs(GPU)}) == []


def test_each_profile_reports_what_its_request_breaks():
    found = violations_by_profile({
        "cpu": inputs(CPU, extra_host_config={"device_requests": [{"Driver": "nvidia", "Count": -1}]}),
        "gpu": inputs(GPU, extra_host_config={"pid_mode": "host"}),
    })
    assert [(slug, what) for slug, what, _ in found] == [("cpu", "container.gpus"), ("gpu", "container.namespaces")]


def test_a_request_docker_py_cannot_build_is_reported_not_raised():
    (found,) = violations_by_profile({"cpu": inputs(CPU, extra_host_config={"blkio_weight": "heavy"})})
    assert found[:2] == ("cpu", "unbuildable") and "blkio_weight" in found[2]
