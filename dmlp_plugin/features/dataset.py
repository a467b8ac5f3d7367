"""Features of a dataset, by whichever extractor handles the request: the one entry point
that :func:`~dmlp_plugin.purify_dataset` and ``dmlp features`` share.

A plugin's ``dmlp_extract_features`` hook is asked first; then ``"kmeans"`` means the CPU
k-means features and anything else a backbone (:func:`extract_features`). Under
``torchrun`` a backbone's extraction is sharded over the ranks and merged by rank 0 (see
:mod:`dmlp_plugin.distributed`), giving the features a single process would.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["dataset_features"]


def dataset_features(
    dataset: Any,
    backbone: Any = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: Any = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
    pm: Any = None,
    others: Sequence[Any] = (),
    distributed: bool | None = None,
    shard_dir: str | os.PathLike | None = None,
    all_ranks: bool = True,
) -> list[Any]:
    """Features of ``dataset`` (and of each of ``others``), in index order.

    Parameters
    ----------
    dataset : ImageDataset
        The training set; k-means is fitted on it.
    backbone : str or torch.nn.Module
        A torchvision/timm name (``"resnet18-cifar"``), a module, or ``"kmeans"``. For a
        name, a plugin's ``dmlp_extract_features`` hook is asked first, per dataset and on
        every rank (not when ``options`` asks for the flipped view, which hooks do not return).
    checkpoint : path, optional
        Local weights for a named backbone (not for ``"kmeans"``).
    device : str or torch.device, optional
        CUDA when available by default; under torchrun, CUDA means ``cuda:LOCAL_RANK``.
    progress : bool
        Show a progress bar (rank 0 only under torchrun).
    options : dict, optional
        Keyword arguments of :func:`~dmlp_plugin.features.extract_features` (``views``,
        ``batch_size``, ``cache``, ``output``...) or, for ``"kmeans"``, of
        :func:`~dmlp_plugin.features.kmeans_features`. ``output`` needs ``others`` empty.
    pm : plugin manager, optional
        The one to ask; :func:`dmlp_plugin.plugins.get_plugin_manager` by default.
    others : sequence of ImageDataset
        More datasets (e.g. the test split) through the same extractor.
    distributed : bool, optional
        Shard a backbone's extraction over the ranks of a ``torchrun`` run. ``None``
        (default) does so whenever there are several ranks (``WORLD_SIZE > 1`` or an
        initialised process group); ``False`` makes every rank extract everything.
    shard_dir : path, optional
        Under torchrun: where the ranks' shards meet (a fresh subfolder, removed
        afterwards). Beside ``options["output"]`` when given, else the system temporary
        folder; across nodes it must be shared storage.
    all_ranks : bool
        Under torchrun: whether ranks other than 0 also get the merged features (each an
        in-memory copy). ``False`` returns ``None`` for them, sparing the copy.

    Returns
    -------
    list
        One entry per dataset, ``dataset`` first: ``(N, D)`` float32, or a tuple
        ``(features, features_hflip)`` when ``options`` asks for both views. Under torchrun
        rank 0's arrays may be read-only memory maps; other ranks get ``None`` with
        ``all_ranks=False``.

    Raises
    ------
    InputError
        No backbone; a checkpoint with k-means; k-means under torchrun (it fits on one
        process: compute the features once without torchrun and pass the file); a bad
        option.
    """
    from .. import plugins
    from .. import distributed as dist
    from ..device import choose_device

    if backbone is None:
        raise InputError("a dataset was given: pass backbone= (a torchvision/timm name, a module, "
                         "or 'kmeans') to turn its images into features")
    options = dict(options or {})
    datasets = [dataset, *others]
    if others and options.get("output") is not None:
        raise InputError("output= names one file but several datasets were given; save each result yourself")
    sharded = (dist.is_distributed() if distributed is None else bool(distributed)) and dist.world_size() > 1
    is_kmeans = isinstance(backbone, str) and backbone == "kmeans"
    if is_kmeans and checkpoint is not None:
        raise InputError("k-means features are fitted on the dataset itself; they take no checkpoint")

    results: list[Any] = [None] * len(datasets)
    views = options.get("views", ("none",))
    if isinstance(backbone, str) and tuple([views] if isinstance(views, str) else views) == ("none",):
        # every rank asks: a hook has no notion of shards and returns the whole dataset
        device_name = str(dist.rank_device(device) if sharded else choose_device(device))
        results = [plugins.extract_features(d, backbone, device_name, pm=pm) for d in datasets]
        if is_kmeans and any(r is None for r in results):
            results = [None] * len(datasets)  # k-means fits on the first dataset: all or none
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        _write_output(options.get("output"), results[0], views)
        return _on_this_rank(results, sharded, all_ranks)
    if is_kmeans:
        from .kmeans import kmeans_features

        if sharded:
            # The fit needs every image in one process and the other ranks would sit at a
            # barrier for all of it: one CPU process is the right tool.
            raise InputError(f"k-means features do not shard under torchrun (world size {dist.world_size()}): "
                             "compute them in one process (dmlp features --method kmeans -o feats.npy) "
                             "and pass the file")

        output = options.pop("output", None)  # kmeans_features writes no file itself
        results = list(kmeans_features(*datasets, **{"device": device, "progress": progress, **options}))
        _write_output(output, results[0], ("none",))
        return results
    if not sharded:
        from .extract import extract_features

        for i in todo:
            results[i] = extract_features(datasets[i], backbone, **{"checkpoint": checkpoint, "device": device,
                                                                    "progress": progress, **options})
        return results
    s = dist.init(device)  # joins torchrun's group, kept for later calls
    for i in todo:
        results[i] = _extract_sharded(datasets[i], backbone, checkpoint, s, progress, options,
                                      shard_dir, all_ranks)
    return _on_this_rank(results, sharded, all_ranks)


def _write_output(output: Any, features: Any, views: Any) -> None:
    """``options["output"]`` for results no extractor wrote (a plugin's, k-means'): by
    rank 0 alone under torchrun."""
    from .. import distributed as dist
    from .extract import _array_name, _check_views, save_features

    if output is None or dist.rank() != 0:
        return
    arrays = features if isinstance(features, tuple) else (features,)
    save_features(output, {_array_name(v): a for v, a in zip(_check_views(views), arrays)})


def _on_this_rank(results: list[Any], sharded: bool, all_ranks: bool) -> list[Any]:
    from .. import distributed as dist

    if sharded and not all_ranks and dist.rank() != 0:
        return [None] * len(results)
    return results


_EXTRACT_DEFAULTS = {"batch_size": 256, "views": ("none",), "transform": None, "image_size": None,
                     "cache": True, "cache_dir": None, "num_workers": 0, "output": None, "strict": True,
                     "trust_checkpoint": False, "amp": True}


def _extract_sharded(dataset: Any, backbone: Any, checkpoint: Any, s: Any, progress: bool,
                     options: dict[str, Any], shard_dir: Any, all_ranks: bool) -> Any:
    """:func:`extract_features` over this rank's shard; rank 0 merges, caches and writes.

    The cache is read and written by rank 0 alone: it looks the request up, tells the
    other ranks whether to extract, and stores the merged result under the key a single
    process would use, so a later single-process run hits it.
    """
    from pathlib import Path

    from .. import distributed as dist
    from ..io import atomic_write
    from .extract import _array_name, _output_path, _plan, _run, save_features

    unknown = sorted(set(options) - set(_EXTRACT_DEFAULTS))
    if unknown:
        raise InputError(f"unknown feature option(s) {', '.join(unknown)}; "
                         f"extract_features takes {', '.join(_EXTRACT_DEFAULTS)}")
    o = {**_EXTRACT_DEFAULTS, **options}
    plan = _plan(dataset, backbone, checkpoint=checkpoint, batch_size=o["batch_size"], device=s.device,
                 views=o["views"], transform=o["transform"], image_size=o["image_size"], cache=o["cache"],
                 cache_dir=o["cache_dir"], num_workers=o["num_workers"], output=o["output"], amp=o["amp"])
    names = [_array_name(v) for v in plan.views]
    found = plan.store.get(plan.key, plan.views) if s.is_main and plan.store is not None else None
    hit = dist.broadcast_object(found is not None)  # only the flag travels
    if shard_dir is None and o["output"] is not None:
        shard_dir = Path(o["output"]).expanduser().parent
    if hit and not all_ranks:  # nothing to exchange: rank 0 has the cached arrays
        if s.is_main and o["output"] is not None:
            save_features(o["output"], dict(zip(names, found)))
        return _views(found)
    # Rank 0 merges straight into an .npy output, sparing a copy of N x d. Not when every
    # rank reads the merged arrays back: the output may sit on rank 0's node only, while
    # the shard folder is shared by construction.
    targets = None
    if o["output"] is not None and Path(o["output"]).suffix.lower() == ".npy" and not all_ranks:
        first = _output_path(o["output"])
        targets = {name: first if i == 0 else first.with_name(f"{first.stem}.{name}.npy")
                   for i, name in enumerate(names)}
    folder = dist.shared_folder(shard_dir)
    try:
        merged: list[np.ndarray] | None = found
        if not hit:
            rows = dist.shard_indices(len(dataset), s.rank, s.world_size)
            arrays = _run(dataset, backbone, checkpoint, plan.transform, plan.views, batch_size=o["batch_size"],
                          device=s.device, autocast=plan.autocast, num_workers=o["num_workers"],
                          progress=progress and s.is_main, strict=o["strict"], trusted=o["trust_checkpoint"],
                          indices=rows)
            paths = dist.gather_rows(folder, rows, dict(zip(names, arrays)), n=len(dataset), targets=targets)
            if paths is not None:  # rank 0
                merged = [np.load(paths[name], mmap_mode="r", allow_pickle=False) for name in names]
                if plan.store is not None:
                    plan.store.put(plan.key, plan.views, merged, plan.parts)
                    merged = plan.store.get(plan.key, plan.views) or merged
        elif s.is_main and all_ranks:
            for name, array in zip(names, merged):  # the others read the hit from the shared folder
                with atomic_write(folder / f"merged.{name}.npy") as fh:
                    np.save(fh, np.ascontiguousarray(array))
        if s.is_main and o["output"] is not None and (hit or targets is None):
            save_features(o["output"], dict(zip(names, merged)))
        if all_ranks:
            dist.barrier()  # merged files complete
            if not s.is_main:
                merged = [np.load(folder / f"merged.{name}.npy", allow_pickle=False) for name in names]
            dist.barrier()  # everyone has read them before rank 0 removes the folder
    finally:
        # rank 0's memory maps of merged files stay valid once unlinked (POSIX)
        dist.remove_folder(folder)
    return _views(merged)


def _views(arrays: list[np.ndarray] | None) -> Any:
    """One array for one view, a tuple for two (as :func:`extract_features` returns)."""
    if arrays is None:
        return None
    return arrays[0] if len(arrays) == 1 else tuple(arrays)
