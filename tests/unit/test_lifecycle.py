"""The spawn pipeline's order and failure paths, with a fake Docker client (tests/unit/fake_docker.py).

What is checked here: nothing is created before every check passes; every
refusal is audited and creates nothing; a failed start frees its GPUs;
``remove=False`` restarts a container made under the same policy and
recreates one made under another; state survives a round trip; and
``create_object`` called on its own still runs every check. The real daemon
and hub are exercised by tests/integration.
"""

import asyncio
import io
import tarfile
from types import SimpleNamespace

import asyncssh
import pytest
from docker.errors import APIError
from tornado import web

from helpers import IMAGE, NO_DRIVER, audit, creates
from fake_docker import _response
from hardened_spawner.decisions.container import LABEL_GPUS, LABEL_POLICY
from hardened_spawner.errors import SpawnRefused
from hardened_spawner.spawner.phases import PHASES

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
    assert container["HostConfig"]["CapDrop"] == ["ALL"]
    # the default read-only root: the keys go into the server's keys volume through a helper container
    [(helper, _)] = [k for k in fake.archives if k[1] == "/etc/ssh/authorized_keys"]
    assert helper != container["Id"] and container["HostConfig"]["ReadonlyRootfs"] is True
    assert "jupyter-alice-ssh-keys:/etc/ssh/authorized_keys:ro" in container["HostConfig"]["Binds"]
    assert fake.calls.index(fake.called("put_archive")[0]) < fake.calls.index(fake.called("start")[0])  # before start
    events = [e["event"] for e in audit(tmp_path)]
    assert events == ["ssh.keys", "gpu.allocate", "network.created", "spawn"]
    assert audit(tmp_path)[-1]["phases"].keys() == timings.keys()
    with tarfile.open(fileobj=io.BytesIO(fake.archives[(helper, "/etc/ssh/authorized_keys")])) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    cert = asyncssh.import_certificate(files[".host/ssh_host_ed25519_key-cert.pub"])  # this start's host key
    cert.validate(2, "alice")  # a host certificate for the name alice types
    assert asyncssh.import_private_key(files[".host/ssh_host_ed25519_key"]).public_data == cert.key.public_data
    assert cert.key.get_fingerprint("sha256") == audit(tmp_path)[-1]["ssh_host_key"]


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
    with pytest.raises(SpawnRefused) as refused:
        await spawner.start()
    assert "[image.user-root] runs as root Fix: add USER" in refused.value.text()
    assert refused.value.reason == "image-denied" and creates(fake) == []
    assert [(e["event"], e["decision"]) for e in audit(tmp_path)] == [("admission", "deny"), ("spawn.denied", "deny")]


@pytest.mark.parametrize("ref", ["evil.example:5000/miner:1", "10.0.0.7:80/hardened-spawner/x:1",
                                 "evil.example/hardened-spawner/x:1"])
async def test_a_reference_the_policy_refuses_is_never_pulled(make, fake, tmp_path, ref):
    """allowed_images = "*" lets a user name any image: the allowlist is asked before the daemon pulls it."""
    spawner = make(admission_enabled=True, allowed_images="*", admission_image_allowlist=["hardened-spawner/*"])
    spawner.pull_policy = "always"
    spawner.user_options = {"image": ref}
    with pytest.raises(SpawnRefused) as refused:
        await spawner.start()
    assert refused.value.reason == "image-denied" and "Nothing was pulled" in refused.value.text()
    assert [c for c in fake.calls if c[0] in ("pull", "inspect_image", "create_container")] == []
    (event, denied) = audit(tmp_path)
    assert (event["event"], event["decision"], event["stage"], denied["event"]) == (
        "admission", "deny", "reference", "spawn.denied")


class Admit:
    """Admits every image (admission has its own tests); hands back the fake image's accounts."""

    async def decide(self, ref, info):
        from hardened_spawner.admission.model import Decision

        return SimpleNamespace(decision=Decision(True, (), "sha256:x"), how="computed", facts="computed",
                               seconds=0.0, accounts=("jovyan:x:1000:100::/home/jovyan:/bin/bash\n", ""))

    async def accounts(self, info):
        return ("jovyan:x:1000:100::/home/jovyan:/bin/bash\n", "")


