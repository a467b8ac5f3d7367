"""Label noise as the learning-with-noisy-labels literature makes it, seeded and vectorised.

    >>> from dmlp_plugin.noise import make_noisy_labels
    >>> res = make_noisy_labels(clean, kind="symmetric", rate=0.5, seed=0)
    >>> res.realised_rate            # about 0.45: DivideMix's draw may keep the true label
    >>> res.noisy_labels, res.transition

Each kind follows the code that defined it, because published numbers depend on the
details:

``symmetric``
    ``convention="dividemix"`` (DivideMix, ELR+): a random ``int(rate * N)`` subset gets a
    label drawn uniformly from all ``C`` classes, which may be the true one, so about
    ``rate * (C - 1) / C`` of the labels end up wrong. ``convention="exclusive"``
    (Co-teaching, CDR): each label moves with probability ``rate`` to one of the other
    ``C - 1`` classes, so about ``rate`` end up wrong.
``asymmetric``
    CIFAR-10: truck→automobile, bird→airplane, deer→horse, cat↔dog; other classes are
    untouched. CIFAR-100: each class moves to the next class of its superclass (cyclic
    over the 5 fine classes of each of the 20 superclasses, in fine-label order).
    ``"dividemix"`` maps a random ``int(rate * N)`` subset; ``"exclusive"`` flips each
    label of a mapped class with probability ``rate``.
``pairflip``
    Co-teaching: each label moves to the next class (``c → c + 1 mod C``) with
    probability ``rate``.
``instance``
    Part/instance-dependent noise (Xia et al., NeurIPS 2020; the reference is CDR's
    ``get_instance_noisy_label``): per-sample flip rates from ``N(rate, std²)``
    truncated to ``[0, 1]``; per true class ``y`` a random projection ``W_y`` (``d x C``)
    scores the sample's features, and the flip mass goes to the other classes by softmax
    of those scores. Needs ``features``; the reference passes raw pixel values.

Real human noise comes from CIFAR-10N/100N with :func:`load_cifar_n`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, CorruptFileError, InputError, LabelError, ShapeError
from .validation import as_labels

__all__ = [
    "NoiseResult",
    "make_noisy_labels",
    "nominal_transition",
    "transition_from_labels",
    "asymmetric_targets",
    "load_cifar_n",
    "KINDS",
    "CONVENTIONS",
    "ASYMMETRIC_DATASETS",
    "CIFAR10_ASYMMETRIC",
    "CIFAR100_COARSE",
    "CIFAR_N_KEYS",
]

KINDS = ("symmetric", "asymmetric", "pairflip", "instance")
CONVENTIONS = ("dividemix", "exclusive")
ASYMMETRIC_DATASETS = ("cifar10", "cifar100")

# true -> noisy class, DivideMix's `transition` for CIFAR-10 (the same pairs as Co-teaching's).
CIFAR10_ASYMMETRIC = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

# The standard CIFAR-100 fine -> coarse (superclass) table, the `coarse_labels` the
# pickles carry, so asymmetric noise works from fine labels alone.
CIFAR100_COARSE = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
], dtype=np.int64)

CIFAR_N_KEYS = ("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3",
                "noisy_label", "noisy_coarse_label")
# Noise rates published with CIFAR-N (Wei et al., ICLR 2022), shown beside the realised ones.
_CIFAR_N_PUBLISHED = {"aggre_label": 0.0903, "random_label1": 0.1723, "random_label2": 0.1812,
                      "random_label3": 0.1764, "worse_label": 0.4021, "noisy_label": 0.4020}


@dataclass(frozen=True)
class NoiseResult:
    """Noisy labels and what the noise turned out to be.

    Attributes
    ----------
    noisy_labels : np.ndarray
        ``(N,)`` int64.
    clean_labels : np.ndarray
        ``(N,)`` int64, the labels the noise was applied to.
    transition : np.ndarray
        ``(C, C)`` realised transition matrix: row ``i`` is the distribution of noisy
        labels among samples whose clean label is ``i`` (counts divided by the class
        size). Rows of classes with no sample are the identity row.
    realised_rate : float
        Fraction of samples whose noisy label differs from the clean one.
    nominal_rate : float or None
        The rate asked for (for CIFAR-N, the published rate of that label set, if known).
    kind : str
        One of :data:`KINDS`, or ``"cifar-n:<key>"``.
    convention : str or None
        ``"dividemix"`` or ``"exclusive"`` where the kind has both, else None.
    seed : int or None
        The seed used, for synthetic noise.
    """

    noisy_labels: np.ndarray
    clean_labels: np.ndarray
    transition: np.ndarray
    realised_rate: float
    nominal_rate: float | None
    kind: str
    convention: str | None = None
    seed: int | None = None

    @property
    def num_classes(self) -> int:
        return int(self.transition.shape[0])

    @property
    def is_noisy(self) -> np.ndarray:
        """``(N,)`` bool: where the noisy label differs from the clean one."""
        return self.noisy_labels != self.clean_labels


def make_noisy_labels(
    labels: np.ndarray,
    *,
    kind: str = "symmetric",
    rate: float,
    num_classes: int | None = None,
    dataset: str | None = None,
    convention: str = "dividemix",
    seed: int | None = 0,
    features: np.ndarray | None = None,
    instance_std: float = 0.1,
) -> NoiseResult:
    """Corrupt clean labels with synthetic noise.

    Parameters
    ----------
    labels
        ``(N,)`` clean integer labels in ``[0, num_classes)``.
    kind
        ``"symmetric"``, ``"asymmetric"``, ``"pairflip"`` or ``"instance"`` (see the
        module docstring for each definition).
    rate
        Nominal noise rate in ``[0, 1]``. What it means depends on ``kind`` and
        ``convention``; the fraction actually wrong is ``realised_rate``.
    num_classes
        ``C``. Defaults to the asymmetric mapping's size, else ``labels.max() + 1``.
    dataset
        ``"cifar10"`` or ``"cifar100"``: which asymmetric mapping to use. Needed only
        for ``kind="asymmetric"``.
    convention
        ``"dividemix"``: exactly ``int(rate * N)`` random samples are relabelled and a
        symmetric draw may return the true class. ``"exclusive"``: each sample flips
        independently with probability ``rate``, always to another class. Applies to
        symmetric and asymmetric noise; pairflip and instance noise are defined only as
        independent flips to another class.
    seed
        Seed of the numpy generator; the same seed gives the same labels.
    features
        ``(N, d)`` per-sample features for ``kind="instance"``, used as given (the
        reference uses flattened raw pixels).
    instance_std
        Standard deviation of the per-sample flip rate for ``kind="instance"``.

    Returns
    -------
    NoiseResult

    Raises
    ------
    ConfigError
        ``rate`` outside ``[0, 1]``, fewer than 2 classes, or a mapping whose size
        disagrees with ``num_classes``.
    InputError
        Unknown ``kind`` or ``convention``; asymmetric noise for a dataset with no
        mapping; instance noise without features.
    LabelError, ShapeError
        Labels not integers in range, or ``features`` of the wrong shape.
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("convention", convention, CONVENTIONS)
    rate = _check_rate(rate)
    if kind == "asymmetric":
        targets = _mapping(dataset, num_classes)
        num_classes = len(targets)
    labels, num_classes = _check_labels(labels, num_classes)
    rng = np.random.default_rng(seed)
    n = len(labels)

    if kind in ("symmetric", "asymmetric") and convention == "dividemix":
        noisy = labels.copy()
        chosen = rng.permutation(n)[: int(rate * n)]
        if kind == "symmetric":
            noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
        else:
            noisy[chosen] = targets[labels[chosen]]
    elif kind == "instance":
        noisy = _instance_noise(labels, num_classes, rate, features, instance_std, rng)
    else:
        matrix = nominal_transition(kind, rate, num_classes, dataset=dataset, convention=convention)
        noisy = _sample_rows(matrix[labels], rng)

    has_convention = kind in ("symmetric", "asymmetric")
    return _result(labels, noisy, num_classes, nominal_rate=rate, kind=kind,
                   convention=convention if has_convention else None, seed=seed)


