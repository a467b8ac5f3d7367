"""The one applier: check a clone against a recipe, integrate it, and revert it byte for byte.

Integration is all-or-nothing and writes only inside the clone. :func:`plan` reads every
file the recipe edits, applies every edit in memory and compiles the result (it never runs
upstream code); any missing or ambiguous anchor, unexpected count or syntax error stops it,
naming the file and the anchor, before anything is written. Files that are read-only, or
not owned by the clone's owner, are refused unless ``ignore_permissions`` is given.
:func:`integrate` then

1. writes the marker (:mod:`.marker`) as ``in-progress``, holding every original;
2. writes each edited file to a temporary file beside it (re-checking, through directory
   descriptors and without following links, that its folder and bytes are the ones
   planned), with the file's owner, group and permission bits; a failure here removes
   the temporary files and the marker, leaving the clone as it was;
3. renames every temporary file over its target;
4. rewrites the marker as ``done``.

A run stopped part-way leaves a marker that :func:`status` reports as interrupted;
:func:`revert` then restores every original (checking its hash), removes the temporary
files and the marker. A file edited by hand after integration is never overwritten.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

from .clonefs import Clone, FileInfo
from .marker import DONE, IN_PROGRESS, MARKER, Entry, Marker, build, check_files, parse, sha256
from .recipe import IntegrationError, Recipe, carries_tag

__all__ = ["MARKER", "FileChange", "Plan", "State", "Status", "plan", "status", "require_integrated", "has_marker",
           "integrate", "revert", "unified_diff", "sha256", "fault_hook"]

#: Called as ``fault_hook(step, path)`` at each write step (``"planned"``, ``"marker-temp"``,
#: ``"marker"``, ``"temp"``, ``"renamed"``, ``"done"``); the fault-injection tests kill the
#: process or swap a folder for a link there. ``None`` in normal use.
fault_hook: Callable[[str, str], None] | None = None


def _fault(step: str, rel: str = "") -> None:
    if fault_hook is not None:
        fault_hook(step, rel)


@dataclass(frozen=True)
class FileChange:
    """One file of a plan: its path relative to the clone and its bytes before and after."""

    path: str
    before: bytes
    after: bytes
    #: How the file was found (owner, mode, identity), for the checks at write time.
    source: FileInfo | None = field(default=None, compare=False, repr=False)


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
    INTEGRATED = "integrated"    # marker done, and every file as integration left it
    MODIFIED = "modified"        # marker present, but files were edited since
    INTERRUPTED = "interrupted"  # an integration or revert stopped part-way
    UNSUPPORTED = "unsupported"  # no marker, and the recipe does not fit


@dataclass(frozen=True)
class Status:
    """What ``dmlp integrate --check`` reports."""

    state: State
    method: str | None
    message: str
    untested: tuple[str, ...] = ()


def _clone_root(clone: str | os.PathLike) -> Path:
    root = Path(clone).expanduser()
    if not root.exists():
        raise IntegrationError(f"clone not found: {root}")
    if not root.is_dir():
        raise IntegrationError(f"{root} is a file; pass the folder of the upstream clone")
    return root.resolve()


# -- planning ----------------------------------------------------------------------------------


def plan(recipe: Recipe, clone: str | os.PathLike) -> Plan:
    """Apply ``recipe`` to the clone in memory; raise :class:`IntegrationError` listing every problem."""
    root = _clone_root(clone)
    with Clone(root) as fs:
        return _plan(recipe, fs)


def _plan(recipe: Recipe, fs: Clone) -> Plan:
    problems: list[str] = []
    changes: list[FileChange] = []
    untested: list[str] = []
    for rel in recipe.files:
        try:
            info = fs.read(rel)
        except IntegrationError as exc:
            problems.append(str(exc))
            continue
        try:
            text = info.data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{rel}: not UTF-8 text")
            continue
        if carries_tag(text):
            problems.append(f"{rel}: already carries dmlp-plugin edits but the clone has no {MARKER}; "
                            "restore the file (e.g. `git checkout -- " + rel + "`) and integrate again")
            continue
        if recipe.file_hashes.get(rel) not in (None, sha256(info.data)):
            untested.append(rel)
        for edit in recipe.edits_for(rel):
            try:
                text = edit.apply(text)
            except IntegrationError as exc:
                problems.append(str(exc))
        after = text.encode("utf-8")
        if not any(p.startswith(f"{rel}:") for p in problems):
            try:
                compile(after, str(fs.root / rel), "exec", dont_inherit=True)
            except SyntaxError as exc:
                problems.append(f"{rel}: does not compile after integration (line {exc.lineno}: {exc.msg})")
        changes.append(FileChange(rel, info.data, after, info))
    if problems:
        tested = ", ".join(c[:7] for c in recipe.commits)
        raise IntegrationError(
            f"cannot integrate {recipe.method} into {fs.root} (recipe tested on {recipe.upstream} at {tested}):\n  - "
            + "\n  - ".join(problems))
    return Plan(recipe, fs.root, tuple(changes), tuple(untested))


def unified_diff(plan_: Plan) -> str:
    """The plan as one unified diff, paths relative to the clone."""
    out: list[str] = []
    for change in plan_.changes:
        out.extend(difflib.unified_diff(
            change.before.decode("utf-8").splitlines(keepends=True),
            change.after.decode("utf-8").splitlines(keepends=True),
            fromfile=f"a/{change.path}", tofile=f"b/{change.path}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _check_permissions(fs: Clone, files: list[tuple[str, FileInfo]], ignore: bool) -> None:
    """Refuse files (and their folders) that are read-only or not the clone owner's."""
    if ignore:
        return
    problems = []
    for rel, info in files:
        if not info.mode & stat.S_IWUSR:
            problems.append(f"{rel} is read-only (mode {info.mode:03o})")
        if info.uid != fs.uid:
            problems.append(f"{rel} is owned by uid {info.uid}, the clone by uid {fs.uid}")
        if not info.folder_mode & stat.S_IWUSR or info.folder_uid != fs.uid:
            problems.append(f"the folder of {rel} is read-only or not owned by the clone's owner (uid {fs.uid})")
    if problems:
        raise IntegrationError("refusing to edit files the clone's owner could not: " + "; ".join(problems)
                               + ". Pass --ignore-permissions to edit them anyway (owner, group and "
                               "permission bits are kept)")