@pytest.mark.parametrize("method, error, reason", [
    ("put_archive", APIError("500", response=_response(500), explanation="no space left on device"), None),
    ("start", APIError("500", response=_response(500), explanation=NO_DRIVER), "no-gpu-runtime"),
    ("start", APIError("500", response=_response(500), explanation="OCI runtime create failed"), None),
])
async def test_a_failed_start_frees_its_gpu_and_removes_its_container(make, fake, method, error, reason):
    profiles = [{"slug": "gpu", "gpus": 1}]
    first = make("alice", gpu_ids=["0"], profiles=profiles, conda_allowed_channels=["conda-forge"],
                 admission_enabled=method == "put_archive")  # put_archive: the conda guard's policy files
    first.admission_service = lambda policy: Admit()
    fake.fail[method] = error
    with pytest.raises(Exception) as failed:
        await first.start()
    if reason:
        assert failed.value.reason == reason
    assert fake.objects == {}  # the container it created is gone
    second = make("bob", gpu_ids=["0"], profiles=profiles)
    await second.start()  # the only GPU was freed
    assert fake.objects[second.object_id]["Config"]["Labels"][LABEL_GPUS] == "0"


async def test_a_start_cancelled_by_the_start_timeout_is_audited_in_words_and_removes_its_container(
        make, fake, tmp_path):
    """JupyterHub cancels a start that outlives start_timeout: a CancelledError, whose text is empty."""
    spawner = make("alice", start_timeout=60)
    fake.fail["start"] = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        await spawner.start()
    assert fake.objects == {}
    (failed,) = [e for e in audit(tmp_path) if e["event"] == "spawn.failed"]
    assert failed["reasons"] == ["cancelled before the server started: JupyterHub stops waiting after "
                                 "start_timeout (60 s), or the server was stopped meanwhile"]


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
    with pytest.raises(SpawnRefused) as refused:
        await spawner.create_object()
    assert "privileged containers are never allowed" in refused.value.findings[0]["message"]
    assert creates(fake) == []
    spawner.extra_host_config = {}
    obj = await spawner.create_object()
    assert fake.objects[obj["Id"]]["HostConfig"]["CapDrop"] == ["ALL"]


async def test_create_object_returns_what_docker_answered_as_dockerspawner_does(make, fake):
    spawner = make()
    answer = {"Id": "from-a-wrapped-client", "Warnings": []}
    original = spawner.docker

    async def docker(method, *args, **kwargs):  # DockerSpawner's own tests mock it like this
        return answer if method == "create_container" else await original(method, *args, **kwargs)

    spawner.docker = docker
    assert await spawner.create_object() is answer and spawner.object_id == ""  # start() records the id


class _Admit:
    async def decide(self, ref, info):
        from hardened_spawner.admission.model import Decision

        return SimpleNamespace(decision=Decision(True, (), "sha256:x"), how="computed", facts="computed",
                               seconds=0.1, accounts=("jovyan:x:1000:100::/home/jovyan:/bin/bash\n", ""))


async def test_a_conda_guard_that_cannot_be_written_removes_the_container(make, fake, tmp_path):
    """A writable root: the files go into the created container; a failed write removes it."""
    spawner = make(admission_enabled=True, conda_allowed_channels=["conda-forge"], read_only_root=False)
    spawner.admission_service = lambda policy: _Admit()
    fake.fail["put_archive"] = APIError("500", response=_response(500), explanation="read-only file system")
    with pytest.raises(SpawnRefused, match="policy files could not be written") as refused:
        await spawner.start()
    assert refused.value.reason == "conda-guard-failed" and len(creates(fake)) == 1 and fake.objects == {}
    assert fake.called("start") == []
    spawner.admission_service = lambda policy: _Admit()
    await spawner.start()
    assert (spawner.object_id, "/") in fake.archives and fake.named_volumes == {}
    assert "PIP_CONFIG_FILE" not in str(fake.objects[spawner.object_id]["Config"]["Env"])


