"""Adapters: how purified labels reach one upstream codebase.

An adapter is a subclass of :class:`Adapter` that declares, for one upstream
learning-with-noisy-labels codebase:

* its ``name`` (the registry key) and ``upstream`` (repository, plus the
  ``upstream_commits`` it is tested against);
* how dataset indices map to positions in the upstream's label array
  (:meth:`Adapter.index_map`: :class:`IdentityMap`, :class:`StoredIndexMap` or
  :class:`SeededSplitMap`);
* how to write labels in the upstream's native file format (``label_format``,
  :meth:`Adapter.write_labels`, :meth:`Adapter.read_labels`);
* how to inject labels into an already constructed dataset object
  (:meth:`Adapter.get_labels`, :meth:`Adapter.set_labels`);
* how the upstream's loader yields labels (:meth:`Adapter.loader_labels`), which
  :meth:`Adapter.verify_alignment` compares with the purified labels at sampled indices.

Adapters are registered by plugins through the ``dmlp_register_adapters`` hook;
:func:`dmlp_plugin.plugins.list_adapters` and :func:`dmlp_plugin.plugins.get_adapter`
look them up. ``docs/writing-adapters.md``
walks through writing one.

Vocabulary used throughout: the *dataset index* ``i`` is a sample's index in the dataset
that was purified (``result.labels[i]``); a *position* ``p`` is an index into the
upstream's own label array, which may be a permuted subset of the dataset.
"""

from __future__ import annotations

import abc
import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np

from .errors import AdapterError, AlignmentError, ShapeError
from .io import PathLike, export_labels, load_array
from .validation import as_labels

__all__ = [
    "Adapter",
    "IndexMap",
    "IdentityMap",
    "StoredIndexMap",
    "SeededSplitMap",
    "permutation_split",
    "validate_adapter_class",
    "as_label_array",
    "sample_positions",
    "NpyLabelFile",
    "upstream_attribute",
]

SplitRecipe = Callable[[int, int], tuple[np.ndarray, np.ndarray]]

# Registry names are typed on command lines and used as entry-point names.
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def as_label_array(labels: Any, *, what: str = "labels") -> np.ndarray:
    """``(N,)`` int64 hard labels from an array-like or a :class:`~dmlp_plugin.result.PurifyResult`.

    Follows :func:`dmlp_plugin.validation.as_labels`: raises
    :class:`~dmlp_plugin.errors.ShapeError` unless one-dimensional and
    :class:`~dmlp_plugin.errors.LabelError` unless non-negative whole numbers.
    """
    if hasattr(labels, "soft_labels") and hasattr(labels, "labels"):  # a PurifyResult
        labels = labels.labels
    return as_labels(labels, what)


# -- index maps ----------------------------------------------------------------------------


