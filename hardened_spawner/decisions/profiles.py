"""Resource profiles, who may use them, and the user options that pick one: pure, no I/O.

An admin lists profiles (``HardenedDockerSpawner.profiles``); each names its
limits, a GPU count, the images it may run and the hub groups allowed to use
it. :func:`build_catalog` checks them once, :func:`access_for` computes what
one user may use from their group names (and, when an identity provider
granted them, extra profile slugs and a GPU cap), and :func:`choose` turns the
``user_options`` of a spawn into a :class:`Selection` or an
:class:`OptionsError` whose message the hub returns (HTTP 400; 403 for a
:class:`NotEntitled`, a choice this user may not make).
"""

import html
import re
from dataclasses import dataclass

from .idle import ReclaimPolicy
from .limits import build_limits
from .reference import BadReference, parse

PROFILE_KEYS = (
    "slug", "display_name", "description", "mem_limit", "mem_guarantee", "cpu_limit",
    "cpu_guarantee", "pids_limit", "shm_size", "gpus", "images", "groups", "default",
    "gpu_idle_minutes", "gpu_max_age_minutes", "log_max_size", "log_max_file", "disk_limit",
    "home_quota", "home_files",
)
RECLAIM_KEYS = ("gpu_idle_minutes", "gpu_max_age_minutes")
# Options a user might send to size their own server; limits come from profiles only.
LIMIT_OPTIONS = (
    "mem_limit", "mem_guarantee", "cpu_limit", "cpu_guarantee", "pids_limit", "shm_size",
    "gpus", "memory", "cpus", "log_max_size", "log_max_file", "disk_limit", "home_quota", "home_files",
)
MAX_GPUS_PER_PROFILE = 64
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _shown(value, limit=60):
    """A value from a request, cut for messages: the user sent it, the message need not repeat it all."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class OptionsError(ValueError):
    """User options that cannot be honoured; the message says why and what to send instead."""


class NotEntitled(OptionsError):
    """Options naming a profile or image this user may not use (their groups or IdP entitlements)."""


@dataclass(frozen=True)
class Profile:
    """One size of server. ``limits`` carries no GPU ids: those are allocated per spawn."""

    slug: str
    display_name: str
    description: str
    limits: object  # limits.Limits
    gpus: int = 0
    images: tuple = ()  # names in allowed_images; empty: every allowed image
    groups: tuple = ()  # hub groups that may use it; empty: everyone
    default: bool = False
    reclaim: ReclaimPolicy = ReclaimPolicy()  # when its GPUs are taken back (GPU profiles only)

    def describe(self):
        """``"4 CPUs, 16 GiB, 1 GPU"``."""
        words = self.limits.describe()
        if self.gpus:
            words += f", {self.gpus} GPU" + ("" if self.gpus == 1 else "s")
        return words

    def title(self):
        return f"'{self.slug}' ({self.display_name}: {self.describe()})"


@dataclass(frozen=True)
class Access:
    """The profiles one user may use, in catalog order, and the most GPUs one server may get.

    Computed from hub group names; an identity provider's entitlements may add
    profile slugs and cap GPUs (``max_gpus`` None: no cap beyond the profile).
    """

    profiles: tuple
    max_gpus: int | None = None
    images: tuple | None = None  # image names granted by the identity provider; None: no such limit

    def allows(self, profile):
        return profile.slug in self.profiles


class ImageNotAllowed(NotEntitled):
    """Options naming an image that ``allowed_images`` does not list."""


@dataclass(frozen=True)
class Selection:
    """What one start runs: the profile, and the image chosen together with it."""

    profile: Profile
    name: str | None  # the name in allowed_images (the reference itself with "*"), None: the configured image
    image: str        # the reference to run


def _reference(name, allowed_images, configured_image):
    """The reference image ``name`` stands for; raises :class:`OptionsError` when it cannot be run."""
    if name is None:
        return configured_image
    if allowed_images != "*" and name not in (allowed_images or {}):
        names = ", ".join(allowed_images or {}) or "none"
        raise ImageNotAllowed(f"Image {_shown(name)} is not allowed here. Allowed images: {names}.")
    ref = name if allowed_images == "*" else allowed_images[name]
    try:
        parse(ref)
    except BadReference as e:
        raise OptionsError(f"Image {_shown(name)} cannot be used: {e}") from None
    return ref


def _names(where, value, problems):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        problems.append((where, f"must be a list of names, not {value!r}"))
        return ()
    return tuple(dict.fromkeys(value))


def _profile(where, raw, defaults, ceilings, image_names, gpu_count, problems):
    unknown = sorted(set(raw) - set(PROFILE_KEYS))
    if unknown:
        problems.append((where, f"unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(PROFILE_KEYS)}"))
    slug = raw.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        problems.append((f"{where}.slug", f"{slug!r} is not a slug: lower-case letters, digits and '-', at most 64"))
    display = raw.get("display_name", slug)
    description = raw.get("description", "")
    for key, value in (("display_name", display), ("description", description)):
        if not isinstance(value, str):
            problems.append((f"{where}.{key}", f"must be text, not {value!r}"))
    gpus = raw.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= MAX_GPUS_PER_PROFILE:
        problems.append((f"{where}.gpus", f"must be a whole number of GPUs from 0 to {MAX_GPUS_PER_PROFILE}, not {gpus!r}"))
        gpus = 0
    elif gpu_count is not None and gpus > gpu_count:
        problems.append((f"{where}.gpus", f"asks for {gpus} GPUs but gpu_ids lists only {gpu_count}"))
    images = _names(f"{where}.images", raw.get("images", ()), problems)
    if image_names is not None:
        for name in images:
            if name not in image_names:
                known = ", ".join(image_names) or "none: allowed_images is empty"
                problems.append((f"{where}.images", f"{name!r} is not a name in allowed_images ({known})"))
    default = raw.get("default", False)
    if not isinstance(default, bool):
        problems.append((f"{where}.default", f"must be True or False, not {default!r}"))
    pick = {k: raw.get(k, defaults.get(k)) for k in ("mem_limit", "cpu_limit", "pids_limit", "shm_size")}
    limits, limit_problems = build_limits(
        f"{where}.", pick["mem_limit"], pick["cpu_limit"], pick["pids_limit"], pick["shm_size"], ceilings,
        memory_guarantee=raw.get("mem_guarantee", defaults.get("mem_guarantee")),
        cpu_guarantee=raw.get("cpu_guarantee", defaults.get("cpu_guarantee")),
        log_max_size=raw.get("log_max_size", defaults.get("log_max_size", "10m")),
        log_max_file=raw.get("log_max_file", defaults.get("log_max_file", 3)),
        disk_limit=raw.get("disk_limit", defaults.get("disk_limit")),
        home_quota=raw.get("home_quota", defaults.get("home_quota")),
        home_files=raw.get("home_files", defaults.get("home_files", 0)),
    )
    problems += limit_problems
    reclaim = _reclaim(where, raw, defaults, gpus, problems)
    return Profile(
        slug=slug if isinstance(slug, str) else "", display_name=display if isinstance(display, str) else "",
        description=description if isinstance(description, str) else "", limits=limits, gpus=gpus,
        images=images, groups=_names(f"{where}.groups", raw.get("groups", ()), problems),
        default=default is True, reclaim=reclaim,
    )


def _reclaim(where, raw, defaults, gpus, problems):
    """The profile's :class:`ReclaimPolicy`: its own keys, else the spawner's settings (GPU profiles only)."""
    values = {}
    for key in RECLAIM_KEYS:
        value = raw.get(key, defaults.get(key) or 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append((f"{where}.{key}", f"must be a number of minutes, 0 or more (0: off), not {value!r}"))
            value = 0
        elif key in raw and value and not gpus:
            problems.append((f"{where}.{key}", "applies to profiles with GPUs only (this one has gpus=0)"))
        values[key] = float(value)
    if not gpus:
        return ReclaimPolicy()
    return ReclaimPolicy(values["gpu_idle_minutes"], values["gpu_max_age_minutes"],
                         float(defaults.get("gpu_idle_warning_minutes") or 0))


def build_catalog(setting, raw_profiles, defaults, ceilings, allowed_images, gpu_count=None):
    """``(profiles, problems)`` from the admin's list of dicts.

    ``defaults`` holds the spawner's own limit settings (mem_limit, cpu_limit,
    pids_limit, shm_size, mem_guarantee, cpu_guarantee): a profile that leaves
    a limit out gets that one, and with no profiles configured the catalog is a
    single profile ``default`` made of them, as before profiles existed.
    ``allowed_images`` is DockerSpawner's dict of names, or ``"*"``.
    ``gpu_count`` is the number of configured GPU ids, None when discovered at spawn.
    """
    if not isinstance(raw_profiles, (list, tuple)):
        return (), [(setting, f"must be a list of profile dicts, not {type(raw_profiles).__name__}")]
    image_names = None if allowed_images == "*" else tuple(allowed_images or ())
    implicit = not raw_profiles  # its problems name the spawner's own settings
    raw_profiles = raw_profiles or [{"slug": "default", "display_name": "Default", "default": True}]
    problems, profiles = [], []
    for i, raw in enumerate(raw_profiles):
        where = setting.rsplit(".", 1)[0] if implicit else f"{setting}[{i}]"
        if not isinstance(raw, dict):
            problems.append((where, f"must be a dict like {{'slug': 'small', 'mem_limit': '2G'}}, not {raw!r}"))
            continue
        profiles.append(_profile(where, raw, defaults, ceilings, image_names, gpu_count, problems))
    slugs = [p.slug for p in profiles]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        problems.append((setting, f"slug {slug!r} is used by more than one profile"))
    if sum(p.default for p in profiles) > 1:
        problems.append((setting, "more than one profile has default=True"))
    return (tuple(profiles), []) if not problems else ((), problems)


def access_for(catalog, groups, granted=(), max_gpus=None, images=None):
    """What a member of hub ``groups`` may use; ``granted`` slugs are added whatever the groups.

    ``images``: the image names an identity provider grants; when given, the
    user may run only those (within what each profile allows).
    """
    groups, granted = set(groups), set(granted)
    allowed = tuple(
        p.slug for p in catalog
        if (not p.groups or groups & set(p.groups) or p.slug in granted)
        and (max_gpus is None or p.gpus <= max_gpus)
    )
    return Access(profiles=allowed, max_gpus=max_gpus, images=None if images is None else tuple(images))


def default_for(catalog, access):
    """The profile a user gets when they pick none: the admin's default if they may use it, else their first."""
    mine = [p for p in catalog if access.allows(p)]
    return next((p for p in mine if p.default), mine[0] if mine else None)


