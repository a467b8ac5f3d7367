"""Pre-flight feature check: can these features carry purification at all?

Purification is bounded by how well the features separate the classes: a head fitted on
the features cannot put a sample in a class the features do not tell apart. The check
measures that on the trusted rows alone, whose labels are clean: a multinomial logistic
regression (a linear probe) is cross-fitted over ``folds`` stratified folds of the
trusted set, and every trusted row is predicted by a fit that never saw it. The held-out
accuracy, next to the chance level (the most common class's share), says how much the
features carry; the per-class accuracies say where they fail.

It is cheap next to a run: ``folds`` fits of 30 L-BFGS iterations on at most ``V`` rows
(0.16 s for 1,000 x 512 and 3.4 s for 10,000 x 2,048 on one CPU thread,
``benchmarks/preflight.py``).

What it is not: the probe's accuracy on a trusted set of a few hundred rows is lower
than a probe trained on a whole clean training set (on the CIFAR-10 k-means features:
41% cross-fitted on 1,000 trusted rows, 23% on 100, 56% on 5,000, against 66% with
50,000 clean labels), so its threshold is for this measurement on trusted sets, not for
probe accuracies quoted elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .argument_names import shown
from .errors import InputError, ShapeError
from .validation import as_features, as_labels, check_classes_present, check_trusted_indices

__all__ = ["FeatureCheck", "check_features", "check_trusted_features", "WEAK_SKILL_THRESHOLD",
           "PROBE_WEIGHT_DECAY", "PROBE_ITERATIONS"]

#: The check calls features weak when the probe's skill, its held-out accuracy above
#: chance as a fraction of the room above chance, ``(accuracy - chance) / (1 - chance)``,
#: is below this. Skill rather than accuracy so that one number serves 10 classes and 100.
#: Set from the benchmark suite's tuning draw (``benchmarks/suite.py``, draw 100, 10,000
#: CIFAR-10 rows, 10/25/100 trusted rows a class, nine noises): every k-means cell checked
#: at skill 0.06-0.33, where the default gained +4.7 to +11.8 points on the mean of a
#: trusted size and at worst -0.02 (CIFAR-10N aggregate); every EfficientNet-Lite0/-Lite2
#: cell at 0.47-0.72, where it gained +18.9 to +24.5 and at worst +1.08. Benchmark draw 0
#: splits the same way (k-means 0.16-0.37, EfficientNet 0.52-0.73).
WEAK_SKILL_THRESHOLD = 0.4

#: L2 penalty of the probe (``mean CE + λ/2 ‖W‖²`` on standardised features). Trusted sets
#: are small, so it is stronger than a full-data probe's: on the k-means features 0.3 held
#: out best or within a point of the best of 1e-3..1 at 10, 25, 100 and 500 rows per class.
PROBE_WEIGHT_DECAY = 0.3

#: L-BFGS iterations per fold: held-out accuracy no longer moved after 20-30 on those sets.
PROBE_ITERATIONS = 30


@dataclass(frozen=True)
class FeatureCheck:
    """How well the features separate the classes on the trusted rows.

    Attributes
    ----------
    accuracy : float
        Held-out accuracy of the cross-fitted linear probe over all trusted rows.
    chance : float
        Accuracy of always predicting the most common trusted class.
    per_class_accuracy : list of float
        ``(C,)`` held-out accuracy of the rows of each class (their recall).
    num_rows : int
        Trusted rows probed.
    num_classes : int
    folds : int
        Cross-fitting folds.
    threshold : float
        The skill below which the features are called weak (:data:`WEAK_SKILL_THRESHOLD`
        unless the caller set another).
    seconds : float
        Time the check took.
    """

    accuracy: float
    chance: float
    per_class_accuracy: list[float]
    num_rows: int
    num_classes: int
    folds: int
    threshold: float
    seconds: float = 0.0

    @property
    def skill(self) -> float:
        """``(accuracy - chance) / (1 - chance)``: 0 at chance, 1 when every row is right."""
        return (self.accuracy - self.chance) / max(1e-12, 1.0 - self.chance)

    @property
    def weak(self) -> bool:
        """Whether the features separate the classes too weakly for purification to do well."""
        return self.skill < self.threshold

    @property
    def weakest_classes(self) -> list[int]:
        """Classes by ascending held-out accuracy, the three worst."""
        return [int(c) for c in np.argsort(self.per_class_accuracy, kind="stable")[:3]]

    def describe(self) -> str:
        """One line: the probe's accuracy against chance, on how many rows."""
        return (f"linear probe {self.accuracy:.1%} held out on {self.num_rows:,} trusted rows "
                f"(chance {self.chance:.1%}, skill {self.skill:.2f}, weak below {self.threshold:.2f})")

    @property
    def advice(self) -> str:
        """One line: what the check found and, when the features are weak, what to do."""
        if not self.weak:
            return f"features look usable: {self.describe()}"
        return (f"weak features: {self.describe()}; purification is bounded by how well the features "
                "separate the classes, so expect little gain (or a loss at low noise). Use a stronger "
                "encoder (dmlp features --backbone ... --checkpoint SSL.pth) or a larger trusted set")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a result's metadata; :meth:`from_dict` reads it back."""
        return {**asdict(self), "skill": self.skill, "weak": self.weak}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureCheck":
        fields = ("accuracy", "chance", "per_class_accuracy", "num_rows", "num_classes", "folds",
                  "threshold", "seconds")
        return cls(**{name: data[name] for name in fields if name in data})