class IndexMap(abc.ABC):
    """Maps the upstream's label positions to dataset indices.

    ``indices(N)[p]`` is the dataset index whose label sits at position ``p`` of the
    upstream's label array, so the upstream's labels are ``labels[indices(N)]``.
    """

    kind: ClassVar[str]

    @abc.abstractmethod
    def _indices(self, num_samples: int) -> np.ndarray:
        """The raw index array; validated by :meth:`indices`."""

    def indices(self, num_samples: int) -> np.ndarray:
        """``(M,)`` int64 dataset indices, one per upstream position, for a dataset of ``N``.

        Raises :class:`~dmlp_plugin.errors.AlignmentError` if an index is outside
        ``[0, N)`` or repeated.
        """
        idx = np.asarray(self._indices(num_samples))
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise AlignmentError(f"{self!r} gave {idx.dtype} indices of shape {idx.shape}, expected (M,) integers")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= num_samples):
            raise AlignmentError(
                f"{self!r} refers to dataset index {int(idx.max() if idx.max() >= num_samples else idx.min())}, "
                f"outside the {num_samples} purified samples; were the labels purified on a different dataset?")
        if np.unique(idx).size != idx.size:
            raise AlignmentError(f"{self!r} maps {idx.size - np.unique(idx).size} upstream positions to a repeated dataset index")
        return idx

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (dataset order, first axis ``N``) rearranged into upstream order."""
        values = np.asarray(values)
        return values[self.indices(len(values))]


class IdentityMap(IndexMap):
    """Upstream position ``p`` holds dataset index ``p``: same samples, same order."""

    kind = "identity"

    def _indices(self, num_samples: int) -> np.ndarray:
        return np.arange(num_samples, dtype=np.int64)

    def __repr__(self) -> str:
        return "IdentityMap()"


class StoredIndexMap(IndexMap):
    """Upstream position ``p`` holds dataset index ``indices[p]``, from an array or a file.

    Use when the upstream keeps (or writes) the indices of the samples it trains on,
    for example a ``torch.utils.data.Subset`` or a saved ``train_idx.npy``.

    Parameters
    ----------
    indices
        ``(M,)`` integer array, or a path :func:`~dmlp_plugin.io.load_array` reads.
    key
        Array name inside an ``.npz``/``.pt`` file.
    """

    kind = "stored"

    def __init__(self, indices: np.ndarray | PathLike | Any, *, key: str | None = None) -> None:
        if isinstance(indices, (str, Path)):
            self.source = str(indices)
            indices = load_array(indices, key=key, what="index")
        else:
            self.source = None
        self._stored = np.asarray(indices)

    def _indices(self, num_samples: int) -> np.ndarray:
        return self._stored

    def __repr__(self) -> str:
        where = self.source if self.source is not None else f"{self._stored.size} indices"
        return f"StoredIndexMap({where})"


def permutation_split(num_samples: int, seed: int, *, num_val: int | float,
                      val_first: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The common seeded split: ``np.random.seed(seed); perm = np.random.permutation(N)``.

    The validation set is the first ``num_val`` entries of the permutation (the last,
    with ``val_first=False``) and the training set the rest, both in permutation order.
    The numbers drawn equal those after ``np.random.seed(seed)``, but the global random
    state is left untouched.

    Parameters
    ----------
    num_val
        Validation size: a count, or a fraction of ``num_samples`` (rounded down, as
        ``int(N * fraction)``).

    Returns
    -------
    (train_indices, val_indices) : tuple of ``(M,)`` int64 arrays
    """
    n_val = int(num_samples * num_val) if isinstance(num_val, float) else int(num_val)
    if not 0 <= n_val <= num_samples:
        raise ShapeError(f"num_val={num_val!r} is not between 0 and the {num_samples} samples")
    perm = np.random.RandomState(seed).permutation(num_samples).astype(np.int64)
    if val_first:
        return perm[n_val:], perm[:n_val]
    return perm[: num_samples - n_val], perm[num_samples - n_val:]