def images_for(profile, allowed_images, access=None):
    """Image names a profile may run: its own list, else every allowed name (None: any image).

    With ``access`` carrying granted images, only those of them.
    """
    names = profile.images or (None if allowed_images == "*" else tuple(allowed_images or ()))
    if access is None or access.images is None:
        return names
    return tuple(access.images) if names is None else tuple(n for n in names if n in access.images)


def _you_may(catalog, access):
    mine = [p.title() for p in catalog if access.allows(p)]
    return f"Profiles you may use: {', '.join(mine)}." if mine else ""


def _no_profile_message(catalog, access):
    groups = sorted({g for p in catalog for g in p.groups})
    capped = access.max_gpus is not None and any(p.gpus > access.max_gpus for p in catalog)
    why = f"every profile is for members of {', '.join(groups)}" if groups else "no profile fits your GPU quota"
    if capped and groups:
        why += f", or needs more GPUs than your quota of {access.max_gpus}"
    return f"No profile is available to you: {why}. Ask the hub admin to add you to a group that has one."


def choose(catalog, access, user_options, allowed_images="*", configured_image=""):
    """The :class:`Selection` for ``user_options``: the profile, and the image resolved against
    ``allowed_images`` (DockerSpawner's dict of names, or ``"*"``) in the same step, so the
    image is known, allowed and well-formed before anything is pulled. Raises
    :class:`OptionsError` with what to send instead."""
    options = user_options or {}
    for key in LIMIT_OPTIONS:
        if key in options:
            raise OptionsError(
                f"{key!r} cannot be set in the server options: limits come from profiles. "
                f"Send 'profile' instead. {_you_may(catalog, access)}".strip()
            )
    slug = options.get("profile")
    image = options.get("image")
    for key, value in (("profile", slug), ("image", image)):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 255):
            raise OptionsError(f"{key!r} must be a name (text, at most 255 characters), not {_shown(value)}.")
    if slug is None:
        profile = default_for(catalog, access)
        if profile is None:
            raise NotEntitled(_no_profile_message(catalog, access))
    else:
        profile = next((p for p in catalog if p.slug == slug), None)
        if profile is None:
            raise OptionsError(f"Unknown profile {slug!r}. {_you_may(catalog, access)}".strip())
        if not access.allows(profile):
            if access.max_gpus is not None and profile.gpus > access.max_gpus:
                why = (f"it has {profile.gpus} GPU{'s' if profile.gpus != 1 else ''} and your quota is "
                       f"{access.max_gpus} per server")
            else:
                why = f"it is only for members of {', '.join(profile.groups)}"
            raise NotEntitled(f"You may not use profile {profile.title()}: {why}. {_you_may(catalog, access)}".strip())
    # A profile without its own list takes what allowed_images allows (the spawner checks that).
    if image is not None and profile.images and image not in profile.images:
        raise OptionsError(
            f"Image {image!r} cannot be used with profile {profile.slug!r}; "
            f"its images are: {', '.join(profile.images)}."
        )
    if access.images is not None:  # the identity provider grants images: only those
        granted = ", ".join(access.images) or "none"
        if image is not None and image not in access.images:
            raise NotEntitled(f"You may not use image {image!r}: the images you may use are {granted}.")
        if image is None:  # the configured default has no name the IdP could grant: use a granted one
            image = next((n for n in (profile.images or access.images) if n in access.images), None)
            if image is None:
                raise NotEntitled(f"Profile {profile.title()} runs none of the images you may use ({granted}).")
    elif image is None and profile.images:
        image = profile.images[0]
    return Selection(profile=profile, name=image, image=_reference(image, allowed_images, configured_image))


