"""The spawn pipeline's order and failure paths, with a fake Docker client (tests/unit/fake_docker.py).

What is checked here: nothing is created before every check passes; every
refusal is audited and creates nothing; a failed start frees its GPUs;
``remove=False`` restarts a container made under the same policy and
recreates one made under another; state survives a round trip; and
``create_object`` called on its own still runs every check. The real daemon
and hub are exercised by tests/integration.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import asyncssh
import pytest
from docker.errors import APIError
from jupyterhub.objects import Hub
from tornado import web

from fake_docker import FakeDocker, _response
from hardened_spawner.decisions.container import LABEL_GPUS, LABEL_POLICY
from hardened_spawner.errors import SpawnRefused
from hardened_spawner.spawner import HardenedDockerSpawner, clients
from hardened_spawner.spawner.phases import PHASES

IMAGE = "example.org/singleuser:1"
NO_DRIVER = 'could not select device driver "nvidia" with capabilities: [[gpu]]'  # as dockerd says it
POOL = ThreadPoolExecutor(4)


class FakeUser(SimpleNamespace):
    async def get_auth_state(self):
        return None


@pytest.fixture
def fake():
    clients.gpu_pools.clear()
    clients.logins.clear()
    docker = FakeDocker()
    docker.add_image(IMAGE)
    return docker


@pytest.fixture
def make(fake, tmp_path):
    def make(name="alice", **settings):
        cls = type("FakeDockerSpawner", (HardenedDockerSpawner,), {"_client": fake})
        user = FakeUser(name=name, url=f"/user/{name}/", groups=[], escaped_name=name, server=None, id=1)
        settings.setdefault("image", IMAGE)
        settings.setdefault("use_internal_ip", True)
        settings.setdefault("admission_enabled", False)  # admission has its own tests (engine, service, hub)
        settings.setdefault("audit_log_file", str(tmp_path / "audit.log"))
        spawner = cls(user=user, hub=Hub(), api_token="tok", oauth_client_id=f"jupyterhub-user-{name}",
                      pull_policy="never", docker_io=clients.DockerIO(fake, POOL), cmd=["true"],
                      **settings)
        spawner.orm_spawner = SimpleNamespace(user_options={}, started=None, server=None, name="")
        return spawner
    return make


def audit(tmp_path):
    path = tmp_path / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def creates(fake):
    return fake.called("create_container")


async def test_start_runs_every_phase_in_order_before_creating(make, fake, tmp_path):
    keys = tmp_path / "keys" / "alice"
    keys.mkdir(parents=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    (keys / "authorized_keys").write_text(key.export_public_key().decode())
    spawner = make(gpu_ids=["0"], profiles=[{"slug": "gpu", "gpus": 1}])
    spawner.config.FileKeyStore.root = str(tmp_path / "keys")
    spawner._ssh_store = None
    ip, port = await spawner.start()
    assert (ip, port) == ("10.9.0.2", 8888)
    first_create = fake.calls.index(creates(fake)[0])
    assert [c[0] for c in fake.calls[:first_create]].count("containers") == 1  # the GPU pool asked Docker
    timings = spawner._progress.timings
    assert list(timings) == [p.name for p in PHASES][: len(timings)] and "start" in timings
    container = fake.objects[spawner.object_id]
    assert container["Config"]["Labels"][LABEL_GPUS] == "0"
    assert container["HostConfig"]["cap_drop"] == ["ALL"]
    assert (container["Id"], "/etc/ssh/authorized_keys") in fake.archives  # keys before start
    assert fake.calls.index(fake.called("put_archive")[0]) < fake.calls.index(fake.called("start")[0])
    events = [e["event"] for e in audit(tmp_path)]
    assert events == ["ssh.keys", "gpu.allocate", "spawn"]
    assert audit(tmp_path)[-1]["phases"].keys() == timings.keys()


@pytest.mark.parametrize("settings, reason", [
    ({"extra_host_config": {"privileged": True}}, "unsafe-config"),
    ({"image": "missing/image:1"}, "image-missing"),
    ({"image": "UPPER::bad"}, "unsafe-config"),
    ({"gpu_ids": [], "profiles": [{"slug": "gpu", "gpus": 1}]}, "gpu-none"),
])
async def test_refusals_create_nothing_and_are_audited(make, fake, tmp_path, settings, reason):
    spawner = make(**settings)
    with pytest.raises(SpawnRefused) as refused:
        await spawner.start()
    assert refused.value.reason == reason
    assert creates(fake) == []
    assert [e["event"] for e in audit(tmp_path)] == ["spawn.denied"]


async def test_key_store_down_fails_closed(make, fake, tmp_path):
    spawner = make()
    spawner.config.FileKeyStore.root = str(tmp_path / "no-such-dir")
    spawner._ssh_store = None
    with pytest.raises(SpawnRefused, match="could not be read from the file key store") as refused:
        await spawner.start()
    assert refused.value.reason == "ssh-key-store" and creates(fake) == []
    spawner.ssh_required = False
    await spawner.start()  # starts without SSH
    assert len(creates(fake)) == 1 and spawner.ssh_host == ""


async def test_bad_profile_is_http_400_and_audited(make, fake, tmp_path):
    spawner = make(profiles=[{"slug": "small"}])
    with pytest.raises(web.HTTPError) as error:
        await spawner._run_apply_user_options({"profile": "huge"})
    assert error.value.status_code == 400 and "Unknown profile 'huge'" in error.value.log_message
    assert audit(tmp_path)[0]["reason"] == "bad-options"


async def test_admission_denial_creates_nothing(make, fake, tmp_path):
    from hardened_spawner.admission.model import Decision, Finding

    class Refuse:
        async def decide(self, ref, info):
            finding = Finding("image.user-root", "high", "deny", "runs as root", "add USER")
            return SimpleNamespace(decision=Decision(False, (finding,), "sha256:x"), how="computed",
                                   facts="computed", seconds=0.1)

    spawner = make(admission_enabled=True)
    spawner.admission_service = lambda policy: Refuse()
    with pytest.raises(SpawnRefused, match=r"\[image.user-root\] runs as root") as refused:
        await spawner.start()
    assert refused.value.reason == "image-denied" and creates(fake) == []
    assert [(e["event"], e["decision"]) for e in audit(tmp_path)] == [("admission", "deny"), ("spawn.denied", "deny")]


@pytest.mark.parametrize("method, error, reason", [
    ("create_container", APIError("500", response=_response(500), explanation=NO_DRIVER), "no-gpu-runtime"),
    ("start", APIError("500", response=_response(500), explanation=NO_DRIVER), "no-gpu-runtime"),
    ("start", APIError("500", response=_response(500), explanation="OCI runtime create failed"), None),
])
async def test_a_failed_start_frees_its_gpu_and_removes_its_container(make, fake, method, error, reason):
    profiles = [{"slug": "gpu", "gpus": 1}]
    first = make("alice", gpu_ids=["0"], profiles=profiles)
    fake.fail[method] = error
    with pytest.raises(Exception) as failed:
        await first.start()
    if reason:
        assert failed.value.reason == reason
    assert fake.objects == {}  # the container it created is gone
    second = make("bob", gpu_ids=["0"], profiles=profiles)
    await second.start()  # the only GPU was freed
    assert fake.objects[second.object_id]["Config"]["Labels"][LABEL_GPUS] == "0"


async def test_gpu_busy_names_what_to_do(make, fake):
    profiles = [{"slug": "cpu", "default": True}, {"slug": "gpu", "gpus": 1}]
    await make("alice", gpu_ids=["0"], profiles=profiles, user_options={"profile": "gpu"}).start()
    bob = make("bob", gpu_ids=["0"], profiles=profiles, user_options={"profile": "gpu"})
    with pytest.raises(SpawnRefused, match="No GPU is free .* Pick 'cpu'") as refused:
        await bob.start()
    assert refused.value.reason == "gpu-busy" and len(creates(fake)) == 1


async def test_stop_frees_the_gpu_and_poll_frees_a_vanished_one(make, fake):
    profiles = [{"slug": "gpu", "gpus": 1}]
    alice = make("alice", gpu_ids=["0"], profiles=profiles)
    await alice.start()
    await alice.stop()
    bob = make("bob", gpu_ids=["0"], profiles=profiles)
    await bob.start()
    fake.objects.clear()  # removed behind the hub's back
    assert await bob.poll() == 0
    await make("carol", gpu_ids=["0"], profiles=profiles).start()


async def test_restart_with_remove_false_reuses_or_recreates(make, fake):
    spawner = make(remove=False)
    await spawner.start()
    await spawner.stop()
    first = spawner.object_id
    await spawner.start()  # same policy: restarted, not created again
    assert spawner.object_id == first and len(creates(fake)) == 1
    await spawner.stop()
    fake.objects[first]["Config"]["Labels"][LABEL_POLICY] = "0.0.0+older"
    await spawner.start()  # another policy: removed and created anew
    assert spawner.object_id != first and len(creates(fake)) == 2 and first not in fake.objects


async def test_create_object_alone_runs_the_checks(make, fake):
    spawner = make(extra_host_config={"privileged": True})
    with pytest.raises(SpawnRefused, match="privileged containers are never allowed"):
        await spawner.create_object()
    assert creates(fake) == []
    spawner.extra_host_config = {}
    obj = await spawner.create_object()
    assert fake.objects[obj["Id"]]["HostConfig"]["cap_drop"] == ["ALL"]


async def test_create_object_returns_what_docker_answered_as_dockerspawner_does(make, fake):
    spawner = make()
    answer = {"Id": "from-a-wrapped-client", "Warnings": []}
    original = spawner.docker

    async def docker(method, *args, **kwargs):  # DockerSpawner's own tests mock it like this
        return answer if method == "create_container" else await original(method, *args, **kwargs)

    spawner.docker = docker
    assert await spawner.create_object() is answer and spawner.object_id == ""  # start() records the id


async def test_a_conda_guard_that_cannot_be_written_removes_the_container(make, fake, tmp_path):
    from hardened_spawner.admission.model import Decision

    class Admit:
        async def decide(self, ref, info):
            return SimpleNamespace(decision=Decision(True, (), "sha256:x"), how="computed", facts="computed",
                                   seconds=0.1)

    spawner = make(admission_enabled=True, conda_allowed_channels=["conda-forge"])
    spawner.admission_service = lambda policy: Admit()
    fake.fail["put_archive"] = APIError("500", response=_response(500), explanation="read-only file system")
    with pytest.raises(SpawnRefused, match="policy files could not be written") as refused:
        await spawner.start()
    assert refused.value.reason == "conda-guard-failed" and len(creates(fake)) == 1 and fake.objects == {}
    assert fake.called("start") == []
    spawner.admission_service = lambda policy: Admit()
    await spawner.start()
    assert (spawner.object_id, "/") in fake.archives


async def test_state_round_trip(make):
    spawner = make()
    spawner.ssh_host = "10.9.0.2"
    spawner.oom.notice = "Your server used more than 2 GiB"
    state = spawner.get_state()
    assert state["ssh_host"] == "10.9.0.2" and state["ssh_port"] == 2222
    again = make()
    again.load_state(state)
    assert (again.ssh_host, again.form_notice()) == ("10.9.0.2", "Your server used more than 2 GiB")
    again.clear_state()
    assert again.ssh_host == ""


async def test_options_form_is_empty_when_there_is_nothing_to_choose(make):
    assert make().options_form == ""  # as DockerSpawner's, so the hub spawns at once
    assert await make().render_options_form() == ""
    form = await make(profiles=[{"slug": "a"}, {"slug": "b"}]).render_options_form()
    assert 'value="a"' in form and 'value="b"' in form
