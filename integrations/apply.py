"""The one applier: check a clone against a recipe, integrate it, and revert it byte for byte.

Integration is all-or-nothing. :func:`plan` reads every file the recipe edits, applies
every edit in memory and compiles the result (it never runs upstream code); any missing
or ambiguous anchor, unexpected count or syntax error stops it, naming the file and the
anchor, before anything is written. :func:`integrate` then writes a marker file,
``.dmlp-integration.json`` at the clone's root, holding each edited file's original bytes
and its sha256 before and after, and only then rewrites the files (each atomically).
:func:`revert` restores the original bytes and checks their hashes, as pip's ``RECORD``
makes uninstalls exact. A file edited by hand after integration is never overwritten.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import stat
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from dmlp_plugin.io import atomic_write

from .recipe import IntegrationError, Recipe, carries_tag

__all__ = ["MARKER", "FileChange", "Plan", "State", "Status", "plan", "status", "integrate", "revert",
           "unified_diff", "sha256"]

#: The marker file, at the root of an integrated clone.
MARKER = ".dmlp-integration.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileChange:
    """One file of a plan: its path relative to the clone and its bytes before and after."""

    path: str
    before: bytes
    after: bytes


@dataclass(frozen=True)
class Plan:
    """Every change integration would make; nothing has been written."""

    recipe: Recipe
    clone: Path
    changes: tuple[FileChange, ...]
    #: Files whose bytes differ from the tested commit (anchors still all matched).
    untested: tuple[str, ...]


class State(str, Enum):
    PRISTINE = "pristine"        # no marker; every anchor found
    INTEGRATED = "integrated"    # marker present and every file as integration left it
    MODIFIED = "modified"        # marker present, but files were edited since
    UNSUPPORTED = "unsupported"  # no marker, and the recipe does not fit


@dataclass(frozen=True)
class Status:
    """What ``dmlp integrate --check`` reports."""

    state: State
    method: str | None
    message: str
    untested: tuple[str, ...] = ()


# -- reading the clone safely ------------------------------------------------------------------


def _clone_root(clone: str | os.PathLike) -> Path:
    root = Path(clone).expanduser()
    if not root.exists():
        raise IntegrationError(f"clone not found: {root}")
    if not root.is_dir():
        raise IntegrationError(f"{root} is a file; pass the folder of the upstream clone")
    return root.resolve()


def _inside(root: Path, rel: str) -> Path:
    """``root/rel``, refusing links and anything that resolves outside ``root``."""
    path = root / rel
    probe = root
    for part in Path(rel).parts:
        probe = probe / part
        if probe.is_symlink():
            raise IntegrationError(f"{rel}: {probe.relative_to(root)} is a symbolic link; "
                                   "dmlp integrate never follows links")
    resolved = path.resolve()
    if root not in resolved.parents:
        raise IntegrationError(f"{rel} resolves outside the clone ({resolved})")
    if not path.is_file():
        raise IntegrationError(f"{rel} not found in {root}; is this a clone of the right repository?")
    return path


# -- planning ----------------------------------------------------------------------------------


def plan(recipe: Recipe, clone: str | os.PathLike) -> Plan:
    """Apply ``recipe`` to the clone in memory; raise :class:`IntegrationError` listing every problem."""
    root = _clone_root(clone)
    problems: list[str] = []
    changes: list[FileChange] = []
    untested: list[str] = []
    for rel in recipe.files:
        try:
            path = _inside(root, rel)
        except IntegrationError as exc:
            problems.append(str(exc))
            continue
        before = path.read_bytes()
        try:
            text = before.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{rel}: not UTF-8 text")
            continue
        if carries_tag(text):
            problems.append(f"{rel}: already carries dmlp-plugin edits but the clone has no {MARKER}; "
                            "restore the file (e.g. `git checkout -- " + rel + "`) and integrate again")
            continue
        if recipe.file_hashes.get(rel) not in (None, sha256(before)):
            untested.append(rel)
        for edit in recipe.edits_for(rel):
            try:
                text = edit.apply(text)
            except IntegrationError as exc:
                problems.append(str(exc))
        after = text.encode("utf-8")
        if not any(p.startswith(f"{rel}:") for p in problems):
            try:
                compile(after, str(path), "exec", dont_inherit=True)
            except SyntaxError as exc:
                problems.append(f"{rel}: does not compile after integration (line {exc.lineno}: {exc.msg})")
        changes.append(FileChange(rel, before, after))
    if problems:
        tested = ", ".join(c[:7] for c in recipe.commits)
        raise IntegrationError(
            f"cannot integrate {recipe.method} into {root} (recipe tested on {recipe.upstream} at {tested}):\n  - "
            + "\n  - ".join(problems))
    return Plan(recipe, root, tuple(changes), tuple(untested))


def unified_diff(plan_: Plan) -> str:
    """The plan as one unified diff, paths relative to the clone."""
    out: list[str] = []
    for change in plan_.changes:
        out.extend(difflib.unified_diff(
            change.before.decode("utf-8").splitlines(keepends=True),
            change.after.decode("utf-8").splitlines(keepends=True),
            fromfile=f"a/{change.path}", tofile=f"b/{change.path}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


# -- the marker --------------------------------------------------------------------------------


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def _read_marker(root: Path) -> dict | None:
    path = root / MARKER
    if path.is_symlink():
        raise IntegrationError(f"{MARKER} is a symbolic link; refusing to read it")
    if not path.exists():
        return None
    try:
        marker = json.loads(path.read_text())
        if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
            raise ValueError("no 'files' table")
        return marker
    except (ValueError, OSError) as exc:
        raise IntegrationError(f"{path} is unreadable ({exc}); restore the clone with git and delete it") from None


def _write_bytes(path: Path, data: bytes, mode: int) -> None:
    with atomic_write(path) as fh:
        fh.write(data)
    os.chmod(path, stat.S_IMODE(mode))


# -- the three operations ----------------------------------------------------------------------


def status(recipe: Recipe, clone: str | os.PathLike) -> Status:
    """Whether ``clone`` can be integrated (or already is), and why not."""
    root = _clone_root(clone)
    marker = _read_marker(root)
    if marker is not None:
        method = marker.get("method")
        if method != recipe.method:
            return Status(State.MODIFIED, method, f"integrated for {method!r}, not {recipe.method!r}")
        changed = _changed_since(root, marker)
        if changed:
            return Status(State.MODIFIED, method, "integrated, but edited since: " + ", ".join(changed))
        return Status(State.INTEGRATED, method, f"integrated (recipe version {marker.get('recipe_version')})")
    try:
        p = plan(recipe, root)
    except IntegrationError as exc:
        return Status(State.UNSUPPORTED, None, str(exc))
    tested = ", ".join(c[:7] for c in recipe.commits)
    if p.untested:
        return Status(State.PRISTINE, None,
                      f"supported: every anchor found, but {', '.join(p.untested)} differ(s) from the tested "
                      f"commit {tested}; integration should work, check the diff with --dry-run", p.untested)
    return Status(State.PRISTINE, None, f"supported: files match the tested commit {tested}")


def _changed_since(root: Path, marker: dict) -> list[str]:
    changed = []
    for rel, entry in marker["files"].items():
        path = root / rel
        current = sha256(path.read_bytes()) if path.is_file() and not path.is_symlink() else None
        if current != entry.get("integrated_sha256"):
            changed.append(rel)
    return changed


def integrate(recipe: Recipe, clone: str | os.PathLike, *, version: str = "") -> tuple[Plan | None, str]:
    """Integrate ``recipe`` into ``clone``. Idempotent.

    Returns ``(plan, message)``; ``plan`` is ``None`` when the clone was already integrated.
    """
    root = _clone_root(clone)
    marker = _read_marker(root)
    if marker is not None:
        if marker.get("method") != recipe.method:
            raise IntegrationError(f"{root} is integrated for {marker.get('method')!r}; "
                                   f"run `dmlp integrate {marker.get('method')} {root} --revert` first")
        changed = _changed_since(root, marker)
        if changed:
            raise IntegrationError(
                f"{root} was integrated, but {', '.join(changed)} changed since; dmlp integrate does not "
                "recognise those edits. Revert them (or restore with git and delete "
                f"{MARKER}) and integrate again")
        if marker.get("recipe_version") != recipe.version:
            raise IntegrationError(
                f"{root} was integrated by recipe version {marker.get('recipe_version')}, this dmlp-plugin has "
                f"version {recipe.version}; run --revert, then integrate again")
        return None, f"{recipe.method} is already integrated in {root}; nothing to do"
    p = plan(recipe, root)
    files = {}
    for change in p.changes:
        path = root / change.path
        files[change.path] = {
            "original_sha256": sha256(change.before),
            "integrated_sha256": sha256(change.after),
            "mode": stat.S_IMODE(path.stat().st_mode),
            "original": _pack(change.before),
        }
    record = {"method": recipe.method, "recipe_version": recipe.version, "dmlp_plugin_version": version,
              "upstream": recipe.upstream, "tested_commits": list(recipe.commits),
              "edits": [edit.describe() for edit in recipe.edits], "files": files}
    # The marker goes first: if writing stops half-way, --revert still has every original.
    with atomic_write(root / MARKER, "w") as fh:
        json.dump(record, fh, indent=1)
    for change in p.changes:
        _write_bytes(root / change.path, change.after, files[change.path]["mode"])
    return p, f"integrated {recipe.method} into {root}: {len(p.changes)} file(s), {len(recipe.edits)} edit(s)"


def revert(clone: str | os.PathLike, *, method: str | None = None) -> list[str]:
    """Restore every file integration changed, byte for byte, and remove the marker.

    Refuses, naming the files, if any was edited after integration, and when ``method``
    is given and the clone was integrated for another. Returns the restored paths.
    """
    root = _clone_root(clone)
    marker = _read_marker(root)
    if marker is None:
        raise IntegrationError(f"{root} is not integrated (no {MARKER})")
    if method is not None and marker.get("method") != method:
        raise IntegrationError(f"{root} is integrated for {marker.get('method')!r}, not {method!r}; "
                               f"run `dmlp integrate {marker.get('method')} {root} --revert`")
    restore = []
    for rel, entry in marker["files"].items():
        path = _inside(root, rel)
        current = sha256(path.read_bytes())
        if current == entry["original_sha256"]:
            continue  # an integration interrupted before this file was written
        if current != entry["integrated_sha256"]:
            raise IntegrationError(
                f"{rel} changed after integration; revert would lose those edits. Restore it yourself "
                f"(e.g. `git checkout -- {rel}`), then run --revert again")
        original = _unpack(entry["original"])
        if sha256(original) != entry["original_sha256"]:
            raise IntegrationError(f"{MARKER} is corrupt: the stored original of {rel} fails its checksum")
        restore.append((path, original, entry["mode"], rel))
    for path, original, mode, _ in restore:
        _write_bytes(path, original, mode)
    (root / MARKER).unlink()
    return [rel for *_, rel in restore]