class SeededSplitMap(IndexMap):
    """The upstream draws a seeded train/validation split; recompute it exactly.

    Parameters
    ----------
    seed
        The seed the upstream splits with.
    num_val
        Validation size for the default recipe, :func:`permutation_split`.
    part
        Which part of the split the upstream's dataset object holds.
    recipe
        ``recipe(num_samples, seed) -> (train_indices, val_indices)`` reproducing the
        upstream's split, each in the order the upstream keeps it. Draw from a local
        ``np.random.RandomState(seed)`` or ``torch.Generator``, never the global state.
        Bind extra inputs (a label-stratified split needs the given labels) with
        :func:`functools.partial`.
    """

    kind = "seeded-split"

    def __init__(self, seed: int, *, num_val: int | float | None = None,
                 part: Literal["train", "val"] = "train", recipe: SplitRecipe | None = None) -> None:
        if part not in ("train", "val"):
            raise ShapeError(f"part must be 'train' or 'val', got {part!r}")
        if recipe is None:
            if num_val is None:
                raise ShapeError("SeededSplitMap needs num_val (for the default permutation split) or a recipe")

            def recipe(n: int, s: int) -> tuple[np.ndarray, np.ndarray]:
                return permutation_split(n, s, num_val=num_val)

        self.seed, self.num_val, self.part, self.recipe = int(seed), num_val, part, recipe

    def split(self, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """``(train_indices, val_indices)``, checked to be disjoint."""
        train, val = (np.asarray(a, dtype=np.int64) for a in self.recipe(num_samples, self.seed))
        if np.intersect1d(train, val).size:
            raise AlignmentError(f"{self!r}: the recipe's train and validation parts overlap")
        return train, val

    def _indices(self, num_samples: int) -> np.ndarray:
        train, val = self.split(num_samples)
        return train if self.part == "train" else val

    def __repr__(self) -> str:
        size = f", num_val={self.num_val!r}" if self.num_val is not None else ""
        return f"SeededSplitMap(seed={self.seed}{size}, part={self.part!r})"


# -- helpers for adapters ------------------------------------------------------------------


class NpyLabelFile:
    """Mixin for adapters whose upstream reads an int64 ``.npy`` of labels in dataset order."""

    label_format = "npy"
    label_suffix = ".npy"

    def write_labels(self, labels: np.ndarray, path: PathLike) -> Path:
        return export_labels(as_label_array(labels), path, "npy")

    def read_labels(self, path: PathLike) -> np.ndarray:
        return as_label_array(load_array(path, what="labels"), what=f"labels in {path}")


def upstream_attribute(dataset: Any, name: str, *, adapter: str, expected: str) -> Any:
    """``dataset.<name>``, or an :class:`~dmlp_plugin.errors.AdapterError` saying which class was expected."""
    try:
        return getattr(dataset, name)
    except AttributeError:
        raise AdapterError(f"adapter {adapter!r}: {type(dataset).__name__} has no {name!r}; expected "
                           f"{expected}") from None


# -- the adapter base class ----------------------------------------------------------------


class Adapter(abc.ABC):
    """Base class of every adapter: what one upstream codebase needs to use purified labels.

    Subclasses set the class attributes and implement the four abstract methods; the
    workflow methods (:meth:`export`, :meth:`inject`, :meth:`verify_alignment`) are built
    on them and rarely need overriding. Options (a split seed, an attribute name) are
    keyword arguments of ``__init__``; ``cls()`` must work with defaults.

    Attributes
    ----------
    name : str
        Registry name: lowercase letters, digits, ``-``, ``_`` and ``.``.
    upstream : str
        The upstream codebase: its repository URL (or package name).
    upstream_commits : tuple of str
        Commits or release tags the adapter is tested against; ``()`` if not pinned.
    label_format : str
        Short name of the label file format the upstream reads, e.g. ``"npy"``
        (int64 ``.npy``), ``"dividemix-json"`` (JSON list), ``"txt"``.
    label_suffix : str
        File suffix of that format, used by tools that pick a file name.
    description : str
        One line for listings.
    integration : Recipe or None
        The :class:`~dmlp_integrations.recipe.Recipe` that ``dmlp integrate <name>``
        applies to a clone of the upstream, or ``None`` if there is none. A class that sets
        it gets ``upstream`` and ``upstream_commits`` from the recipe unless it sets them.
    dataset_kind : str
        What the upstream's dataset object is (``"Co-teaching's training CIFAR10"``), for the
        message of :meth:`dataset_attribute` when a dataset lacks an attribute.
    reads_given_labels : bool
        True when the upstream reads its noisy labels from a file the user purifies (DivideMix's
        noise JSON): then labels that differ from the purified run's input are an error.
        False when the upstream draws its own noise, which the purified labels replace.
    batch_layout : tuple of two ints, or None
        Positions of the label and of the sample index in a training batch
        (``(1, 2)`` for ``(input, label, index)``), for :meth:`batch_labels`.
    """

    name: ClassVar[str]
    upstream: ClassVar[str]
    upstream_commits: ClassVar[tuple[str, ...]]
    label_format: ClassVar[str]
    label_suffix: ClassVar[str] = ""
    description: ClassVar[str] = ""
    integration: ClassVar[Any] = None
    dataset_kind: ClassVar[str] = "the upstream's dataset"
    reads_given_labels: ClassVar[bool] = False
    batch_layout: ClassVar[tuple[int, int] | None] = None

    #: Checked by :func:`validate_adapter_class` when a plugin registers the class.
    REQUIRED_ATTRIBUTES: ClassVar[tuple[str, ...]] = ("name", "upstream", "upstream_commits", "label_format")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # An adapter with a recipe is tested against the recipe's upstream and commits.
        recipe = cls.__dict__.get("integration")
        if recipe is not None:
            if "upstream" not in cls.__dict__:
                cls.upstream = recipe.upstream
            if "upstream_commits" not in cls.__dict__:
                cls.upstream_commits = tuple(recipe.commits)

    def dataset_attribute(self, dataset: Any, name: str) -> Any:
        """``dataset.<name>``, or an :class:`~dmlp_plugin.errors.AdapterError` naming this
        adapter and the dataset it expected (:attr:`dataset_kind`)."""
        return upstream_attribute(dataset, name, adapter=self.name, expected=self.dataset_kind)

    # -- index map -----------------------------------------------------------------------

    def index_map(self, dataset: Any = None) -> IndexMap:
        """How dataset indices map to the label array held by ``dataset``.

        The default is :class:`IdentityMap`. ``dataset`` is the upstream dataset object
        when one is at hand (inject, verify) and ``None`` otherwise.
        """
        return IdentityMap()

    def upstream_labels(self, labels: Any, dataset: Any = None) -> np.ndarray:
        """``labels`` (dataset order) rearranged into the order of the upstream's label array."""
        return self.index_map(dataset).apply(as_label_array(labels))

    # -- native label files --------------------------------------------------------------

    @abc.abstractmethod
    def write_labels(self, labels: np.ndarray, path: PathLike) -> Path:
        """Write ``(N,)`` int64 labels, in dataset order, in the upstream's native format.

        Write atomically (:func:`dmlp_plugin.io.atomic_write` or
        :func:`dmlp_plugin.io.export_labels`). If the upstream reads its file after
        splitting, rearrange with :meth:`index_map` here. Returns the path written.
        """

    @abc.abstractmethod
    def read_labels(self, path: PathLike) -> np.ndarray:
        """Read a file written by :meth:`write_labels`; returns ``(N,)`` int64 labels in dataset order."""

    # -- dataset objects -----------------------------------------------------------------

    @abc.abstractmethod
    def get_labels(self, dataset: Any) -> np.ndarray:
        """The label array ``dataset`` holds, in upstream order, as ``(M,)`` int64."""

    @abc.abstractmethod
    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        """Replace the label array ``dataset`` holds with ``labels`` (``(M,)`` int64, upstream order).

        Keep the container type the upstream uses (list, array, tensor) and update
        every copy it reads from (``ImageFolder`` keeps labels in ``samples`` too).
        """

    def loader_labels(self, dataset: Any, positions: np.ndarray) -> np.ndarray:
        """The labels the upstream's loader yields at ``positions``.

        The default reads ``dataset[p][1]``, which fits ``(input, label, ...)`` items.
        Override for upstreams that yield labels elsewhere or only in some modes.
        """
        out = np.empty(len(positions), dtype=np.int64)
        for k, p in enumerate(positions):
            item = dataset[int(p)]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise AdapterError(
                    f"adapter {self.name!r}: dataset[{int(p)}] is a {type(item).__name__}, not an "
                    "(input, label, ...) tuple; override loader_labels() for this upstream")
            out[k] = int(item[1])
        return out

    def clean_labels(self, dataset: Any) -> np.ndarray | None:
        """The clean labels ``dataset`` keeps, in upstream order, or ``None``.

        CIFAR upstreams load the clean labels beside the noisy ones; the runtime uses them
        to check that the purified file follows the upstream's sample order.
        """
        return None

    def loader_yields_labels(self, dataset: Any) -> bool:
        """Whether ``dataset`` yields labels :meth:`loader_labels` can read (DivideMix's
        unlabeled mode does not); datasets that do not are not checked."""
        return True

    def batch_labels(self, dataset: Any, batch: Any) -> tuple[Any, Any] | None:
        """``(positions, labels)`` of one training batch of ``dataset``'s loader, or ``None``
        when the batch carries no sample positions. The default reads :attr:`batch_layout`."""
        if self.batch_layout is None or not isinstance(batch, (tuple, list)):
            return None
        label_at, index_at = self.batch_layout
        if len(batch) <= max(label_at, index_at):
            return None
        return batch[index_at], batch[label_at]

    # -- training options ------------------------------------------------------------------

    def residual_noise_settings(self, args: Any, rate: float, *, explicit: set[str] = frozenset()) -> dict[str, Any]:
        """Upstream options to set when training on purified labels with noise rate ``rate``.

        ``args`` is the upstream's parsed namespace and ``explicit`` the option names
        given on its command line. Co-teaching's forget rate, for example, should follow
        the *residual* noise of the purified labels, not the noise they were purified
        from. Returns ``{attribute: value}``; the default changes nothing.
        """
        return {}

    # -- workflow ------------------------------------------------------------------------

    def export(self, labels: Any, path: PathLike) -> Path:
        """Write purified labels (array or :class:`~dmlp_plugin.result.PurifyResult`) where the upstream reads them."""
        return self.write_labels(as_label_array(labels), path)

    def inject(self, dataset: Any, labels: Any, *, verify: bool = True, num_checks: int | None = 64,
               seed: int = 0) -> Any:
        """Put purified labels into an already constructed upstream dataset object.

        Parameters
        ----------
        dataset
            The upstream's dataset object, as its training script built it, still holding
            the noisy labels it loaded.
        labels
            ``(N,)`` purified labels in dataset order, or a
            :class:`~dmlp_plugin.result.PurifyResult`.
        verify
            Check alignment twice. Before: when ``labels`` is a ``PurifyResult``, the
            labels ``dataset`` holds must equal ``result.given_labels`` mapped by
            :meth:`index_map` (this catches a wrong split seed or index file, and labels
            purified from another noise file). After: :meth:`verify_alignment` (this
            catches labels that did not reach the loader).
        num_checks, seed
            Passed to :meth:`verify_alignment`.

        Returns
        -------
        The same ``dataset``, for chaining.

        Raises
        ------
        AlignmentError
            On either check, or when the dataset's length does not match the index map.
        """
        mapping = self.index_map(dataset)
        upstream = mapping.apply(as_label_array(labels))
        self._check_length(dataset, len(upstream))
        given = getattr(labels, "given_labels", None)
        if verify and given is not None:
            held = np.asarray(self.get_labels(dataset))
            expected = mapping.apply(as_label_array(given, what="given_labels"))
            if held.shape != expected.shape or not np.array_equal(held, expected):
                differ = int((held != expected).sum()) if held.shape == expected.shape else len(expected)
                raise AlignmentError(
                    f"adapter {self.name!r}: before injection the dataset holds labels that differ from the "
                    f"purified run's given labels at {differ} of {len(expected)} positions under {mapping!r}. "
                    "Check the adapter's options (split seed, index file) and that the dataset loaded the "
                    "same noisy labels that were purified; pass verify=False to inject anyway")
        self.set_labels(dataset, upstream)
        if verify:
            self.verify_alignment(dataset, labels, num_checks=num_checks, seed=seed)
        return dataset

    def verify_alignment(self, dataset: Any, labels: Any, *, num_checks: int | None = 64, seed: int = 0) -> int:
        """Check that the upstream's loader yields the purified labels at sampled positions.

        Samples ``num_checks`` positions (always including the first and the last; all
        of them when ``None``), reads the labels the loader yields there with
        :meth:`loader_labels`, and compares them with the purified labels mapped by
        :meth:`index_map`.

        Returns the number of positions checked; raises
        :class:`~dmlp_plugin.errors.AlignmentError` listing the first mismatches.
        """
        labels = as_label_array(labels)
        mapping = self.index_map(dataset)
        idx = mapping.indices(len(labels))
        expected = labels[idx]
        self._check_length(dataset, len(expected))
        positions = sample_positions(len(expected), num_checks, seed)
        got = np.asarray(self.loader_labels(dataset, positions))
        if got.shape != positions.shape:
            raise AdapterError(f"adapter {self.name!r}: loader_labels returned shape {got.shape} "
                               f"for {positions.size} positions")
        bad = np.flatnonzero(got != expected[positions])
        if bad.size:
            shown = "; ".join(
                f"position {positions[k]} (dataset index {idx[positions[k]]}): loader yields {got[k]}, "
                f"purified label is {expected[positions[k]]}" for k in bad[:5])
            raise AlignmentError(
                f"adapter {self.name!r}: {bad.size} of {positions.size} sampled positions disagree "
                f"under {mapping!r}: {shown}")
        return int(positions.size)

    def _check_length(self, dataset: Any, expected: int) -> None:
        try:
            size = len(dataset)
        except TypeError:  # datasets without __len__ are checked by sampling only
            return
        if size != expected:
            raise AlignmentError(
                f"adapter {self.name!r}: the dataset holds {size} samples but {self.index_map(dataset)!r} "
                f"gives {expected} labels for it")

    # -- conformance -----------------------------------------------------------------------

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any | None:
        """A tiny upstream dataset object holding ``labels`` (dataset order), or ``None``.

        :func:`dmlp_plugin.testing.check_adapter` injects into it to test
        :meth:`inject` and :meth:`verify_alignment` end to end. Build it the way the
        upstream would (same class, same split), from synthetic inputs; return ``None``
        only if the upstream cannot be constructed without real data.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def sample_positions(size: int, num_checks: int | None, seed: int = 0) -> np.ndarray:
    """``num_checks`` sorted positions in ``[0, size)``, always the first and the last (all when ``None``)."""
    if num_checks is None or num_checks >= size:
        return np.arange(size, dtype=np.int64)
    if num_checks < 2:
        raise ShapeError(f"num_checks must be >= 2 or None, got {num_checks}")
    # First and last positions catch off-by-one shifts that random draws may miss.
    middle = np.random.default_rng(seed).choice(np.arange(1, size - 1), size=num_checks - 2, replace=False)
    return np.sort(np.concatenate([[0, size - 1], middle])).astype(np.int64)


def validate_adapter_class(cls: Any) -> None:
    """Raise :class:`~dmlp_plugin.errors.AdapterError` unless ``cls`` is a complete adapter class.

    Checks that it subclasses :class:`Adapter`, declares every attribute in
    ``Adapter.REQUIRED_ATTRIBUTES`` with the right type, and implements every abstract
    method. The message names everything missing at once.
    """
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise AdapterError(f"{cls!r} is not a subclass of dmlp_plugin.adapter.Adapter")
    where = f"{cls.__module__}.{cls.__qualname__}"
    missing = [a for a in cls.REQUIRED_ATTRIBUTES if not hasattr(cls, a)]
    methods = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing or methods:
        parts = []
        if missing:
            parts.append(f"attribute(s) {', '.join(missing)}")
        if methods:
            parts.append(f"method(s) {', '.join(methods)}")
        raise AdapterError(f"adapter class {where} is missing required {' and '.join(parts)}")
    problems = []
    if not isinstance(cls.name, str) or not _NAME_PATTERN.match(cls.name):
        problems.append(f"name {cls.name!r} must be lowercase letters, digits, '-', '_' or '.'")
    for attr in ("upstream", "label_format"):
        if not isinstance(getattr(cls, attr), str) or not getattr(cls, attr).strip():
            problems.append(f"{attr} must be a non-empty string, got {getattr(cls, attr)!r}")
    commits = cls.upstream_commits
    if not isinstance(commits, (tuple, list)) or not all(isinstance(c, str) for c in commits):
        problems.append(f"upstream_commits must be a tuple of strings, got {commits!r}")
    if problems:
        raise AdapterError(f"adapter class {where}: {'; '.join(problems)}")
