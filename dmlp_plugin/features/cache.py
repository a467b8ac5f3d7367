"""An on-disk cache of extracted features, keyed by everything that determines them.

The key hashes the dataset fingerprint, the backbone (name, or a hash of a module's
weights), the checkpoint file's hash, the transform's repr and the views. Each entry is
one ``.npy`` file per view (memory-mapped on a hit, so a rerun returns at once) plus a
small JSON record of what went into the key. Files are written atomically, the record
last, so a crash mid-write leaves a miss, never a truncated hit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_write

__all__ = ["FeatureCache", "default_cache_dir", "cache_key"]

CACHE_ENV = "DMLP_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$DMLP_CACHE_DIR/features`` if set, else ``~/.cache/dmlp/features``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "dmlp") / "features"


def cache_key(parts: dict[str, Any]) -> str:
    """A 24-hex-digit sha256 of ``parts`` (JSON, sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FeatureCache:
    """Feature arrays stored under a key, one ``.npy`` per view.

    Parameters
    ----------
    root : path, optional
        Folder of the cache; :func:`default_cache_dir` by default.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def _paths(self, key: str, views: Sequence[str]) -> tuple[Path, list[Path]]:
        return self.root / f"{key}.json", [self.root / f"{key}.{view}.npy" for view in views]

    def get(self, key: str, views: Sequence[str]) -> list[np.ndarray] | None:
        """The arrays stored under ``key`` (memory-mapped, read-only), or None on a miss."""
        record, arrays = self._paths(key, views)
        if not record.is_file() or not all(p.is_file() for p in arrays):
            return None
        try:
            return [np.load(p, mmap_mode="r", allow_pickle=False) for p in arrays]
        except (OSError, ValueError):
            # a damaged entry is a miss; the caller recomputes and overwrites it
            return None

    def put(self, key: str, views: Sequence[str], arrays: Sequence[np.ndarray], parts: dict[str, Any]) -> None:
        """Store ``arrays`` (one per view) under ``key`` with ``parts`` as its record."""
        record, paths = self._paths(key, views)
        for path, array in zip(paths, arrays):
            with atomic_write(path) as fh:
                np.save(fh, np.ascontiguousarray(array))
        with atomic_write(record, "w") as fh:
            json.dump({"key": key, **parts, "shapes": [list(a.shape) for a in arrays]}, fh,
                      indent=1, sort_keys=True, default=str)