async def test_a_read_only_roots_conda_guard_is_a_read_only_volume_written_before_the_create(make, fake, tmp_path):
    spawner = make(admission_enabled=True, conda_allowed_channels=["conda-forge"], pip_index_url="https://pi/simple",
                   remove=True)
    spawner.admission_service = lambda policy: _Admit()
    fake.fail["put_archive"] = APIError("500", response=_response(500), explanation="no space left")
    with pytest.raises(SpawnRefused, match="policy files could not be written into the volume") as refused:
        await spawner.start()
    # refused before the server's container was created, and the volume it made is gone
    assert refused.value.reason == "conda-guard-failed" and creates(fake) == [] and fake.objects == {}
    assert fake.named_volumes == {} and fake.called("start") == []
    spawner.admission_service = lambda policy: _Admit()
    await spawner.start()
    container = fake.objects[spawner.object_id]
    assert container["HostConfig"]["ReadonlyRootfs"] is True
    assert "jupyter-alice-conda-policy:/etc/conda:ro" in container["HostConfig"]["Binds"]
    assert "PIP_CONFIG_FILE=/etc/conda/pip.conf" in container["Config"]["Env"]
    assert fake.named_volumes["jupyter-alice-conda-policy"]["Labels"]["hardened-spawner.owner"] == "alice"
    [(helper, _)] = [k for k in fake.archives if k[1] == "/etc/conda"]
    assert helper != spawner.object_id and (spawner.object_id, "/") not in fake.archives
    with tarfile.open(fileobj=io.BytesIO(fake.archives[(helper, "/etc/conda")])) as tar:
        files = {m.name: (m.uid, m.mode, tar.extractfile(m).read().decode()) for m in tar.getmembers() if m.isfile()}
    assert sorted(files) == [".condarc", "pip.conf"] and files["pip.conf"][:2] == (0, 0o644)
    assert "channels:  #!final" in files[".condarc"][2] and "index-url = https://pi/simple" in files["pip.conf"][2]
    # written before the server's container was created
    volume_write = fake.calls.index(fake.called("put_archive")[-1])
    assert volume_write < fake.calls.index(creates(fake)[-1]) < fake.calls.index(fake.called("start")[-1])
    (guard,) = [e for e in audit(tmp_path) if e["event"] == "conda.guard"]
    assert guard["files"] == ["/etc/conda/.condarc", "/etc/conda/pip.conf"]
    assert guard["volume"] == "jupyter-alice-conda-policy"
    await spawner.stop()
    assert fake.named_volumes == {}  # the volume goes with the server


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


@pytest.mark.parametrize("image_user, eck_user, runs_as", [
    ("00", None, "1000:100"),             # uid 0 by another spelling
    ("+0:100", None, "1000:100"),
    ("toor", None, "1000:100"),           # a passwd name with uid 0
    ("jovyan", None, "1000:100"),         # names become numbers
    ("4242", None, "4242:100"),           # a uid without an entry would get gid 0 from Docker
    ("jovyan", "toor", "1000:100"),       # extra_create_kwargs' user is resolved the same way
])
async def test_the_container_runs_as_an_explicit_non_root_uid(make, fake, image_user, eck_user, runs_as):
    fake.passwd += "toor:x:0:0::/root:/bin/sh\n"
    fake.images[IMAGE]["Config"]["User"] = image_user
    # a uid without a passwd entry gets HOME=/ from Docker, read-only: its admin points HOME at the home volume
    home = {"environment": {"HOME": "/home/jovyan"}} if image_user == "4242" else {}
    spawner = make(extra_create_kwargs={"user": eck_user} if eck_user else {}, **home)
    await spawner.start()
    assert fake.objects[spawner.object_id]["Config"]["User"] == runs_as


async def test_a_user_name_the_image_lacks_is_refused(make, fake, tmp_path):
    fake.images[IMAGE]["Config"]["User"] = "nobody"
    with pytest.raises(SpawnRefused, match="'nobody' is not in the image's /etc/passwd") as refused:
        await make().start()
    assert refused.value.reason == "image-user-unknown" and creates(fake) == []


async def test_the_container_is_created_from_the_admitted_image_id(make, fake):
    spawner = make()
    await spawner.start()
    (create,) = creates(fake)
    assert create[1][0] == fake.images[IMAGE]["Id"]  # the Id, not the tag that can move


async def test_content_other_than_admitted_is_removed_not_started(make, fake):
    fake.swap_image = "sha256:" + "f" * 64  # the daemon made the container from something else
    with pytest.raises(SpawnRefused, match="not from the admitted image") as refused:
        await make().start()
    assert refused.value.reason == "image-changed"
    assert fake.objects == {} and fake.called("start") == []


async def test_a_stopped_container_of_other_content_is_recreated(make, fake):
    spawner = make(remove=False)
    await spawner.start()
    await spawner.stop()
    first = spawner.object_id
    fake.images[IMAGE]["Id"] = "sha256:" + "e" * 64  # the tag now points at other content
    await spawner.start()
    assert spawner.object_id != first and first not in fake.objects


def env_of(fake, spawner):
    return dict(e.split("=", 1) for e in fake.objects[spawner.object_id]["Config"]["Env"])


