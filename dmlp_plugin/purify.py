"""`purify_dataset`: the one function most users call."""

from __future__ import annotations

import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np

from .accuracy_estimate import DEFAULT_FOLDS, AccuracyEstimate, estimate_label_accuracy, trusted_folds
from .config import AnyConfig, PaperConfig, PurifyConfig
from .device import choose_device, native_bfloat16
from .errors import ConfigError, InputError
from .io import array_checksum
from .progress import Reporter, reporting
from .result import PurifyResult
from .streaming import plan_memory
from .threads import torch_threads
from .validation import PurifyInputs, purify_inputs

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
    threads: int | str | None = "auto",
    feature_check: bool = True,
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
        Report progress on stderr: a bar per stage on a terminal (the paper's epochs, each
        candidate family of the default), plain lines in a log file.
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
    threads : int, "auto" or None
        CPU threads torch uses during the call (restored afterwards). ``"auto"`` (default)
        leaves the cores other jobs keep busy to them (:mod:`dmlp_plugin.threads`): two
        threads on two busy cores made a run 3-4x slower than one thread. ``$DMLP_THREADS``
        or ``OMP_NUM_THREADS``, when set, win over ``"auto"``; ``None`` leaves torch as it is.
        Small inputs and CUDA runs are left alone.

    feature_check : bool
        Before the work, measure how well the features separate the classes on the trusted
        rows (a cross-fitted linear probe, :func:`dmlp_plugin.preflight.check_trusted_features`,
        cheap next to the run); stored as ``result.metadata["feature_check"]``, with a
        ``RuntimeWarning`` naming what to do when the features are weak.

    Under ``torchrun`` every process calls this with the same inputs; the training rows are
    divided between them (collectives over the default process group) and every process
    returns the same result. ``config.max_memory`` bounds memory by reading the features in
    chunks. Both are described in ``docs/scale.md``.

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
    from . import plugins

    t0 = time.perf_counter()
    pm = plugins.get_plugin_manager()
    config = plugins.configure(_as_config(config), pm=pm)
    if hasattr(features, "load_image") and hasattr(features, "targets"):
        dataset = features
        # shared with `dmlp features`: plugins first, then k-means or a backbone (sharded under torchrun)
        from .features.dataset import dataset_features

        features = dataset_features(dataset, backbone, checkpoint=checkpoint, device=device, progress=progress,
                                    options=feature_options, pm=pm)[0]
        if labels is None:
            labels = dataset.targets
        if class_names is None and getattr(dataset, "classes", None):
            class_names = list(dataset.classes)
    elif backbone is not None or checkpoint is not None:
        raise InputError("backbone/checkpoint are for a dataset input; features were given as an array")
    if estimate_accuracy and val_indices is None:
        raise InputError(
            "estimate_accuracy needs the trusted set as val_indices into the training set (the CIFAR "
            "protocol): it purifies trusted rows with their given labels and scores them against the "
            "clean ones, and a separate trusted set (val_features) has no given labels")
    inputs = purify_inputs(features, labels, val_labels=val_labels, val_indices=val_indices,
                           val_features=val_features, num_classes=num_classes, clean_labels=clean_labels,
                           features_view2=features_view2, val_features_view2=val_features_view2,
                           class_names=class_names)
    if estimate_accuracy:
        trusted_folds(inputs.val_labels, estimate_folds, seed)  # bad folds or a rare class fail before any run
    if len(inputs.val_labels) < 10 * inputs.num_classes:
        warnings.warn(f"the trusted set has only {len(inputs.val_labels)} samples for {inputs.num_classes} "
                      "classes; purification will be noisy", RuntimeWarning, stacklevel=2)
    from . import distributed

    # Under torchrun every process runs the same purification on its own share of the rows
    # (its device: the local GPU, or the CPU); a single process gets a session of one.
    session = distributed.init(device) if distributed.is_distributed() else None
    dev = session.device if session is not None else choose_device(device)
    if getattr(config, "precision", None) == "bfloat16" and not native_bfloat16(dev):
        warnings.warn(f"precision='bfloat16' on {dev}, which has no native bfloat16 matrix "
                      "products: expect it to be slower than float32", RuntimeWarning, stacklevel=2)
    engine = _Engine(inputs, config, dev, seed, session)
    progress = progress and (session is None or session.is_main)
    thread_count = _thread_count(threads, inputs, dev)
    t_setup = time.perf_counter()

    pm.hook.dmlp_purify_start(config=config, num_samples=inputs.num_samples, num_classes=inputs.num_classes)
    observers = [on_epoch] if on_epoch is not None else []
    if pm.hook.dmlp_purify_epoch.get_hookimpls():
        observers.append(lambda epoch, record: pm.hook.dmlp_purify_epoch(epoch=epoch, record=record))
    with torch_threads(thread_count), reporting(progress) as report:
        check = _feature_check(inputs, seed, dev) if feature_check else None
        if check is not None and check.weak:
            warnings.warn(check.advice, RuntimeWarning, stacklevel=2)
        out = engine.run(inputs.train_rows, inputs.val_features, inputs.val_features_view2,
                         inputs.val_labels, inputs.val_given, report=True,
                         **_callbacks(config, report, observers))
        estimate, timings = None, {}
        if estimate_accuracy:
            t_estimate = time.perf_counter()
            estimate = _cross_fitted_estimate(engine, folds=estimate_folds, seed=seed, progress=report)
            timings["accuracy_estimate"] = time.perf_counter() - t_estimate
    if check is not None:
        timings["feature_check"] = check.seconds
    timings = {"setup": t_setup - t0, **out.timings, **timings}
    timings["total"] = time.perf_counter() - t0
    result = _result(inputs, out, config, class_names, timings, estimate,
                     device=dev, seed=seed, threads=thread_count,
                     memory={**engine.memory.describe(), "processes": engine.world})
    if check is not None:
        result.metadata["feature_check"] = check.to_dict()
    if estimate is not None and estimate.worse_than_given:
        warnings.warn(estimate.warning_text(), RuntimeWarning, stacklevel=2)
    pm.hook.dmlp_purify_end(result=result)
    return result


