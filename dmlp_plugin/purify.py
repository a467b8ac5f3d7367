"""`purify_dataset`: the one function most users call."""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np

from .accuracy_estimate import DEFAULT_FOLDS, AccuracyEstimate, estimate_label_accuracy, trusted_folds
from .config import PurifyConfig
from .device import choose_device, native_bfloat16
from .errors import ConfigError, InputError, ShapeError
from .io import array_checksum
from .result import PurifyResult
from .validation import (as_features, as_labels, check_classes_present, check_trusted_indices,
                         infer_num_classes)

__all__ = ["purify_dataset"]


def purify_dataset(
    features: Any,
    labels: Any = None,
    *,
    backbone: Any = None,
    checkpoint: Any = None,
    feature_options: dict[str, Any] | None = None,
    val_indices: Any = None,
    val_labels: Any = None,
    val_features: Any = None,
    num_classes: int | None = None,
    config: PurifyConfig | None = None,
    device: Any = None,
    seed: int = 0,
    progress: bool = False,
    clean_labels: Any = None,
    features_view2: Any = None,
    val_features_view2: Any = None,
    class_names: list[str] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    estimate_accuracy: bool = False,
    estimate_folds: int = DEFAULT_FOLDS,
) -> PurifyResult:
    """Purify noisy labels with DMLP, from frozen features and a small trusted set.

    Parameters
    ----------
    features : array-like of shape (N, d), torch tensor, path to a feature file, or dataset
        Frozen self-supervised features of the training set, in dataset index order.
        Files may be ``.npy``, ``.npz`` (single array) or ``.pt``. An
        :class:`~dmlp_plugin.data.ImageDataset` (e.g. ``load_dataset("cifar10", root)``)
        is first turned into features with ``backbone`` (cached, so a rerun is instant).
    labels : array-like of shape (N,) or path, optional
        Given (noisy) integer labels in ``[0, num_classes)``. Defaults to the dataset's
        own ``targets`` when ``features`` is a dataset.
    backbone : str or torch.nn.Module, optional
        With a dataset: a torchvision/timm name (``"resnet18-cifar"`` for the CIFAR
        stem), a module, or ``"kmeans"`` for the CPU k-means features. A plugin's
        ``dmlp_extract_features`` hook is asked first.
    checkpoint : path, optional
        With a dataset and a named backbone: local SimCLR/MoCo/BYOL weights.
    feature_options : dict, optional
        Extra keyword arguments for :func:`dmlp_plugin.features.extract_features` (or
        :func:`~dmlp_plugin.features.kmeans_features` for ``"kmeans"``).
    val_indices : array-like of shape (V,), optional
        Indices of training samples whose clean labels are known (the CIFAR protocol:
        1,000 clean samples carved from the training set). Needs ``val_labels``. These
        samples are not purified: they keep their clean labels in the result.
    val_labels : array-like of shape (V,)
        Clean labels of the trusted set, aligned with ``val_indices`` or ``val_features``.
    val_features : array-like of shape (V, d), optional
        Features of a separate trusted set (the Clothing1M protocol), instead of
        ``val_indices``.
    num_classes : int, optional
        Number of classes ``C``; inferred as ``max label + 1`` when omitted.
    config : PurifyConfig or dict, optional
        Hyperparameters; ``PurifyConfig()`` (the benchmark's best) by default,
        ``PurifyConfig.paper()`` for the paper's method.
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; CUDA when available by default.
    seed : int
        Seeds every random choice; the same inputs and seed give identical labels on CPU.
    progress : bool
        Show a rich progress bar over epochs (on stderr).
    clean_labels : array-like of shape (N,), optional
        True labels, used *only* to report label accuracy per epoch in ``history``.
    features_view2, val_features_view2 : array-like, optional
        A second view of the features (e.g. of flipped images) for the two-view mode.
    class_names : list of str, optional
        Stored in the result for reports.
    on_epoch : callable, optional
        ``on_epoch(epoch, record)`` after every epoch with that epoch's metrics. Reading
        metrics each epoch costs a device synchronisation on CUDA.
    estimate_accuracy : bool
        Also estimate the accuracy of the returned labels on the non-trusted rows, without
        clean labels: the trusted set is split into ``estimate_folds`` folds, and each fold
        is purified as ordinary rows with its given labels, the other folds serving as the
        trusted set, and scored against its clean labels
        (:mod:`dmlp_plugin.accuracy_estimate`). Fills ``result.accuracy_estimate``
        (``estimated_accuracy``, ``estimated_accuracy_interval``). Off by default because
        it costs ``estimate_folds`` extra purifications: at the default 5 folds a call takes
        about 6× as long as without it (on CIFAR-10, ``benchmarks/accuracy_estimate.py``:
        6.1× in the default config, 5.7× in paper mode). The returned labels are the same
        with or without it. Only under the CIFAR
        protocol (``val_indices``), whose trusted rows carry given labels; the fold runs
        call no plugin hooks and record no history.
    estimate_folds : int
        Folds (extra purifications) of the accuracy estimate. Each fold run has
        ``(K − 1)/K`` of the trusted rows, so with few folds the estimate leans low where
        the method depends on the trusted set's size: not measurably in the default
        config; in paper mode at 90% noise by 2.7 points at 5 folds and 1.3 at 10.

    Returns
    -------
    PurifyResult
        Soft labels ``(N, C)`` on the simplex in the original order (trusted samples
        included with their clean labels), hard labels, confidence, changed mask, label
        issues ranked most likely first, per-epoch history, the config used and timings.

    Raises
    ------
    ShapeError, LabelError, InputError
        On inconsistent lengths, labels out of range, non-finite features, a trusted set
        that is empty, duplicated, out of range, or missing a class; with
        ``estimate_accuracy``, for a separate trusted set (``val_features``: its rows
        have no given labels to purify) or a class with fewer than two trusted rows.
    MissingFileError, CorruptFileError
        When an input given as a path cannot be read.

    Warns
    -----
    RuntimeWarning
        With ``estimate_accuracy``, when the purified labels are estimated less accurate
        than the given labels of the same (trusted) rows.

    Examples
    --------
    >>> result = purify_dataset(feats, noisy, val_indices=idx, val_labels=clean[idx])
    >>> result.accuracy(clean)             # label accuracy, if you have clean labels
    >>> result.export("noise.json", "dividemix")
    """
    import torch

    from .engine import purify_tensors

    from . import plugins

    t0 = time.perf_counter()
    pm = plugins.get_plugin_manager()
    config = plugins.configure(_as_config(config), pm=pm)
    if hasattr(features, "load_image") and hasattr(features, "targets"):
        dataset = features
        features = _dataset_features(dataset, backbone, checkpoint, device, progress,
                                     feature_options or {}, pm)
        if labels is None:
            labels = dataset.targets
        if class_names is None and getattr(dataset, "classes", None):
            class_names = list(dataset.classes)
    elif backbone is not None or checkpoint is not None:
        raise InputError("backbone/checkpoint are for a dataset input; features were given as an array")
    if labels is None:
        raise InputError("labels are required (they default to dataset.targets only for a dataset input)")
    feats = as_features(features)
    n = feats.shape[0]
    given = as_labels(labels, "labels")
    if len(given) != n:
        raise ShapeError(f"features have {n} rows but labels have {len(given)} entries; they must align")
    if val_labels is None:
        raise InputError("a trusted set is required: pass val_labels with val_indices or val_features")
    val_y = as_labels(val_labels, "val_labels")
    if (val_indices is None) == (val_features is None):
        raise InputError("pass exactly one of val_indices (trusted samples inside the training set) "
                         "or val_features (a separate trusted set)")
    if estimate_accuracy and val_indices is None:
        raise InputError(
            "estimate_accuracy needs the trusted set as val_indices into the training set (the CIFAR "
            "protocol): it purifies trusted rows with their given labels and scores them against the "
            "clean ones, and a separate trusted set (val_features) has no given labels")
    clean = None
    if clean_labels is not None:
        clean = as_labels(clean_labels, "clean_labels")
        if len(clean) != n:
            raise ShapeError(f"clean_labels has {len(clean)} entries but there are {n} samples")
    num_classes = infer_num_classes(num_classes, given, val_y, *([clean] if clean is not None else []),
                                    names=("labels", "val_labels", "clean_labels"))
    if len(val_y) == 0:
        raise InputError("the trusted set is empty: val_labels has no entries")
    if class_names is not None and len(class_names) != num_classes:
        raise ShapeError(f"class_names has {len(class_names)} names but there are {num_classes} classes")

    feats2 = as_features(features_view2, "features_view2") if features_view2 is not None else None
    if feats2 is not None and len(feats2) != n:
        raise ShapeError(f"features_view2 has {len(feats2)} rows but features have {n}")
    if val_indices is not None:
        trusted = check_trusted_indices(val_indices, n)
        if len(trusted) != len(val_y):
            raise ShapeError(f"val_indices has {len(trusted)} entries but val_labels has {len(val_y)}")
        if len(trusted) >= n:
            raise InputError(f"the trusted set covers all {n} samples: nothing is left to purify")
        train_mask = np.ones(n, bool)
        train_mask[trusted] = False
        train_rows = np.flatnonzero(train_mask)
        vfeats, vfeats2, val_given = feats[trusted], None if feats2 is None else feats2[trusted], given[trusted]
    else:
        trusted = np.zeros(0, np.int64)
        train_rows = np.arange(n)
        vfeats = as_features(val_features, "val_features")
        if vfeats.shape[1] != feats.shape[1]:
            raise ShapeError(f"val_features have {vfeats.shape[1]} dims but features have {feats.shape[1]}")
        if len(vfeats) != len(val_y):
            raise ShapeError(f"val_features has {len(vfeats)} rows but val_labels has {len(val_y)}")
        vfeats2 = None
        if feats2 is not None:
            if val_features_view2 is None:
                raise InputError("features_view2 needs val_features_view2 when the trusted set is separate")
            vfeats2 = as_features(val_features_view2, "val_features_view2")
        val_given = None
    check_classes_present(val_y, num_classes)
    if estimate_accuracy:
        trusted_folds(val_y, estimate_folds, seed)  # bad folds or a rare class fail before any run
    if len(val_y) < 10 * num_classes:
        warnings.warn(f"the trusted set has only {len(val_y)} samples for {num_classes} classes; "
                      "purification will be noisy", RuntimeWarning, stacklevel=2)

    dev = choose_device(device)
    if config.precision == "bfloat16" and not native_bfloat16(dev):
        warnings.warn(f"precision='bfloat16' on {dev}, which has no native bfloat16 matrix "
                      "products: expect it to be slower than float32", RuntimeWarning, stacklevel=2)

    def tensor(a: np.ndarray | None):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    def run_engine(rows: np.ndarray, v_feats: np.ndarray, v_feats2: np.ndarray | None, v_labels: np.ndarray,
                   v_given: np.ndarray | None, **kwargs: Any):
        """Purify ``rows`` (starting from their given labels) against a trusted set; every
        call, the full run and each accuracy fold, starts from the same seed."""
        init = torch.nn.functional.one_hot(tensor(given[rows]), num_classes).float()
        return purify_tensors(
            tensor(feats[rows]), init, tensor(v_feats), tensor(v_labels), config=config,
            generator=torch.Generator().manual_seed(int(seed)),
            features_view2=tensor(None if feats2 is None else feats2[rows]),
            val_features_view2=tensor(v_feats2), val_given=tensor(v_given), **kwargs)

    t_setup = time.perf_counter()

    pm.hook.dmlp_purify_start(config=config, num_samples=n, num_classes=num_classes)
    observers = [on_epoch] if on_epoch is not None else []
    if pm.hook.dmlp_purify_epoch.get_hookimpls():
        observers.append(lambda epoch, record: pm.hook.dmlp_purify_epoch(epoch=epoch, record=record))
    progress_bar, callback = _progress(progress, config.epochs, observers)
    try:
        out = run_engine(train_rows, vfeats, vfeats2, val_y, val_given,
                         clean_labels=tensor(None if clean is None else clean[train_rows]),
                         on_epoch=callback)
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    estimate, estimate_timing = None, {}
    if estimate_accuracy:
        t_estimate = time.perf_counter()
        estimate = _cross_fitted_estimate(run_engine, feats, feats2, trusted, train_rows, val_y, given,
                                          folds=estimate_folds, seed=seed, progress=progress)
        estimate_timing["accuracy_estimate"] = time.perf_counter() - t_estimate

    soft = np.zeros((n, num_classes), np.float32)
    soft[train_rows] = out.soft_labels.cpu().numpy()
    if len(trusted):  # the CIFAR protocol: trusted samples keep their clean labels
        soft[trusted, val_y] = 1.0
    timings = {"setup": t_setup - t0, **out.timings, **estimate_timing}
    timings["total"] = time.perf_counter() - t0
    metadata: dict[str, Any] = {
        "features_sha": array_checksum(feats), "labels_sha": array_checksum(given),
        "val_labels_sha": array_checksum(val_y), "num_samples": n, "feature_dim": feats.shape[1],
        "num_trusted": len(val_y), "trusted_protocol": "indices" if len(trusted) else "separate",
        "device": str(dev), "seed": int(seed), "two_view": feats2 is not None,
    }
    if out.selected is not None:
        metadata["selected"] = out.selected
        metadata["candidate_nll"] = out.candidate_nll
    if out.transition is not None:
        metadata["transition"] = out.transition.cpu().numpy().round(6).tolist()
    from . import __version__

    metadata["dmlp_plugin_version"] = __version__
    result = PurifyResult.from_soft_labels(
        soft, given, trusted_indices=trusted, class_names=class_names, config=config,
        history=out.history, timings=timings, metadata=metadata, accuracy_estimate=estimate)
    if estimate is not None and estimate.worse_than_given:
        warnings.warn(estimate.warning_text(), RuntimeWarning, stacklevel=2)
    if clean is not None:
        result.metadata["label_accuracy_before"] = float((given == clean).mean())
        result.metadata["label_accuracy_after"] = float((result.labels == clean).mean())
    pm.hook.dmlp_purify_end(result=result)
    return result


