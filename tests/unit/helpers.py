"""Constants and small helpers the unit tests share (fixtures are in conftest.py)."""

import json

IMAGE = "example.org/singleuser:1"
NO_DRIVER = 'could not select device driver "nvidia" with capabilities: [[gpu]]'  # as dockerd says it


def audit(tmp_path):
    path = tmp_path / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def creates(fake):
    """Server containers created (not the never-started probes that read the image's account files)."""
    return [c for c in fake.called("create_container") if c[2]["name"]]
