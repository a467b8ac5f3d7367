"""What error messages call an argument: its Python name, or what the caller's users typed.

The library's checks (:mod:`dmlp_plugin.validation`, :func:`dmlp_plugin.io.load_array`)
name arguments as Python does (``val_indices``). A front end that takes them under other
names sets those names for the duration of a call, and the same checks then speak its
language: the CLI runs ``purify_dataset`` inside
``argument_names({"val_indices": "--val-indices", ...})``.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Mapping

__all__ = ["argument_names", "shown"]

_NAMES: ContextVar[Mapping[str, str]] = ContextVar("dmlp_argument_names", default={})


@contextlib.contextmanager
def argument_names(names: Mapping[str, str]) -> Iterator[None]:
    """Within the block, error messages call arguments by ``names`` (Python name → shown name)."""
    token = _NAMES.set({**_NAMES.get(), **names})
    try:
        yield
    finally:
        _NAMES.reset(token)


def shown(name: str, default: str | None = None) -> str:
    """How messages call the argument ``name`` right now (see :func:`argument_names`)."""
    return _NAMES.get().get(name, name if default is None else default)