def _cross_fitted_estimate(run_engine: Callable[..., Any], feats: np.ndarray, feats2: np.ndarray | None,
                           trusted: np.ndarray, train_rows: np.ndarray, val_y: np.ndarray, given: np.ndarray,
                           *, folds: int, seed: int, progress: bool) -> AccuracyEstimate:
    """The accuracy estimate: one engine run per fold of the trusted set, that fold's rows
    purified as ordinary rows with their given labels, the other folds trusted."""

    def purify_fold(held_out: np.ndarray) -> np.ndarray:
        kept = np.setdiff1d(np.arange(len(trusted)), held_out)
        # Training rows stay in index order, as in the full run.
        rows = np.sort(np.concatenate([train_rows, trusted[held_out]]))
        v = trusted[kept]
        out = run_engine(rows, feats[v], None if feats2 is None else feats2[v], val_y[kept], given[v])
        return out.soft_labels.argmax(1).cpu().numpy()[np.searchsorted(rows, trusted[held_out])]

    from .progress import progress_bar

    with progress_bar(progress, folds, "estimating accuracy") as advance:
        return estimate_label_accuracy(
            purify_fold, val_y, given[trusted], folds=folds, seed=seed,
            on_fold=None if advance is None else lambda k: advance(1, status=f"fold {k + 1}/{folds}"))


