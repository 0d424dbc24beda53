import pytest
from hypothesis import given, strategies as st

from hardened_spawner.decisions.reference import BadReference, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref, canonical, pinned", [
    ("ubuntu", "docker.io/library/ubuntu", False),
    ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", False),
    ("jupyter/base-notebook:2024", "docker.io/jupyter/base-notebook:2024", False),
    ("quay.io/jupyterhub/singleuser:6.1", "quay.io/jupyterhub/singleuser:6.1", False),
    ("localhost/x", "localhost/x", False),
    ("127.0.0.1:5000/hs/img@" + DIGEST, "127.0.0.1:5000/hs/img@" + DIGEST, True),
    ("reg.example.org:443/a/b/c:1.0@" + DIGEST, "reg.example.org:443/a/b/c:1.0@" + DIGEST, True),
    ("index.docker.io/library/python:3", "docker.io/library/python:3", False),
])
def test_parse_valid(ref, canonical, pinned):
    parsed = parse(ref)
    assert parsed.canonical == canonical
    assert parsed.pinned is pinned


@pytest.mark.parametrize("ref", [
    "", " ubuntu", "Ubuntu", "ubuntu:", "ubuntu::1", "ubuntu@sha256:abc", "ubuntu@sha256:" + "A" * 64,
    "a b", "-bad/name", "ubuntu:" + "x" * 129, None, 42,
])
def test_parse_invalid(ref):
    with pytest.raises(BadReference):
        parse(ref)


def test_pull_ref_keeps_the_digest():
    # DockerSpawner 14 splits at the last ":" and would pull tag "<hex>".
    assert parse("127.0.0.1:5000/hs/img:1@" + DIGEST).pull_ref == "127.0.0.1:5000/hs/img@" + DIGEST
    assert parse("127.0.0.1:5000/hs/img").pull_ref == "127.0.0.1:5000/hs/img:latest"
    assert parse("127.0.0.1:5000/hs/img:2").pull_ref == "127.0.0.1:5000/hs/img:2"


components = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(
    registry=st.sampled_from(["", "docker.io/", "quay.io/", "localhost:5000/", "10.0.0.1:443/"]),
    path=st.lists(components, min_size=1, max_size=3),
    tag=st.none() | tags,
    digest=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h),
)
def test_parse_roundtrip(registry, path, tag, digest):
    ref = registry + "/".join(path) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    parsed = parse(ref)
    assert parsed.tag == tag and parsed.digest == digest
    assert parse(parsed.canonical) == parse(parsed.canonical)  # canonical form parses again
    assert parse(parsed.canonical).canonical == parsed.canonical
    assert parsed.pinned is (digest is not None)


@given(st.text(max_size=40))
def test_parse_never_crashes(text):
    try:
        parse(text)
    except BadReference:
        pass
