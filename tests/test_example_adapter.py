"""The example third-party adapter package, installed for real: listed by `dmlp`, and usable.

Installs ``examples/dmlp-adapter-example`` into the running environment with
``pip install --no-deps`` (from a copy, so no build files land in the repository) and
uninstalls it afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmlp_plugin import plugins
from dmlp_plugin.errors import AlignmentError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dmlp-adapter-example"
DIST = "dmlp-adapter-example"
MODULES = ("dmlp_adapter_example", "toylnl", "toylnl.data", "toylnl.train")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                   check=True, capture_output=True, text=True)


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _forget_modules() -> None:
    for name in MODULES:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory):
    if _installed():
        pytest.fail(f"{DIST} is already installed; uninstall it first so this test can install its own copy")
    source = tmp_path_factory.mktemp("example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # --no-build-isolation: build with the setuptools already installed, without the network.
    _pip("install", "--no-deps", "--no-build-isolation", str(source))
    _forget_modules()
    plugins.reset_plugin_manager()
    try:
        yield
    finally:
        _pip("uninstall", "-y", DIST)
        _forget_modules()
        plugins.reset_plugin_manager()


@pytest.fixture
def clean_env(monkeypatch):
    for var in (plugins.ENV_DISABLE_AUTOLOAD, plugins.ENV_PLUGINS):
        monkeypatch.delenv(var, raising=False)
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


def test_dmlp_adapters_list_shows_it(example_installed):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMLP_")}
    env["COLUMNS"] = "200"  # one table row per line
    dmlp = Path(sys.executable).with_name("dmlp")
    proc = subprocess.run([str(dmlp), "adapters", "list"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()}  # name first
    assert "0.1.0" in rows["toylnl"] and DIST in rows["toylnl"]
    assert "dmlp-plugin" in rows["torchvision"]


def test_purify_then_inject_through_it(example_installed, clean_env, tmp_path):
    from toylnl.data import NoisyBlobs, load_label_file, make_blobs, train_val_split
    from toylnl.train import main as toylnl_train

    from dmlp_plugin import get_adapter

    entry = plugins.get_plugin_manager().adapters["toylnl"]
    assert (entry.source.distribution, entry.source.version) == (DIST, "0.1.0")

    num_samples, num_classes = 1000, 4  # toylnl.train's defaults, so its run sees the same data
    features, clean = make_blobs(num_samples, num_classes)
    rng = np.random.default_rng(0)
    flip = rng.random(num_samples) < 0.4
    noisy = np.where(flip, (clean + rng.integers(1, num_classes, num_samples)) % num_classes, clean)
    result = _purify(features, noisy, clean, num_classes)
    assert result.accuracy(clean) > (noisy == clean).mean()

    adapter = get_adapter("toylnl")(split_seed=1)
    # File route: toylnl reads what the adapter writes, and trains on it.
    path = adapter.export(result, tmp_path / "purified.txt")
    assert np.array_equal(load_label_file(str(path)), result.labels)
    assert toylnl_train(["--labels", str(path)]) > 0.8

    # Object route: inject into the dataset toylnl's script constructed with the noisy labels.
    dataset = NoisyBlobs(features, noisy, split_seed=1)
    adapter.inject(dataset, result)
    train_idx, _ = train_val_split(num_samples, 0.1, 1)
    assert dataset.train_noisy_labels == result.labels[train_idx].tolist()
    assert [dataset[i][1] for i in range(len(dataset))] == dataset.train_noisy_labels

    # A different split seed than the upstream run used is caught before anything is written.
    fresh = NoisyBlobs(features, noisy, split_seed=1)
    with pytest.raises(AlignmentError, match="before injection"):
        get_adapter("toylnl")(split_seed=2).inject(fresh, result)
    assert fresh.train_noisy_labels == noisy[train_idx].tolist()


def test_its_own_tests_pass(example_installed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                          capture_output=True, text=True, cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "4 passed" in proc.stdout


def _purify(features, noisy, clean, num_classes):
    """Purified labels from the real purifier when it is available, else a synthetic stand-in."""
    trusted = np.arange(0, len(noisy), 10)
    try:
        from dmlp_plugin.config import PurifyConfig
        from dmlp_plugin.purify import purify_dataset
    except ImportError:
        from dmlp_plugin.result import PurifyResult

        # Stand-in: soft labels leaning to the nearest class centroid of the trusted samples.
        centroids = np.stack([features[trusted][clean[trusted] == c].mean(0) for c in range(num_classes)])
        logits = -((features[:, None, :] - centroids[None]) ** 2).sum(-1)
        soft = np.exp(logits - logits.max(1, keepdims=True))
        return PurifyResult.from_soft_labels(soft / soft.sum(1, keepdims=True), noisy)
    return purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted],
                          num_classes=num_classes, config=PurifyConfig(rounds=1), seed=0)
