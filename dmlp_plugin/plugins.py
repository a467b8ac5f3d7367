"""The plugin manager: loads plugins from entry points and keeps the adapter registry.

Nothing happens at import time. :func:`get_plugin_manager` builds the manager on first
use and caches it: it adds the hook specifications of :mod:`dmlp_plugin.hookspecs`, then
loads every module announced in the ``dmlp_plugin`` entry-point group. dmlp-plugin's
own adapters are announced there too, in its ``pyproject.toml``, exactly as a third
party's would be.

Environment
-----------
``DMLP_DISABLE_PLUGIN_AUTOLOAD=1``
    Load only dmlp-plugin's own entry points (the built-in adapters), no third-party
    plugin. As with pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``, plugins named in
    ``DMLP_PLUGINS`` are still loaded.
``DMLP_PLUGINS=a,b``
    Load only these third-party plugins, by entry-point name or distribution name;
    built-ins always load. Set but empty: no third-party plugin.

Errors
------
A plugin that fails to import, or whose hooks do not match the specifications, raises
:class:`~dmlp_plugin.errors.PluginLoadError` naming its distribution and version,
chained to the original error. Two adapters registered under one name raise
:class:`~dmlp_plugin.errors.AdapterError` naming both. With ``skip_broken=True``
(``dmlp adapters list --skip-broken``) such plugins are left out and recorded in
:attr:`DmlpPluginManager.broken` instead.

Calling hooks
-------------
Observation hooks are called on the relay, by keyword::

    get_plugin_manager().hook.dmlp_purify_epoch(epoch=3, record=record)

Hooks whose results need merging or checking have helpers here: :func:`configure`,
:func:`extract_features` and :func:`add_options`.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import os
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection

import pluggy

from . import hookspecs
from .adapter import Adapter, validate_adapter_class
from .errors import AdapterError, ConfigError, PluginLoadError, ShapeError, UnknownAdapterError

if TYPE_CHECKING:
    import argparse

    import numpy as np

    from .config import PurifyConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_DISTRIBUTION",
    "DmlpPluginManager",
    "PluginSource",
    "AdapterEntry",
    "BrokenPlugin",
    "get_plugin_manager",
    "build_plugin_manager",
    "reset_plugin_manager",
    "configure",
    "extract_features",
    "add_options",
    "list_adapters",
    "get_adapter",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
BUILTIN_DISTRIBUTION = "dmlp-plugin"
ENV_DISABLE_AUTOLOAD = "DMLP_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "DMLP_PLUGINS"

_HOOK_NAMES = sorted(n for n in dir(hookspecs) if n.startswith("dmlp_"))


def _normalize(dist_name: str) -> str:
    # PEP 503 normalisation, so "DMLP_Plugin" and "dmlp-plugin" are one distribution.
    return dist_name.lower().replace("_", "-").replace(".", "-")


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from: its name in the manager, and its distribution if installed."""

    name: str
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None

    @classmethod
    def from_entry_point(cls, ep: importlib.metadata.EntryPoint) -> "PluginSource":
        dist = getattr(ep, "dist", None)
        name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        return cls(ep.name, name, version, f"{ep.name} = {ep.value}")

    @property
    def is_builtin(self) -> bool:
        return self.distribution is not None and _normalize(self.distribution) == BUILTIN_DISTRIBUTION

    def describe(self) -> str:
        if self.distribution is None:
            return f"plugin {self.name!r} (registered in-process)"
        return f"plugin {self.name!r} from {self.distribution} {self.version}"


