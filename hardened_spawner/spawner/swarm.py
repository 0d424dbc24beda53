"""HardenedSwarmSpawner: the hardened spawn pipeline on Docker Swarm.

Everything that decides (configuration checks, image admission, profiles and
entitlements, SSH key validation, progress, audit) is the pipeline's
(:mod:`.base`), shared with HardenedDockerSpawner, its sibling. This backend
only turns the checked create arguments into a service
(:mod:`..decisions.swarm_service`) and talks to the swarm manager:

- GPUs are a ``NVIDIA-GPU`` generic-resource reservation: the scheduler puts
  the task on a node with free GPUs and tells the container which ones
  (``DOCKER_RESOURCE_NVIDIA-GPU``); no GPU free on any node is a clear refusal
  and the pending service is removed;
- SSH keys are a swarm secret (one per server and key set; secrets are
  immutable, so new keys mean a new secret), mounted root-owned 0644 where
  sshd reads them, and removed with the service; so are the host key this
  start's certificate is for (owned by the container's user, 0600) and the
  certificate (:mod:`..keys.host_certs`);
- no-new-privileges cannot be set per service on Docker 20.10: tasks are placed
  only on nodes whose engine says it runs with it daemon-wide;
- with ``network_per_user`` each user's tasks run on an attachable overlay of
  their own that the hub's container joins, proved with probes like the Docker
  spawner's bridges (:mod:`.networks`), and removed with the user's last server.
"""

import asyncio
import hashlib
import time

from docker.errors import APIError, NotFound
from dockerspawner import SwarmSpawner
from traitlets import Dict, Enum, Float, List, Unicode, default

from ..decisions import swarm_service
from ..decisions.container import LABEL_OWNER, LABEL_SERVER
from ..decisions.plan import NotHardened
from ..decisions.reference import parse
from ..errors import SpawnRefused
from ..keys.delivery import KEYS_DIR
from ..keys.host_certs import HOST_CERT_PATH, HOST_KEY_PATH
from ..keys.targets import CONTAINER_SSH_PORT
from . import clients
from .base import SpawnPipeline
from .networks import NetworkSettings, ServerNetwork, per_user_name
from .refusals import not_hardened

LABEL_SSH_SECRET = "hardened-spawner.ssh-keys-for"
_NO_NODE = ("insufficient resources", "no suitable node")
_WAITING = {"new", "pending", "assigned", "accepted", "preparing", "ready"}


