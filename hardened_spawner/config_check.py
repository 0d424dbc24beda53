"""Compatibility alias: ``from hardened_spawner.config_check import enforce_config`` in hub configs."""

from .tools.config_check import enforce_config, load_config_file, problems_in

__all__ = ["enforce_config", "load_config_file", "problems_in"]
