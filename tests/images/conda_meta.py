"""Give the test image's /opt/conda environment conda-meta records, and break them on purpose.

No conda channel is reachable from the test rig, so the compliant test image
describes what is really installed (Python 3.11.2 and every distribution in
site-packages) with records carrying conda's full field set, as conda-forge
would have installed them. Run inside ``docker build`` with the image's Python:

    python3 conda_meta.py generate         # one record per installed package
    python3 conda_meta.py <violation>      # edit the records for one violation image
"""

import hashlib
import json
import os
import sys
import time

PREFIX = "/opt/conda"
META = os.path.join(PREFIX, "conda-meta")
SITE = "lib/python3.11/site-packages"
FORGE = "https://conda.anaconda.org/conda-forge"


def record(name, version, build, subdir, files, depends, seed):
    fn = f"{name}-{version}-{build}.conda"
    digest = hashlib.sha256(seed).hexdigest()
    return {
        "arch": "x86_64" if subdir == "linux-64" else None,
        "build": build,
        "build_number": int(build.rsplit("_", 1)[-1]) if build.rsplit("_", 1)[-1].isdigit() else 0,
        "channel": f"{FORGE}/{subdir}",
        "constrains": [],
        "depends": depends,
        "extracted_package_dir": f"{PREFIX}/pkgs/{fn[:-6]}",
        "features": "",
        "files": sorted(files),
        "fn": fn,
        "license": "BSD-3-Clause",
        "link": {"source": f"{PREFIX}/pkgs/{fn[:-6]}", "type": 1},
        "md5": hashlib.md5(seed).hexdigest(),
        "name": name,
        "noarch": "python" if subdir == "noarch" else None,
        "package_tarball_full_path": f"{PREFIX}/pkgs/{fn}",
        "paths_data": {"paths": [{"_path": f, "path_type": "hardlink", "size_in_bytes": 0} for f in sorted(files)],
                       "paths_version": 1},
        "platform": "linux" if subdir == "linux-64" else None,
        "requested_spec": "",
        "sha256": digest,
        "size": len(seed),
        "subdir": subdir,
        "timestamp": 1700000000000,
        "track_features": "",
        "url": f"{FORGE}/{subdir}/{fn}",
        "version": version,
    }


def write(rec):
    with open(os.path.join(META, f"{rec['name']}-{rec['version']}-{rec['build']}.json"), "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)


def generate():
    os.makedirs(META, exist_ok=True)
    version = ".".join(map(str, sys.version_info[:3]))
    bins = sorted(f"bin/{n}" for n in os.listdir(f"{PREFIX}/bin") if n.startswith("python"))
    write(record("python", version, "hab00c5b_0_cpython", "linux-64", bins + ["pyvenv.cfg"],
                 ["libgcc >=13", "openssl >=3.0"], b"python" + version.encode()))
    site = os.path.join(PREFIX, SITE)
    for entry in sorted(os.listdir(site)):
        if not entry.endswith(".dist-info"):
            continue
        meta = {}
        with open(os.path.join(site, entry, "METADATA"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                meta.setdefault(key.strip().lower(), value.strip())
        with open(os.path.join(site, entry, "RECORD"), "rb") as f:
            record_bytes = f.read()
        files = {os.path.normpath(os.path.join(SITE, line.split(",")[0]))
                 for line in record_bytes.decode().splitlines() if line.strip()}
        name = meta["name"].lower().replace("_", "-").replace(".", "-")
        write(record(name, meta["version"], "pyhd8ed1ab_0", "noarch", files, ["python >=3.9"], record_bytes))
    # conda writes a history file too
    with open(os.path.join(META, "history"), "w") as f:
        f.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(1700000000))} <==\n# cmd: conda create\n")


def edit(prefix, change):
    (path,) = [os.path.join(META, n) for n in os.listdir(META) if n.startswith(prefix + "-") and n.endswith(".json")
               and n[len(prefix) + 1:][:1].isdigit()]
    with open(path) as f:
        rec = json.load(f)
    os.remove(path)
    change(rec)
    write(rec)


def violate(kind):
    if kind == "channel":  # tornado from a channel that is not allowed
        def change(rec):
            rec["channel"] = "https://repo.example.com/evil-channel/noarch"
            rec["url"] = rec["url"].replace(FORGE, "https://repo.example.com/evil-channel")
        edit("tornado", change)
    elif kind == "eolpython":  # the environment's Python is 3.9 (end of life 2025-10-31)
        def change(rec):
            rec.update(version="3.9.18", build="h0755675_1_cpython", fn="python-3.9.18-h0755675_1_cpython.conda")
            rec["url"] = f"{FORGE}/linux-64/{rec['fn']}"
        edit("python", change)
    elif kind == "denied":  # pycrypto: unmaintained, known-vulnerable crypto
        write(record("pycrypto", "2.6.1", "py311h459d7ec_7", "linux-64", [], ["python >=3.11"], b"pycrypto"))
    elif kind == "lock":  # one package at a version the lock file does not have
        def change(rec):
            rec.update(version="9.9.9", fn=f"requests-9.9.9-{rec['build']}.conda")
            rec["url"] = f"{FORGE}/noarch/{rec['fn']}"
        edit("requests", change)
    elif kind == "pip":  # what `pip install` leaves behind: a dist-info no conda record owns
        info = os.path.join(PREFIX, SITE, "evilpkg-1.0.dist-info")
        os.makedirs(info)
        for name, text in (("METADATA", "Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n"),
                           ("INSTALLER", "pip\n"), ("RECORD", "evilpkg-1.0.dist-info/METADATA,,\n")):
            with open(os.path.join(info, name), "w") as f:
                f.write(text)
    else:
        sys.exit(f"unknown violation {kind!r}")


if __name__ == "__main__":
    generate() if sys.argv[1] == "generate" else violate(sys.argv[1])
