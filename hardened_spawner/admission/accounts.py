"""Read an image's /etc/passwd and /etc/group without running it.

The spawner resolves the image's ``USER`` against these files
(:mod:`..decisions.users`) at every spawn, admission on or off. With
admission on, the files come from the facts admission read; otherwise from
a container created (never started, no network) and removed at once.
"""

import io
import tarfile

from docker.errors import NotFound

from .facts import PROBE_LABEL, SMALL_FILE, FactsError

FILES = ("/etc/passwd", "/etc/group")


def from_facts(facts):
    """``(passwd, group)`` texts from admission's :class:`~.facts.ImageFacts`."""
    return tuple(facts.files.get(path, b"").decode("utf-8", "replace") for path in FILES)


def _file(archive):
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                if member.size > SMALL_FILE:
                    raise FactsError(f"{member.name} in the image is larger than {SMALL_FILE >> 20} MiB")
                return tar.extractfile(member).read()
    return b""


def read(client, image):
    """``(passwd, group)`` texts of ``image`` (blocking: run it on a worker thread)."""
    container = client.create_container(
        image, command=["/hardened-spawner-accounts-probe-never-runs"], entrypoint=[], network_disabled=True,
        labels={PROBE_LABEL: "true"}, host_config=client.create_host_config(network_mode="none"))["Id"]
    try:
        texts = []
        for path in FILES:
            try:
                stream, _ = client.get_archive(container, path)
            except NotFound:
                texts.append("")
                continue
            data = b""
            for chunk in stream:
                data += chunk
                if len(data) > SMALL_FILE + 65536:
                    raise FactsError(f"{path} in the image is larger than {SMALL_FILE >> 20} MiB")
            texts.append(_file(data).decode("utf-8", "replace"))
        return tuple(texts)
    finally:
        try:
            client.remove_container(container, force=True, v=True)
        except NotFound:
            pass
