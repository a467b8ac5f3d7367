"""Memory sizes as users write them ("8GB", "512MiB") and as messages show them."""

from __future__ import annotations

import re
from typing import Any

from .argument_names import shown
from .errors import ConfigError

__all__ = ["parse_memory", "format_bytes"]

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_memory(value: Any, what: str = "max_memory") -> int | None:
    """Bytes from ``None``, a number of bytes, or a string such as ``"8GB"``, ``"512MiB"``."""
    if value is None:
        return None
    what = shown(what)
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a size such as '8GB' or a number of bytes, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
        if not match or match.group(2).upper() not in _UNITS:
            raise ConfigError(f"{what} must be a size such as '8GB', '512MiB' or a number of bytes, "
                              f"got {value!r}")
        number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}")
    return size


def format_bytes(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"
