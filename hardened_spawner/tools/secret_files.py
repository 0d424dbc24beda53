"""Secrets as files, checked before anything starts (deploy/, docs/deployment.md).

A deployment keeps each secret in a file of its own under one directory
(``deploy/secrets/``, mounted read-only at ``/run/hs-secrets``), never in an
environment variable (``docker inspect`` shows those to anyone who can reach
the daemon, and every child process inherits them). Each file must exist, be a
regular file (not a symlink), be owned by the expected uid (root), be readable
by its owner only (0600 or 0400) and not be empty. ``check()`` lists every
problem with its fix; ``read()`` reads one secret after the same checks; the
``hardened-spawner check-secrets`` command runs them all at start, so a
deployment with one bad file starts nothing.
"""

import os
import stat

# path under the secrets directory -> (what it is, how to make it)
SECRETS = {
    "hub/cookie_secret": ("JupyterHub's cookie secret", "openssl rand -hex 32 > {path}"),
    "hub/crypt_key": ("the key that encrypts users' auth_state (their tokens)", "openssl rand -hex 32 > {path}"),
    "hub/oidc_client_secret": ("the client secret your identity provider issued for this hub",
                               "paste it from your identity provider into {path}"),
    "hub/ssh_gateway_host_key": ("the SSH gateway's host key", "ssh-keygen -q -t ed25519 -N '' -C gateway -f {path}"),
    "db/postgres_password": ("the hub database's password", "openssl rand -hex 24 > {path}"),
    "nginx/tls.key": ("the private key of the hub's TLS certificate", "copy your certificate's key to {path}"),
}


class SecretError(RuntimeError):
    """A secret file that must not be used: its problems, each with its fix."""


def problems(root, names=None, owner=0):
    """``[str]``: what is wrong with the secret files ``names`` (default: all of SECRETS) under ``root``."""
    found = []
    for name in names or SECRETS:
        path = os.path.join(root, name)
        what, make = SECRETS.get(name, ("a secret", "create {path}"))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            found.append(f"{path} ({what}) is missing: {make.format(path=path)}; then chown {owner} {path}; "
                         f"chmod 600 {path}")
            continue
        if not stat.S_ISREG(st.st_mode):
            found.append(f"{path} ({what}) is not a regular file (a symlink or directory); put the secret itself there")
            continue
        if st.st_uid != owner:
            found.append(f"{path} ({what}) is owned by uid {st.st_uid}, not {owner}: chown {owner} {path}")
        if st.st_mode & 0o077:
            found.append(f"{path} ({what}) has mode {stat.S_IMODE(st.st_mode):04o}, so others may read it: "
                         f"chmod 600 {path}")
        if st.st_size == 0:
            found.append(f"{path} ({what}) is empty: {make.format(path=path)}")
    return found


def read(root, name, owner=0):
    """The secret ``name`` under ``root``, stripped; :class:`SecretError` when its file is not safe."""
    bad = problems(root, [name], owner)
    if bad:
        raise SecretError("; ".join(bad))
    with open(os.path.join(root, name)) as f:
        return f.read().strip()


def check_command(args):
    """``hardened-spawner check-secrets``: exit 0 when every file is safe, 1 (listing each problem) otherwise."""
    import sys

    bad = problems(args.dir, args.names or None, args.owner)
    for line in bad:
        print(f"check-secrets: {line}", file=sys.stderr)
    if bad:
        print(f"check-secrets: {len(bad)} problem(s) with the secret files under {args.dir}; nothing was started "
              "(docs/deployment.md, 'Secrets')", file=sys.stderr)
        return 1
    print(f"check-secrets: {len(args.names or SECRETS)} secret files under {args.dir} are safe")
    return 0
