"""Directory listings from overlay2 layer directories follow overlayfs (needs root for
whiteouts and trusted.* xattrs, as the hub's fast path itself does)."""

import os

import pytest

from hardened_spawner.admission import layers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* xattrs need root")


def layer(root, name, files=(), dirs=(), whiteouts=(), opaque=(), symlinks=()):
    base = root / name
    base.mkdir()
    for d in dirs:
        (base / d).mkdir(parents=True, exist_ok=True)
    for f, mode in dict(files).items():
        (base / f).parent.mkdir(parents=True, exist_ok=True)
        (base / f).write_text("x")
        os.chmod(base / f, mode)
    for w in whiteouts:
        (base / w).parent.mkdir(parents=True, exist_ok=True)
        os.mknod(base / w, 0o600 | 0o020000, os.makedev(0, 0))
    for o in opaque:
        os.setxattr(base / o, layers.OPAQUE, b"y")
    for link, target in dict(symlinks).items():
        (base / link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, base / link)
    return str(base)


def names(listing, prefix):
    return sorted(p[len(prefix) + 1:] for p in listing if p.startswith(prefix + "/"))


def test_upper_layers_win_and_whiteouts_delete(tmp_path):
    low = layer(tmp_path, "low", {"sp/a.dist-info/RECORD": 0o644, "sp/b.dist-info/RECORD": 0o644, "bin/su": 0o4755})
    up = layer(tmp_path, "up", {"sp/c.dist-info/RECORD": 0o644, "bin/su": 0o755}, whiteouts=["sp/b.dist-info"])
    listing = layers.listing([up, low], "/sp", recursive=False)
    assert names(listing, "/sp") == ["a.dist-info", "c.dist-info"]
    assert layers.listing([up, low], "/bin", recursive=True)["/bin/su"][0] == 0o755  # chmod a-s in the upper layer


def test_opaque_directory_hides_lower_layers(tmp_path):
    low = layer(tmp_path, "low", {"sp/old.dist-info/RECORD": 0o644})
    up = layer(tmp_path, "up", {"sp/new.dist-info/RECORD": 0o644}, opaque=["sp"])
    assert names(layers.listing([up, low], "/sp"), "/sp") == ["new.dist-info"]


def test_deleted_or_replaced_parents_hide_everything_below(tmp_path):
    low = layer(tmp_path, "low", {"opt/conda/x": 0o644})
    gone = layer(tmp_path, "gone", whiteouts=["opt/conda"])
    assert layers.listing([gone, low], "/opt/conda") == {}
    replaced = layer(tmp_path, "replaced", {"opt/conda": 0o644})
    assert layers.listing([replaced, low], "/opt/conda") == {}
    assert layers.listing([low], "/nonexistent") == {}


def test_recursive_listing_and_modes(tmp_path):
    low = layer(tmp_path, "low", {"usr/bin/a": 0o755, "usr/bin/sub/b": 0o2755})
    got = layers.listing([low], "/usr/bin", recursive=True)
    assert got["/usr/bin/sub/b"][:2] == (0o2755, "file") and got["/usr/bin/sub"][1] == "dir"


def test_symlinks_on_the_way_are_left_to_docker(tmp_path):
    low = layer(tmp_path, "low", {"usr/bin/a": 0o755}, symlinks={"bin": "usr/bin"})
    assert layers.listing([low], "/bin/x") is None
    assert layers.listing([low], "/usr/bin")["/usr/bin/a"][1] == "file"


def test_only_readable_overlay2_images_qualify(tmp_path):
    low = layer(tmp_path, "low")
    info = {"GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": low, "LowerDir": str(tmp_path / "missing")}}}
    assert layers.overlay_layers(info) is None
    info["GraphDriver"]["Data"]["LowerDir"] = ""
    assert layers.overlay_layers(info) == [low]
    assert layers.overlay_layers({"GraphDriver": {"Name": "btrfs", "Data": {}}}) is None


def test_a_hub_without_cap_sys_admin_does_not_take_the_layer_path(tmp_path):
    """Hole 12: unprivileged, reading trusted.overlay.opaque answers ENODATA whether or not a directory
    is opaque; the old probe read that as "privileged" and then listed opaque directories wrongly."""
    import subprocess
    import sys

    top = layer(tmp_path, "upper", dirs=["usr/bin"], opaque=["usr/bin"])
    os.chmod(tmp_path, 0o755)
    info = {"GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": top, "LowerDir": ""}}}
    assert layers.overlay_layers(info) == [top]  # root: the fast path
    code = ("import json, sys; from hardened_spawner.admission import layers; "
            f"print(json.dumps(layers.overlay_layers({info!r})))")
    # root without CAP_SYS_ADMIN (as a hub in a container without it, or a non-root hub)
    out = subprocess.run(["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "null", out  # the archive path, which is always right


def test_changes_of_the_top_layer_against_the_layers_below(tmp_path):
    low = layer(tmp_path, "low", {"opt/conda/bin/python": 0o755, "opt/conda/old/x": 0o644, "opt/conda/sp/a/f": 0o644,
                                  "opt/conda/gone": 0o644, "etc/passwd": 0o644, "opt/conda/old/kept": 0o644})
    up = layer(tmp_path, "up", {"opt/conda/bin/python": 0o755, "opt/conda/new/y": 0o644, "opt/conda/sp/b": 0o644,
                                "opt/conda/old/z": 0o644, "opt/conda/old/kept": 0o644, "etc/shadow": 0o600},
               dirs=["opt/conda/sp/a"], whiteouts=["opt/conda/gone"], opaque=["opt/conda/old"])
    assert sorted((c["Path"], c["Kind"]) for c in layers.changes([up, low], "/opt/conda")) == [
        ("/opt/conda/bin", 0), ("/opt/conda/bin/python", 0),     # copied up: changed
        ("/opt/conda/gone", 2),                                  # whiteout: deleted
        ("/opt/conda/new", 1), ("/opt/conda/new/y", 1),          # added, with what it holds
        ("/opt/conda/old", 0), ("/opt/conda/old/kept", 0), ("/opt/conda/old/x", 2), ("/opt/conda/old/z", 1),  # made again (opaque)
        ("/opt/conda/sp", 0), ("/opt/conda/sp/a", 0), ("/opt/conda/sp/b", 1),
    ]
    assert layers.changes([up, low], "/usr") == []  # nothing changed there: nothing of the image is walked


def test_changes_when_the_prefix_itself_was_replaced_or_deleted(tmp_path):
    low = layer(tmp_path, "low", {"opt/conda/x": 0o644})
    assert layers.changes([layer(tmp_path, "gone", whiteouts=["opt/conda"]), low], "/opt/conda") == [
        {"Path": "/opt/conda", "Kind": 2}]
    assert layers.changes([layer(tmp_path, "file", {"opt/conda": 0o644}), low], "/opt/conda") == [
        {"Path": "/opt/conda", "Kind": 0}]
    assert layers.changes([layer(tmp_path, "opq", {"opt/conda/y": 0o644}, opaque=["opt/conda"]), low],
                          "/opt/conda") is None  # left to docker diff
