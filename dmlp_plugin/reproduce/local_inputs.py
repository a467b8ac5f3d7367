"""Where ``dmlp reproduce`` takes its CIFAR-10 features and labels from, on any machine.

In order of preference:

1. ``--features FILE``: an ``.npz`` with arrays ``train`` (50000, d) and ``test``
   (10000, d) in CIFAR-10 order (``dmlp features --split train,test`` writes one); the
   labels come from the CIFAR-10 folder.
2. A folder of precomputed k-means features, when named (``--shared DIR`` or
   ``$DMLP_SHARED``): the features the numbers in ``benchmarks/RESULTS.md`` were measured on.
   It is never looked for, so a run does what it would do on a user's machine.
3. The CIFAR-10 folder itself (``--cifar-root``, a ``cifar-10-batches-py`` folder): its
   images are turned into single-layer k-means features with the package's own tooling
   (:func:`~dmlp_plugin.features.kmeans_features`, the recipe of the precomputed ones),
   once, then read from the feature cache. A smoke run computes smaller features of the
   rows it uses only, so it takes seconds.

:func:`plan_inputs` settles which, and says so in one line; nothing is read until the
run needs it. Each source gets its own ``features`` tag in the cells' protocol, so cells
computed on different features never stand in for each other in a results store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, MissingFileError, ShapeError

__all__ = ["DEFAULT_CIFAR_ROOT", "InputsPlan", "plan_inputs", "with_features", "KMEANS_FULL", "KMEANS_SMOKE"]

DEFAULT_CIFAR_ROOT = Path.home() / ".cache" / "dmlp" / "cifar10"
ENV_SHARED = "DMLP_SHARED"
_SHARED_FEATURES = Path("features") / "cifar10_kmeans_pca512.npz"
_SHARED_LABELS = Path("data") / "cifar10" / "train_labels_original_order.npy"

#: k-means settings of the computed features: those of the precomputed ones (1,600
#: centroids on whitened 6x6 patches, quadrant pooling, PCA to 512 dimensions).
KMEANS_FULL: dict[str, Any] = {"num_centroids": 1600, "output_dim": 512}
#: A smoke run's: smaller, on its rows only (its protocol keeps 128 dimensions).
KMEANS_SMOKE: dict[str, Any] = {"num_centroids": 200, "output_dim": 128, "num_patches": 50_000, "kmeans_iters": 5}

MISSING = ("dmlp reproduce needs CIFAR-10 features: pass --features FILE.npz (arrays train and test in CIFAR-10 "
           "order, e.g. from `dmlp features --method kmeans --split train,test`), or --cifar-root DIR holding "
           "cifar-10-batches-py to compute k-means features from its images (no such folder in {root}; "
           "`dmlp data cifar10 --from-folder IMAGES DIR` builds one from image files)")


@dataclass
class InputsPlan:
    """Where a run's inputs come from.

    ``kind`` is ``"file"``, ``"precomputed"`` or ``"kmeans"``; ``line`` says which in one
    line; ``tag`` goes into the cells' protocol (``Protocol.features``); ``load()`` reads
    (or computes) the :class:`~dmlp_plugin.reproduce.cifar_inputs.Inputs`, once.
    """

    kind: str
    line: str
    tag: str
    loader: Callable[[], Any]
    _loaded: Any = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> Any:
        if self._loaded is None:
            self._loaded = self.loader()
        return self._loaded


def plan_inputs(*, cifar_root: str | os.PathLike | None = None, features: str | os.PathLike | None = None,
                shared: str | os.PathLike | None = None, protocol: Any = None, all_rows: bool = False,
                progress: bool = True, cache_dir: str | os.PathLike | None = None) -> InputsPlan:
    """Settle where the inputs come from (see the module docstring), reading nothing yet.

    Parameters
    ----------
    cifar_root : path, optional
        The folder holding ``cifar-10-batches-py`` (or it); :data:`DEFAULT_CIFAR_ROOT` by default.
    features : path, optional
        A features ``.npz`` (``--features``).
    shared : path, optional
        A folder of precomputed features (``--shared``); ``$DMLP_SHARED`` by default, and
        none when that is unset.
    protocol : Protocol, optional
        A smoke protocol computes features with :data:`KMEANS_SMOKE` (else
        :data:`KMEANS_FULL`), and only for the rows of its subset, unless ``all_rows``.
    all_rows : bool
        Every row, whatever the protocol's subset (the upstream tables and table 8 need them).
    progress : bool
        Report the feature computation (bars on a terminal, lines in a log).
    cache_dir : path, optional
        The feature cache (default: ``$DMLP_CACHE_DIR/features`` or ``~/.cache/dmlp/features``).

    Raises
    ------
    MissingFileError
        In one line, when none of the sources is there, naming what would do.
    """
    root = Path(cifar_root).expanduser() if cifar_root is not None else DEFAULT_CIFAR_ROOT
    if features is not None:
        path = Path(features).expanduser()
        if not path.is_file():
            raise MissingFileError(f"--features {path} does not exist")
        _cifar_folder(root, why=f"--features {path.name} takes its labels from the CIFAR-10 folder")
        return InputsPlan("file", f"inputs: the features in {path}, with the labels of the CIFAR-10 folder {root}",
                          f"file:{path.name}:{_file_digest(path)}", lambda: _from_file(path, root))
    folder = _precomputed(shared)
    if folder is not None:
        from .cifar_inputs import load_inputs

        return InputsPlan("precomputed", f"inputs: the precomputed k-means features in {folder / _SHARED_FEATURES}",
                          "cifar10_kmeans_pca512", lambda: load_inputs(folder, root))
    batches = _cifar_folder(root, why=None)
    if batches is None:
        raise MissingFileError(MISSING.format(root=root))
    smoke = bool(protocol is not None and protocol.smoke)
    rows = None if all_rows else _subset_rows(protocol)
    options = KMEANS_SMOKE if smoke else KMEANS_FULL
    from ..features.cache import default_cache_dir

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    what = ("the rows of a smoke run" if rows is not None else "every image, once"
            + ("" if smoke else " (minutes on a CPU)"))
    tag = (f"kmeans{options['num_centroids']}-pca{options['output_dim']}" + ("-rows" if rows is not None else "")
           + f":{_folder_digest(batches)}")
    return InputsPlan("kmeans", f"inputs: k-means features of the CIFAR-10 images in {batches}, computed for {what} "
                      f"and cached in {cache}", tag,
                      lambda: _from_images(root, options, rows, progress=progress, cache_dir=cache))


def with_features(protocol: Any, plan: InputsPlan) -> Any:
    """``protocol`` with ``plan``'s features tag, so its cells are stored under their own ids."""
    return dataclasses.replace(protocol, features=plan.tag)