# -- the marker --------------------------------------------------------------------------------


def _read_marker(fs: Clone) -> Marker | None:
    if not fs.exists(MARKER):
        return None
    return parse(fs.read(MARKER).data)


def _write_marker(fs: Clone, data: bytes) -> None:
    """Replace the marker whole (a temporary file renamed over it), owned as the clone is."""
    umask = os.umask(0)
    os.umask(umask)
    tmp = fs.write_temp(fs.fd, MARKER, data, mode=0o666 & ~umask, uid=fs.uid, gid=fs.gid)
    _fault("marker-temp")
    os.rename(tmp, MARKER, src_dir_fd=fs.fd, dst_dir_fd=fs.fd)
    os.fsync(fs.fd)


def _classify(fs: Clone, entries: dict[str, Entry]) -> dict[str, str]:
    """Each recorded file as ``original``, ``integrated`` or ``edited`` (missing, a link, other bytes)."""
    kinds = {}
    for rel, entry in entries.items():
        try:
            digest = sha256(fs.read(rel).data)
        except IntegrationError:
            digest = None
        kinds[rel] = ("original" if digest == entry.original_sha256 else
                      "integrated" if digest == entry.integrated_sha256 else "edited")
    return kinds


def _marker_status(fs: Clone, recipe: Recipe, marker: Marker) -> Status:
    method = marker.method
    if method != recipe.method:
        return Status(State.MODIFIED, method, f"integrated for {method!r}, not {recipe.method!r}")
    kinds = _classify(fs, check_files(marker, recipe))
    edited = [rel for rel, kind in kinds.items() if kind == "edited"]
    if edited:
        return Status(State.MODIFIED, method, "integrated, but edited since: " + ", ".join(edited))
    integrated = sum(kind == "integrated" for kind in kinds.values())
    if marker.state != DONE or integrated < len(kinds):
        return Status(State.INTERRUPTED, method,
                      f"interrupted: an integration or revert stopped part-way ({integrated} of {len(kinds)} "
                      f"file(s) integrated); run `dmlp integrate {method} {fs.root} --revert`")
    return Status(State.INTEGRATED, method, f"integrated (recipe version {marker.recipe_version})")


