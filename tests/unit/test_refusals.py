"""Refusals: one exception type (JupyterHub's SpawnException) with a stable reason code, its HTTP
status, the findings, what to do and a reference id; audited once and logged once as a WARNING.

The pipeline is driven with the fake Docker client (tests/unit/conftest.py); tests/integration/test_refusals_hub.py
checks the same through a real hub (REST answers, progress events, the hub log).
"""

import ast
import json
import logging
import re
from pathlib import Path

import pytest
from jupyterhub.spawner import SpawnException
from requests.exceptions import ConnectionError as RequestsConnectionError

from hardened_spawner.admission.model import Decision, Finding
from hardened_spawner.errors import REF_PATTERN, REFUSALS, SpawnRefused, new_reference
from hardened_spawner.spawner.refusals import RefusalLog, deny
from helpers import NO_DRIVER, audit, creates
from fake_docker import _response
from docker.errors import APIError

PACKAGE = Path(__file__).resolve().parents[2] / "hardened_spawner"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "refusals.md"
ROOT_FINDING = Finding("image.user-root", "high", "deny", "image runs as root (USER root)",
                       "Add a non-root USER to the Dockerfile (e.g. USER 1000:100).")


# ---- the exception -------------------------------------------------------------------------------
def test_a_refusal_is_a_spawn_exception_with_status_findings_and_reference():
    e = SpawnRefused("The image x:1 was refused by this hub's image policy.", reason="image-denied",
                     findings=[ROOT_FINDING])
    assert isinstance(e, SpawnException) and e.status_code == 403 and e.reason == "image-denied"
    assert re.fullmatch(r"[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}", e.ref)
    body = e.as_dict()
    assert set(body) == {"status", "reason", "message", "findings", "ref"} and body["status"] == 403
    assert body["findings"] == [ROOT_FINDING.as_dict()]
    assert body["message"].splitlines() == [
        "The image x:1 was refused by this hub's image policy.",
        "- [image.user-root] image runs as root (USER root) Fix: Add a non-root USER to the Dockerfile "
        "(e.g. USER 1000:100).",
        "Pick another profile or image and start again.",
        f"Ask the hub admin and quote reference {e.ref}: it finds this refusal in the audit log.",
    ]
    # what JupyterHub logs (str) is one line with the reference id and the rules, never the whole text
    assert "\n" not in str(e) and f"[ref {e.ref}]" in str(e) and "(rules: image.user-root)" in str(e)
    assert e.jupyterhub_message == body["message"] and e.jupyterhub_html_message == e.message_html


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_each_reason_has_its_status_and_ends_with_the_reference(reason):
    e = SpawnRefused("No.", reason=reason)
    assert e.status_code == REFUSALS[reason].status
    assert e.advice[-1].startswith("Ask the hub admin and quote reference " + e.ref)


def test_the_page_escapes_what_it_shows_and_lists_the_findings():
    evil = Finding("image.env-secret", "critical", "deny", "ENV <script>alert(1)</script>", "Remove it & rotate")
    warn = Finding("image.no-healthcheck", "low", "warn", "no HEALTHCHECK", "Add one")
    e = SpawnRefused("Image <b>x</b> refused.", reason="image-denied", findings=[evil, ROOT_FINDING, warn])
    page = e.message_html
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&amp; rotate" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert page.count("<tr><td><code>") == 2  # denials only: a warning did not refuse anything
    assert f'<strong class="hs-ref">{e.ref}</strong>' in page and "Pick another profile or image" in page


def test_references_are_unique_and_found_in_log_lines():
    refs = {new_reference() for _ in range(2000)}
    assert len(refs) == 2000
    ref = refs.pop()
    assert REF_PATTERN.search(f"Not starting alice's server : 403 SpawnRefused(...): [ref {ref}] No.").group(1) == ref


def _reasons_raised():
    """Every reason code the package can raise: SpawnRefused(reason=...) and the ``reason`` it assigns."""
    codes = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SpawnRefused":
                for kw in node.keywords:
                    if kw.arg == "reason":
                        codes |= {c.value for c in ast.walk(kw.value) if isinstance(c, ast.Constant)}
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "reason" for t in node.targets) \
                    and "SpawnRefused" in path.read_text():
                codes |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)
                          and isinstance(c.value, str)}
    return codes