class _Engine:
    """The engine on one set of inputs: every run, the full one and each accuracy fold,
    purifies some rows from their given labels against a trusted set, from the same seed."""

    def __init__(self, inputs: PurifyInputs, config: PurifyConfig, device: Any, seed: int,
                 session: Any = None) -> None:
        self.inputs, self.config, self.device, self.seed = inputs, config, device, int(seed)
        self.rank, self.world = (0, 1) if session is None else (session.rank, session.world_size)
        n = len(inputs.train_rows)
        lo, hi = _share(n, self.rank, self.world)
        self.memory = plan_memory(n, inputs.features.shape[1], inputs.num_classes, config,
                                  source_dtype=inputs.features.dtype,
                                  views=1 if inputs.features_view2 is None else 2, held_rows=hi - lo)

    def tensor(self, a: np.ndarray | None):
        import torch

        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def training_rows(self, source: np.ndarray | None, rows: np.ndarray):
        """The training features for the engine: a float32 tensor, or FeatureRows read in
        chunks under ``max_memory`` (:mod:`dmlp_plugin.streaming`) or shared between the
        processes of a torchrun run."""
        if source is None:
            return None
        if not self.memory.streamed and self.world == 1:
            return self.tensor(source[rows].astype(np.float32, copy=False))
        from .engine.rows import FeatureRows

        every_row = len(rows) == len(source)  # rows are ascending and distinct: then all of them, in order
        return FeatureRows(source, rows=None if every_row else rows, device=self.device,
                           chunk_rows=self.memory.chunk_rows,
                           shard=_share(len(rows), self.rank, self.world) if self.world > 1 else None)

    def run(self, rows: np.ndarray, v_feats: np.ndarray, v_feats2: np.ndarray | None, v_labels: np.ndarray,
            v_given: np.ndarray | None, *, report: bool = False, **kwargs: Any):
        """``report``: the main run, which measures label accuracy when clean labels are known."""
        import torch

        from . import engine

        x = self.inputs
        init = torch.nn.functional.one_hot(self.tensor(x.given[rows]), x.num_classes).float()
        clean = x.clean[rows] if report and x.clean is not None else None
        problem = engine.Problem.build(
            self.training_rows(x.features, rows), init, self.tensor(v_feats), self.tensor(v_labels),
            features_view2=self.training_rows(x.features_view2, rows), val_features_view2=self.tensor(v_feats2),
            val_given=self.tensor(v_given), clean_labels=self.tensor(clean))
        if isinstance(self.config, PaperConfig) and self.memory.spill:
            kwargs["spill_dir"] = tempfile.gettempdir()
        return engine.run(problem, self.config, torch.Generator().manual_seed(self.seed), **kwargs)


