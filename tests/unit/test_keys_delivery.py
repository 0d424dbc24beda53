"""Delivery helpers: the archive put into containers, the container user's login name."""

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardened_spawner.keys.delivery import container_user_name, file_from_archive, keys_archive

PASSWD = """root:x:0:0:root:/root:/bin/bash
# a comment
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
jovyan:x:1000:100::/home/jovyan:/bin/bash
"""


def test_archive_holds_one_root_owned_0644_file():
    archive = keys_archive("jovyan", "restrict,pty ssh-ed25519 AAAA\n", mtime=1)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.uid, member.gid, member.uname) == ("jovyan", 0o644, 0, 0, "root")
        assert member.isfile() and tar.extractfile(member).read() == b"restrict,pty ssh-ed25519 AAAA\n"
    assert file_from_archive(archive) == b"restrict,pty ssh-ed25519 AAAA\n"


def test_an_empty_key_set_is_an_empty_file():
    assert file_from_archive(keys_archive("jovyan", "")) == b""


def test_archive_without_a_file_is_an_error():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    with pytest.raises(ValueError):
        file_from_archive(buf.getvalue())


@pytest.mark.parametrize("spec, name", [
    ("1000:100", "jovyan"), ("1000", "jovyan"), ("jovyan", "jovyan"), ("jovyan:users", "jovyan"),
    ("", "root"), ("0", "root"), ("4242:100", None), ("ghost", None),
])
def test_container_user_name(spec, name):
    assert container_user_name(PASSWD, spec) == name


@given(st.text(max_size=200), st.text(max_size=20))
def test_container_user_name_never_raises(passwd, spec):
    name = container_user_name(passwd, spec)
    assert name is None or any(line.split(":")[0] == name for line in passwd.splitlines())
