"""Writing a file atomically, and cleaning up after writers that were killed.

:func:`atomic_write` puts the content in a temporary file beside the target and renames it
over the target only once it is complete and on disk, so a reader sees the old file or the
new one, never half of one. The temporary file is named for its target, host and process
(``.NAME.dmlp-HOST-PID-XXXX.tmp``), so a later write of the same target can tell a
leftover of a killed writer from a file another live writer is still filling, and
removes the leftovers (:func:`remove_stale_temps`).

This module sits below :mod:`dmlp_plugin.io` and imports nothing of the package but its
errors, so any module (``distributed`` among them) may use it without a cycle.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from .errors import DataFileError

__all__ = ["atomic_write", "remove_stale_temps", "temp_prefix", "WRITE_ERRNOS", "fault_hook"]

#: Errors of writing that say something about the destination, not about our code: each is
#: reported as one line naming the file (:class:`~dmlp_plugin.errors.DataFileError`).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})
# Raised only by writing (never by reading), so they may be translated even when they come
# from the caller's code inside the `with` block.
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# A leftover from another host cannot be checked for a live writer; it goes after this long.
_FOREIGN_STALE_SECONDS = 24 * 3600

#: Called as ``fault_hook(step, target)`` at each step of :func:`atomic_write` (``"created"``,
#: ``"written"``, ``"synced"``, ``"replaced"``): the fault-injection tests kill the process
#: or raise there. ``None`` in normal use.
fault_hook: Callable[[str, Path], None] | None = None


def _fault(step: str, path: Path) -> None:
    if fault_hook is not None:
        fault_hook(step, path)


def _host_tag() -> str:
    # Short and file-name safe, whatever the host is called.
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(name: str) -> str:
    """The prefix every temporary file of the target ``name`` starts with."""
    return f".{name}.dmlp-"


def _is_stale(entry: os.DirEntry, prefix: str) -> bool:
    parts = entry.name[len(prefix):].split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if host != _host_tag():
        return time.time() - info.st_mtime > _FOREIGN_STALE_SECONDS
    if pid == os.getpid():
        return False  # this process may be filling it right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it.

    Only files named as :func:`atomic_write` names its temporaries for this very target
    are considered, and only those whose writer is gone. Returns what was removed.
    """
    path = Path(path)
    prefix = temp_prefix(path.name)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and _is_stale(entry, prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)  # a link is removed, never followed
                removed.append(Path(entry.path))
    return removed


# numpy's ``tofile`` reports a short write this way, without an errno (C's fwrite loses it).
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def _write_error(path: Path, exc: OSError) -> DataFileError:
    if exc.errno is None:
        return DataFileError(f"cannot write {path}: only part of it could be written ({exc}): the disk is full, "
                             "or a file-size limit was reached")
    hint = " (free some space, or write elsewhere)" if exc.errno in _SPACE_ERRNOS else ""
    return DataFileError(f"cannot write {path}: {os.strerror(exc.errno).lower()}{hint}")


def _is_write_failure(exc: BaseException, ours: bool) -> bool:
    if not isinstance(exc, OSError) or isinstance(exc, DataFileError):
        return False
    if exc.errno is None:
        return bool(_SHORT_WRITE.search(str(exc)))
    return exc.errno in _SPACE_ERRNOS or ours and exc.errno in WRITE_ERRNOS


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched. The
    parent folder is created if needed. A target that is a symbolic link is replaced by
    the new file; the link's target is never written. Leftovers of killed writers of the
    same target are removed first.

    Raises
    ------
    DataFileError
        The destination is full, over quota, read-only or not writable (one line naming
        ``path``); other errors propagate unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=f"{temp_prefix(path.name)}{_host_tag()}-{os.getpid()}-",
                                   suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise _write_error(path, exc) from exc
        raise
    ours = False  # whether an error comes from our own steps rather than the caller's body
    try:
        with os.fdopen(fd, mode) as fh:
            _fault("created", path)
            yield fh
            ours = True
            _fault("written", path)
            fh.flush()
            os.fsync(fh.fileno())
        _fault("synced", path)
        # mkstemp creates 0600; give the file the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        _fault("replaced", path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_write_failure(exc, ours):
            raise _write_error(path, exc) from exc
        raise
