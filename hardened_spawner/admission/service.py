"""The one admission pipeline, used by the spawner and by ``hardened-spawner check-image``.

plan -> image layers -> read facts -> prepare -> load context -> evaluate.
Reading an image is slow (about a second for a large one), so its prepared
facts are cached per image id and read plan, and computed once however many
spawns ask at once; decisions are cached per reference, image, policy,
context (lock file, reports, the registry's signatures) and day, so a changed
policy, a new report or a new signature counts at the next spawn. Blocking work runs on ``executor``.
"""

import asyncio
import dataclasses
import datetime
import logging
import time
from dataclasses import dataclass

from . import accounts, channels, engine, evidence, facts, layers
from .cache import SingleFlight

log = logging.getLogger(__name__)
_swept = {}  # docker base URL -> when stale probes were last removed (time.time())


@dataclass(frozen=True)
class Verdict:
    """A decision and how it was reached: ``how`` is computed, shared or cached."""

    decision: object  # model.Decision
    how: str          # of the decision: computed, shared or cached
    facts: str        # of the image's facts when the decision was computed: computed, shared or cached
    seconds: float
    accounts: tuple = ("", "")  # the image's /etc/passwd and /etc/group texts


class AdmissionService:
    """Decides whether an image may run under ``policy``.

    ``client`` is a docker-py ``APIClient`` for the daemon that holds the
    image; ``executor`` runs the blocking reads. ``inputs`` and ``decisions``
    are :class:`~.cache.SingleFlight` caches, shared by every service of a
    process so concurrent spawns of one image read it once.
    """

    def __init__(self, policy, client, executor, inputs=None, decisions=None, read_layers=True):
        self.policy = policy
        self.client = client
        self.executor = executor
        self.inputs = inputs if inputs is not None else SingleFlight()
        self.decisions = decisions if decisions is not None else SingleFlight()
        self.read_layers = read_layers

    async def _sweep(self):
        """Before reading an image, at most every ``facts.STALE_PROBE_SECONDS`` per daemon: remove
        the probes a hub killed mid-read left behind. A failure here never blocks a read."""
        key = self.client.base_url
        now = time.time()
        if now - _swept.get(key, 0) < facts.STALE_PROBE_SECONDS:
            return
        _swept[key] = now
        try:
            removed = await self._on_client(facts.sweep_probes, now)
        except Exception as e:  # best effort: the next read tries again
            _swept.pop(key, None)
            log.warning("could not remove stale admission probes: %s", e)
            return
        if any(removed):
            log.warning("removed %d admission probe container(s) and %d volume(s) left by a hub that "
                        "stopped mid-read", *removed)

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _on_client(self, fn, *args):
        return self._run(fn, self.client, *args)

    async def _read_inputs(self, image_info, plan):
        await self._sweep()
        layer_dirs = await self._run(layers.overlay_layers, image_info) if self.read_layers else None
        read = await facts.read_facts(self._on_client, image_info["Id"], plan, layer_dirs)
        return await self._run(engine.prepare, read, plan)

    async def inputs_for(self, image_info):
        """The image's prepared facts under this policy's read plan (cached per image id)."""
        plan = engine.plan_for(self.policy)
        inputs, _ = await self.inputs.get((image_info["Id"], plan), lambda: self._read_inputs(image_info, plan))
        return inputs

    async def decide(self, ref, image_info, today=None):
        """The :class:`Verdict` for image ``ref`` (already inspected: ``image_info``).

        Raises :class:`facts.FactsError` or a docker error when the image cannot be read.
        """
        started = time.perf_counter()
        policy, today = self.policy, today or datetime.date.today()
        image_id = image_info["Id"]
        digests = engine.image_digests(image_info)

        async def compute():
            plan = engine.plan_for(policy)
            inputs, read = await self.inputs.get((image_id, plan), lambda: self._read_inputs(image_info, plan))
            context = await self._run(engine.load_context, policy, digests, signatures)
            if policy.verify_channels:  # what the approved channels list, for the records naming them
                repodata = await self._run(channels.load, policy, inputs.envs)
                context = dataclasses.replace(context, repodata=repodata)
            if channels.wants_package_files(policy):  # the files' hashes and owners from the packages themselves
                files = await self._run(channels.load_package_files, policy, inputs.envs, context.repodata)
                context = dataclasses.replace(context, package_files=files)
            if policy.attestation_keys:  # what they serve about each package's publish attestations
                attested = await self._run(channels.load_attestations, policy, inputs.envs)
                context = dataclasses.replace(context, attestations=attested)
            decision = engine.evaluate(policy, ref, image_info, inputs, context, today)
            unverified = any(isinstance(c, channels.RepodataError) for c in (context.repodata, context.attestations,
                                                                         context.package_files))
            return decision, read, accounts.from_facts(inputs.facts), unverified

        fingerprint = await self._run(engine.context_fingerprint, policy, digests)
        # every admission asks the registry for signatures: a changed signature or an outage is never cached
        signatures = await self._run(evidence.load, policy, ref, image_info)
        key = (ref, image_id, policy.digest(), fingerprint, signatures and signatures.fingerprint, today.isoformat())
        (decision, read, texts, unverified), how = await self.decisions.get(key, compute)
        if unverified:  # a mirror outage is never cached: the next spawn asks the mirror again
            self.decisions.forget(lambda k: k == key)
        return Verdict(decision, how, read if how == "computed" else "cached", round(time.perf_counter() - started, 3),
                       texts)

    async def accounts(self, image_info):
        """``(passwd, group)`` of the image when admission is off (cached per image id)."""
        texts, _ = await self.inputs.get(("accounts", image_info["Id"]),
                                         lambda: self._on_client(accounts.read, image_info["Id"]))
        return texts
