"""Fixtures for the plugin tests: a fresh plugin manager, and fake installed distributions.

Import the fixtures you use into a test module (``from plugin_fixtures import ...``).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dmlp_plugin import plugins
from dmlp_plugin.adapter import Adapter

ENV_VARS = (plugins.ENV_DISABLE_AUTOLOAD, plugins.ENV_PLUGINS)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DMLP_* plugin switches from the outer environment."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def fresh_plugins(clean_env: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the cached manager before and after the test, so each test builds its own."""
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


@pytest.fixture
def pm(fresh_plugins: None) -> plugins.DmlpPluginManager:
    """A fresh, cached plugin manager (what ``get_plugin_manager()`` returns during the test)."""
    return plugins.get_plugin_manager()


@contextlib.contextmanager
def registered(manager: plugins.DmlpPluginManager, plugin: Any, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block, unregistering it in ``finally``."""
    plugin_name = manager.register(plugin, name=name)
    try:
        yield plugin_name
    finally:
        if manager.is_registered(plugin):
            manager.unregister(plugin)


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Factory: install a fake distribution with ``dmlp_plugin`` entry points on ``sys.path``.

    ``fake_dist("dmlp-foo", "1.2.3", {"foo": "dmlp_foo_plugin"}, {"dmlp_foo_plugin": "source"})``
    writes ``dmlp_foo_plugin.py`` and a ``dmlp_foo-1.2.3.dist-info`` folder that
    :func:`importlib.metadata.entry_points` finds. Modules are dropped from
    ``sys.modules`` afterwards.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[dmlp_plugin]\n{lines}")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)
        importlib.invalidate_caches()
        return info

    yield make
    for module in created:
        sys.modules.pop(module, None)


# Source of a healthy fake plugin module registering one adapter; format with name=...
ADAPTER_PLUGIN_SOURCE = '''
    import numpy as np
    from dmlp_plugin import hookimpl
    from dmlp_plugin.adapter import Adapter

    class FakeAdapter(Adapter):
        name = "{name}"
        upstream = "https://example.org/{name}"
        upstream_commits = ()
        label_format = "npy"

        def write_labels(self, labels, path): ...
        def read_labels(self, path): ...
        def get_labels(self, dataset): return np.asarray(dataset.targets)
        def set_labels(self, dataset, labels): dataset.targets = list(labels)

    @hookimpl
    def dmlp_register_adapters(register):
        register(FakeAdapter)
'''


def make_adapter(name: str, **attrs: Any) -> type[Adapter]:
    """A minimal complete adapter class over an object with a ``targets`` list."""
    import numpy as np

    class _Adapter(Adapter):
        upstream = f"https://example.org/{name}"
        upstream_commits = ()
        label_format = "npy"

        def write_labels(self, labels, path):  # pragma: no cover - not exercised
            raise NotImplementedError

        def read_labels(self, path):  # pragma: no cover - not exercised
            raise NotImplementedError

        def get_labels(self, dataset):
            return np.asarray(dataset.targets, dtype=np.int64)

        def set_labels(self, dataset, labels):
            dataset.targets = [int(y) for y in labels]

    _Adapter.name = name
    _Adapter.__qualname__ = _Adapter.__name__ = f"Adapter_{name.replace('-', '_')}"
    for key, value in attrs.items():
        setattr(_Adapter, key, value)
    return _Adapter


class AdapterPlugin:
    """An in-process plugin object registering the given adapter classes."""

    def __init__(self, *classes: type[Adapter]) -> None:
        self.classes = classes

    @plugins.hookspecs.hookimpl
    def dmlp_register_adapters(self, register: Callable[[type[Adapter]], None]) -> None:
        for cls in self.classes:
            register(cls)
