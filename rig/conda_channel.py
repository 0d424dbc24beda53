"""A private conda channel for the test images, and environments installed from it.

No conda channel is reachable from the rig, so it makes its own, the way a site
without internet access runs a private mirror:

    conda_channel.py build CHANNELS WHEELHOUSE
        Real .conda packages (py-rattler-build's package assembler), indexed with
        py-rattler, in CHANNELS/conda-forge and CHANNELS/evil-channel:
        - every wheel of the single-user wheelhouse, unpacked into site-packages
          (pure wheels as noarch: python, binary wheels as linux-64), console
          scripts from their entry points;
        - ``python 3.11.2``: the environment's interpreter is Debian's
          /usr/bin/python3.11 (CPython cannot be built here: no compiler
          toolchain or source is reachable), so the package is a venv shim:
          pyvenv.cfg and bin/python* symlinks, and the prefix is a venv of it;
        - deliberately bad ones: ``python 3.9.18`` (end of life 2025-10-31),
          ``pycrypto 2.6.1`` (denied by the tests' policy) and ``hs-telemetry``,
          only in evil-channel (a channel the tests do not allow).

    conda_channel.py install URL PREFIX STAGE SPEC... [--export DIR]
        Solve SPECs against the channels at URL (served over HTTP) with py-rattler
        and install them for PREFIX into STAGE (``alternative_target_prefix``: the
        files land in STAGE, written as if at PREFIX), which the image build
        copies to PREFIX. --export writes the solved environment as an
        ``@EXPLICIT`` file and a pixi lock file.

Console scripts are ``#!/bin/sh`` wrappers that run the python beside them, so
one package works in every environment.
"""

import asyncio
import email.parser
import faulthandler
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import rattler
from rattler.index import index_fs
from rattler_build import assemble_package

PY = "3.11"
SITE = f"lib/python{PY}/site-packages"
TIMESTAMP = 1700000000  # reproducible packages: same inputs, same bytes


def _script(name, module, func):
    return ("#!/bin/sh\n# console script: run it with the python of the environment it is in\n"
            f"exec \"$(dirname \"$0\")/python\" -c 'import sys; from {module} import {func.split('.')[0]}; "
            f"sys.argv[0] = \"{name}\"; sys.exit({func}())' \"$@\"\n")


def _assemble(out, name, version, build, stage, depends, noarch=None, platform="linux-64"):
    from datetime import datetime, timezone

    subdir = out / ("noarch" if noarch else platform)
    subdir.mkdir(parents=True, exist_ok=True)
    assemble_package(name=name, version=version, target_platform="noarch" if noarch else platform,
                     build_string=build, output_dir=subdir, files_dir=stage, depends=depends, noarch=noarch,
                     license="various", summary=f"{name} for the hardened_spawner test rig",
                     timestamp=datetime.fromtimestamp(TIMESTAMP, timezone.utc), compression_level=1)


def wheel_package(out, wheel):
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        stage = Path(tmp)
        pure = wheel.name.endswith("-none-any.whl")
        site = stage / ("site-packages" if pure else SITE)
        zf.extractall(site)
        info = next(site.glob("*.dist-info"))
        meta = email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
        name = re.sub(r"[-_.]+", "-", meta["Name"]).lower()
        scripts = stage / ("python-scripts" if pure else "bin")
        entry_points = info / "entry_points.txt"
        section = None
        for line in entry_points.read_text().splitlines() if entry_points.exists() else ():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "console_scripts" and "=" in line:
                script, target = (p.strip() for p in line.split("=", 1))
                module, _, func = target.partition(":")
                scripts.mkdir(exist_ok=True)
                (scripts / script).write_text(_script(script, module.strip(), func.split("[")[0].strip()))
                (scripts / script).chmod(0o755)
        (info / "INSTALLER").write_text("conda\n")  # as conda-forge's builds leave it
        if pure:
            _assemble(out, name, meta["Version"], "pyh_hs_0", stage, ["python >=3.9"], noarch="python")
        else:
            _assemble(out, name, meta["Version"], "py311_hs_0", stage, [f"python {PY}.*"])