@dataclass(frozen=True)
class AdapterEntry:
    """A registered adapter class and the plugin that registered it."""

    name: str
    cls: type[Adapter]
    source: PluginSource


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin left out by a ``skip_broken`` manager, with the error that excluded it."""

    source: PluginSource
    error: Exception


class DmlpPluginManager(pluggy.PluginManager):
    """A pluggy manager with dmlp's hook specifications, entry-point loading and adapter registry.

    Parameters
    ----------
    skip_broken
        Record broken plugins in :attr:`broken` instead of raising.
    """

    def __init__(self, *, skip_broken: bool = False) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.skip_broken = skip_broken
        self.sources: dict[str, PluginSource] = {}
        self._load_failures: list[BrokenPlugin] = []
        self._adapter_failures: list[BrokenPlugin] = []
        self._adapters: dict[str, AdapterEntry] | None = None

    # -- registration ----------------------------------------------------------------------

    def register(self, plugin: Any, name: str | None = None, *, source: PluginSource | None = None) -> str | None:
        """Register ``plugin``, validating its hook implementations against the specs.

        A hook with a wrong signature raises pluggy's
        :class:`~pluggy.PluginValidationError` (which names the plugin); so does a hook
        name no specification knows (a misspelling), found by :meth:`check_pending`.
        """
        try:
            plugin_name = super().register(plugin, name)
            if plugin_name is None:  # blocked
                return None
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            # pluggy leaves the hooks it registered before the failing one in place.
            if self.is_registered(plugin):
                self.unregister(plugin)
            raise pluggy.PluginValidationError(plugin, _suggest_hook(str(exc))) from None
        self.sources[plugin_name] = source or PluginSource(plugin_name)
        self._adapters = None
        return plugin_name

    def unregister(self, plugin: Any | None = None, name: str | None = None) -> Any | None:
        """Unregister a plugin (by object or name); the adapter registry is rebuilt on next use."""
        removed = super().unregister(plugin, name)
        for key in [k for k, v in self.sources.items() if self.get_plugin(k) is None]:
            del self.sources[key]
        self._adapters = None
        return removed

    def load_entry_points(self, *, autoload: bool | None = None,
                          only: Collection[str] | None = None) -> list[str]:
        """Load and register the plugins announced in the ``dmlp_plugin`` entry-point group.

        Parameters
        ----------
        autoload
            Load third-party plugins; default: unless ``DMLP_DISABLE_PLUGIN_AUTOLOAD`` is set.
        only
            Load only these third-party plugins (entry-point or distribution names), even
            if ``autoload`` is false; default: ``DMLP_PLUGINS`` when set. Built-ins
            always load.

        Returns
        -------
        The names of the plugins registered by this call.
        """
        if autoload is None:
            autoload = os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() in ("", "0", "false", "no")
        if only is None and ENV_PLUGINS in os.environ:
            only = [n.strip() for n in os.environ[ENV_PLUGINS].split(",") if n.strip()]
        wanted = None if only is None else {_normalize(n) for n in only}
        matched: set[str] = set()
        loaded: list[str] = []
        found_builtin = False
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = PluginSource.from_entry_point(ep)
            found_builtin |= source.is_builtin
            keys = {_normalize(ep.name), _normalize(source.distribution or "")}
            if wanted is not None:
                matched |= keys & wanted
            selected = bool(keys & wanted) if wanted is not None else autoload
            if not (source.is_builtin or selected):
                continue
            if self.is_blocked(ep.name):
                continue
            if self._register_entry_point(ep, source):
                loaded.append(ep.name)
        if wanted is not None and wanted - matched:
            warnings.warn(f"{ENV_PLUGINS} names {', '.join(sorted(wanted - matched))}, but no installed "
                          f"{ENTRY_POINT_GROUP} plugin has that name", stacklevel=2)
        if not found_builtin:
            warnings.warn(f"no {ENTRY_POINT_GROUP} entry points of {BUILTIN_DISTRIBUTION} itself were found, so "
                          "the built-in adapters are missing; reinstall it (`pip install -e .` in a checkout) and "
                          "delete any stale dmlp_plugin.egg-info folder in the current directory",
                          stacklevel=2)
        return loaded

    def _register_entry_point(self, ep: importlib.metadata.EntryPoint, source: PluginSource) -> bool:
        existing = self.sources.get(ep.name)
        if existing is not None:
            if existing == source:  # the same distribution seen twice on sys.path
                return False
            return self._fail(source, f"uses the plugin name {ep.name!r}, already taken by {existing.describe()}",
                              None)
        try:
            plugin = ep.load()
        except Exception as exc:  # a plugin may fail to import in any way; we report, not crash
            return self._fail(source, f"failed to import ({ep.value}): {type(exc).__name__}: {exc}", exc)
        try:
            self.register(plugin, name=ep.name, source=source)
        except pluggy.PluginValidationError as exc:
            return self._fail(source, f"does not match the dmlp_plugin hook specifications: {exc}", exc)
        except ValueError as exc:  # pluggy: this module is already registered under another name
            return self._fail(source, f"cannot be registered: {exc}", exc)
        return True

    def _fail(self, source: PluginSource, problem: str, cause: BaseException | None) -> bool:
        message = f"{source.describe()} {problem}"
        if self.skip_broken:
            error = PluginLoadError(message)
            error.__cause__ = cause
            self._load_failures.append(BrokenPlugin(source, error))
            return False
        raise PluginLoadError(
            f"{message}. Fix or uninstall it, or leave it out with `dmlp adapters list --skip-broken`, "
            f"{ENV_PLUGINS}=... or {ENV_DISABLE_AUTOLOAD}=1") from cause

    # -- adapters --------------------------------------------------------------------------

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plugins left out because they failed to load or to register their adapters."""
        self.adapters  # registration problems surface only when the registry is built
        return [*self._load_failures, *self._adapter_failures]

    @property
    def adapters(self) -> dict[str, AdapterEntry]:
        """Registered adapters by name, built by calling ``dmlp_register_adapters``.

        Each plugin's implementation is called on its own so every adapter is attributed
        to the plugin (and distribution) that registered it.
        """
        if self._adapters is None:
            self._adapters = self._collect_adapters()
        return self._adapters

    def _collect_adapters(self) -> dict[str, AdapterEntry]:
        entries: dict[str, AdapterEntry] = {}
        self._adapter_failures = []
        plugins = self.get_plugins()
        for impl in self.hook.dmlp_register_adapters.get_hookimpls():
            source = self.sources.get(impl.plugin_name) or PluginSource(impl.plugin_name)
            before = dict(entries)

            def register(cls: type[Adapter], _source: PluginSource = source) -> None:
                try:
                    validate_adapter_class(cls)
                except AdapterError as exc:
                    raise AdapterError(f"{_source.describe()}: {exc}") from None
                other = entries.get(cls.name)
                if other is not None and other.cls is not cls:
                    raise AdapterError(
                        f"two adapters are named {cls.name!r}: {other.cls.__module__}.{other.cls.__qualname__} "
                        f"registered by {other.source.describe()}, and {cls.__module__}.{cls.__qualname__} "
                        f"registered by {_source.describe()}. Uninstall one, or choose with {ENV_PLUGINS}=...")
                entries[cls.name] = AdapterEntry(cls.name, cls, _source)

            only_this = self.subset_hook_caller("dmlp_register_adapters",
                                                remove_plugins=[p for p in plugins if p is not impl.plugin])
            try:
                only_this(register=register)
            except AdapterError as exc:
                if not self.skip_broken:
                    raise
                error: Exception = exc
            except Exception as exc:  # a plugin's hook may fail in any way; attribute it
                error = PluginLoadError(f"{source.describe()}: dmlp_register_adapters raised "
                                        f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                if not self.skip_broken:
                    raise error from exc
            else:
                continue
            # A plugin that fails half-way contributes nothing, so listings stay consistent.
            entries = before
            self._adapter_failures.append(BrokenPlugin(source, error))
        return entries


def _suggest_hook(message: str) -> str:
    for word in message.replace('"', "'").split("'"):
        if word.startswith("dmlp") and word not in _HOOK_NAMES:
            close = difflib.get_close_matches(word, _HOOK_NAMES, n=1)
            if close:
                return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; dmlp_plugin hooks are: {', '.join(_HOOK_NAMES)}"


# -- the shared manager ----------------------------------------------------------------------

_lock = threading.Lock()
_manager: DmlpPluginManager | None = None


def build_plugin_manager(*, skip_broken: bool = False, autoload: bool | None = None,
                         only: Collection[str] | None = None) -> DmlpPluginManager:
    """A new manager with entry-point plugins loaded (not cached; see :func:`get_plugin_manager`)."""
    pm = DmlpPluginManager(skip_broken=skip_broken)
    pm.load_entry_points(autoload=autoload, only=only)
    return pm


def get_plugin_manager() -> DmlpPluginManager:
    """The process-wide plugin manager, built with entry-point plugins on first use.

    Strict: a broken plugin raises :class:`~dmlp_plugin.errors.PluginLoadError` (and
    nothing is cached, so the next call tries again).
    """
    global _manager
    with _lock:
        if _manager is None:
            _manager = build_plugin_manager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the cached manager; the next :func:`get_plugin_manager` builds a new one (for tests)."""
    global _manager
    with _lock:
        _manager = None


# -- registry lookups ----------------------------------------------------------------------------


def list_adapters(pattern: str | None = None) -> list[str]:
    """Names of the registered adapters, sorted, optionally filtered by a glob ``pattern``."""
    names = sorted(get_plugin_manager().adapters)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def get_adapter(name: str) -> type[Adapter]:
    """The adapter class registered as ``name``; instantiate it with its options.

    Raises :class:`~dmlp_plugin.errors.UnknownAdapterError` suggesting close matches.
    """
    adapters = get_plugin_manager().adapters
    if name in adapters:
        return adapters[name].cls
    close = difflib.get_close_matches(name, list(adapters), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    known = ", ".join(sorted(adapters)) or "none (is dmlp-plugin installed, e.g. `pip install -e .`?)"
    raise UnknownAdapterError(f"no adapter named {name!r}{hint} Registered adapters: {known}")


# -- calling hooks whose results need work ----------------------------------------------------


def configure(config: "PurifyConfig", *, pm: DmlpPluginManager | None = None) -> "PurifyConfig":
    """``config`` with the overrides of every ``dmlp_configure`` implementation applied.

    Raises :class:`~dmlp_plugin.errors.ConfigError` if an implementation returns
    something other than a dict or ``None``, or an unknown or invalid setting.
    """
    pm = pm or get_plugin_manager()
    results = pm.hook.dmlp_configure(config=config)
    merged: dict[str, Any] = {}
    # pluggy returns results in call order; the first called has the last word.
    for overrides in reversed(results):
        if not isinstance(overrides, dict):
            raise ConfigError(f"a dmlp_configure hook returned {type(overrides).__name__}; "
                              "return a dict of PurifyConfig fields or None")
        merged.update(overrides)
    if not merged:
        return config
    from .config import check_fields

    try:
        check_fields(merged, type(config))  # the fields of the config's own pipeline
    except ConfigError as exc:
        raise ConfigError(f"dmlp_configure hooks returned an {exc}") from None
    return config.replace(**merged)


def extract_features(dataset: Any, backbone: str, device: str, *,
                     pm: DmlpPluginManager | None = None) -> "np.ndarray | None":
    """Features from the first plugin handling ``backbone``, or ``None`` if no plugin does.

    Raises :class:`~dmlp_plugin.errors.ShapeError` if the plugin's array is not ``(N, D)``
    with one row per sample of ``dataset``.
    """
    import numpy as np

    pm = pm or get_plugin_manager()
    features = pm.hook.dmlp_extract_features(dataset=dataset, backbone=backbone, device=device)
    if features is None:
        return None
    if hasattr(features, "detach"):  # a torch tensor
        features = features.detach().cpu().numpy()
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != len(dataset):
        raise ShapeError(f"a dmlp_extract_features hook returned features of shape {features.shape} for backbone "
                         f"{backbone!r}; expected ({len(dataset)}, D), one row per sample")
    return features


def add_options(parser: "argparse.ArgumentParser", *, pm: DmlpPluginManager | None = None) -> None:
    """Let plugins add options to an upstream script's ``parser``.

    Historic: plugins registered later are called with this parser when they register.
    """
    pm = pm or get_plugin_manager()
    pm.hook.dmlp_add_options.call_historic(kwargs={"parser": parser})