def test_every_reason_the_package_raises_has_a_status_and_is_documented():
    raised = _reasons_raised()
    assert {"image-denied", "gpu-busy", "gpu-quota", "not-entitled", "no-gpu-runtime"} <= raised
    assert raised <= set(REFUSALS), raised - set(REFUSALS)
    docs = DOCS.read_text()
    assert [code for code in REFUSALS if f"`{code}`" not in docs] == []


# ---- the pipeline: every refusal kind, its status, one audit line with its reference --------------
class Refuse:
    async def decide(self, ref, info):
        from types import SimpleNamespace
        return SimpleNamespace(decision=Decision(False, (ROOT_FINDING,), "sha256:x"), how="computed",
                               facts="computed", seconds=0.1)


GPU = [{"slug": "cpu", "default": True}, {"slug": "gpu", "gpus": 1}]
KINDS = {
    # reason: (settings, user_options, status)
    "bad-options": ({}, {"cpu_limit": 4}, 400),
    "not-entitled": ({"profiles": [{"slug": "cpu", "default": True}, {"slug": "gpu", "groups": ["gpu"]}]},
                     {"profile": "gpu"}, 403),
    "image-not-allowed": ({"allowed_images": {"default": "example.org/singleuser:1"}}, {"image": "evil"}, 403),
    "image-denied": ({"admission_enabled": True}, {}, 403),
    "unsafe-config": ({"extra_host_config": {"privileged": True}}, {}, 503),
    "image-missing": ({"image": "missing/image:1"}, {}, 503),
    "gpu-none": ({"gpu_ids": [], "profiles": GPU}, {"profile": "gpu"}, 503),
    "no-gpu-runtime": ({"gpu_ids": ["0"], "profiles": GPU}, {"profile": "gpu"}, 503),
}


async def _spawn(spawner, options):
    spawner.user_options = options
    await spawner._run_apply_user_options(options)
    return await spawner.start()


@pytest.mark.parametrize("reason", sorted(KINDS))
async def test_each_refusal_kind_is_its_status_and_one_audit_line_with_its_reference(make, fake, tmp_path,
                                                                                    reason):
    settings, options, status = KINDS[reason]
    spawner = make(**settings)
    if reason == "image-denied":
        spawner.admission_service = lambda policy: Refuse()
    if reason == "no-gpu-runtime":
        fake.fail["start"] = APIError("500", response=_response(500), explanation=NO_DRIVER)
    with pytest.raises(SpawnRefused) as refused:
        await _spawn(spawner, options)
    e = refused.value
    assert (e.reason, e.status_code) == (reason, status)
    assert fake.objects == {}  # nothing created, or removed again
    [line] = [a for a in audit(tmp_path) if a["event"] == "spawn.denied"]
    assert (line["ref"], line["reason"], line["status"], line["decision"]) == (e.ref, reason, status, "deny")
    assert line["findings"] == e.findings and line["message"] == e.message
    if reason in ("image-denied", "unsafe-config"):
        assert e.findings and line["reasons"][0].startswith(f"[{e.findings[0]['rule']}]")
    if reason == "no-gpu-runtime":
        assert 'could not select device driver "nvidia"' in line["detail"]


async def test_gpu_busy_is_409_and_a_second_gpu_over_quota_is_403(make, fake, tmp_path):
    named = {"gpu_ids": ["0", "1"], "profiles": GPU, "max_gpus_per_user": 1}
    await _spawn(make("alice", **named), {"profile": "gpu"})
    second = make("alice", **named)
    second.object_name = "jupyter-alice--two"  # her second (named) server
    with pytest.raises(SpawnRefused) as quota:
        await _spawn(second, {"profile": "gpu"})
    assert (quota.value.reason, quota.value.status_code) == ("gpu-quota", 403)
    await _spawn(make("bob", gpu_ids=["0", "1"], profiles=GPU), {"profile": "gpu"})
    with pytest.raises(SpawnRefused) as busy:
        await _spawn(make("carol", gpu_ids=["0", "1"], profiles=GPU), {"profile": "gpu"})
    assert (busy.value.reason, busy.value.status_code) == ("gpu-busy", 409)
    assert "Pick 'cpu'" in busy.value.message and busy.value.advice[:2] == [
        "Pick another profile or image and start again.", "Try again in a few minutes."]
    refs = [a["ref"] for a in audit(tmp_path) if a["event"] == "spawn.denied"]
    assert refs == [quota.value.ref, busy.value.ref]


