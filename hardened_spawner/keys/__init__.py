"""Users' SSH public keys: stores, validation, delivery into containers."""
