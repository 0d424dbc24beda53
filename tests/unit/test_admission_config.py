"""Admission settings are checked with the rest of the hub config, at start and by the CLI."""

import pytest
from traitlets.config import Config

from hardened_spawner.tools import cli
from hardened_spawner.config_check import problems_in


def config(**settings):
    c = Config()
    for name, value in settings.items():
        setattr(c.HardenedDockerSpawner, name, value)
    return c


def test_admission_problems_stop_the_hub(tmp_path):
    problems = problems_in(config(admission_rule_modes={"image.user-root": "sometimes"},
                                  conda_required_packages=["jupyterhub >>6"],
                                  conda_lock_file=str(tmp_path / "missing.lock"),
                                  scan_report_dir=str(tmp_path / "missing-dir")))
    settings = [s for s, _ in problems]
    assert settings == ["HardenedDockerSpawner.admission_rule_modes", "HardenedDockerSpawner.conda_required_packages",
                        "HardenedDockerSpawner.conda_lock_file", "HardenedDockerSpawner.scan_report_dir"]


def test_defaults_are_valid_and_admission_can_be_turned_off():
    assert problems_in(config()) == []
    assert problems_in(config(admission_enabled=False, admission_rule_modes={"nope": "x"})) == []


def test_guard_on_a_read_only_root_is_a_valid_configuration():
    """The guard's files go into a read-only volume at /etc/conda on a read-only root (the default):
    nothing to refuse at start (tests/unit/test_lifecycle.py, tests/integration/test_admission.py)."""
    from hardened_spawner.spawner.settings.hardening import HardeningSettings

    assert HardeningSettings.class_traits()["read_only_root"].default_value is True
    assert problems_in(config(conda_allowed_channels=["conda-forge"])) == []
    assert problems_in(config(read_only_root=False, conda_allowed_channels=["conda-forge"])) == []


def write(tmp_path, text):
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(text)
    return str(path)


def test_validate_config_reports_admission_settings(tmp_path, capsys):
    path = write(tmp_path, "c.HardenedDockerSpawner.scan_deny_severity = 'severe'\n")
    assert cli.main(["validate-config", "--config", path]) == 1
    assert "HardenedDockerSpawner.scan_deny_severity: unknown severity 'severe'" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["check-image", "UPPER::bad"], "malformed image reference"),
    (["check-image", "x/y:1", "--format", "yaml"], None),
    (["check-image"], None),
])
def test_check_image_usage_errors_exit_2(tmp_path, capsys, args, message):
    path = write(tmp_path, "c.HardenedDockerSpawner.admission_enabled = True\n")
    assert cli.main(args + ["--config", path]) == 2
    if message:
        assert message in capsys.readouterr().err


def test_check_image_with_invalid_admission_settings_exits_2(tmp_path, capsys):
    path = write(tmp_path, "c.HardenedDockerSpawner.admission_image_allowlist = ['Not A Pattern']\n")
    assert cli.main(["check-image", "x/y:1", "--config", path]) == 2
    assert "invalid admission settings" in capsys.readouterr().err


def test_check_image_with_an_unloadable_config_exits_2(tmp_path, capsys):
    path = write(tmp_path, "this is not python\n")
    assert cli.main(["check-image", "x/y:1", "--config", path]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_attestation_keys_must_name_a_verified_channel_and_a_readable_key_file(tmp_path):
    from attestrig import new_key, public_pem

    from hardened_spawner.admission.policy import Policy
    good = tmp_path / "keys.pem"
    good.write_bytes(public_pem(new_key()))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    verify = (("conda-forge", ""),)
    assert Policy(verify_channels=verify, attestation_keys=(("conda-forge", str(good)),)).problems() == []
    assert Policy(verify_channels=verify, attestation_keys=(("conda-forge", str(good)),)).file_problems() == []
    assert Policy(attestation_keys=(("conda-forge", "keys.pem"),)).problems() == [
        ("attestation_keys", "'conda-forge' is not a channel in conda_verify_channels"),
        ("attestation_keys", "conda-forge: 'keys.pem' is not an absolute path of a PEM file or a Sigstore identity")]
    assert Policy(verify_channels=verify, attestation_keys=(("conda-forge", str(bad)),)).file_problems() == [
        ("attestation_keys", f"conda-forge: {bad} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")]


def test_attestation_signers_may_be_sigstore_identities_beside_key_files(tmp_path):
    import json

    from attestrig import new_key, public_pem

    from hardened_spawner.admission import conda_attestations
    from hardened_spawner.tools.config_check import configured_settings

    good = tmp_path / "keys.pem"
    good.write_bytes(public_pem(new_key()))
    identity = {"issuer": "https://issuer.example.org", "subject": "publisher@example.org"}
    settings = configured_settings(config(conda_verify_channels={"conda-forge": ""},
                                          conda_attestation_keys={"conda-forge": [str(good), identity]}), "t")
    policy = settings.admission_policy()
    assert policy.attestation_keys == (("conda-forge", (str(good), json.dumps(identity, sort_keys=True))),)
    assert policy.problems() == [] and policy.file_problems() == []
    assert conda_attestations.signers(policy.attestation_keys[0][1]) == (
        (str(good),), (("https://issuer.example.org", "publisher@example.org"),), [])
    bad = configured_settings(config(conda_verify_channels={"conda-forge": ""}, conda_attestation_keys={
        "conda-forge": [{"issuer": "https://issuer.example.org"}], "x": []}), "t")
    assert [m for _, m in bad.admission_policy().problems()] == [
        "conda-forge: {\"issuer\": \"https://issuer.example.org\"} is not an identity {'issuer': OIDC issuer URL, "
        "'subject': certificate identity}", "'x' is not a channel in conda_verify_channels",
        "x: names no key file and no identity"]


def test_an_unusable_trust_root_for_conda_identities_stops_the_hub(tmp_path):
    identity = {"issuer": "https://issuer.example.org", "subject": "publisher@example.org"}
    problems = problems_in(config(conda_verify_channels={"conda-forge": ""},
                                  conda_attestation_keys={"conda-forge": [identity]},
                                  admission_signature_trusted_root=str(tmp_path / "missing.json")))
    assert [(s, m.split(": ")[0]) for s, m in problems] == [
        ("HardenedDockerSpawner.admission_signature_trusted_root",
         f"the Sigstore trust root ({tmp_path / 'missing.json'}) cannot be used")]


def test_provenance_and_scan_attestation_settings_are_checked_at_start():
    problems = problems_in(config(admission_provenance_policy=[{"images": "r.example.org/*", "builders": {"b": 5}}],
                                  scan_attestation_max_age_days=-1))
    assert [s for s, _ in problems] == ["HardenedDockerSpawner.scan_attestation_max_age_days",
                                        "HardenedDockerSpawner.admission_provenance_policy"]
    assert "SLSA Build level (1, 2 or 3)" in problems[1][1]
    unsigned = problems_in(config(admission_provenance_policy=[{"images": "r.example.org/*", "builders": {"b": 3}}],
                                  scan_attestation_max_age_days=7))
    assert [s for s, _ in unsigned] == ["HardenedDockerSpawner.admission_provenance_policy",
                                        "HardenedDockerSpawner.scan_attestation_max_age_days"]
    assert "names no key or identity, so no provenance can be trusted" in unsigned[0][1]
    assert "so no scan attestation can be trusted" in unsigned[1][1]