# -- writing -----------------------------------------------------------------------------------


def _replace_all(fs: Clone, items: list[tuple[str, bytes, bytes, FileInfo]], on_failure: Callable[[], None]) -> None:
    """Put each ``(path, expected bytes, new bytes, as found)`` in place: every temporary file
    first, then every rename, so a failure before the renames changes nothing."""
    staged: list[tuple[int, str, str, str]] = []  # (folder fd, temporary name, name, path)
    folders: list[int] = []
    try:
        for rel, expected, new, found in items:
            with fs.folder(rel) as (dfd, name):
                folders.append(os.dup(dfd))
            now = fs.read_at(folders[-1], name, rel)  # re-checked at write time, in the folder written
            if now.folder != found.folder or now.ident != found.ident or now.data != expected:
                raise IntegrationError(f"{rel} (or its folder) changed while dmlp integrate ran; nothing was "
                                       "changed, run it again")
            tmp = fs.write_temp(folders[-1], name, new, mode=found.mode, uid=found.uid, gid=found.gid)
            staged.append((folders[-1], tmp, name, rel))
            _fault("temp", rel)
    except BaseException as exc:
        for dfd, tmp, _, _ in staged:
            _unlink_at(dfd, tmp)
        _close(folders)
        on_failure()
        if isinstance(exc, OSError) and exc.errno is not None:
            raise IntegrationError(f"cannot write {rel}: {os.strerror(exc.errno).lower()}; nothing was "
                                   "changed") from exc
        raise
    try:
        for dfd, tmp, name, rel in staged:
            try:
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError as exc:
                raise IntegrationError(
                    f"cannot put {rel} in place: {os.strerror(exc.errno or 0).lower()}; the clone is partly "
                    "changed: --check reports it as interrupted, and --revert restores it") from exc
            _fault("renamed", rel)
        for dfd in folders:
            os.fsync(dfd)
    finally:
        _close(folders)


