"""Rewrite the keys file of a running container through the Docker API (a thin shell).

``/etc/ssh/authorized_keys/<login>`` (root, 0644) is replaced with Docker's
``put_archive``, which the daemon performs: the container's processes (no
capabilities, ``no-new-privileges``) cannot write it themselves. With a
read-only root filesystem the file lives in a per-server volume mounted
read-only; it is written through a helper container that is created with
the volume read-write, never started, and removed at once. sshd reads the
file at every authentication, so the change applies to the next login
without a restart. The host certificate of a running server is replaced
the same way when the hub renews it (:func:`renew_host_certificate`).

The login name comes from the image's ``/etc/passwd`` (read from a helper
container of that image, never from the running container, whose files
its user may have changed), cached per image and user.

Every function is synchronous and takes a docker-py ``APIClient``: run them
on your own threads.
"""

import threading
from dataclasses import dataclass

from docker.errors import APIError, NotFound

from ..decisions.container import LABEL_OWNER
from .delivery import KEYS_DIR, container_user_name, file_from_archive, host_cert_archive, keys_archive
from .host_certs import HOST_CERT_PATH
from .stores import check_username

LABEL_KEYS_HELPER = "hardened-spawner.ssh-keys-helper"


class LiveDeliveryError(Exception):
    """Keys could not be written into a running container; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where a running container's keys file is: the container, its login, and the keys volume if any."""

    container_id: str
    image_id: str
    login: str
    volume: str = ""


_logins = {}
_logins_lock = threading.Lock()


def _helper(client, image_id, label, binds=None):
    """A created, never started container of ``image_id``: no network, no capabilities."""
    host_config = client.create_host_config(
        binds=binds or {}, network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges:true"])
    return client.create_container(image_id, command=["true"], network_disabled=True,
                                   labels={LABEL_KEYS_HELPER: label}, host_config=host_config)["Id"]


def login_in_image(client, image_id, user_spec, label="login"):
    """The login name of ``user_spec`` in image ``image_id`` (cached), or None if it has no such account."""
    key = (image_id, user_spec)
    with _logins_lock:
        if key in _logins:
            return _logins[key]
    helper = _helper(client, image_id, label)
    try:
        stream, _ = client.get_archive(helper, "/etc/passwd")
        passwd = file_from_archive(b"".join(stream)).decode("utf-8", "replace")
    except (NotFound, ValueError):
        passwd = ""
    finally:
        client.remove_container(helper, force=True)
    login = container_user_name(passwd, user_spec)
    if login is not None:
        try:
            check_username(login)
        except ValueError:
            login = None
        if login and login.startswith("."):  # the host key's directory (delivery.HOST_KEY_DIR)
            login = None
    with _logins_lock:
        _logins[key] = login
    return login


def find_target(client, container_id, owner):
    """The :class:`Target` of ``owner``'s running container ``container_id``; LiveDeliveryError if none."""
    try:
        info = client.inspect_container(container_id)
    except NotFound:
        raise LiveDeliveryError(_not_a_container(client, container_id)) from None
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_OWNER) != owner:
        raise LiveDeliveryError(f"its container does not belong to {owner!r}")
    if not (info.get("State") or {}).get("Running"):
        raise LiveDeliveryError("its container is not running")
    volume = ""
    for mount in info.get("Mounts") or ():
        if mount.get("Destination") == KEYS_DIR and mount.get("Type") == "volume":
            volume = mount.get("Name") or ""
    if not volume and (info.get("HostConfig") or {}).get("ReadonlyRootfs"):
        raise LiveDeliveryError(f"its root filesystem is read-only and it has no keys volume at {KEYS_DIR}")
    user_spec = (info.get("Config") or {}).get("User") or ""
    login = login_in_image(client, info["Image"], user_spec, owner)
    if login is None:
        raise LiveDeliveryError(f"its image has no account for {user_spec or 'its user'}")
    return Target(info["Id"], info["Image"], login, volume)


def _not_a_container(client, object_id):
    try:
        client.inspect_service(object_id)
    except APIError:  # no such service (NotFound is an APIError), or this daemon is no swarm manager
        return "its container is gone"
    return ("it runs on Docker Swarm, where keys are secrets that cannot change: "
            "restart the server to use the new keys")


def put_via_volume(client, image_id, volume, directory, archive, label, mode="rw"):
    """Unpack ``archive`` into ``volume`` through a helper container of ``image_id`` that mounts it
    read-write at ``directory`` (``mode``: Docker's bind mode, e.g. ``rw,nocopy``), created, never
    started, and removed at once: the volume a read-only server mounts read-only (its keys, its
    conda/pip policy)."""
    helper = _helper(client, image_id, label, binds={volume: {"bind": directory, "mode": mode}})
    try:
        return client.put_archive(helper, directory, archive)
    finally:
        client.remove_container(helper, force=True)


def put_keys_via_volume(client, image_id, volume, archive, label):
    """Unpack ``archive`` into the keys volume through a helper container (never started)."""
    return put_via_volume(client, image_id, volume, KEYS_DIR, archive, label)


def write_keys(client, target, text, label, host_key=None, host_owner=(0, 0)):
    """Replace the target's keys file with ``text`` (the rendered ``authorized_keys``); at a start,
    also put the container's ``host_key`` (:class:`.host_certs.HostKey`, owned by ``host_owner``)."""
    _put(client, target, keys_archive(target.login, text, host_key=host_key, host_owner=host_owner), label)


def renew_host_certificate(client, container_id, owner, renew):
    """Renew the host certificate of ``owner``'s running container: ``renew(current)``, given the
    certificate it holds (text), returns ``(new certificate or None: not due yet, its valid_before)``;
    a new one replaces the file (in the container, or its keys volume). Returns ``(renewed,
    valid_before)``, or None when the container holds no host certificate (it runs without SSH)."""
    target = find_target(client, container_id, owner)
    try:
        stream, _ = client.get_archive(target.container_id, HOST_CERT_PATH)
    except NotFound:
        return None
    certificate, valid_before = renew(file_from_archive(b"".join(stream)).decode("ascii", "replace"))
    if certificate is not None:
        _put(client, target, host_cert_archive(certificate), owner)
    return certificate is not None, valid_before


def _put(client, target, archive, label):
    try:
        if target.volume:
            put_keys_via_volume(client, target.image_id, target.volume, archive, label)
        elif not client.put_archive(target.container_id, KEYS_DIR, archive):
            raise LiveDeliveryError("Docker refused to write the keys file")
    except NotFound:
        raise LiveDeliveryError(f"its image has no {KEYS_DIR} directory (no sshd)") from None
    except APIError as e:
        raise LiveDeliveryError(f"Docker refused to write the keys file: {e.explanation or e}") from None
