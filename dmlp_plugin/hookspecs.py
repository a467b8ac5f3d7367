"""Hook specifications: the contract between dmlp-plugin and its plugins.

A plugin is a module (or any object) with functions decorated by :data:`hookimpl` and
named after the hooks below. Installed plugins announce themselves through the
``dmlp_plugin`` entry-point group; :mod:`dmlp_plugin.plugins` loads them.

    from dmlp_plugin import hookimpl

    @hookimpl
    def dmlp_register_adapters(register):
        register(MyCodebaseAdapter)

An implementation may accept any subset of a hook's arguments, so arguments added to a
hook later never break existing plugins. dmlp-plugin always calls hooks with keyword
arguments.

The set is small on purpose: behaviour that belongs to one upstream codebase (index
maps, label file format, injection, alignment checks) lives on the
:class:`~dmlp_plugin.adapter.Adapter` class, not in more hooks. In particular the label
format an upstream reads is chosen by its adapter (``Adapter.label_format`` and
``Adapter.write_labels``); to change it, subclass the adapter and register the subclass
under a new name.

These docstrings are the reference documentation; ``docs/hooks.md`` gives an example
per hook and is checked against this module by the test suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    import argparse

    import numpy as np

    from .adapter import Adapter
    from .config import PurifyConfig
    from .result import PurifyResult

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME"]

#: The pluggy project name; also the entry-point group plugins are announced in.
PROJECT_NAME = "dmlp_plugin"

hookspec = HookspecMarker(PROJECT_NAME)
#: Marks a plugin function as the implementation of the hook it is named after.
hookimpl = HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------
# Registration: called when the adapter registry is (re)built.
# -------------------------------------------------------------------------


@hookspec
def dmlp_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    """Register adapter classes for upstream codebases.

    Called every time the adapter registry is built: on first use, and again after a
    plugin is registered or unregistered. Call ``register`` once per adapter class.

    ``register`` validates the class on the spot and raises
    :class:`~dmlp_plugin.errors.AdapterError` naming any missing attribute or method.
    Two adapters registered under the same name raise an
    :class:`~dmlp_plugin.errors.AdapterError` naming both plugins and their
    distributions; adapter names are never silently renamed.

    :param register:
        ``register(adapter_cls)``: adds a subclass of
        :class:`~dmlp_plugin.adapter.Adapter` to the registry.
    :return: Nothing; the return value is ignored.
    """


# -------------------------------------------------------------------------
# Configuration: command-line options and purifier settings.
# -------------------------------------------------------------------------


@hookspec(historic=True)
def dmlp_add_options(parser: argparse.ArgumentParser) -> None:
    """Add command-line options to an upstream training script's parser.

    Called by :func:`dmlp_plugin.plugins.add_options`, which an integrated upstream
    script calls once with its own :class:`argparse.ArgumentParser`. The hook is
    historic: a plugin registered after that call is still called with the same parser
    at registration time, so options never depend on load order.

    Prefix option names with your plugin's name (``--myplugin-foo``); upstream scripts
    own every unprefixed name.

    :param parser: The upstream script's argument parser, before ``parse_args``.
    :return: Nothing; the return value is ignored.
    """


@hookspec
def dmlp_configure(config: PurifyConfig) -> dict[str, Any] | None:
    """Override purifier settings before purification starts.

    Called by :func:`dmlp_plugin.plugins.configure` with the configuration the user
    asked for. Every implementation is called; the returned dicts are merged and applied
    with :meth:`PurifyConfig.replace`, so they are validated like any other setting.
    When two plugins set the same field the one called first wins (``tryfirst``
    implementations, then the most recently registered).

    :param config: The configuration as the user gave it. It is frozen; do not mutate it.
    :return: A dict of :class:`~dmlp_plugin.config.PurifyConfig` field names to new
        values, or ``None`` to change nothing.
    """


# -------------------------------------------------------------------------
# Features: what the purifier is fed.
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def dmlp_extract_features(dataset: Any, backbone: str, device: str) -> np.ndarray | None:
    """Extract features for a dataset with a custom backbone.

    Called by :func:`dmlp_plugin.plugins.extract_features` before dmlp-plugin's own
    extractors. Return ``None`` for backbones you do not handle.

    Stops at first non-None result.

    :param dataset: The training set, following the
        :class:`~dmlp_plugin.data.base.ImageDataset` contract: ``dataset[i]`` is
        ``(image, label, index)``.
    :param backbone: The backbone name the user asked for, e.g. ``"simclr-r18"``.
    :param device: A torch device string, ``"cpu"`` or ``"cuda:0"``.
    :return: A ``(N, D)`` float array with one row per sample, in index order, or
        ``None`` to let the next plugin (and finally dmlp-plugin) handle it.
    """


# -------------------------------------------------------------------------
# Purification: observe progress and results (return values are ignored).
# -------------------------------------------------------------------------


@hookspec
def dmlp_purify_start(config: PurifyConfig, num_samples: int, num_classes: int) -> None:
    """Purification is about to start.

    :param config: The configuration in effect, after :func:`dmlp_configure` overrides.
    :param num_samples: ``N``, the number of training samples being purified.
    :param num_classes: ``C``, the number of classes.
    :return: Nothing; the return value is ignored.
    """


@hookspec
def dmlp_purify_epoch(epoch: int, record: dict[str, Any]) -> None:
    """One purification epoch has finished.

    :param epoch: The epoch just finished, counting from 1.
    :param record: That epoch's metrics (losses; label accuracy when clean labels are
        known), the same dict that is appended to ``PurifyResult.history``. Treat it as
        read-only.
    :return: Nothing; the return value is ignored.
    """


@hookspec
def dmlp_purify_end(result: PurifyResult) -> None:
    """Purification has finished.

    :param result: The :class:`~dmlp_plugin.result.PurifyResult` about to be returned.
        Treat it as read-only.
    :return: Nothing; the return value is ignored.
    """
