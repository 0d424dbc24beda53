"""The header-only tar scanner reads what tarfile writes, in any chunking."""

import hashlib
import io
import tarfile

import pytest
from hypothesis import given, settings, strategies as st

from hardened_spawner.admission import tarscan

names = st.lists(
    st.text(st.characters(min_codepoint=48, max_codepoint=0x2FF, blacklist_characters="/\\"), min_size=1, max_size=40),
    min_size=1, max_size=4,
).map("/".join)
members = st.lists(
    st.tuples(names, st.sampled_from(["file", "dir", "symlink"]), st.integers(0, 0o7777), st.binary(max_size=1500)),
    min_size=0, max_size=12, unique_by=lambda m: m[0],
)


def make_tar(items, fmt):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, kind, mode, data in items:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.DIRTYPE if kind == "dir" else tarfile.SYMTYPE
                info.linkname = "target/" + name if kind == "symlink" else ""
                tar.addfile(info)
    return out.getvalue()


def chunked(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=150, deadline=None)
@given(members, st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]), st.lists(st.integers(0, 10**6), max_size=30))
def test_scan_matches_tarfile(items, fmt, cuts):
    data = make_tar(items, fmt)
    keep = {name for name, kind, _, body in items if kind == "file" and len(body) % 2 == 0}
    hashed = {name for name, *_ in items[::2]} - keep
    got = list(tarscan.scan(chunked(data, cuts), keep=lambda name, size: name in keep, digest=hashed.__contains__))
    assert [m.name for m in got] == [name for name, *_ in items]
    for member, (name, kind, mode, body) in zip(got, items):
        assert member.type == kind
        assert member.mode == mode
        if kind == "file":
            assert member.size == len(body)
            assert member.data == (body if name in keep else None)
            assert member.sha256 == (hashlib.sha256(body).hexdigest() if name in hashed else None)
        else:
            assert member.sha256 is None
        if kind == "symlink":
            assert member.linkname == "target/" + name


def test_ustar_long_names_use_the_prefix_field():
    name = "a" * 90 + "/" + "b" * 90
    data = make_tar([(name, "file", 0o4755, b"x")], tarfile.USTAR_FORMAT)
    (member,) = tarscan.scan([data])
    assert member.name == name and member.mode == 0o4755 and member.data is None


def test_bad_checksum_is_an_error():
    data = bytearray(make_tar([("f", "file", 0o644, b"hello")], tarfile.PAX_FORMAT))
    data[0] ^= 1
    with pytest.raises(tarscan.TarError, match="checksum"):
        list(tarscan.scan([bytes(data)]))


@pytest.mark.parametrize("cut", [100, 512 + 3, 1024 + 10])
def test_truncated_archives_are_errors(cut):
    data = make_tar([("f", "file", 0o644, b"x" * 2000)], tarfile.GNU_FORMAT)
    with pytest.raises(tarscan.TarError, match="truncated"):
        list(tarscan.scan([data[:cut]], keep=lambda n, s: True))


def test_a_hashed_member_cut_short_is_an_error():
    data = make_tar([("f", "file", 0o644, b"x" * 2000)], tarfile.GNU_FORMAT)
    with pytest.raises(tarscan.TarError, match="truncated"):
        list(tarscan.scan([data[:1024 + 10]], digest=lambda n: True))


def test_not_a_tar_stream():
    with pytest.raises(tarscan.TarError):
        list(tarscan.scan([b"<html>this is not a tar archive</html>" + b"x" * 600]))


def test_empty_stream_has_no_members():
    assert list(tarscan.scan([])) == []
