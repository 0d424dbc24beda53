"""Image facts for the admission unit tests (shared by test_admission_rules and test_admission_sbom_osv)."""

import datetime
import json

from hardened_spawner.admission import locks
from hardened_spawner.admission.facts import Entry, ImageFacts
from hardened_spawner.admission.signing import TrustRule

DAY = datetime.date(2026, 11, 25)
SP = "/opt/conda/lib/python3.11/site-packages"
FORGE = "https://conda.anaconda.org/conda-forge"
HEX = "e" * 64
REF = "example.org/jupyter/img:1"
PASSWD = b"root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"
GOOD_SSHD = b"PermitRootLogin no\nAuthenticationMethods publickey\n"
KEYED = TrustRule(("example.org/**",), keys=("/etc/jupyterhub/cosign.pub",))
UNSIGNED_OK = TrustRule(("example.org/**",), allow_unsigned=True)
MD5 = "0123456789abcdef0123456789abcdef"


def record(name, version, build="pyhd8ed1ab_0", subdir="noarch", channel=FORGE, files=()):
    fn = f"{name}-{version}-{build}.conda"
    return {"name": name, "version": version, "build": build, "build_number": 0, "subdir": subdir,
            "channel": f"{channel}/{subdir}", "url": f"{channel}/{subdir}/{fn}", "fn": fn, "depends": [],
            "md5": MD5, "sha256": "ab" * 32, "files": list(files),
            "paths_data": {"paths": [], "paths_version": 1}, "link": {"source": "/x", "type": 1}}


COMPLIANT_RECORDS = [record("python", "3.11.2", "hab00c5b_0_cpython", "linux-64", files=["bin/python3.11"]),
                     record("jupyterhub", "6.1.1", files=["lib/python3.11/site-packages/jupyterhub-6.1.1.dist-info/RECORD"])]
LOCKED = [locks.Locked("python", "3.11.2", "hab00c5b_0_cpython", MD5), locks.Locked("jupyterhub", "6.1.1", "pyhd8ed1ab_0", MD5)]


def image(files=None, entries=None, records=COMPLIANT_RECORDS, site=("jupyterhub-6.1.1.dist-info",), hashes=None,
          **config):
    facts = ImageFacts(hashes=dict(hashes or {}))
    base = {"/etc/passwd": PASSWD, "/etc/group": b"root:x:0:\nusers:x:100:\n", "/etc/ssh/sshd_config": GOOD_SSHD}
    for path, data in {**base, **(files or {})}.items():
        facts.files[path] = data
        facts.entries[path] = Entry(0o644, "file", len(data))
    for path, entry in (entries or {}).items():
        facts.entries[path] = entry
    for root in ("/etc/passwd", "/etc/ssh", "/usr/bin"):
        facts.roots[root] = True
    if records is not None:
        facts.roots["/opt/conda/conda-meta"] = True
        for rec in records:
            path = f"/opt/conda/conda-meta/{rec['name']}-{rec.get('version', 0)}-{rec.get('build', 0)}.json"
            facts.files[path] = json.dumps(rec).encode()
            facts.entries[path] = Entry(0o644, "file", len(facts.files[path]))
        facts.roots[SP] = True
        for name in site:
            facts.entries[f"{SP}/{name}"] = Entry(0o755, "dir", 0)
    info = {"Id": f"sha256:{HEX}", "RepoDigests": [], "Created": "2026-11-01T10:00:00.0Z",
            "Config": {"User": "1000:100", "Env": ["PATH=/usr/bin", "GPG_KEY=ABCDEF"],
                       "Healthcheck": {"Test": ["CMD", "hs-healthcheck"]}, **config}}
    return facts, info



def rules(decision):
    return {f.rule: f.action for f in decision.findings}