def _unlink_at(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


# -- the three operations ----------------------------------------------------------------------


def status(recipe: Recipe, clone: str | os.PathLike) -> Status:
    """Whether ``clone`` can be integrated (or already is), and why not. Reads only the
    recipe's files and the marker, inside the clone."""
    root = _clone_root(clone)
    with Clone(root) as fs:
        marker = _read_marker(fs)
        if marker is not None:
            return _marker_status(fs, recipe, marker)
        try:
            p = _plan(recipe, fs)
        except IntegrationError as exc:
            return Status(State.UNSUPPORTED, None, str(exc))
    tested = ", ".join(c[:7] for c in recipe.commits)
    if p.untested:
        return Status(State.PRISTINE, None,
                      f"supported: every anchor found, but {', '.join(p.untested)} differ(s) from the tested "
                      f"commit {tested}; integration should work, check the diff with --dry-run", p.untested)
    return Status(State.PRISTINE, None, f"supported: files match the tested commit {tested}")


def has_marker(clone: str | os.PathLike) -> bool:
    """Whether ``clone`` holds a marker (a link in its place counts: :func:`status` refuses it)."""
    marker = Path(clone) / MARKER
    return marker.is_file() or marker.is_symlink()


def require_integrated(recipe: Recipe, clone: str | os.PathLike) -> Status:
    """The status of a clone that must be cleanly integrated for ``recipe`` before upstream
    code runs in it: the marker ``done`` and every edited file as integration left it.

    Raises
    ------
    IntegrationError
        One line with the state and what to do: pristine, edited since, interrupted, or
        integrated for another method; a forged marker names its bad field.
    """
    st = status(recipe, clone)
    if st.state is not State.INTEGRATED:
        raise IntegrationError(f"{_clone_root(clone)} is not cleanly integrated for {recipe.method}: {st.message}")
    return st


def integrate(recipe: Recipe, clone: str | os.PathLike, *, version: str = "",
              ignore_permissions: bool = False) -> tuple[Plan | None, str]:
    """Integrate ``recipe`` into ``clone``. Idempotent.

    Returns ``(plan, message)``; ``plan`` is ``None`` when the clone was already integrated.
    ``ignore_permissions`` edits files that are read-only or owned by someone other than the
    clone's owner (their owner, group and permission bits are kept either way).
    """
    root = _clone_root(clone)
    with Clone(root) as fs:
        marker = _read_marker(fs)
        if marker is not None:
            return None, _already(fs, recipe, marker)
        p = _plan(recipe, fs)
        _check_permissions(fs, [(c.path, c.source) for c in p.changes], ignore_permissions)
        fs.remove_temps([*recipe.files, MARKER])  # leftovers of a run stopped before its marker
        _fault("planned")
        changes = [(c.path, c.before, c.after) for c in p.changes]
        _write_marker(fs, build(recipe, version, changes, IN_PROGRESS))
        _fault("marker")
        _replace_all(fs, [(c.path, c.before, c.after, c.source) for c in p.changes],
                     on_failure=lambda: fs.unlink(MARKER))
        _write_marker(fs, build(recipe, version, changes, DONE))
        _fault("done")
    return p, f"integrated {recipe.method} into {root}: {len(p.changes)} file(s), {len(recipe.edits)} edit(s)"


def _already(fs: Clone, recipe: Recipe, marker: Marker) -> str:
    """The message for a clone that has a marker, or the error when it is not cleanly integrated."""
    st = _marker_status(fs, recipe, marker)
    if st.state is State.INTEGRATED:
        if marker.recipe_version != recipe.version:
            raise IntegrationError(
                f"{fs.root} was integrated by recipe version {marker.recipe_version}, this dmlp-plugin has "
                f"version {recipe.version}; run --revert, then integrate again")
        return f"{recipe.method} is already integrated in {fs.root}; nothing to do"
    if st.state is State.INTERRUPTED:
        raise IntegrationError(st.message)
    if marker.method != recipe.method:
        raise IntegrationError(f"{fs.root} is integrated for {marker.method!r}; "
                               f"run `dmlp integrate {marker.method} {fs.root} --revert` first")
    edited = [rel for rel, kind in _classify(fs, check_files(marker, recipe)).items() if kind == "edited"]
    raise IntegrationError(
        f"{fs.root} was integrated, but {', '.join(edited)} changed since; dmlp integrate does not "
        f"recognise those edits. Revert them (or restore with git and delete {MARKER}) and integrate again")


def revert(recipe: Recipe, clone: str | os.PathLike, *, ignore_permissions: bool = False) -> list[str]:
    """Restore every file integration changed, byte for byte, and remove the marker.

    Only files ``recipe`` edits are restored, each with its own owner and permission bits,
    and only from originals whose hash the marker records. Refuses, naming the files, if
    any was edited after integration, and if the clone was integrated for another method.
    Also finishes an interrupted integration or revert, removing its temporary files.
    Returns the restored paths.
    """
    root = _clone_root(clone)
    with Clone(root) as fs:
        marker = _read_marker(fs)
        if marker is None:
            fs.remove_temps([*recipe.files, MARKER])
            raise IntegrationError(f"{root} is not integrated (no {MARKER})")
        if marker.method != recipe.method:
            raise IntegrationError(f"{root} is integrated for {marker.method!r}, not {recipe.method!r}; "
                                   f"run `dmlp integrate {marker.method} {root} --revert`")
        items = []
        for rel, entry in check_files(marker, recipe).items():
            found = fs.read(rel)
            digest = sha256(found.data)
            if digest == entry.original_sha256:
                continue  # never written, or already restored by an interrupted revert
            if digest != entry.integrated_sha256:
                raise IntegrationError(
                    f"{rel} changed after integration; revert would lose those edits. Restore it yourself "
                    f"(e.g. `git checkout -- {rel}`), then run --revert again")
            items.append((rel, found.data, entry.original, found))
        _check_permissions(fs, [(rel, found) for rel, _, _, found in items], ignore_permissions)
        _fault("planned")
        _replace_all(fs, items, on_failure=lambda: None)
        fs.unlink(MARKER)
        fs.remove_temps([*recipe.files, MARKER])
        _fault("done")
    return [rel for rel, *_ in items]