def nominal_transition(kind: str, rate: float, num_classes: int, *, dataset: str | None = None,
                       convention: str = "dividemix") -> np.ndarray:
    """The expected transition matrix of a noise model, ``P[i, j] = P(noisy=j | clean=i)``.

    Parameters are those of :func:`make_noisy_labels`. For the DivideMix convention this
    is the expectation over the random subset: symmetric gives ``1 - rate + rate / C`` on
    the diagonal and ``rate / C`` elsewhere.

    Returns
    -------
    np.ndarray
        ``(C, C)`` float64, rows summing to 1.

    Raises
    ------
    InputError
        ``kind="instance"``, whose transition depends on each sample's features.
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("convention", convention, CONVENTIONS)
    rate = _check_rate(rate)
    if num_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got num_classes={num_classes}")
    eye = np.eye(num_classes)
    if kind == "instance":
        raise InputError("instance-dependent noise has no fixed transition matrix: it depends "
                         "on each sample's features; use the realised one in NoiseResult")
    if kind == "symmetric" and convention == "dividemix":
        return (1.0 - rate) * eye + rate / num_classes
    if kind == "symmetric":
        return (1.0 - rate) * eye + rate / (num_classes - 1) * (1.0 - eye)
    if kind == "pairflip":
        targets = (np.arange(num_classes) + 1) % num_classes
    else:
        targets = _mapping(dataset, num_classes)
    matrix = (1.0 - rate) * eye
    matrix[np.arange(num_classes), targets] += rate
    return matrix


def transition_from_labels(clean_labels: np.ndarray, noisy_labels: np.ndarray, *,
                           num_classes: int | None = None) -> np.ndarray:
    """The realised transition matrix between two labelings of the same samples.

    Parameters
    ----------
    clean_labels, noisy_labels
        ``(N,)`` integer labels.
    num_classes
        ``C``; defaults to one more than the largest label in either.

    Returns
    -------
    np.ndarray
        ``(C, C)`` float64: ``counts[i, j] / counts[i].sum()`` where ``counts[i, j]`` is
        the number of samples with clean label ``i`` and noisy label ``j``. A class with
        no sample gets the identity row, so every row sums to 1.
    """
    clean = np.asarray(clean_labels, dtype=np.int64)
    noisy = np.asarray(noisy_labels, dtype=np.int64)
    if clean.shape != noisy.shape or clean.ndim != 1:
        raise ShapeError(f"clean and noisy labels must be (N,) of one length, got {clean.shape} and {noisy.shape}")
    if num_classes is None:
        num_classes = int(max(clean.max(initial=0), noisy.max(initial=0))) + 1
    low, high = min(clean.min(initial=0), noisy.min(initial=0)), max(clean.max(initial=0), noisy.max(initial=0))
    if low < 0 or high >= num_classes:
        raise LabelError(f"labels must be in [0, {num_classes}), got [{low}, {high}]")
    counts = np.bincount(clean * num_classes + noisy, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).astype(np.float64)
    sizes = counts.sum(axis=1, keepdims=True)
    return np.where(sizes > 0, counts / np.maximum(sizes, 1.0), np.eye(num_classes))


def asymmetric_targets(dataset: str | None) -> np.ndarray:
    """The class each class moves to under asymmetric noise.

    Parameters
    ----------
    dataset
        ``"cifar10"`` or ``"cifar100"``.

    Returns
    -------
    np.ndarray
        ``(C,)`` int64; ``targets[c] == c`` for classes the noise leaves alone.

    Raises
    ------
    InputError
        No mapping is defined for ``dataset``; the message lists the ones that have one.
    """
    key = (dataset or "").lower().replace("-", "").replace("_", "")
    if key == "cifar10":
        targets = np.arange(10)
        targets[list(CIFAR10_ASYMMETRIC)] = list(CIFAR10_ASYMMETRIC.values())
        return targets
    if key == "cifar100":
        targets = np.empty(100, dtype=np.int64)
        for coarse in range(20):
            members = np.flatnonzero(CIFAR100_COARSE == coarse)
            targets[members] = np.roll(members, -1)
        return targets
    what = ("asymmetric noise needs a dataset name" if dataset is None
            else f"no asymmetric noise mapping for dataset {dataset!r}")
    raise InputError(f"{what}; mappings are defined for {', '.join(ASYMMETRIC_DATASETS)} "
                     "(kind='pairflip' flips each class to the next on any dataset)")


def load_cifar_n(path: str | os.PathLike, *, key: str = "worse_label", num_samples: int | None = None,
                 clean_labels: np.ndarray | None = None) -> NoiseResult:
    """Load one human label set from a CIFAR-10N/100N file (Wei et al., ICLR 2022).

    Parameters
    ----------
    path
        ``CIFAR-10_human.pt`` or ``CIFAR-100_human.pt``: a dict of ``(50000,)`` label
        arrays in the original CIFAR training order.
    key
        ``"aggre_label"``, ``"worse_label"``, ``"random_label1"``..``"random_label3"``
        (CIFAR-10N) or ``"noisy_label"`` (CIFAR-100N; ``"noisy_coarse_label"`` for
        superclasses).
    num_samples
        If given, the dataset's length; the file must have as many labels.
    clean_labels
        If given, ``(N,)`` labels of the dataset; they must equal the file's clean labels,
        which proves the dataset is in the order the file indexes.

    Returns
    -------
    NoiseResult
        The realised transition and rate are measured against the file's ``clean_label``.

    Raises
    ------
    MissingFileError, CorruptFileError
        The file is absent, unreadable, or not a CIFAR-N label dict.
    InputError
        ``key`` is not in the file; the message lists the label sets it has.
    ShapeError
        The file's length differs from ``num_samples`` or ``clean_labels``.
    LabelError
        The file's clean labels differ from ``clean_labels``.
    """
    from .safe_pickle import load_torch_numpy

    table = load_torch_numpy(path, what="CIFAR-N label")
    clean_key = "clean_coarse_label" if key == "noisy_coarse_label" else "clean_label"
    if not isinstance(table, dict) or clean_key not in table:
        found = sorted(table) if isinstance(table, dict) else type(table).__name__
        raise CorruptFileError(f"{path} is not a CIFAR-N label file: expected a dict with {clean_key!r}, got {found}")
    if key not in table:
        choices = ", ".join(k for k in sorted(table) if not k.startswith("clean"))
        raise InputError(f"{path} has no label set {key!r}; it has {choices}")
    clean = _as_label_array(table[clean_key], path, clean_key)
    noisy = _as_label_array(table[key], path, key)
    if len(clean) != len(noisy):
        raise CorruptFileError(f"{path}: {clean_key} has {len(clean)} labels but {key} has {len(noisy)}")
    if num_samples is not None and len(noisy) != num_samples:
        raise ShapeError(f"CIFAR-N file {path} has {len(noisy)} labels but the dataset has "
                         f"{num_samples} samples; CIFAR-N covers the 50,000 training images only")
    if clean_labels is not None:
        given = np.asarray(clean_labels).astype(np.int64, copy=False)
        if given.shape != clean.shape:
            raise ShapeError(f"CIFAR-N file {path} has {len(clean)} labels but the dataset has "
                             f"{len(given)} samples; CIFAR-N covers the 50,000 training images only")
        differ = int((given != clean).sum())
        if differ:
            raise LabelError(f"{differ} of {len(clean)} clean labels in {path} differ from the dataset's: "
                             "is it the CIFAR training split, in the original order?")
    num_classes = int(max(clean.max(), noisy.max())) + 1
    return _result(clean, noisy, num_classes, nominal_rate=_CIFAR_N_PUBLISHED.get(key),
                   kind=f"cifar-n:{key}")


# -- internals ---------------------------------------------------------------------------

def _result(clean: np.ndarray, noisy: np.ndarray, num_classes: int, **fields) -> NoiseResult:
    noisy = noisy.astype(np.int64, copy=False)
    return NoiseResult(noisy_labels=noisy, clean_labels=clean,
                       transition=transition_from_labels(clean, noisy, num_classes=num_classes),
                       realised_rate=float((noisy != clean).mean()), **fields)


def _mapping(dataset: str | None, num_classes: int | None) -> np.ndarray:
    targets = asymmetric_targets(dataset)
    if num_classes is not None and num_classes != len(targets):
        raise ConfigError(f"the {dataset} asymmetric mapping has {len(targets)} classes, "
                          f"but num_classes={num_classes}")
    return targets


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown noise {what} {value!r}; choose one of {', '.join(choices)}")


def _check_rate(rate: float) -> float:
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"noise rate must be a number in [0, 1], got {rate!r}") from None
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ConfigError(f"noise rate must be in [0, 1], got {rate}")
    return rate


def _check_labels(labels: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    labels = as_labels(labels, "labels")
    if labels.size == 0:
        raise ShapeError("labels are empty: there is nothing to corrupt")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if num_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got num_classes={num_classes}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise LabelError(f"labels must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return labels, num_classes


def _as_label_array(values: object, path: str | os.PathLike, key: str) -> np.ndarray:
    arr = np.asarray(values.numpy() if hasattr(values, "numpy") else values)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
        raise CorruptFileError(f"{path}: {key!r} should be (N,) non-negative integers, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def _sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of ``probs`` ``(N, C)``, by inverting the row CDFs."""
    cdf = np.cumsum(probs, axis=1)
    # Normalising by the last entry makes it exactly 1, so rounding can never push a
    # draw past the last class with non-zero probability.
    cdf /= cdf[:, -1:]
    u = rng.random((len(probs), 1))
    return (cdf <= u).sum(axis=1).astype(np.int64)