def check_features(features: Any = None, *, val_indices: Any = None, val_labels: Any = None,
                   val_features: Any = None, num_classes: int | None = None, folds: int = 5, seed: int = 0,
                   threshold: float = WEAK_SKILL_THRESHOLD, device: Any = None,
                   threads: int | str | None = "auto") -> FeatureCheck:
    """Measure how well the features separate the classes, on the trusted rows only.

    Parameters
    ----------
    features : array-like of shape (N, d), or path
        The training features; with ``val_indices``, only those rows are read (a
        memory-mapped ``.npy`` stays on disk). May be None with ``val_features``.
    val_indices : array-like of shape (V,), optional
        Trusted rows of ``features`` (the CIFAR protocol).
    val_labels : array-like of shape (V,)
        Their clean labels.
    val_features : array-like of shape (V, d), optional
        Or the features of a separate trusted set (the Clothing1M protocol).
    num_classes : int, optional
        Defaults to ``max(val_labels) + 1``; every class needs two trusted rows.
    folds : int
        Cross-fitting folds, ``2 <= folds <= V``.
    seed : int
        Seeds the fold assignment.
    threshold : float
        Skill below which the features are called weak.
    device : str or torch.device, optional
        Where the probe runs; CUDA when available by default.
    threads : int, "auto" or None
        CPU threads during the check, as for :func:`~dmlp_plugin.purify_dataset`: on two
        busy cores two threads made it 20x slower than one (``benchmarks/preflight.py``).

    Returns
    -------
    FeatureCheck
        Held-out accuracy, chance, per-class accuracy, ``weak`` and ``advice``.

    Raises
    ------
    InputError, ShapeError, LabelError
        On a missing or misaligned trusted set, or a class with fewer than two trusted rows.
    """
    if val_labels is None:
        raise InputError(f"the feature check needs the trusted set's clean labels ({shown('val_labels')})")
    if (val_indices is None) == (val_features is None):
        raise InputError(f"pass exactly one of {shown('val_indices')} or {shown('val_features')}")
    labels = as_labels(val_labels, "val_labels")
    if val_indices is not None:
        if features is None:
            raise InputError(f"{shown('val_indices')} index into {shown('features')}, which were not given")
        feats = as_features(features)
        rows = check_trusted_indices(val_indices, feats.shape[0])
        if len(rows) != len(labels):
            raise ShapeError(f"{shown('val_indices')} has {len(rows)} entries but {shown('val_labels')} has "
                             f"{len(labels)}; they must align")
        trusted = np.asarray(feats[np.sort(rows)], dtype=np.float32)[np.argsort(np.argsort(rows))]
    else:
        trusted = as_features(val_features, "val_features")
        if features is not None and as_features(features).shape[1] != trusted.shape[1]:
            raise ShapeError(f"{shown('val_features')} have {trusted.shape[1]} dims but {shown('features')} "
                             f"have {as_features(features).shape[1]}")
    from .threads import choose_threads, torch_threads

    with torch_threads(choose_threads(threads)):
        return check_trusted_features(trusted, labels, num_classes=num_classes, folds=folds, seed=seed,
                                      threshold=threshold, device=device)


def check_trusted_features(val_features: np.ndarray, val_labels: np.ndarray, *, num_classes: int | None = None,
                           folds: int = 5, seed: int = 0, threshold: float = WEAK_SKILL_THRESHOLD,
                           device: Any = None) -> FeatureCheck:
    """:func:`check_features` on the trusted rows' features themselves, ``(V, d)`` with
    ``(V,)`` clean labels (what :class:`~dmlp_plugin.validation.PurifyInputs` holds as
    ``val_features`` and ``val_labels``), in torch's current thread setting."""
    from .accuracy_estimate import trusted_folds
    from .features.probe import fit_linear_classifier

    t0 = time.perf_counter()
    x = as_features(val_features, "val_features")
    y = as_labels(val_labels, "val_labels", length=len(x))
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    check_classes_present(y, num_classes)
    counts = np.bincount(y, minlength=num_classes)
    if counts.min() < 2:
        raise InputError(f"the feature check needs at least 2 trusted rows of every class (one to fit, one "
                         f"to predict); class {int(counts.argmin())} has {int(counts.min())}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(y):
        raise InputError(f"the feature check needs between 2 and {len(y)} folds, got {folds!r}")
    predicted = np.empty(len(y), np.int64)
    for held in trusted_folds(y, folds, seed):
        fit = np.setdiff1d(np.arange(len(y)), held)
        probe = fit_linear_classifier(x[fit], y[fit], num_classes=num_classes, weight_decay=PROBE_WEIGHT_DECAY,
                                      epochs=PROBE_ITERATIONS, device=device)
        predicted[held] = probe.predict(x[held])
    right = predicted == y
    per_class = (np.bincount(y, weights=right, minlength=num_classes) / counts).tolist()
    return FeatureCheck(accuracy=float(right.mean()), chance=float(counts.max() / len(y)),
                        per_class_accuracy=[float(a) for a in per_class], num_rows=len(y),
                        num_classes=num_classes, folds=int(folds), threshold=float(threshold),
                        seconds=time.perf_counter() - t0)