def python_package(out, version):
    major_minor = ".".join(version.split(".")[:2])
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        (stage / "bin").mkdir()
        os.symlink(f"/usr/bin/python{major_minor}", stage / "bin" / f"python{major_minor}")
        os.symlink(f"python{major_minor}", stage / "bin" / "python3")
        os.symlink(f"python{major_minor}", stage / "bin" / "python")
        (stage / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")
        _assemble(out, "python", version, "h_hs_venv_0_cpython", stage, [])


def small_package(out, name, version, files, noarch="generic", depends=()):
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for path, text in files.items():
            (stage / path).parent.mkdir(parents=True, exist_ok=True)
            (stage / path).write_text(text)
        _assemble(out, name, version, "h_hs_0" if noarch else "py311_hs_0", stage, list(depends), noarch=noarch)


def build(channels, wheelhouse):
    channels = Path(channels)
    shutil.rmtree(channels, ignore_errors=True)
    forge, evil = channels / "conda-forge", channels / "evil-channel"
    for wheel in sorted(Path(wheelhouse).glob("*.whl")):
        wheel_package(forge, wheel)
    python_package(forge, "3.11.2")
    python_package(forge, "3.9.18")
    small_package(forge, "pycrypto", "2.6.1", {f"{SITE}/Crypto/__init__.py": "# unmaintained since 2013\n"},
                  noarch=None, depends=[f"python {PY}.*"])
    small_package(forge, "hs-extra", "1.0", {"share/hs-extra/README": "a package the lock file does not list\n"})
    small_package(evil, "hs-telemetry", "0.1", {"share/hs-telemetry/README": "from a channel nobody approved\n"})
    for channel in (forge, evil):
        (channel / "noarch").mkdir(exist_ok=True)
        asyncio.run(index_fs(channel, write_zst=False, write_shards=False))


async def install(url, prefix, stage, specs, export=None):
    channels = [rattler.Channel(f"{url}/conda-forge"), rattler.Channel(f"{url}/evil-channel")]
    records = await rattler.solve(channels, specs, platforms=["linux-64", "noarch"], virtual_packages=[],
                                  channel_priority=rattler.ChannelPriority.Disabled,
                                  timestamp_policy="allow-missing")
    cache = Path(stage).parent / ".rattler-cache"
    await rattler.install(records, target_prefix=stage, alternative_target_prefix=prefix, cache_dir=cache,
                          show_progress=False)
    if export:
        export = Path(export)
        export.mkdir(parents=True, exist_ok=True)
        ordered = sorted(records, key=lambda r: r.name.normalized)
        (export / "explicit.txt").write_text("# platform: linux-64\n@EXPLICIT\n" + "".join(
            f"{r.url}#{r.md5.hex()}\n" for r in ordered))
        platform = rattler.LockPlatform("linux-64")
        lock = rattler.LockFile([platform])
        lock.set_channels("default", [rattler.LockChannel(f"{url}/conda-forge"), rattler.LockChannel(f"{url}/evil-channel")])
        for record in ordered:
            lock.add_conda_package("default", platform, record)
        lock.to_path(str(export / "pixi.lock"))
    return records


def main(argv):
    if argv[:1] == ["build"] and len(argv) == 3:
        build(argv[1], argv[2])
        # py-rattler's indexer leaves a thread that aborts the interpreter at finalisation
        # ("PyGILState_Release ... finalizing"); the channel is complete here, so leave at once.
        sys.stdout.flush()
        os._exit(0)
    elif argv[:1] == ["install"] and len(argv) >= 5:
        export = None
        if "--export" in argv:
            i = argv.index("--export")
            export, argv = argv[i + 1], argv[:i] + argv[i + 2:]
        records = asyncio.run(install(argv[1], argv[2], argv[3], argv[4:], export))
        print(json.dumps(sorted(f"{r.name.normalized}={r.version}={r.build}" for r in records)))
        # The same finalisation crash after an install (SIGSEGV in a Rust thread, "<no Python frame>",
        # after this line was printed: seen twice on fresh machines): the environment is complete.
        sys.stdout.flush()
        os._exit(0)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    faulthandler.enable()  # a crash in the Rust extension leaves its Python stack in the log
    main(sys.argv[1:])