async def test_docker_down_is_a_503_refusal(make, fake, tmp_path):
    fake.fail["inspect_image"] = RequestsConnectionError("connection refused")
    with pytest.raises(SpawnRefused) as refused:
        await make().start()
    assert (refused.value.reason, refused.value.status_code) == ("docker-unreachable", 503)
    assert [a["ref"] for a in audit(tmp_path)] == [refused.value.ref]


async def test_a_crash_is_not_a_refusal(make, fake, tmp_path):
    def broken(spawner):
        raise RuntimeError("a bug in a config callable")

    with pytest.raises(RuntimeError, match="a bug in a config callable"):
        await make(extra_create_kwargs=broken).start()
    assert [a["event"] for a in audit(tmp_path)] == [] and creates(fake) == []


async def test_a_refusal_is_audited_once_however_often_it_is_passed_on(make, tmp_path):
    spawner = make()
    e = SpawnRefused("No.", reason="gpu-busy")
    assert deny(spawner, e, image="x") is e and deny(spawner, e) is e
    assert [(a["event"], a["ref"], a["image"]) for a in audit(tmp_path)] == [("spawn.denied", e.ref, "x")]


# ---- the hub log: one WARNING line per refusal, tracebacks only for crashes ----------------------
class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def hub_loggers():
    """Loggers named as JupyterHub's: User (tornado.application), tornado's HTTPError line, the hub's own."""
    names = ("tornado.application", "tornado.general", "asyncio", "test-hub")
    loggers = [logging.getLogger(n) for n in names]
    capture, refusal_log = Capture(), RefusalLog()
    for logger in loggers:
        logger.addHandler(capture)
        logger.addFilter(refusal_log)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    yield loggers, capture, refusal_log
    for logger in loggers:
        logger.removeHandler(capture)
        logger.removeFilter(refusal_log)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def _raised(e):
    try:
        raise e
    except Exception as caught:
        return caught


def test_jupyterhub_lines_about_a_refusal_become_one_warning_without_traceback(hub_loggers):
    (app_log, gen_log, asyncio_log, hub_log), capture, refusal_log = hub_loggers
    e = _raised(SpawnRefused("The image x was refused.", reason="image-denied", findings=[ROOT_FINDING]))
    refusal_log.issue(e.ref)
    # what JupyterHub 6.1 logs for one refusal sent through the spawn form, then the REST API, then a page view
    app_log.error(f"Not starting alice's server : {e}")                                   # user.py
    hub_log.error(f"Error starting server alice: {e}")                                    # pages.py
    try:
        raise e
    except SpawnRefused:
        hub_log.error("Failed to spawn single-user server with form", exc_info=True)     # pages.py, traceback
    gen_log.warning("%d %s: %s", e.status_code, "POST /hub/api/users/alice/server (127.0.0.1)", e.get_message())
    hub_log.error("Previous spawn for %s failed: %s", "alice", e)                         # spawn-pending page
    asyncio_log.error("Task exception was never retrieved\nfuture: <Task finished exception=%r>", e,
                      exc_info=(type(e), e, e.__traceback__))                             # the form gave up waiting
    assert len(capture.records) == 1, [(r.levelname, r.getMessage()) for r in capture.records]
    line = capture.records[0]
    assert line.levelno == logging.WARNING and line.levelname == "WARNING" and line.exc_info is None
    assert line.getMessage() == f"Not starting alice's server : {e}" and f"[ref {e.ref}]" in line.getMessage()


def test_a_crash_keeps_its_error_and_traceback(hub_loggers):
    (app_log, _, _, hub_log), capture, refusal_log = hub_loggers
    refusal_log.issue(new_reference())
    try:
        raise RuntimeError("boom")
    except RuntimeError as e:
        app_log.exception(f"Unhandled error starting alice's server: {e}")
    hub_log.error("[ref ABCD-EFGH] not a reference this hub issued")
    hub_log.info("audit %s", json.dumps({"event": "spawn.denied", "ref": "ABCD-EFGH"}))
    assert [(r.levelno, bool(r.exc_info)) for r in capture.records] == [
        (logging.ERROR, True), (logging.ERROR, False), (logging.INFO, False)]
