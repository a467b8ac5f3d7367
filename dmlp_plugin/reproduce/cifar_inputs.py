"""The CIFAR-10 benchmark protocol: inputs, trusted draw, noise, linear probe.

One place for what ``benchmarks/purify_cifar10.py`` and ``dmlp reproduce`` both do, so
their numbers are measured the same way:

- features: the shared k-means features ``features/cifar10_kmeans_pca512.npz`` (arrays
  ``train`` (50000, 512) and ``test`` (10000, 512), float16), with the clean training
  labels ``data/cifar10/train_labels_original_order.npy`` and the test labels of the
  built ``cifar-10-batches-py/test_batch``;
- trusted set: ``num_trusted`` random training samples from a random stream separate
  from the noise's (seed + 1000), so the trusted rows are an unbiased draw;
- noise: :func:`dmlp_plugin.noise.make_noisy_labels`, DivideMix convention;
- linear test accuracy: L-BFGS softmax regression on hard labels, scored on the test set.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AnyConfig, PaperConfig, PurifyConfig
from ..safe_pickle import load_pickle
from ..errors import CorruptFileError, MissingFileError, ShapeError

__all__ = [
    "NUM_CLASSES", "FEATURES", "TRAIN_LABELS", "DEFAULT_CIFAR_ROOT", "ENV_SHARED", "Inputs",
    "find_shared", "load_test_labels", "load_inputs", "subset", "draw_trusted", "noisy_labels",
    "probe_accuracy", "with_epochs", "git_revision",
]

NUM_CLASSES = 10
#: Paths inside the shared folder.
FEATURES = Path("features") / "cifar10_kmeans_pca512.npz"
TRAIN_LABELS = Path("data") / "cifar10" / "train_labels_original_order.npy"
DEFAULT_CIFAR_ROOT = Path.home() / ".cache" / "dmlp" / "cifar10"
#: Environment variable naming the shared folder.
ENV_SHARED = "DMLP_SHARED"

# A source checkout keeps the shared folder beside the repository (../shared).
_CHECKOUT_SHARED = Path(__file__).resolve().parents[3] / "shared"


@dataclass
class Inputs:
    """Features and labels of one CIFAR-10 run (train rows in original training order)."""

    train: np.ndarray  # (N, d) float32
    test: np.ndarray  # (M, d) float32
    clean: np.ndarray  # (N,) int64
    test_labels: np.ndarray  # (M,) int64


def find_shared(explicit: Path | None = None) -> Path:
    """The shared folder: ``explicit``, else ``$DMLP_SHARED``, else ``../shared`` of a
    source checkout, else ``shared`` beside the working directory."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ENV_SHARED)
    if env:
        return Path(env)
    for candidate in (_CHECKOUT_SHARED, Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if (candidate / FEATURES).is_file():
            return candidate
    return _CHECKOUT_SHARED


def load_test_labels(cifar_root: Path) -> np.ndarray:
    """Test labels from the built ``cifar-10-batches-py/test_batch`` (in its order).

    The batch is a pickle from a folder the user names, so it is read with the unpickler
    that admits numpy arrays and plain containers only (:mod:`dmlp_plugin.safe_pickle`).

    Raises
    ------
    MissingFileError
        No ``test_batch`` there.
    CorruptFileError
        It is not a CIFAR batch, or it pickles anything but arrays and containers.
    """
    cifar_root = Path(cifar_root)
    folder = cifar_root if cifar_root.name == "cifar-10-batches-py" else cifar_root / "cifar-10-batches-py"
    path = folder / "test_batch"
    if not path.is_file():
        raise MissingFileError(path)
    batch = load_pickle(path, what="CIFAR-10 test batch")
    if not isinstance(batch, dict) or "labels" not in batch:
        raise CorruptFileError(f"{path} is not a CIFAR-10 batch: expected a dict with 'labels'")
    return np.asarray(batch["labels"], dtype=np.int64)


def load_inputs(shared: Path, cifar_root: Path) -> Inputs:
    """Load the shared features and labels.

    Raises
    ------
    MissingFileError
        Naming each missing file, and how to get it.
    ShapeError
        When the features and labels disagree in length.
    """
    shared, cifar_root = Path(shared), Path(cifar_root)
    feats_path, labels_path = shared / FEATURES, shared / TRAIN_LABELS
    missing = [p for p in (feats_path, labels_path) if not p.is_file()]
    if missing:
        raise MissingFileError("missing shared input(s): " + ", ".join(map(str, missing))
                               + f" (set {ENV_SHARED} or --shared to the folder that holds features/ and data/)")
    try:
        test_labels = load_test_labels(cifar_root)
    except FileNotFoundError as exc:
        raise MissingFileError(f"missing CIFAR-10 test labels: {exc}; build the folder with: "
                               f"python {shared / 'tools' / 'build_cifar10.py'} {cifar_root}") from None
    with np.load(feats_path, allow_pickle=False) as z:
        train, test = z["train"].astype(np.float32), z["test"].astype(np.float32)
    clean = np.load(labels_path, allow_pickle=False).astype(np.int64)
    if len(train) != len(clean) or len(test) != len(test_labels):
        raise ShapeError(f"size mismatch: {len(train)} train features / {len(clean)} labels, "
                         f"{len(test)} test features / {len(test_labels)} test labels")
    return Inputs(train, test, clean, test_labels)


def subset(inputs: Inputs, n: int | None, seed: int = 12345, *, test: int | None = None) -> Inputs:
    """A random ``n``-row subset of the training set (and of ``test`` test rows, when given).

    Rows keep their original relative order. ``None`` or a size at least the set's keeps
    that set whole.
    """
    rng = np.random.default_rng(seed)
    train_rows = (np.sort(rng.permutation(len(inputs.clean))[:n]) if n is not None and n < len(inputs.clean)
                  else None)
    test_rows = (np.sort(rng.permutation(len(inputs.test_labels))[:test])
                 if test is not None and test < len(inputs.test_labels) else None)
    if train_rows is None and test_rows is None:
        return inputs
    out = Inputs(inputs.train, inputs.test, inputs.clean, inputs.test_labels)
    if train_rows is not None:
        out.train, out.clean = inputs.train[train_rows], inputs.clean[train_rows]
    if test_rows is not None:
        out.test, out.test_labels = inputs.test[test_rows], inputs.test_labels[test_rows]
    return out


def draw_trusted(n: int, num_trusted: int, seed: int) -> np.ndarray:
    """Trusted indices, from a random stream independent of the noise's (``seed + 1000``).

    For one seed the sets are nested: a smaller trusted set is a subset of a larger one.
    """
    return np.sort(np.random.default_rng(seed + 1000).permutation(n)[:num_trusted])


def noisy_labels(clean: np.ndarray, kind: str, rate: float, seed: int,
                 cifar_n: Path | None = None) -> np.ndarray:
    """Noisy labels: ``"symmetric"`` or ``"asymmetric"`` (DivideMix convention, CIFAR-10's
    class map), or a CIFAR-10N key read from ``cifar_n``."""
    from ..noise import load_cifar_n, make_noisy_labels

    if kind == "symmetric":
        return make_noisy_labels(clean, kind="symmetric", rate=rate, convention="dividemix", seed=seed).noisy_labels
    if kind == "asymmetric":
        return make_noisy_labels(clean, kind="asymmetric", rate=rate, dataset="cifar10",
                                 convention="dividemix", seed=seed).noisy_labels
    return load_cifar_n(cifar_n, key=kind, clean_labels=clean).noisy_labels


def probe_accuracy(inputs: Inputs, labels: np.ndarray, iters: int, *, device: str = "cpu") -> float | None:
    """Test accuracy of an L-BFGS softmax regression trained on ``labels`` (``None`` when
    ``iters`` is 0). Deterministic: L-BFGS starts from zero."""
    if iters <= 0:
        return None
    from ..features.probe import fit_linear_classifier

    clf = fit_linear_classifier(inputs.train, labels, num_classes=NUM_CLASSES, epochs=iters, device=device)
    return clf.score(inputs.test, inputs.test_labels)


def with_epochs(config: AnyConfig, epochs: int | None) -> AnyConfig:
    """The paper's loop shortened to ``epochs`` (EAC period and head lr decay scaled alike),
    so a short run still mixes as many times as a full one. The default pipeline has no
    epochs: it is returned as it is."""
    if not isinstance(config, PaperConfig) or epochs is None or epochs == config.epochs:
        return config
    scale = epochs / config.epochs
    return config.replace(epochs=epochs, eac_period=max(1, round(config.eac_period * scale)),
                          eac_lr_decay_epoch=min(config.eac_lr_decay_epoch, max(1, epochs // 10))
                          if config.eac_lr_decay_epoch else 0)


def git_revision(cwd: Path | None = None) -> str:
    """``git describe --always --dirty`` of the checkout holding ``cwd`` (default: this
    package's); ``"unknown"`` outside a checkout or without git."""
    if cwd is None:
        # Only a source checkout: an installed copy must not report the revision of some
        # unrelated repository that happens to hold the environment.
        checkout = Path(__file__).resolve().parents[2]
        if not (checkout / ".git").exists():
            return "unknown"
        cwd = checkout
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