def options_from_form(formdata):
    """Turn the form's fields into user options: ``profile`` and that profile's ``image``."""

    def first(key):
        values = formdata.get(key) or [""]
        return values[0].strip() if isinstance(values[0], str) else ""

    profile = first("profile")
    image = (first(f"image-{profile}") if profile else "") or first("image")
    return {key: value for key, value in (("profile", profile), ("image", image)) if value}


def _image_select(profile, names, selected):
    if not names or len(names) < 2:
        return ""
    field = html.escape(f"image-{profile.slug}")
    options = "".join(
        f'<option value="{html.escape(n)}"{" selected" if n == selected else ""}>{html.escape(n)}</option>'
        for n in names
    )
    return (f'<label class="form-label" for="hs-{field}">Image</label>'
            f'<select class="form-select" name="{field}" id="hs-{field}">{options}</select>')


def render_form(catalog, access, allowed_images, previous=None, notice="", gpus_free=None):
    """The options form: the profiles (and images) this user may use, limits in words.

    Empty when there is nothing to choose, so the hub spawns at once.
    ``previous`` are the user's last options (pre-selected), ``notice`` a
    sentence shown on top (e.g. why the last server stopped), ``gpus_free``
    a ``(free, total)`` pair shown beside GPU profiles.
    """
    mine = [p for p in catalog if access.allows(p)]
    image_lists = {p.slug: images_for(p, allowed_images, access) for p in mine}
    if len(mine) < 2 and all(names is None or len(names) < 2 for names in image_lists.values()):
        return ""
    previous = previous or {}
    default = default_for(catalog, access)
    chosen = previous.get("profile") if previous.get("profile") in access.profiles else default.slug
    parts = ['<div class="hs-profiles">']
    if notice:
        parts.append(f'<div class="alert alert-warning" role="alert">{html.escape(notice)}</div>')
    parts.append("<p>Choose the size of your server.</p>")
    for p in mine:
        ident = html.escape(f"hs-profile-{p.slug}")
        checked = " checked" if p.slug == chosen else ""
        parts.append(
            '<div class="form-check mb-3">'
            f'<input class="form-check-input" type="radio" name="profile" id="{ident}" '
            f'value="{html.escape(p.slug)}"{checked} required>'
            f'<label class="form-check-label" for="{ident}"><strong>{html.escape(p.display_name)}</strong>'
            f" &mdash; {html.escape(p.describe())}</label>"
        )
        if p.description:
            parts.append(f'<div class="form-text">{html.escape(p.description)}</div>')
        if p.gpus and gpus_free is not None:
            parts.append(f'<div class="form-text">{gpus_free[0]} of {gpus_free[1]} GPUs free now.</div>')
        selected = previous.get("image") if p.slug == chosen else None
        parts.append(_image_select(p, image_lists[p.slug], selected))
        parts.append("</div>")
    parts.append("</div>")
    return "\n".join(parts)
