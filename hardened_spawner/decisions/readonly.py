"""A read-only root filesystem: where the conda/pip policy files go, and whether the image can run. Pure.

With ``read_only_root`` Docker refuses ``put_archive`` into the container's
root, so the runtime conda guard's files (:mod:`..admission.guard`) are
delivered in a per-server volume mounted read-only at ``/etc/conda``
(:data:`POLICY_DIR`): ``.condarc`` there is the first file in conda's search
path, as on a writable root, and pip reads ``pip.conf`` there through
``PIP_CONFIG_FILE`` (:data:`PIP_CONFIG_FILE`), the configuration file pip
loads last, over ``/etc/pip.conf`` and the environment's ``pip.conf``, and
which makes pip skip the user's own file while it exists.

A notebook server must write its home (Jupyter's runtime directory is under
``~/.local/share/jupyter``): :func:`home_problem` says, before anything is
created, when the run-as user's home is on no writable mount.
"""

import posixpath

from .safety import env_dict

POLICY_DIR = "/etc/conda"
PIP_CONFIG_FILE = POLICY_DIR + "/pip.conf"
_CONDARC, _PIP = "etc/conda/.condarc", "etc/pip.conf"  # guard.policy_files' paths (relative to /)


def volume_files(guard_files):
    """``{name in /etc/conda: text}`` for the guard's ``{path: text}``: ``.condarc`` and ``pip.conf``
    (the same text as ``/etc/pip.conf`` and ``<prefix>/pip.conf`` on a writable root)."""
    out = {}
    if guard_files.get(_CONDARC):
        out[".condarc"] = guard_files[_CONDARC]
    if guard_files.get(_PIP):
        out["pip.conf"] = guard_files[_PIP]
    return out


def volume_environment(files):
    """The environment that points pip at the volume's ``pip.conf`` (none without one)."""
    return {"PIP_CONFIG_FILE": PIP_CONFIG_FILE} if "pip.conf" in files else {}


def passwd_home(passwd, uid):
    """The home directory of ``uid`` in the image's ``/etc/passwd`` text, or None when it has no entry."""
    for line in (passwd or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].strip().isdigit() and int(parts[2]) == uid:
            return parts[5] or "/"
    return None


def _bind_targets(binds):
    """``(destination, writable)`` of docker-py ``binds`` (a dict or a list of ``src:dst[:mode]``)."""
    if isinstance(binds, dict):
        for value in binds.values():
            if isinstance(value, dict):
                yield value.get("bind") or "", "ro" not in str(value.get("mode") or "rw").split(",")
            else:
                yield str(value), True
    else:
        for bind in binds or ():
            parts = str(bind).split(":")
            if len(parts) >= 2:
                yield parts[1], not (len(parts) > 2 and "ro" in parts[2].split(","))


def writable_mounts(host):
    """Destinations a container can write despite a read-only root, from the docker-py ``host_config``
    keyword arguments of the final request: read-write binds and mounts, and tmpfs."""
    out = [d for d, writable in _bind_targets(host.get("binds")) if writable and d]
    for m in host.get("mounts") or ():
        get = {str(k).lower(): v for k, v in dict(m).items()}.get
        if not (get("readonly") or get("read_only")) and get("target"):
            out.append(get("target"))
    tmpfs = host.get("tmpfs") or {}
    out += list(tmpfs) if isinstance(tmpfs, dict) else [str(t).split(":", 1)[0] for t in tmpfs]
    return sorted({posixpath.normpath(d) for d in out})


def _under(path, directory):
    return path == directory or directory == "/" or path.startswith(directory.rstrip("/") + "/")


def home_of(create, passwd, image_env=()):
    """The run-as user's home in the container a request creates, as Docker sets ``HOME``: the request's
    ``HOME``, else the image's (``Config.Env``), else the image's passwd entry for the uid, else ``/``
    (what Docker gives a uid without one)."""
    home = env_dict(create.get("environment")).get("HOME") or env_dict(list(image_env or ())).get("HOME")
    if not home:
        uid = str(create.get("user") or "").split(":", 1)[0]
        home = passwd_home(passwd, int(uid)) if uid.isdigit() else None
    return posixpath.normpath(home or "/")


def home_problem(image, home, writable):
    """Why a read-only root cannot run ``image`` (its user's ``home`` is on none of the ``writable``
    mount destinations), or "" when it can."""
    if any(_under(home, d) for d in writable):
        return ""
    where = ", ".join(writable) or "nothing"
    return (f"the image {image} runs its notebook user with home directory {home}, which is not on a writable "
            f"mount (writable: {where}), and the root filesystem is read-only (read_only_root): the notebook "
            f"server could not write its runtime files under {posixpath.join(home, '.local/share/jupyter')} and "
            f"would die at start. Mount the home volume at {home} (volumes = {{'jupyterhub-user-{{username}}': "
            f"{home!r}}} with notebook_dir = {home!r}), or set read_only_root = False for this hub")
