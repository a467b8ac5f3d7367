"""What a failure looks like to a user: one line, and a traceback only when asked for.

The ``dmlp`` command and the lines ``dmlp integrate`` puts in an upstream script both end a
failed run with one line naming the problem. ``DMLP_DEBUG=1`` in the environment brings
back the full traceback instead, for bug reports.
"""

from __future__ import annotations

import errno
import os

from .errors import DmlpError

__all__ = ["ENV_DEBUG", "debug_enabled", "describe_failure"]

#: Set to 1 for full tracebacks instead of one-line errors.
ENV_DEBUG = "DMLP_DEBUG"

_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or its limits",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


def debug_enabled() -> bool:
    """Whether ``DMLP_DEBUG`` asks for tracebacks."""
    return os.environ.get(ENV_DEBUG, "") not in ("", "0")


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """``(one line, exit status)`` for an exception that ends a run.

    A :class:`~dmlp_plugin.errors.DmlpError` is a problem with what was asked (status 2);
    running out of memory or disk, or lacking a permission, is a problem of the machine
    (status 1); anything else is a bug, reported with the hint to rerun under
    ``DMLP_DEBUG=1`` (status 1).
    """
    if isinstance(exc, DmlpError):
        return str(exc), 2
    if isinstance(exc, MemoryError):
        detail = str(exc) or "an allocation failed"
        return f"out of memory: {detail}", 1
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        where = exc.filename if exc.filename is not None else "a file"
        return f"{_ENVIRONMENT_ERRNOS[exc.errno]}: {where}", 1
    return (f"internal error ({type(exc).__name__}: {exc}); rerun with {ENV_DEBUG}=1 for the traceback "
            "and report it"), 1
