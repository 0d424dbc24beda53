"""Pure decisions: facts in, decisions out, no I/O (safety, limits, profiles, GPUs, containers)."""
