"""What one user may choose: profiles and images, from hub groups and IdP entitlements.

:class:`Choices` binds the pure functions of :mod:`..decisions.profiles` to
one user's catalog, groups and entitlements, so the form, the option check
and the messages that suggest other profiles all see the same access.
:class:`UserOptions` is the spawner layer that renders the options form and
checks user options when they arrive (refused with HTTP 400/403, nothing created), whether
from the form, the REST API or an admin starting a server for the user.
"""

from traitlets import default

from ..audit import bounded
from ..decisions import entitlements, profiles
from ..errors import SpawnRefused
from .refusals import deny
from .settings import HardenedSpawner


class Choices:
    """The profiles and images ``groups`` (and an IdP's ``granted`` entitlements) allow.

    ``allowed_images`` is DockerSpawner's dict of names (or ``"*"``); ``image`` the configured
    image, run when neither the user nor the profile picks one."""

    def __init__(self, catalog, groups, granted, allowed_images, image=""):
        self.catalog = catalog
        self.allowed_images = allowed_images
        self.image = image
        if granted is None:
            self.access = profiles.access_for(catalog, groups)
        else:
            self.access = profiles.access_for(catalog, groups, granted.profiles, max_gpus=granted.gpus,
                                              images=granted.images or None)

    @classmethod
    def for_user(cls, catalog, user, granted, allowed_images, image=""):
        """``granted``: the user's :class:`~..decisions.entitlements.Entitlements`, or None."""
        groups = [g.name for g in getattr(user, "groups", None) or ()]
        return cls(catalog, groups, granted, allowed_images, image)

    def choose(self, user_options):
        """The :class:`~..decisions.profiles.Selection` (profile and image); raises ``profiles.OptionsError``."""
        return profiles.choose(self.catalog, self.access, user_options, self.allowed_images, self.image)

    def mine(self):
        return [p for p in self.catalog if self.access.allows(p)]

    def form(self, previous, notice="", gpus_free=None):
        return profiles.render_form(self.catalog, self.access, self.allowed_images, previous=previous,
                                    notice=notice, gpus_free=gpus_free)

    def wants_gpus(self):
        return any(p.gpus for p in self.mine())

    def others_fitting(self, profile, gpus):
        """Titles of the other profiles this user may use that need at most ``gpus`` GPUs."""
        return [p.title() for p in self.mine() if p.gpus <= gpus and p != profile]

    def bigger(self, memory):
        """Titles of the profiles this user may use with more memory than ``memory``."""
        return tuple(p.title() for p in self.mine() if memory and p.limits.memory > memory)


class UserOptions(HardenedSpawner):
    """The options form and the check of user options, on top of the settings."""

    _granted = None           # the IdP's entitlements, from auth_state (JupyterHub's hook runs before start)

    def choices(self, granted=None, catalog=None):
        catalog = self.profile_catalog()[0] if catalog is None else catalog
        return Choices.for_user(catalog, self.user, self._granted if granted is None else granted,
                                self.allowed_image_names(), self.image)

    async def run_auth_state_hook(self, auth_state):
        """Keep the identity provider's entitlements (profiles, GPU quota) for option checks."""
        await super().run_auth_state_hook(auth_state)
        self._granted = entitlements.from_auth_state(auth_state)

    async def _run_apply_user_options(self, user_options):
        """Validate user options first: a bad one is refused (HTTP 400/403), audited, and creates nothing."""
        try:
            self.validate_user_options(user_options)
        except SpawnRefused as e:
            raise deny(self, e, options=bounded(user_options)) from None
        await super()._run_apply_user_options(user_options)

    def validate_user_options(self, user_options):
        catalog, problems = self.profile_catalog()
        if not problems:  # else the configuration check refuses the spawn
            self.select(catalog, user_options)

    def select(self, catalog, user_options):
        """The :class:`~..decisions.profiles.Selection` of ``user_options``: the profile and the image,
        allowed and well-formed, chosen together. HTTP 400 (403 for a choice this user may not make)."""
        try:
            return self.choices(catalog=catalog).choose(user_options)
        except profiles.OptionsError as e:
            reason = ("image-not-allowed" if isinstance(e, profiles.ImageNotAllowed)
                      else "not-entitled" if isinstance(e, profiles.NotEntitled) else "bad-options")
            raise SpawnRefused(str(e), reason=reason) from None

    @default("options_form")
    def _default_options_form(self):
        """``""`` when no user can have a choice (one profile, at most one image), as DockerSpawner;
        else the form, rendered per user."""
        catalog, problems = self.profile_catalog()
        images = self.allowed_image_names()
        if not problems and len(catalog) < 2 and (images == "*" or len(images or {}) < 2):
            return ""
        return lambda spawner: spawner.render_options_form()

    @default("options_from_form")
    def _default_options_from_form(self):
        return profiles.options_from_form

    async def render_options_form(self):
        """The form: only what the user's groups (and IdP entitlements) allow, limits in words."""
        if self.profile_catalog()[1]:
            return ""
        choices = self.choices(entitlements.from_auth_state(await self.user.get_auth_state()))
        gpus_free = await self.gpus_free() if choices.wants_gpus() else None
        return choices.form(self.orm_spawner.user_options, notice=self.form_notice(), gpus_free=gpus_free)

    def form_notice(self):
        return ""

    async def gpus_free(self):
        """``(free, total)`` GPUs for the form, or None when unknown."""
        return None
