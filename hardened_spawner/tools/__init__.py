"""Admin tools: the ``hardened-spawner`` command, configuration checks, the docs reference."""