class HardenedSwarmSpawner(NetworkSettings, SpawnPipeline, SwarmSpawner):
    """HardenedDockerSpawner's guarantees for single-user servers run as Swarm services.

    Point the hub at a swarm manager (``DOCKER_HOST`` or ``client_kwargs``).
    The manager must hold the image (it is pulled there if missing) because
    admission reads it there; pin images by digest so every node runs the
    content that was checked. Configured by ``c.HardenedSpawner.*`` (shared
    with HardenedDockerSpawner), then ``c.HardenedDockerSpawner.*`` (as when
    this class was its subclass), then ``c.HardenedSwarmSpawner.*``.
    """

    _ssh_published = None  # the node port of sshd, kept in the server's state for the gateway

    @classmethod
    def section_names(cls):
        """``HardenedDockerSpawner`` settings apply too: hub configs written for it keep their meaning."""
        names = super().section_names()
        if "HardenedDockerSpawner" not in names:
            names.insert(names.index(cls.__name__) if cls.__name__ in names else len(names),
                         "HardenedDockerSpawner")
        return names

    no_new_privileges_mode = Enum(
        ("require", "warn"), "require", config=True,
        help="""Swarm services cannot ask for no-new-privileges on Docker 20.10, so it must
        be on daemon-wide (``"no-new-privileges": true`` in each node's daemon.json), and the
        node says so with the engine label ``hardened-spawner.no-new-privileges=true``
        (``"labels"`` in daemon.json). ``require``: tasks are placed only on such nodes, and a
        spawn is refused when there is none. ``warn``: tasks may run anywhere; the audit log
        and hub log say when no node carries the label.""",
    )
    placement_constraints = Dict(
        value_trait=List(Unicode()), config=True,
        help="""Swarm placement constraints per profile slug, e.g.
        ``{"gpu-large": ["node.labels.gpu == true"], "*": ["node.role == worker"]}``.
        ``"*"`` applies to every profile. GPU profiles need no constraint to find GPUs: the
        ``NVIDIA-GPU`` reservation already restricts them to nodes with free GPUs.""",
    )
    gpu_resource = Unicode(
        swarm_service.GPU_RESOURCE, config=True,
        help="""Name of the node generic resource that counts GPUs (dockerd
        ``--node-generic-resource NVIDIA-GPU=<uuid>`` on each GPU node).""",
    )

    mounts = List(
        Dict(), config=True,
        help="""Extra mounts, as for DockerSpawner (``target``, ``source``, ``type``, ...);
        SwarmSpawner turns ``volumes`` into mounts itself, this spawner does it in
        :mod:`hardened_spawner.decisions.swarm_service` after the mount checks.""",
    )

    health_check_interval = Float(
        3.0, config=True,
        help="""Seconds between runs of the image's HEALTHCHECK in swarm tasks. Swarm publishes
        a task's port only after its first passing check, so this bounds the spawn time;
        each check runs a small process in the container.""",
    )

    @default("network_name")
    def _default_network_name(self):
        return per_user_name(self) if self.network_per_user else SwarmSpawner.network_name.default_value

    def isolated_network(self):
        return self.network_name if self.network_per_user else None

    def _networks(self):
        return ServerNetwork(self.docker_io, clients.flights(), self.audit, driver="overlay")

    def create_image_ref(self, image, image_info):
        """Tasks run ``name@<registry digest>``: every node pulls exactly the content admitted on the manager."""
        wanted = parse(image).name
        for repo_digest in image_info.get("RepoDigests") or ():
            name, _, digest = repo_digest.partition("@")
            if parse(name).name == wanted:
                return f"{name}@{digest}"
        raise SpawnRefused(
            f"The image {image} has no registry digest on the swarm manager, so the swarm's nodes cannot be "
            "made to run exactly the content that was checked. Push it to a registry and reference it from there "
            "(by tag or by digest); tell the hub admin.", reason="image-no-digest")

    @default("pull_policy")
    def _default_pull_policy(self):
        return "ifnotpresent"  # the manager needs the image: admission reads it there

    def profile_problems(self):
        """A service has no ``storage_opt``: a profile's disk_limit would be dropped, so it is refused; a home
        quota is a loop device on one host, which a service on another node would not see."""
        catalog = self.profile_catalog()[0]
        return super().profile_problems() + [
            (f"{self.setting_prefix}disk_limit",
             f"profile {p.slug!r} has disk_limit {p.limits.disk} bytes, but Swarm services cannot bound a "
             "container's writable layer; remove it")
            for p in catalog if p.limits.disk] + [
            (f"{self.setting_prefix}home_quota",
             f"profile {p.slug!r} has home_quota {p.limits.home} bytes, but a home image on the hub's host is "
             "not on the swarm's nodes; remove it (use a volume driver with quotas)")
            for p in catalog if p.limits.home] + self._network_problems()

    def _network_problems(self):
        """A per-user overlay isolates only when nothing else reaches the task: no published ports, and the
        hub on the overlay (the host has no route into one)."""
        if not self.network_per_user:
            return []
        problems = []
        if not self.use_internal_ip:
            problems.append((f"{self.setting_prefix}use_internal_ip",
                             "network_per_user on Swarm needs use_internal_ip = True: ports published on the nodes "
                             "would let every container reach every user's server"))
        if not self.network_peers:
            problems.append((f"{self.setting_prefix}network_peers",
                             "network_per_user on Swarm needs the hub's container in network_peers: a hub outside "
                             "a container cannot reach a server on an overlay network"))
        return problems

    # ---- resources: the scheduler owns GPUs on a swarm --------------------------------
    async def reserve_gpus(self, profile, limits):
        """The profile's GPU count becomes the service's reservation (the plan's profile); the scheduler
        picks the GPUs."""
        if profile.gpus:
            self.say(f"Asking the swarm for {profile.gpus} GPU(s) for profile {profile.display_name}")
        return limits

    def gpu_environment(self, profile, limits):
        """GPU tasks get their GPUs from the scheduler (``DOCKER_RESOURCE_<resource>``); other tasks none,
        whatever the image's ENV says (a CUDA base's ``NVIDIA_VISIBLE_DEVICES=all``)."""
        if profile.gpus:
            return {}
        return {"NVIDIA_VISIBLE_DEVICES": "void", f"DOCKER_RESOURCE_{self.gpu_resource}": ""}

    def _constraints(self, profile):
        slug = profile.slug
        return tuple(self.placement_constraints.get("*", ())) + tuple(self.placement_constraints.get(slug, ()))

    async def _check_no_new_privileges(self):
        nodes = await self.docker_io("nodes")
        attested = [
            n for n in nodes
            if ((n.get("Description") or {}).get("Engine") or {}).get("Labels", {}).get(swarm_service.NNP_ENGINE_LABEL) == "true"
        ]
        if attested:
            return
        message = (f"No swarm node has the engine label {swarm_service.NNP_ENGINE_LABEL}=true, so none says it "
                   "runs with no-new-privileges daemon-wide")
        self.audit.write("swarm.no-new-privileges", **self.audit_fields(mode=self.no_new_privileges_mode,
                                                                       nodes=len(nodes)))
        if self.no_new_privileges_mode == "require":
            raise SpawnRefused(f"{message}; your server was not started. Tell the hub admin to set "
                               "no-new-privileges and that label in each node's daemon.json.",
                               reason="swarm-no-new-privileges")
        self.log.warning("%s: starting anyway (no_new_privileges_mode=warn)", message)

    # ---- SSH keys as a swarm secret ----------------------------------------------------
    async def _keys_secret(self, plan):
        """The keys file and the certified host key (owned by the container's user, 0600) as secrets."""
        text, login = plan.keys, plan.login
        if not text:
            return ()
        if login is None:
            self.say(f"SSH unavailable: the image has no account for {plan.user}")
            return ()
        uid, gid = plan.user.split(":")
        files = [(f"{KEYS_DIR}/{login}", text, "0", "0", 0o644)]
        if plan.host_key is not None:
            files += [(HOST_KEY_PATH, plan.host_key.private, uid, gid, 0o600),
                      (HOST_CERT_PATH, plan.host_key.certificate, "0", "0", 0o644)]
        return tuple([await self._secret(*file) for file in files])

    async def _secret(self, path, text, uid, gid, mode):
        name = f"{self.object_name}-ssh-{hashlib.sha256(f'{path}{uid}{text}'.encode()).hexdigest()[:12]}"
        labels = {LABEL_SSH_SECRET: self.object_name, LABEL_OWNER: self.user.name, LABEL_SERVER: self.name or ""}
        try:
            secret = await self.docker_io("create_secret", name, text.encode(), labels=labels)
        except APIError as e:
            if e.status_code != 409:  # 409: the same content is already a secret
                raise
            secret = (await self.docker_io("secrets", filters={"name": name}))[0]
        return {"SecretID": secret["ID"], "SecretName": name,
                "File": {"Name": path, "UID": uid, "GID": gid, "Mode": mode}}

    async def _remove_secrets(self, keep=()):
        secrets = await self.docker_io("secrets", filters={"label": f"{LABEL_SSH_SECRET}={self.object_name}"})
        for secret in secrets:
            if secret["ID"] in keep:
                continue
            for attempt in range(40):  # "in use" until the service's tasks are gone
                try:
                    await self.docker_io("remove_secret", secret["ID"])
                    self.audit.write("swarm.secret.removed", **self.audit_fields(name=secret["Spec"]["Name"]))
                    break
                except NotFound:
                    break
                except APIError as e:
                    if attempt == 39:
                        self.log.warning("could not remove secret %s: %s", secret["Spec"]["Name"], e)
                    await asyncio.sleep(0.25)

    # ---- the service -------------------------------------------------------------------
    async def create_from(self, plan):
        create = plan.create_kwargs
        for key, why in swarm_service.unsupported(create["host_config"]):
            if key != "security_opt" or "no-new-privileges" not in why:
                self.log.warning("%s: %s: %s", self._log_name, key, why)
        await self._check_no_new_privileges()
        if self.network_per_user:  # the user's overlay exists, the hub is on it, and it keeps others out
            await self._networks().prepare(self, self.network_name, True, plan.image_id)
        secrets = await self._keys_secret(plan)
        profile = plan.profile
        options = swarm_service.SwarmOptions(
            name=self.object_name,
            gpus=profile.gpus,
            gpu_resource=self.gpu_resource,
            cpu_guarantee=profile.limits.cpu_guarantee,
            constraints=self._constraints(profile),
            require_no_new_privileges=self.no_new_privileges_mode == "require",
            network=self.network_name,
            publish_port=not self.use_internal_ip,
            ssh_port=CONTAINER_SSH_PORT if secrets else None,
            secrets=secrets,
            health_interval=self.health_check_interval,
        )
        service = await self.docker("create_service", **swarm_service.service_kwargs(create, options))
        await self._remove_secrets(keep={s["SecretID"] for s in secrets})  # keys replaced since last start
        return service

    async def prepare_created(self, plan):
        """What Docker recorded for the service must keep the invariants before its task is waited for."""
        violations = swarm_service.recorded_problems(await self.docker_io("inspect_service", self.object_id),
                                                     plan.expected)
        if violations:
            raise not_hardened(NotHardened(violations), "the service Docker created")

    def recorded_problems(self, obj, plan):
        return swarm_service.recorded_problems(obj, plan.expected)

    async def start_from(self, plan):
        """Wait for the task to run; a task no node can take is removed with a clear message.
        True when the task publishes sshd (keys were delivered as a secret)."""
        delay = 0.25
        while True:
            task = await self.get_task()
            if not task:  # the orchestrator makes the task moments after the service (start_timeout bounds this)
                if await self.get_object() is None:
                    raise RuntimeError(f"Service {self.service_name} was removed while it started")
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 2)
                continue
            status = task["Status"]
            state = status["State"].lower()
            if state in ("running", "starting"):
                break  # "starting": the container runs, its HEALTHCHECK has not passed yet
            error = status.get("Err") or ""
            if state == "pending" and any(s in error for s in _NO_NODE):
                await self._remove_service_and_secrets()
                raise SpawnRefused(self._no_node_message(error, plan.profile), reason="swarm-no-node")
            if state not in _WAITING:
                raise RuntimeError(f"Task of {self.service_name} is {state}: {error or status.get('Message')}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2)
        return bool(plan.keys and plan.login)

    def _no_node_message(self, error, profile):
        gpus, profile = profile.gpus, profile.title()
        if gpus and "insufficient resources" in error:
            return (f"No swarm node has {gpus} free GPU(s) for profile {profile}, so your server was not "
                    "started. Pick a profile without GPUs, or try again when a GPU server stops.")
        return (f"No swarm node can run profile {profile} ({error}), so your server was not started. "
                "Tell the hub admin if this persists.")

    async def _task_endpoint(self, task, port):
        """``(node address, published port)`` of ``port`` of a task published in host mode."""
        node = await self.docker("inspect_node", task["NodeID"])
        for p in (task["Status"].get("PortStatus") or {}).get("Ports") or ():
            if p.get("TargetPort") == port:
                return node["Status"]["Addr"], int(p["PublishedPort"])
        return node["Status"]["Addr"], None

    async def record_ssh(self, plan, reachable):
        """Where the gateway finds this server's sshd: the node and the port published for 2222."""
        self.ssh_host, self._ssh_published = "", None
        if reachable and self.use_internal_ip:
            self.ssh_host = self._address_on_network(await self.get_task())
        elif reachable:
            host, port = await self._task_endpoint(await self.get_task(), CONTAINER_SSH_PORT)
            if port is not None:
                self.ssh_host, self._ssh_published = host, port

    async def get_ip_and_port(self):
        task = await self.get_task()
        if self.use_internal_ip:
            return self._address_on_network(task), self.port
        # the port is published once the task's health check passed: as long as a server may take to answer
        deadline = time.monotonic() + self.http_timeout
        while True:
            host, port = await self._task_endpoint(task, self.port)
            if port is not None:
                return host, port
            if time.monotonic() > deadline:
                raise RuntimeError(f"Task of {self.service_name} publishes no port {self.port} "
                                   f"within {self.http_timeout:g} s (http_timeout)")
            await asyncio.sleep(0.25)
            task = await self.get_task()

    def _address_on_network(self, task):
        for attachment in task.get("NetworksAttachments") or ():
            if attachment["Network"]["Spec"]["Name"] == self.network_name:
                return attachment["Addresses"][0].split("/")[0]
        raise RuntimeError(f"Task of {self.service_name} has no address on network {self.network_name!r}")

    async def _remove_service_and_secrets(self):
        try:
            await self.docker("remove_service", self.service_name)
        except NotFound:
            pass
        await self._remove_secrets()
        await self._networks().release(self)  # the user's overlay, when no server of theirs is left

    async def remove_object(self):
        await self._remove_service_and_secrets()

    async def discard(self):
        await self._remove_service_and_secrets()
        self.object_id = ""

    def ssh_port(self):
        return self._ssh_published or CONTAINER_SSH_PORT

    def load_state(self, state):
        super().load_state(state)
        self._ssh_published = state.get("ssh_port")
