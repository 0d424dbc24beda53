"""Making an image present and reading its configuration, with the digest kept.

DockerSpawner 14 splits a reference at its last ``:``, so ``repo@sha256:x``
would be pulled as tag ``x``: digest-pinned images need this pull. It runs
on the shared I/O pool, never on DockerSpawner's single worker thread.
"""

from docker.errors import APIError, ImageNotFound

from ..decisions.reference import parse
from ..errors import SpawnRefused


class ImageResolver:
    """``io``: a :class:`~.clients.DockerIO`; ``pull_policy``: DockerSpawner's setting."""

    def __init__(self, io, pull_policy, log):
        self.io = io
        self.pull_policy = pull_policy
        self.log = log

    async def pull(self, image):
        """Pull ``image`` when the policy says so; SpawnRefused with what to do when it cannot be had."""
        if self.pull_policy == "skip":
            return
        ref = parse(image)
        present = True
        try:
            await self.io("inspect_image", image)
        except ImageNotFound:
            present = False
        if self.pull_policy.lower() == "always" or not present:
            if self.pull_policy == "never" and not present:
                raise SpawnRefused(
                    f"Image {image} is not on this Docker host and pull_policy is 'never': "
                    "ask the hub admin to pull or build it.", reason="image-missing")
            self.log.info("pulling %s", ref.pull_ref)
            try:
                await self.io("pull", ref.pull_ref)
            except APIError as e:
                raise SpawnRefused(
                    f"Image {image} could not be pulled: {e.explanation or e}. "
                    "Check the image name and that the hub can reach its registry.",
                    reason="image-pull-failed") from None

    async def resolve(self, image):
        """``docker inspect`` of ``image``, pulled first if needed."""
        await self.pull(image)
        return await self.io("inspect_image", image)
