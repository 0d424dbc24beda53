"""Byte sizes as Docker writes them ("512m", "2G") and as people read them."""

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:ib|i|b)?\s*$", re.IGNORECASE)


def parse_bytes(value):
    """Return a size in bytes from an int or a string like ``"2G"``, ``"512Mi"``.

    Raises ValueError with the offending value for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 512M, 4G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_bytes(size):
    """``17179869184`` -> ``"16 GiB"``; one decimal only where it matters."""
    for unit, name in ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if size >= unit:
            value = size / unit
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {name}"
    return f"{size} B"
