"""A resumable results store: one JSON file per finished cell of a table.

Layout: ``ROOT/<table>/<cell id>.json``. A cell id is readable settings plus a short hash
of *every* setting that determines the result (the full config, seed, protocol), e.g.
``sym50_paper_ipc-eac_t1000_s0_3fa2b9c1``: a rerun skips a cell whose file exists, and a
change of any setting (a new default config, say) gives a new id instead of reusing a
stale number. Files are written atomically, so an interrupted run leaves only whole
cells behind and simply continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..io import atomic_write

__all__ = ["SCHEMA_VERSION", "ResultStore", "settings_hash", "make_cell_id"]

SCHEMA_VERSION = 1
_SAFE = re.compile(r"^[A-Za-z0-9._+-]+$")


def _canonical(value: Any) -> Any:
    """JSON-ready form with floats rounded in their repr, so equal settings hash equally."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


def settings_hash(settings: dict[str, Any], length: int = 8) -> str:
    """A short, stable hex digest of ``settings`` (key order does not matter)."""
    text = json.dumps(_canonical(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def make_cell_id(key: str, settings: dict[str, Any]) -> str:
    """``<key>_<hash of settings>``; ``key`` is the readable part (letters, digits, ``._+-``)."""
    if not _SAFE.match(key):
        raise InputError(f"cell key {key!r} may hold only letters, digits and . _ + -")
    return f"{key}_{settings_hash(settings)}"


def record_header(cell: Any, protocol: Any) -> dict[str, Any]:
    """The fields every cell record starts with (a linear-table or an upstream cell)."""
    return {
        "schema": SCHEMA_VERSION,
        "table": cell.table,
        "cell_id": cell.cell_id(protocol),
        "key": ("smoke_" if protocol.smoke else "") + cell.key,
        "smoke": protocol.smoke,
        "panel": cell.panel,
        "series": cell.series,
    }


class ResultStore:
    """Finished cells of reproduction tables, one JSON file each, under ``root``.

    Parameters
    ----------
    root : path
        The results folder (``RESULTS_DIR``); created on the first save.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        #: Files that could not be read by :meth:`records` (path, reason).
        self.unreadable: list[tuple[Path, str]] = []

    def path(self, table: str, cell_id: str) -> Path:
        for part, what in ((table, "table"), (cell_id, "cell id")):
            if not _SAFE.match(part):
                raise InputError(f"{what} {part!r} may hold only letters, digits and . _ + -")
        return self.root / table / f"{cell_id}.json"

    def load(self, table: str, cell_id: str) -> dict[str, Any] | None:
        """The stored record of a cell, or ``None`` when it is absent or unreadable (a
        cell that cannot be read is run again rather than trusted)."""
        path = self.path(table, cell_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.unreadable.append((path, str(exc)))
            return None
        return record if _valid(record) else None

    def pending(self, table: str, cell_ids: list[str], *, force: bool = False) -> tuple[list[int], dict[str, dict[str, Any]]]:
        """Which cells still need running (their positions in ``cell_ids``) and the stored
        records of the others, by cell id (``force``: every cell runs again)."""
        todo, found = [], {}
        for k, cell_id in enumerate(cell_ids):
            record = None if force else self.load(table, cell_id)
            if record is None:
                todo.append(k)
            else:
                found[cell_id] = record
        return todo, found

    def save(self, record: dict[str, Any]) -> Path:
        """Write one finished cell (needs ``table`` and ``cell_id``) atomically."""
        if not _valid(record):
            raise InputError("a record needs 'table', 'cell_id' and 'metrics'")
        path = self.path(record["table"], record["cell_id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, indent=1, allow_nan=False, default=_json_default)
        with atomic_write(path, "w") as fh:
            fh.write(text + "\n")
        return path

    def tables(self) -> list[str]:
        """Tables with at least one stored cell, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.json")))

    def records(self, table: str | None = None) -> list[dict[str, Any]]:
        """Every readable record (of ``table``, or of all tables), sorted by table and id."""
        return list(self._iter(table))

    def _iter(self, table: str | None) -> Iterator[dict[str, Any]]:
        for name in ([table] if table is not None else self.tables()):
            folder = self.root / name
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError) as exc:
                    self.unreadable.append((path, str(exc)))
                    continue
                if _valid(record):
                    yield record
                else:
                    self.unreadable.append((path, "not a cell record"))


def _valid(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("table"), str)
            and isinstance(record.get("cell_id"), str) and isinstance(record.get("metrics"), dict))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays reach the store from metrics; JSON takes their Python form.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a results file")