def _instance_noise(labels: np.ndarray, num_classes: int, rate: float, features: np.ndarray | None,
                    std: float, rng: np.random.Generator) -> np.ndarray:
    if features is None:
        raise InputError("instance-dependent noise needs features=(N, d) per-sample features "
                         "(the reference uses flattened raw pixels)")
    x = np.asarray(features)
    if x.ndim != 2 or len(x) != len(labels):
        raise ShapeError(f"features must be (N, d) with N = {len(labels)} labels, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise InputError("features contain NaN or infinite values")
    if not std > 0:
        raise ConfigError(f"instance_std must be positive, got {std}")
    n = len(labels)
    flip = _truncated_normal(rate, std, n, rng)
    scores = np.empty((n, num_classes))
    for c in range(num_classes):
        # One projection per true class, as the reference; drawn even for absent classes
        # so a seed means the same projections whatever the label mix.
        w = rng.standard_normal((x.shape[1], num_classes), dtype=np.float32)
        members = labels == c
        scores[members] = x[members].astype(np.float32) @ w
    rows = np.arange(n)
    scores[rows, labels] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs *= (flip / probs.sum(axis=1))[:, None]
    probs[rows, labels] = 1.0 - flip
    return _sample_rows(probs, rng)


def _truncated_normal(mean: float, std: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws from ``N(mean, std²)`` truncated to ``[0, 1]``, by inverse CDF."""
    import torch

    def cdf(z: float) -> float:
        return 0.5 * math.erfc(-z / math.sqrt(2.0))

    lo, hi = cdf((0.0 - mean) / std), cdf((1.0 - mean) / std)
    p = torch.from_numpy(lo + rng.random(size) * (hi - lo))
    return np.clip(mean + std * torch.special.ndtri(p).numpy(), 0.0, 1.0)
