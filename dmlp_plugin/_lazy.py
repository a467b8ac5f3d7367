"""Lazy public names for a package: its ``__getattr__`` and ``__dir__``.

``import dmlp_plugin`` (and ``dmlp --help``) must not load torch, so a package lists its
public names and the submodule that defines each; a name is imported on first use and
then kept in the package's namespace, so later lookups are plain attribute reads.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Iterable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str], public: Iterable[str] | None = None
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose name ``n`` lives in the submodule
    ``exports[n]`` (relative to the package). ``public`` is what ``dir()`` lists (default:
    the exported names)."""
    listed = sorted(exports if public is None else public)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return list(listed)

    return __getattr__, __dir__
