"""The spawners: the hardened spawn pipeline on one Docker host and on Docker Swarm."""

from .docker import HardenedDockerSpawner
from .swarm import HardenedSwarmSpawner

__all__ = ["HardenedDockerSpawner", "HardenedSwarmSpawner"]
