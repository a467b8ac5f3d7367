"""Memory and file sizes: as users write them ("8GB", "512MiB"), as messages show them, what
this process may still allocate, and how large the files dmlp-plugin writes can get."""

from __future__ import annotations

import os
import re
from typing import Any

from .argument_names import shown
from .errors import ConfigError

__all__ = ["parse_memory", "format_bytes", "available_memory", "result_file_bytes", "export_file_bytes"]

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


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
        return int(text)
    except (OSError, ValueError):  # absent, or "max" (no limit)
        return None


def _cgroup_room() -> int | None:
    # A container's limit, not the host's free memory, is what kills a process that overreads.
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            return max(0, limit - usage)
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping or being killed: the smaller
    of the host's available memory and the room left under a container's limit. ``None``
    when neither can be read (then callers skip memory checks)."""
    known = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    return min(known) if known else None


def result_file_bytes(n: int, num_classes: int) -> int:
    """An upper bound on the size of a saved :class:`~dmlp_plugin.result.PurifyResult` of ``n``
    rows and ``num_classes`` classes: its arrays uncompressed (compression only shrinks them),
    plus room for the metadata (config, history)."""
    per_row = 4 * num_classes + 8 + 8 + 4 + 1 + 4 + 8 + 8  # soft, labels, given, conf., changed, quality, issues, trusted
    return n * per_row + (1 << 20)


def export_file_bytes(n: int, num_classes: int, fmt: str) -> int:
    """An upper bound on the size of ``n`` labels exported as ``fmt`` (see
    :func:`dmlp_plugin.io.export_labels`)."""
    if fmt == "soft-npy":
        return 4 * n * num_classes + 256
    if fmt == "dividemix":  # a JSON list: the digits of each label and ", "
        return n * (len(str(max(num_classes - 1, 0))) + 2) + 256
    return 8 * n + 256