def _as_config(config: Any) -> PurifyConfig:
    """``None`` → defaults; a dict → :meth:`PurifyConfig.from_dict`; else it must be a config."""
    if config is None:
        return PurifyConfig()
    if isinstance(config, dict):
        return PurifyConfig.from_dict(config)
    if not isinstance(config, PurifyConfig):
        raise ConfigError(f"config must be a PurifyConfig or a dict of its fields, got {type(config).__name__}")
    return config


def _dataset_features(dataset: Any, backbone: Any, checkpoint: Any, device: Any, progress: bool,
                      options: dict[str, Any], pm: Any) -> Any:
    """Features of a dataset: a plugin's extractor first, then the built-in ones."""
    from . import plugins

    if backbone is None:
        raise InputError("a dataset was given: pass backbone= (a torchvision/timm name, a module, "
                         "or 'kmeans') to turn its images into features")
    if isinstance(backbone, str):
        found = plugins.extract_features(dataset, backbone, str(choose_device(device)), pm=pm)
        if found is not None:
            return found
    if backbone == "kmeans":
        from .features import kmeans_features

        if checkpoint is not None:
            raise InputError("k-means features are fitted on the dataset itself; they take no checkpoint")
        return kmeans_features(dataset, **{"device": device, "progress": progress, **options})[0]
    from .features import extract_features

    return extract_features(dataset, backbone, **{"checkpoint": checkpoint, "device": device,
                                                  "progress": progress, **options})


def _progress(enabled: bool, epochs: int, observers: list[Callable]):
    """A rich progress bar and the per-epoch observers, as one engine callback.

    Observers get ``(epoch, record)`` with the same record that lands in the history;
    building it reads the epoch's metrics, so observers cost a device synchronisation
    per epoch and the bar alone does not.
    """
    from .engine.purifier import epoch_record

    bar = task = None
    if enabled:
        from .progress import make_progress

        bar = make_progress()
        task = bar.add_task("purifying", total=epochs, status="")
        bar.start()
    if bar is None and not observers:
        return None, None

    def callback(epoch: int, metrics) -> None:
        if bar is not None:
            bar.update(task, advance=1, status=f"epoch {epoch + 1}")
        if observers:
            record = epoch_record(epoch, metrics.tolist())
            for observer in observers:
                observer(epoch + 1, record)

    return bar, callback