async def test_nvidia_visible_devices_is_always_the_lease_or_none(make, fake):
    fake.images[IMAGE]["Config"]["Env"] = ["NVIDIA_VISIBLE_DEVICES=all"]  # as CUDA bases ship
    profiles = [{"slug": "cpu", "default": True}, {"slug": "gpu", "gpus": 1}]
    cpu = make("alice", gpu_ids=["0", "1"], profiles=profiles)
    await cpu.start()
    gpu = make("bob", gpu_ids=["0", "1"], profiles=profiles, user_options={"profile": "gpu"})
    await gpu.start()
    assert env_of(fake, cpu)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert env_of(fake, gpu)["NVIDIA_VISIBLE_DEVICES"] == "0"


async def test_a_gpu_entitlement_caps_the_user_across_named_servers(make, fake):
    from hardened_spawner.decisions.entitlements import Entitlements

    profiles = [{"slug": "gpu", "gpus": 1}]
    first = make("alice", "one", gpu_ids=["0", "1", "2"], profiles=profiles)
    second = make("alice", "two", gpu_ids=["0", "1", "2"], profiles=profiles)
    for spawner in (first, second):
        spawner._granted = Entitlements(allowed=True, gpus=1)
    await first.start()
    with pytest.raises(SpawnRefused, match="already hold 1 GPU") as refused:
        await second.start()
    assert refused.value.reason == "gpu-quota"


async def test_servers_run_on_a_network_where_containers_cannot_meet(make, fake, tmp_path):
    spawner = make()
    await spawner.start()
    network = fake.networks["hardened-spawner"]
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert fake.objects[spawner.object_id]["HostConfig"]["NetworkMode"] == "hardened-spawner"
    assert fake.calls.index(fake.called("create_network")[0]) > fake.calls.index(fake.called("inspect_image")[-1])
    assert "network.created" in [e["event"] for e in audit(tmp_path)]


async def test_a_network_that_lets_containers_meet_is_refused(make, fake):
    with pytest.raises(SpawnRefused, match="'bridge' lets containers reach each other") as refused:
        await make(network_name="bridge").start()
    assert refused.value.reason == "network-not-isolated" and creates(fake) == []
    assert "Docker's own network" in refused.value.text() and "network rm" not in refused.value.text()
    fake.networks["shared"] = {**fake.networks["bridge"], "Name": "shared"}
    with pytest.raises(SpawnRefused, match=r"docker network rm shared\) so the hub recreates it isolated"):
        await make(network_name="shared").start()
    await make(network_name="bridge", isolate_containers=False).start()  # the admin's explicit choice
    assert len(creates(fake)) == 1


async def test_stop_returns_once_docker_has_removed_the_container(make, fake, monkeypatch):
    """With auto_remove Docker removes the container itself after the stop and answers DockerSpawner's
    own remove with 409 "already in progress": the stop must not end while the name is still taken."""
    spawner = make(remove=True)
    await spawner.start()
    cid = spawner.container_id
    inspections = []
    inspect = fake.inspect_container

    def remove_container(container, **kwargs):
        raise APIError("removal already in progress", response=_response(409))

    def slow_inspect(name_or_id):
        if name_or_id == cid and fake.objects.get(cid) and not fake.objects[cid]["State"]["Running"]:
            inspections.append(name_or_id)
            if len(inspections) == 3:  # Docker finishes its own removal
                fake.objects.pop(cid)
        return inspect(name_or_id)

    monkeypatch.setattr(fake, "remove_container", remove_container)
    monkeypatch.setattr(fake, "inspect_container", slow_inspect)
    await spawner.stop()
    assert cid not in fake.objects and len(inspections) == 3


@pytest.mark.parametrize("ref, words", [
    ("../../etc/passwd", "malformed image reference"),
    ("default\x00evil", "malformed image reference"),
    ("UPPER/case:1", "malformed image reference"),
])
async def test_with_any_image_allowed_a_bad_reference_is_refused_by_the_parser(make, fake, tmp_path, ref, words):
    """allowed_images = "*" skips the name lookup, so the reference parser itself must refuse these."""
    spawner = make(allowed_images="*")
    spawner.user_options = {"image": ref}
    with pytest.raises(SpawnRefused) as refused:
        await spawner.start()
    assert refused.value.reason == "bad-options" and words in refused.value.text(), refused.value.text()
    assert [c for c in fake.calls if c[0] in ("pull", "inspect_image", "create_container")] == []
