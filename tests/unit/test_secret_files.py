"""Secrets as files: every bad file is named with its fix, and the check fails as a whole (tools/secret_files.py)."""

import os

import pytest

from hardened_spawner.tools import secret_files
from hardened_spawner.tools.cli import main

OWNER = os.getuid()


@pytest.fixture
def secrets_dir(tmp_path):
    for name in secret_files.SECRETS:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s3cr3t-value\n")
        path.chmod(0o600)
    return tmp_path


def test_good_files_pass_and_read_stripped(secrets_dir):
    assert secret_files.problems(secrets_dir, owner=OWNER) == []
    assert secret_files.read(secrets_dir, "hub/cookie_secret", owner=OWNER) == "s3cr3t-value"


def test_a_world_readable_file_is_refused_with_its_fix(secrets_dir):
    (secrets_dir / "hub/cookie_secret").chmod(0o644)
    (problem,) = secret_files.problems(secrets_dir, owner=OWNER)
    assert "hub/cookie_secret (JupyterHub's cookie secret) has mode 0644" in problem
    assert "chmod 600" in problem
    with pytest.raises(secret_files.SecretError, match="mode 0644"):
        secret_files.read(secrets_dir, "hub/cookie_secret", owner=OWNER)


def test_a_file_of_another_owner_is_refused(secrets_dir):
    (problem,) = secret_files.problems(secrets_dir, ["db/postgres_password"], owner=OWNER + 1)
    assert f"is owned by uid {OWNER}, not {OWNER + 1}: chown {OWNER + 1}" in problem


def test_missing_empty_and_symlinked_files_are_refused(secrets_dir):
    (secrets_dir / "hub/crypt_key").unlink()
    (secrets_dir / "hub/oidc_client_secret").write_text("")
    (secrets_dir / "nginx/tls.key").unlink()
    (secrets_dir / "nginx/tls.key").symlink_to(secrets_dir / "hub/cookie_secret")
    found = "\n".join(secret_files.problems(secrets_dir, owner=OWNER))
    assert "hub/crypt_key (the key that encrypts users' auth_state (their tokens)) is missing: openssl rand" in found
    assert "hub/oidc_client_secret (the client secret your identity provider issued for this hub) is empty" in found
    assert "nginx/tls.key (the private key of the hub's TLS certificate) is not a regular file" in found


def test_the_command_lists_every_problem_and_fails(secrets_dir, capsys):
    (secrets_dir / "hub/cookie_secret").chmod(0o640)
    (secrets_dir / "db/postgres_password").unlink()
    assert main(["check-secrets", "--dir", str(secrets_dir), "--owner", str(OWNER)]) == 1
    err = capsys.readouterr().err
    assert "mode 0640" in err and "postgres_password (the hub database's password) is missing" in err
    assert "2 problem(s)" in err and "nothing was started" in err
    assert "s3cr3t" not in err  # never the secret itself
    (secrets_dir / "hub/cookie_secret").chmod(0o600)
    assert main(["check-secrets", "--dir", str(secrets_dir), "--owner", str(OWNER), "hub/cookie_secret"]) == 0
