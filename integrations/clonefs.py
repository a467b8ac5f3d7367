"""The files of an upstream clone, reached through directory descriptors and never through a link.

Checking a path and then opening it by name leaves a window in which a folder on the way
can be swapped for a link to somewhere else. As CPython's ``shutil.rmtree`` does, every
access here starts from a descriptor of the clone's root and opens one component at a time
with ``O_NOFOLLOW`` (``dir_fd=``), so whatever happens meanwhile, a file is read or written
only in a folder that was reached inside the clone. Writes go to a temporary file beside
their target (``.NAME.dmlp-tmp``), created exclusively, given the target's owner and plain
permission bits, synced, and only then renamed over it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .recipe import IntegrationError

__all__ = ["Clone", "FileInfo", "TEMP_SUFFIX", "temp_name", "check_relpath"]

#: Suffix of the temporary file written beside each target.
TEMP_SUFFIX = ".dmlp-tmp"
#: Larger files are not source files of a training script; reading stops there.
MAX_FILE_BYTES = 64 << 20

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
# O_NONBLOCK: opening a FIFO planted under a recipe's file name must not hang.
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
# Decided once, at import: what the platform offers does not change.
_SUPPORTED = bool(os.supports_dir_fd >= {os.open, os.stat, os.unlink, os.rename} and _NOFOLLOW)


def temp_name(name: str) -> str:
    """The temporary file written beside ``name`` (a file name, not a path)."""
    return f".{name}{TEMP_SUFFIX}"


def check_relpath(rel: str) -> tuple[str, ...]:
    """The components of ``rel``, a path relative to the clone; refuses anything that could leave it."""
    parts = tuple(str(rel).split("/"))
    if not rel or "\x00" in rel or any(p in ("", ".", "..") for p in parts) or os.sep != "/" and os.sep in rel:
        raise IntegrationError(f"{rel!r} is not a plain path inside the clone")
    return parts


@dataclass(frozen=True)
class FileInfo:
    """One regular file of the clone as read: its bytes, owner, permission bits and identity."""

    data: bytes
    mode: int  # permission bits only: never setuid, setgid or sticky
    uid: int
    gid: int
    ident: tuple[int, int]  # (st_dev, st_ino) of the file
    folder: tuple[int, int]  # ... and of the folder it was found in
    folder_mode: int
    folder_uid: int


class Clone:
    """An open clone: a descriptor of its root, and file operations relative to it.

    Use as a context manager. ``uid``/``gid`` are the root folder's owner.
    """

    def __init__(self, root: Path) -> None:
        if not _SUPPORTED:
            raise IntegrationError("dmlp integrate needs a POSIX system (directory descriptors and O_NOFOLLOW)")
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
        info = os.fstat(self.fd)
        self.uid, self.gid, self.mode = info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    def __enter__(self) -> "Clone":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    # -- folders -------------------------------------------------------------------------------

    def _open_folder(self, parts: tuple[str, ...]) -> int:
        fd = os.dup(self.fd)
        for i, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise self._path_error("/".join(parts[:i + 1]), exc, folder=True) from None
            finally:
                os.close(fd)
            fd = child
        return fd

    @contextlib.contextmanager
    def folder(self, rel: str) -> Iterator[tuple[int, str]]:
        """``(descriptor of rel's folder, rel's file name)``, the folder reached without links."""
        parts = check_relpath(rel)
        fd = self._open_folder(parts[:-1])
        try:
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def _path_error(self, where: str, exc: OSError, *, folder: bool = False) -> IntegrationError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            kind = "a folder" if folder else "a file"
            return IntegrationError(f"{where} is a symbolic link or not {kind}; dmlp integrate never follows links")
        if exc.errno == errno.ENOENT:
            return IntegrationError(f"{where} not found in {self.root}; is this a clone of the right repository?")
        return IntegrationError(f"cannot open {where} in {self.root}: {os.strerror(exc.errno or 0).lower()}")

    # -- reading -------------------------------------------------------------------------------

    def read(self, rel: str) -> FileInfo:
        """Read the regular file ``rel``; a link, a folder or a device is refused."""
        with self.folder(rel) as (dfd, name):
            return self.read_at(dfd, name, rel)

    def read_at(self, dfd: int, name: str, rel: str) -> FileInfo:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except OSError as exc:
            raise self._path_error(rel, exc) from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise IntegrationError(f"{rel} is not a regular file")
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise IntegrationError(f"{rel} is larger than {MAX_FILE_BYTES >> 20} MiB; not a source file")
        folder = os.fstat(dfd)
        return FileInfo(data, stat.S_IMODE(info.st_mode) & 0o777, info.st_uid, info.st_gid,
                        (info.st_dev, info.st_ino), (folder.st_dev, folder.st_ino),
                        stat.S_IMODE(folder.st_mode), folder.st_uid)

    def exists(self, rel: str) -> bool:
        """Whether anything (a link included) is at ``rel``; a folder on the way that is a link
        counts as nothing there."""
        try:
            with self.folder(rel) as (dfd, name):
                os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (IntegrationError, FileNotFoundError):
            return False
        return True

    # -- writing -------------------------------------------------------------------------------

    def write_temp(self, dfd: int, name: str, data: bytes, *, mode: int, uid: int, gid: int) -> str:
        """Write ``data`` to ``name``'s temporary file in folder ``dfd``, owned by ``uid:gid``
        with permission bits ``mode`` (setuid, setgid and sticky are dropped), and sync it."""
        tmp = temp_name(name)
        unlink_quietly(dfd, tmp)  # a leftover of an interrupted run (the name is ours)
        fd = os.open(tmp, _CREATE_FLAGS, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            info = os.fstat(fd)
            if (info.st_uid, info.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)  # before chmod: chown may clear mode bits
            os.fchmod(fd, mode & 0o777)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            unlink_quietly(dfd, tmp)
            raise
        os.close(fd)
        return tmp

    def unlink(self, rel: str) -> bool:
        """Remove ``rel`` (a link itself, never its target); whether there was one."""
        try:
            with self.folder(rel) as (dfd, name):
                return unlink_quietly(dfd, name)
        except IntegrationError:
            return False

    def remove_temps(self, rels: list[str]) -> list[str]:
        """Remove the temporary files an interrupted run left beside ``rels``; returns them."""
        removed = []
        for rel in rels:
            parts = check_relpath(rel)
            tmp = "/".join((*parts[:-1], temp_name(parts[-1])))
            if self.unlink(tmp):
                removed.append(tmp)
        return removed


def unlink_quietly(dfd: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        return False
    return True
