"""The four integrations on the real upstream code: integrate, --help, a CPU smoke run, revert.

Marked ``upstream``; they need ``DMLP_UPSTREAM_ROOT`` to name a folder holding one plain
clone or snapshot per upstream (``DivideMix/``, ``ELR/``, ``CDR/``, ``Co-teaching/``):

    mkdir -p /tmp/upstream && for a in ../shared/upstream/*.tar.gz; do tar -xzf "$a" -C /tmp/upstream; done
    DMLP_UPSTREAM_ROOT=/tmp/upstream python -m pytest -m upstream

Each smoke run trains a few iterations on the CPU through ``dmlp run`` with ``--dmlp``;
the runtime checks the labels the upstream's loaders yield, and the test checks the
(dataset index, label) pairs it recorded against the purified file itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from shared_fixtures import needs_shared, real_cifar10_root, shared_dir  # noqa: F401

from dmlp_integrations import apply
from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.plugins import get_adapter
from dmlp_plugin.data.layouts import write_cifar10_layout
from dmlp_plugin.io import array_checksum
from dmlp_plugin.noise import make_noisy_labels

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

ROOT_ENV = "DMLP_UPSTREAM_ROOT"
FOLDERS = {"dividemix": "DivideMix", "elr_plus": "ELR", "cdr": "CDR", "coteaching": "Co-teaching"}
SMOKE_TIMEOUT = 600


@dataclass
class Inputs:
    cifar: Path
    data: Path  # DivideMix's --data_path, holding the noise file that was purified
    purified: Path
    labels: np.ndarray  # the purified labels, CIFAR order


def upstream_clone(method: str) -> Path:
    root = os.environ.get(ROOT_ENV)
    if not root:
        pytest.skip(f"{ROOT_ENV} is not set (a folder holding DivideMix/, ELR/, CDR/, Co-teaching/)")
    clone = Path(root) / FOLDERS[method]
    if not clone.is_dir():
        pytest.skip(f"{clone} does not exist")
    return clone


@pytest.fixture(scope="session")
def inputs(real_cifar10_root, tmp_path_factory) -> Inputs:
    """Sym-80% noisy CIFAR-10 labels, as DivideMix's noise file, purified from the shared features."""
    shared = shared_dir()
    if shared is None:
        pytest.skip(needs_shared("the CIFAR-10 features to purify"))
    out = tmp_path_factory.mktemp("upstream-inputs")
    clean = np.load(shared / "data" / "cifar10" / "train_labels_original_order.npy")
    features = np.load(shared / "features" / "cifar10_kmeans_pca512.npz")["train"]
    noisy = make_noisy_labels(clean, kind="symmetric", rate=0.8, seed=0).noisy_labels
    data = out / "dividemix-data"
    write_cifar10_layout(real_cifar10_root, "pickles", data)
    (data / "0.8_sym.json").write_text(json.dumps([int(y) for y in noisy]))
    trusted = np.random.default_rng(0).choice(len(clean), 1000, replace=False)
    # These tests are about what the upstream code does with purified labels, not how good they
    # are: one least-squares round and no network candidate suffice.
    result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted],
                            config=PurifyConfig(rounds=1, mlp_candidate=False), progress=False)
    return Inputs(real_cifar10_root, data, result.save(out / "purified.npz"), result.labels)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def dmlp(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "dmlp_plugin", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def copy_clone(method: str, dest: Path) -> Path:
    return Path(shutil.copytree(upstream_clone(method), dest / FOLDERS[method], symlinks=True))


# -- integrate, check, dry run, revert -----------------------------------------------------------


@pytest.mark.parametrize("method", list(FOLDERS))
def test_integrate_is_idempotent_compiles_and_reverts_byte_for_byte(method, tmp_path):
    clone = copy_clone(method, tmp_path)
    before = tree(clone)
    check = dmlp("integrate", method, str(clone), "--check")
    assert check.returncode == 0 and "supported: files match the tested commit" in check.stdout, check.stdout
    diff = dmlp("integrate", method, str(clone), "--dry-run")
    assert diff.returncode == 0 and diff.stdout.startswith("--- a/") and "# dmlp-plugin" in diff.stdout
    assert tree(clone) == before  # a dry run writes nothing
    # the printed diff is a real patch: it applies to a fresh copy and gives what integrate writes
    patched = copy_clone(method, tmp_path / "patched")
    raw = subprocess.run([sys.executable, "-m", "dmlp_plugin", "integrate", method, str(clone), "--dry-run"],
                         capture_output=True, check=True).stdout  # bytes: ELR+ has CRLF files
    subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], input=raw, cwd=patched, check=True)

    first = dmlp("integrate", method, str(clone))
    assert first.returncode == 0, first.stdout + first.stderr
    integrated = tree(clone)
    recipe = get_adapter(method).integration
    for rel in recipe.files:
        compile(integrated[rel], rel, "exec")
        assert integrated[rel] == tree(patched)[rel]
    again = dmlp("integrate", method, str(clone))
    assert again.returncode == 0 and "already integrated" in again.stdout
    assert tree(clone) == integrated
    assert dmlp("integrate", method, str(clone), "--check").stdout.startswith("integrated")

    help_ = subprocess.run([sys.executable, recipe.entry, "--help"], cwd=clone / recipe.workdir, capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert help_.returncode == 0, help_.stderr[-2000:]
    assert "--dmlp PURIFIED.npz" in help_.stdout and "--dmlp-residual-noise" in help_.stdout

    reverted = dmlp("integrate", method, str(clone), "--revert")
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert tree(clone) == before


def test_a_clone_edited_by_hand_is_refused_naming_file_and_anchor(tmp_path):
    clone = copy_clone("dividemix", tmp_path)
    loader = clone / "dataloader_cifar.py"
    loader.write_text(loader.read_text().replace("if self.mode == 'all':", "if self.mode in ('all',):"))
    result = dmlp("integrate", "dividemix", str(clone))
    assert result.returncode == 2
    assert "dataloader_cifar.py: anchor \"if self.mode == 'all':\" not found" in result.stderr.replace("\n", " ")
    assert not (clone / apply.MARKER).exists()


# -- CPU smoke runs with --dmlp ------------------------------------------------------------------


def smoke(method: str, clone: Path, inputs: Inputs, tmp_path: Path) -> tuple[Path, list[str]]:
    """Prepare the upstream's data and return (working folder, `dmlp run` arguments)."""
    purified = str(inputs.purified)
    if method == "dividemix":
        return clone, ["--max-iters", "3", "--num-workers", "0", "--", "python", "Train_cifar.py", "--r", "0.8",
                       "--noise_mode", "sym", "--data_path", str(inputs.data), "--batch_size", "16",
                       "--dmlp", purified]
    if method == "coteaching":
        write_cifar10_layout(inputs.cifar, "torchvision", clone / "data")
        return clone, ["--max-iters", "1", "--max-eval-batches", "1", "--num-workers", "0", "--skip-md5", "--",
                       "python", "main.py", "--dataset", "cifar10", "--noise_type", "symmetric", "--noise_rate",
                       "0.8", "--dmlp", purified]
    if method == "cdr":
        write_cifar10_layout(inputs.cifar, "cdr-npy", clone)
        return clone, ["--max-iters", "1", "--max-eval-batches", "1", "--num-workers", "0", "--", "python",
                       "main.py", "--dataset", "cifar10", "--noise_type", "symmetric", "--noise_rate", "0.8",
                       "--dmlp", purified]
    config = json.loads((clone / "ELR_plus" / "config_cifar10.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(inputs.cifar), batch_size=16, batch_size2=16,
                                         num_workers=0, pin_memory=False)
    config["trainer"]["save_dir"] = str(tmp_path / "elr-out")
    (tmp_path / "elr.json").write_text(json.dumps(config))
    return clone / "ELR_plus", ["--max-iters", "4", "--max-eval-batches", "1", "--num-workers", "0", "--skip-md5",
                                "--", "python", "train.py", "-c", str(tmp_path / "elr.json"), "--dmlp", purified]


@pytest.mark.parametrize("method", list(FOLDERS))
def test_cpu_smoke_trains_on_the_purified_labels(method, inputs, tmp_path):
    clone = copy_clone(method, tmp_path)
    assert dmlp("integrate", method, str(clone)).returncode == 0
    cwd, args = smoke(method, clone, inputs, tmp_path)
    record_path = tmp_path / "record.json"
    run = dmlp("run", method, "--record", str(record_path), *args, cwd=cwd, timeout=SMOKE_TIMEOUT)
    log = run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, log
    assert "stopping after" in run.stderr and "training iterations (--max-iters)" in run.stderr, log

    record = json.loads(record_path.read_text())
    assert record["method"] == method and record["labels_sha"] == array_checksum(inputs.labels)
    injected = {e["part"] for e in record["injections"]}
    assert injected >= ({"train", "val"} if method == "elr_plus" else {"all"} if method == "cdr" else {"train"})
    for entry in record["injections"]:
        # the sample order matches: the given labels agree with the upstream's clean ones far above chance
        assert entry["order_z"] > 20 and entry["clean_agreement_purified"] > entry["clean_agreement_given"] + 0.1
        if "indices_file" in entry:  # ELR+'s unseeded split, saved to check against
            idx = np.load(entry["indices_file"])
            assert len(idx) == entry["positions"] and len(np.unique(idx)) == len(idx)
    if method == "dividemix":
        assert record["injections"][0]["given_match"]  # it read the very file that was purified
    checks = {c["part"]: c for c in record["loader_checks"]}
    assert "train" in checks and checks["train"]["samples_checked"] > 0
    for check in checks.values():
        pairs = np.array(check["samples"])
        assert len(pairs) > 0
        # what the upstream's loader yielded, at each sample's CIFAR index, is the purified label
        np.testing.assert_array_equal(pairs[:, 1], inputs.labels[pairs[:, 0]])
    if method == "coteaching":
        assert record["options_changed"]["forget_rate"][0] is None
    if method == "cdr":
        assert record["options_changed"]["noise_rate"][0] == 0.8
        assert set(checks) == {"train", "val"}  # both halves of CDR's seeded split
