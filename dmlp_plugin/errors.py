"""Every error dmlp-plugin raises on purpose.

All of them derive from :class:`DmlpError`, so callers can catch one type. Each also
derives from the builtin it refines (``ValueError``, ``FileNotFoundError``, ...) so that
code written against plain Python exceptions keeps working. Messages name the problem
and, where there is one, the fix.
"""

from __future__ import annotations

__all__ = [
    "DmlpError",
    "InputError",
    "ShapeError",
    "LabelError",
    "ConfigError",
    "DataFileError",
    "MissingFileError",
    "CorruptFileError",
    "PluginLoadError",
    "UnknownAdapterError",
    "AdapterError",
    "AlignmentError",
]


class DmlpError(Exception):
    """Base class of every error raised on purpose by dmlp-plugin."""


class InputError(DmlpError, ValueError):
    """An argument has the wrong value, dtype or content."""


class ShapeError(InputError):
    """Arrays have incompatible shapes or lengths."""


class LabelError(InputError):
    """Labels are not integers in ``[0, num_classes)``, or classes are missing."""


class ConfigError(InputError):
    """A configuration value is out of range or inconsistent with another."""


class DataFileError(DmlpError, OSError):
    """A file or folder that was asked for cannot be used."""


class MissingFileError(DataFileError, FileNotFoundError):
    """A file or folder that was asked for does not exist."""


class CorruptFileError(DataFileError):
    """A file exists but cannot be parsed (truncated, wrong format, wrong schema)."""


class PluginLoadError(DmlpError, ImportError):
    """A plugin (entry point) failed to load; names the distribution and its version."""


class UnknownAdapterError(DmlpError, KeyError):
    """No adapter is registered under the requested name; suggests close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class AdapterError(DmlpError):
    """An adapter is malformed (missing attributes) or misbehaved."""


class AlignmentError(AdapterError):
    """Labels an upstream loader yields do not match the purified labels at the same indices."""


class MissingExtraError(DmlpError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""