def _precomputed(explicit: str | os.PathLike | None) -> Path | None:
    """The folder of precomputed features: ``explicit`` (it must hold them), else
    ``$DMLP_SHARED`` (likewise), else none."""
    given = explicit if explicit is not None else os.environ.get(ENV_SHARED) or None
    if given is not None:
        folder = Path(given).expanduser()
        missing = [str(folder / p) for p in (_SHARED_FEATURES, _SHARED_LABELS) if not (folder / p).is_file()]
        if missing:
            flag = "--shared" if explicit is not None else f"${ENV_SHARED}"
            raise MissingFileError(f"{flag} {folder} lacks {', '.join(missing)}; leave it out to compute k-means "
                                   "features from --cifar-root, or pass --features FILE")
        return folder
    return None


def _cifar_folder(root: Path, *, why: str | None) -> Path | None:
    """The ``cifar-10-batches-py`` folder at ``root`` (or ``root`` itself); when absent,
    None, or a one-line error saying ``why`` it is needed."""
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file():
            return folder
    if why is None:
        return None
    raise MissingFileError(f"{why}, but there is no cifar-10-batches-py in {root}: pass --cifar-root DIR "
                           "(`dmlp data cifar10 --from-folder IMAGES DIR` builds one from image files)")


def _subset_rows(protocol: Any) -> tuple[int, int] | None:
    if protocol is None or (protocol.train_rows is None and protocol.test_rows is None):
        return None
    return protocol.train_rows, protocol.test_rows


def _labels(root: Path) -> tuple[Any, Any]:
    """The CIFAR-10 train and test sets (read through the package's restricted unpickler)."""
    from ..data import CIFAR10

    return CIFAR10(root, "train"), CIFAR10(root, "test")


def _from_file(path: Path, root: Path) -> Any:
    from .cifar_inputs import Inputs

    train_set, test_set = _labels(root)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "train" not in z.files or "test" not in z.files:
                raise InputError(f"--features {path} needs arrays 'train' and 'test' (it has {', '.join(z.files)})")
            train, test = z["train"].astype(np.float32), z["test"].astype(np.float32)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read --features {path}: {exc}") from None
    if len(train) != len(train_set) or len(test) != len(test_set):
        raise ShapeError(f"--features {path} has {len(train)} train / {len(test)} test rows, but the CIFAR-10 "
                         f"folder {root} has {len(train_set)} / {len(test_set)} images")
    return Inputs(train, test, train_set.targets.astype(np.int64), test_set.targets.astype(np.int64))


def _from_images(root: Path, options: dict[str, Any], rows: tuple[int, int] | None, *, progress: bool,
                 cache_dir: Path) -> Any:
    """k-means features of the folder's images (only the protocol's subset of rows, when
    given, in the order :func:`~dmlp_plugin.reproduce.cifar_inputs.subset` keeps them)."""
    from ..data import ArrayDataset
    from ..features.kmeans import kmeans_features
    from .cifar_inputs import Inputs, subset

    train_set, test_set = _labels(root)
    train_idx, test_idx = np.arange(len(train_set)), np.arange(len(test_set))
    if rows is not None:  # the rows subset() will keep: it draws them from the sizes alone
        index = Inputs(train_idx[:, None], test_idx[:, None], train_set.targets, test_set.targets)
        picked = subset(index, rows[0], test=rows[1])
        train_idx, test_idx = picked.train[:, 0], picked.test[:, 0]
    parts = []
    for data, idx, split in ((train_set, train_idx, "train"), (test_set, test_idx, "test")):
        whole = len(idx) == len(data)
        parts.append(data if whole else ArrayDataset(data.images[idx], data.targets[idx], data.classes,
                                                     name=f"cifar10-{split}-rows"))
        parts[-1].split = split  # names the progress stages
    train, test = kmeans_features(parts[0], parts[1], progress=progress, cache_dir=cache_dir, **options)
    return Inputs(np.asarray(train, np.float32), np.asarray(test, np.float32),
                  train_set.targets[train_idx].astype(np.int64), test_set.targets[test_idx].astype(np.int64))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _folder_digest(folder: Path) -> str:
    """Identifies the images a CIFAR folder holds: the digest of its batch files."""
    h = hashlib.sha256()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        path = folder / name
        if path.is_file():
            h.update(name.encode())
            h.update(_file_digest(path).encode())
    return h.hexdigest()[:12]
