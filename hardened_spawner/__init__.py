"""hardened_spawner: a security-hardened DockerSpawner for JupyterHub."""

__version__ = "0.1.0"
