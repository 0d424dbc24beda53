"""A fake docker-py ``APIClient`` for lifecycle unit tests (as KubeSpawner's ``_mock=True``).

It keeps images and containers in dicts, answers the calls the spawner
makes with the shapes Docker's API returns, and records every call in
``calls`` so tests can assert their order. Integration tests use the real
daemon; this only lets the pipeline's order and failure paths be tested in
milliseconds.
"""

import io
import itertools
import tarfile

import docker.types
import requests
from docker.errors import APIError, ImageNotFound, NotFound


def _response(status):
    response = requests.Response()
    response.status_code = status
    return response


def passwd_archive(text="root:x:0:0::/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("passwd")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeDocker:
    api_version = "1.44"

    def __init__(self):
        self.images = {}
        self.objects = {}  # container id -> inspect dict
        self.calls = []
        self.fail = {}  # method -> exception raised on its next call
        self.archives = {}  # (container id, path) -> bytes written by put_archive
        self.named_volumes = {}  # name -> {"Name", "Labels"}: volumes made with create_volume
        self.networks = {"bridge": {"Name": "bridge", "Id": "net-bridge", "Driver": "bridge",
                                    "Options": {"com.docker.network.bridge.enable_icc": "true"}}}
        self.base_url = "http+docker://fake"
        self.passwd = "root:x:0:0::/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"
        self.group = None  # None: the image has no /etc/group
        self.swap_image = None  # an image id create_container uses instead of the one asked (a moved tag)
        self.address = "10.9.0.2"  # every container's address on its network (nothing listens there)
        self._ids = itertools.count(1)

    # ---- helpers for tests --------------------------------------------------------
    def add_image(self, ref, user="1000:100", image_id=None):
        image_id = image_id or f"sha256:{next(self._ids):064x}"
        self.images[ref] = {"Id": image_id, "Config": {"User": user, "Labels": {}}, "RepoDigests": []}
        return image_id

    def names(self):
        return [c["Name"].lstrip("/") for c in self.objects.values()]

    def called(self, method):
        return [c for c in self.calls if c[0] == method]

    def _record(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        if method in self.fail:
            raise self.fail.pop(method)

    def _find(self, name_or_id):
        for cid, c in self.objects.items():
            if name_or_id in (cid, c["Name"].lstrip("/")):
                return c
        raise NotFound(f"No such container: {name_or_id}", response=_response(404))

    # ---- the docker-py calls the spawner makes ------------------------------------
    def inspect_image(self, ref):
        self._record("inspect_image", ref)
        if ref not in self.images:
            raise ImageNotFound(f"No such image: {ref}", response=_response(404))
        return self.images[ref]

    def pull(self, ref, **kwargs):
        self._record("pull", ref)
        raise APIError(f"pull access denied for {ref}", response=_response(404), explanation="no registry")

    def create_host_config(self, **kwargs):
        return dict(docker.types.HostConfig(self.api_version, **kwargs))  # the API form, as docker-py sends it

    def info(self):
        self._record("info")
        return {"DockerRootDir": "/var/lib/docker", "DefaultRuntime": "runc"}

    def create_container(self, image, name=None, labels=None, user=None, environment=None, host_config=None,
                         **kwargs):
        self._record("create_container", image, name=name)
        if name in self.names():
            raise APIError("Conflict", response=_response(409))
        cid = f"{next(self._ids):064x}"
        self.objects[cid] = {
            "Id": cid, "Name": f"/{name}", "Image": self.swap_image or self.images.get(image, {"Id": image})["Id"],
            "Config": {"Labels": dict(labels or {}), "User": user or "", "Env": [
                f"{k}={v}" for k, v in (environment or {}).items()]},
            "HostConfig": {"Runtime": "runc", **(host_config or {})},  # Docker records the runtime it chose
            "State": {"Running": False, "ExitCode": 0, "Error": "", "FinishedAt": "", "OOMKilled": False},
            "NetworkSettings": {"Networks": {(host_config or {}).get("NetworkMode", "bridge"): {
                "IPAddress": self.address}}, "Ports": {}},
        }
        return {"Id": cid, "Warnings": []}

    def inspect_container(self, name_or_id):
        self._record("inspect_container", name_or_id)
        return self._find(name_or_id)

    def start(self, container):
        self._record("start", container)
        self._find(container)["State"]["Running"] = True

    def stop(self, container, **kwargs):
        self._record("stop", container)
        self._find(container)["State"]["Running"] = False

    def remove_container(self, container, **kwargs):
        self._record("remove_container", container)
        self.objects.pop(self._find(container)["Id"])

    def create_volume(self, name, labels=None, **kwargs):
        self._record("create_volume", name)
        self.named_volumes.setdefault(name, {"Name": name, "Labels": labels or {}})
        return self.named_volumes[name]

    def remove_volume(self, name, force=False):
        self._record("remove_volume", name)
        if name not in self.named_volumes:
            raise NotFound("no such volume")
        self.named_volumes.pop(name)

    def put_archive(self, container, path, data):
        self._record("put_archive", container, path)
        self.archives[(self._find(container)["Id"], path)] = data
        return True

    def get_archive(self, container, path):
        self._record("get_archive", container, path)
        self._find(container)
        text = {"/etc/passwd": self.passwd, "/etc/group": self.group}.get(path)
        if text is None:
            raise NotFound(path, response=_response(404))
        return [passwd_archive(text)], {"name": path.rsplit("/", 1)[1]}

    def containers(self, all=False, filters=None):  # noqa: A002 - docker-py's name
        self._record("containers", filters=filters)
        label = (filters or {}).get("label", "")
        return [{"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"],
                 "State": "running" if c["State"]["Running"] else "exited"}
                for c in self.objects.values() if c["State"]["Running"] or all
                if not label or label.split("=")[0] in c["Config"]["Labels"]]

    def diff(self, container):
        self._record("diff", container)
        return []

    def events(self, **kwargs):
        self._record("events", **kwargs)
        return iter(())

    def inspect_network(self, name):
        self._record("inspect_network", name)
        if name not in self.networks:
            raise NotFound(f"network {name} not found", response=_response(404))
        return self.networks[name]

    def create_network(self, name, driver=None, options=None, labels=None, **kwargs):
        self._record("create_network", name)
        self.networks[name] = {"Name": name, "Id": f"net-{name}", "Driver": driver, "Options": dict(options or {}),
                               "Labels": labels}
        return {"Id": name}