def _share(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous block of ``n`` training rows whose features process ``rank`` reads."""
    return n * rank // world, n * (rank + 1) // world


def _thread_count(threads: int | str | None, inputs: PurifyInputs, device: Any) -> int | None:
    """Torch threads for this call (None: leave torch as it is). ``"auto"`` measures the load
    only when the run is long enough for threads to matter; a small run on the CPU takes one
    thread, unless ``$DMLP_THREADS`` or ``OMP_NUM_THREADS`` says otherwise."""
    import os

    from .threads import ENV_THREADS, choose_threads

    if threads == "auto" and getattr(device, "type", "cpu") != "cpu":
        threads = None
    elif threads == "auto" and inputs.features.size < _AUTO_MIN_SIZE:
        if not (os.environ.get(ENV_THREADS) or os.environ.get("OMP_NUM_THREADS")):
            return 1
        threads = None
    return choose_threads(threads)


#: Below this many feature values (N·d) ``threads="auto"`` takes one thread without measuring
#: the load (a quarter of a second): such a run gains nothing from more, and on busy cores
#: OpenMP's spin-waiting stalls it (a 500 × 16 run took 16.8 s on two threads of two busy
#: cores and 0.25 s on one).
_AUTO_MIN_SIZE = 2_000_000


def _result(inputs: PurifyInputs, out: Any, config: PurifyConfig, class_names: list[str] | None,
            timings: dict[str, float], estimate: AccuracyEstimate | None, *, device: Any, seed: int,
            threads: int | None, memory: dict[str, Any]) -> PurifyResult:
    """The engine's output in the original row order, with what a report needs to know."""
    from . import __version__

    x = inputs
    soft = np.zeros((x.num_samples, x.num_classes), np.float32)
    soft[x.train_rows] = out.soft_labels.cpu().numpy()
    if len(x.trusted):  # the CIFAR protocol: trusted samples keep their clean labels
        soft[x.trusted, x.val_labels] = 1.0
    metadata: dict[str, Any] = {
        "features_sha": array_checksum(x.features), "labels_sha": array_checksum(x.given),
        "val_labels_sha": array_checksum(x.val_labels), "num_samples": x.num_samples,
        "feature_dim": x.features.shape[1], "num_trusted": len(x.val_labels),
        "trusted_protocol": "indices" if len(x.trusted) else "separate", "device": str(device),
        "seed": int(seed), "two_view": x.features_view2 is not None, "threads": threads,
        "memory": memory,
    }
    if out.candidates:
        metadata["selected"] = out.selected
        metadata["candidate_nll"] = out.candidate_nll
        metadata["candidates"] = [c.to_dict() for c in out.candidates]
    if out.transition_weight is not None:
        metadata["transition_weight"] = round(out.transition_weight, 4)
    if out.transition is not None:
        metadata["transition"] = out.transition.cpu().numpy().round(6).tolist()
    metadata["dmlp_plugin_version"] = __version__
    result = PurifyResult.from_soft_labels(
        soft, x.given, trusted_indices=x.trusted, class_names=class_names, config=config,
        history=out.history, timings=timings, metadata=metadata, accuracy_estimate=estimate)
    if x.clean is not None:  # on the purified rows: trusted rows carry their clean labels
        rows = x.train_rows
        metadata["label_accuracy_before"] = float((x.given[rows] == x.clean[rows]).mean())
        metadata["label_accuracy_after"] = float((result.labels[rows] == x.clean[rows]).mean())
    return result


def _cross_fitted_estimate(engine: _Engine, *, folds: int, seed: int, progress: Reporter) -> AccuracyEstimate:
    """The accuracy estimate: one engine run per fold of the trusted set, that fold's rows
    purified as ordinary rows with their given labels, the other folds trusted."""
    x = engine.inputs

    def purify_fold(held_out: np.ndarray) -> np.ndarray:
        kept = np.setdiff1d(np.arange(len(x.trusted)), held_out)
        # Training rows stay in index order, as in the full run.
        rows = np.sort(np.concatenate([x.train_rows, x.trusted[held_out]]))
        v = x.trusted[kept]
        out = engine.run(rows, x.features[v], None if x.features_view2 is None else x.features_view2[v],
                         x.val_labels[kept], x.given[v])
        return out.soft_labels.argmax(1).cpu().numpy()[np.searchsorted(rows, x.trusted[held_out])]

    from .progress import progress_bar

    with progress_bar(progress, folds, "estimating accuracy") as advance:
        return estimate_label_accuracy(
            purify_fold, x.val_labels, x.given[x.trusted], folds=folds, seed=seed,
            on_fold=None if advance is None else lambda k: advance(1, status=f"fold {k + 1}/{folds}"))


def _as_config(config: Any) -> AnyConfig:
    """``None`` → defaults; a dict → :meth:`PurifyConfig.from_dict`; else it must be a config."""
    if config is None:
        return PurifyConfig()
    if isinstance(config, dict):
        return PurifyConfig.from_dict(config)
    if not isinstance(config, (PurifyConfig, PaperConfig)):
        raise ConfigError("config must be a PurifyConfig, a PaperConfig (PurifyConfig.paper()) or a dict of "
                          f"their fields, got {type(config).__name__}")
    return config


def _feature_check(inputs: PurifyInputs, seed: int, device: Any) -> Any:
    """The pre-flight check of the features on the trusted rows (:mod:`dmlp_plugin.preflight`),
    or None where it cannot be made (a class with fewer than two trusted rows, or fewer trusted
    rows than its five folds)."""
    from .preflight import check_trusted_features

    if np.bincount(inputs.val_labels, minlength=inputs.num_classes).min() < 2 or len(inputs.val_labels) < 5:
        return None
    return check_trusted_features(inputs.val_features, inputs.val_labels, num_classes=inputs.num_classes,
                                  seed=seed, device=device)


def _callbacks(config: AnyConfig, report: Reporter, observers: list[Callable]) -> dict[str, Any]:
    """The engine's callbacks: progress on ``report``, and each history record (an epoch of
    the paper's loop, a least-squares round of the default) to the observers (``on_epoch``,
    the ``dmlp_purify_epoch`` hook)."""
    if isinstance(config, PaperConfig):
        stage = "purifying (the paper's loop)"
        if not (report.enabled or observers):
            return {}

        def on_epoch(epoch: int, metrics: Any) -> None:
            from .engine.paper_loop import epoch_record

            record = epoch_record(epoch, metrics.tolist())  # reading the metrics synchronises the device
            report(stage, epoch + 1, config.epochs, unit="epochs", detail=_figure(record))
            for observer in observers:
                observer(epoch + 1, record)

        return {"on_epoch": on_epoch}

    def on_round(k: int, record: dict[str, float]) -> None:
        for observer in observers:
            observer(k, record)

    def on_progress(stage: str, done: int, total: int) -> None:
        report(stage, done, total, unit="candidates")

    return {"on_round": on_round, "on_progress": on_progress}


def _figure(record: dict[str, float]) -> str:
    """An epoch's figure for the progress line: label accuracy with clean labels, else the
    fraction of labels changed."""
    if "label_accuracy" in record:
        return f"label acc. {record['label_accuracy']:.2%}"
    return f"changed {record['changed']:.2%}" if "changed" in record else ""
