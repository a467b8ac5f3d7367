"""What an integrated upstream script calls: the lines ``dmlp integrate`` inserts use this module.

An integrated training script gains three calls:

``dmlp_runtime.setup(parser, "coteaching")``
    Before the script parses its arguments. Adds ``--dmlp PURIFIED.npz`` (and the other
    ``--dmlp-*`` options, plus any a plugin adds through ``dmlp_add_options``). When the
    script then parses, ``--dmlp`` is activated: the file is loaded and checked, and the
    upstream's residual-noise options are set from it (``--dmlp-residual-noise``).

``labels = dmlp_runtime.inject("coteaching", labels, clean=..., owner=dataset)``
    Where the upstream holds its noisy labels. Returns the purified labels at the same
    positions, in the same container (list, array or tensor), after checking the
    alignment: sample and class counts, the given labels against the ones that were
    purified, and the sample order against the upstream's own clean labels. ``target``
    may also be a dataset object, whose labels the adapter reads and writes.

``dmlp_runtime.watch("cdr", dataset, ...)``
    Registers a dataset whose training batches are checked: the first batches each
    loader yields must carry the purified labels at their sample indices.

Any check that fails stops the run before it trains: one line (``[dmlp-plugin] error: ...``
or ``SCRIPT: error: --dmlp: ...``) and exit status 2, with the traceback too under
``DMLP_DEBUG=1``. The file itself must be a result ``dmlp purify`` wrote: labels in
``[0, C)``, soft labels that are distributions (:mod:`dmlp_integrations.result_checks`).

Without ``--dmlp`` every call returns its input untouched, so the clone behaves as before.
What was injected and checked is written to an alignment record (``--dmlp-record``,
default ``dmlp-record.json`` in the working folder), with the index arrays of every
non-identity mapping (ELR+'s unseeded split, say) saved beside it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from dmlp_plugin.errors import AlignmentError, DmlpError

from . import state as _state
from .state import CHECKED_BATCHES, RECORDED_SAMPLES, active, record_loader_check, stop_on_error

__all__ = ["setup", "activate", "inject", "watch", "active", "record_loader_check", "ENV_RECORD",
           "CHECKED_BATCHES", "RECORDED_SAMPLES"]

#: Default record path, overridden by ``--dmlp-record`` (``dmlp run`` sets it for its runs).
ENV_RECORD = "DMLP_RECORD"
#: Below this many positions, the sample-order test has too little power to run.
_MIN_ORDER_CHECK = 1000

_say = _state.say
_write_record = _state.write_record


# -- options ------------------------------------------------------------------------------------


def setup(parser: argparse.ArgumentParser, method: str) -> argparse.ArgumentParser:
    """Add the ``--dmlp`` options to an upstream parser; activate them when it parses."""
    group = parser.add_argument_group("dmlp-plugin (purified labels)")
    group.add_argument("--dmlp", metavar="PURIFIED.npz", default=None,
                       help="train on the labels purified by `dmlp purify` instead of the noisy ones")
    group.add_argument("--dmlp-residual-noise", metavar="auto|keep|RATE", default="auto",
                       help="set this method's noise-rate options from the purified labels' estimated "
                       "residual noise (auto), leave them (keep), or set them to RATE")
    group.add_argument("--dmlp-record", metavar="PATH", default=None,
                       help="where to write the alignment record (default: dmlp-record.json here)")
    from dmlp_plugin.plugins import add_options

    try:
        add_options(parser)
    except DmlpError as exc:  # a broken third-party plugin must not break the upstream script
        _say(f"plugin options unavailable: {exc}")
    original = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        ns, rest = original(args, namespace)
        try:
            activate(ns, method, argv=sys.argv[1:] if args is None else list(args))
        except DmlpError as exc:
            from dmlp_plugin.failures import debug_enabled

            if debug_enabled():
                traceback.print_exc()
            parser.exit(2, f"{parser.prog}: error: --dmlp: {exc}\n")
        return ns, rest

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    return parser


def activate(args: argparse.Namespace, method: str, *, argv: list[str] | None = None) -> _state.Active | None:
    """Load and check ``args.dmlp`` and adjust the residual-noise options; ``None`` without it.

    Raises
    ------
    DmlpError
        The file is missing, not a result, damaged (labels outside ``[0, C)``, soft labels
        that are not distributions) or altered; before anything trains.
    """
    path = getattr(args, "dmlp", None)
    if not path:
        _state.set_active(None)
        return None
    from dmlp_plugin.io import array_checksum
    from dmlp_plugin.plugins import get_adapter
    from dmlp_plugin.result import PurifyResult

    from .result_checks import check_purified

    path = Path(path).expanduser()
    result = PurifyResult.load(path)
    check_purified(result, path)
    recorded = result.metadata.get("labels_sha")
    if recorded is not None and recorded != array_checksum(result.given_labels):
        raise AlignmentError(f"{path}: the given labels do not match the checksum recorded when they were "
                             "purified; the file was altered")
    adapter = get_adapter(method)()
    rate = result.estimated_noise_rate()
    changes = _apply_residual_noise(adapter, args, rate, getattr(args, "dmlp_residual_noise", "auto"), argv or [])
    record_path = Path(getattr(args, "dmlp_record", None) or os.environ.get(ENV_RECORD) or "dmlp-record.json")
    record = {"method": method, "purified_file": str(path.resolve()),
              "num_samples": len(result), "num_classes": int(result.num_classes),
              "labels_sha": array_checksum(result.labels), "given_labels_sha": array_checksum(result.given_labels),
              "estimated_noise_rate": rate, "options_changed": changes, "injections": [], "loader_checks": []}
    _state.set_active(_state.Active(method, path, result, adapter, record_path, record))
    _say(f"training {method} on purified labels from {path} ({len(result)} samples, {result.num_classes} "
         f"classes, {result.num_changed} changed, estimated residual noise {rate:.1%})")
    for name, (old, new) in changes.items():
        _say(f"--{name} {old} -> {new} (residual noise of the purified labels; --dmlp-residual-noise keep "
             "to leave it)")
    _write_record()
    from .batches import install_batch_checks

    install_batch_checks()
    return active()


def _apply_residual_noise(adapter: Any, args: argparse.Namespace, rate: float, policy: str,
                          argv: list[str]) -> dict[str, tuple[Any, Any]]:
    if policy == "keep":
        return {}
    if policy != "auto":
        try:
            rate = float(policy)
        except ValueError:
            raise DmlpError(f"--dmlp-residual-noise must be auto, keep or a rate in [0, 1), got {policy!r}") from None
        if not 0.0 <= rate < 1.0:
            raise DmlpError(f"--dmlp-residual-noise must be in [0, 1), got {rate}")
    explicit = {a.split("=", 1)[0].lstrip("-") for a in argv if a.startswith("--")}
    changes = {}
    for name, value in adapter.residual_noise_settings(args, rate, explicit=explicit).items():
        changes[name] = (getattr(args, name, None), value)
        setattr(args, name, value)
    return changes


# -- injection ----------------------------------------------------------------------------------


def inject(method: str, target: Any, *, part: str = "train", indices: Any = None, clean: Any = None,
           owner: Any = None, **options: Any) -> Any:
    """Purified labels in place of ``target``'s noisy ones; ``target`` itself without ``--dmlp``.

    Parameters
    ----------
    method
        The adapter name (must be the one the script was set up with).
    target
        The upstream's noisy labels (list, array or tensor, one per position), or a
        dataset object holding them (the adapter reads and writes its attributes).
    part
        Which part of the training set this is (``"train"``, ``"val"``), for the record.
    indices
        Dataset index of each position; default: the adapter's index map for a dataset
        object, the identity for a label array.
    clean
        The upstream's clean labels at the same positions, for the sample-order check.
    owner
        The dataset object these labels belong to; its loaders' batches are checked.
    options
        Keyword options of the adapter (a split seed, say).

    A label that does not fit (see :class:`~dmlp_plugin.errors.AlignmentError`) ends the run
    with one line and exit status 2 before anything trains on it.
    """
    state = active()
    if state is None:
        return target
    with stop_on_error():
        return _inject(state, method, target, part, indices, clean, owner, options)


def _inject(state: _state.Active, method: str, target: Any, part: str, indices: Any, clean: Any, owner: Any,
            options: dict) -> Any:
    if method != state.method:
        raise AlignmentError(f"this script was set up for {state.method!r} but injects labels for {method!r}")
    adapter = type(state.adapter)(**options) if options else state.adapter
    is_dataset = not _is_label_container(target)
    held = adapter.get_labels(target) if is_dataset else _as_int_array(target, "the upstream's labels")
    if indices is None:
        idx = (adapter.index_map(target) if is_dataset else _identity()).indices(len(state.result))
    else:
        from dmlp_plugin.adapter import StoredIndexMap

        idx = StoredIndexMap(_as_int_array(indices, "indices")).indices(len(state.result))
    if clean is None and is_dataset:
        clean = adapter.clean_labels(target)
    clean_arr = None if clean is None else _as_int_array(clean, "clean labels")
    purified = _check(state, adapter, held, idx, clean_arr, part)
    if is_dataset:
        adapter.set_labels(target, purified)
        if owner is None:
            owner = target
        out = target
    else:
        out = _like(target, purified)
    if owner is not None:
        _watch(state, adapter, owner, idx, part)
    return out


def watch(method: str, dataset: Any, *, part: str = "train", indices: Any = None, **options: Any) -> None:
    """Check the batches ``dataset``'s loaders yield against the purified labels (no-op without ``--dmlp``)."""
    state = active()
    if state is None:
        return
    with stop_on_error():
        _watch_dataset(state, dataset, part, indices, options)


def _watch_dataset(state: _state.Active, dataset: Any, part: str, indices: Any, options: dict) -> None:
    adapter = type(state.adapter)(**options) if options else state.adapter
    if indices is None:
        idx = adapter.index_map(dataset).indices(len(state.result))
    else:
        from dmlp_plugin.adapter import StoredIndexMap

        idx = StoredIndexMap(_as_int_array(indices, "indices")).indices(len(state.result))
    _watch(state, adapter, dataset, idx, part)


def _watch(state: _state.Active, adapter: Any, dataset: Any, idx: np.ndarray, part: str) -> None:
    if not adapter.loader_yields_labels(dataset):
        return
    key = id(dataset)
    # Weak references: upstreams such as DivideMix build a fresh dataset every epoch.
    ref = weakref.ref(dataset, lambda _r, k=key: state.watched.pop(k, None))
    state.watched[key] = (ref, adapter, idx, part)


def _check(state: _state.Active, adapter: Any, held: np.ndarray, idx: np.ndarray, clean: np.ndarray | None,
           part: str) -> np.ndarray:
    result = state.result
    name = adapter.name
    if len(held) != len(idx):
        raise AlignmentError(f"{name} holds {len(held)} {part} labels but its index map has {len(idx)} positions")
    if held.size and held.min() < 0:
        raise AlignmentError(f"{name}'s {part} labels include {int(held.min())}; labels are classes 0 and up")
    if held.size and held.max() >= result.num_classes:
        raise AlignmentError(f"{name}'s {part} labels go up to class {int(held.max())}, but the purified labels "
                             f"have {result.num_classes} classes: were they purified on another dataset?")
    if clean is not None:
        if len(clean) != len(idx):
            raise AlignmentError(f"{name} gave {len(clean)} clean labels for {len(idx)} positions")
        upstream_classes = int(clean.max()) + 1 if clean.size else 0
        if len(idx) >= 10 * result.num_classes and upstream_classes != result.num_classes:
            raise AlignmentError(f"{name}'s clean {part} labels span {upstream_classes} classes, the purified labels "
                                 f"{result.num_classes}: were they purified on another dataset?")
    given = result.given_labels[idx]
    purified = result.labels[idx].astype(np.int64)
    entry: dict[str, Any] = {"part": part, "positions": int(len(idx)), "identity": bool(
        len(idx) == len(result) and np.array_equal(idx, np.arange(len(result))))}
    matches = int((held == given).sum())
    entry["given_match"] = matches == len(idx)
    entry["given_agreement"] = matches / max(len(idx), 1)
    if not entry["given_match"] and adapter.reads_given_labels:
        raise AlignmentError(
            f"the noisy labels {name} loaded differ from the labels that were purified at {len(idx) - matches} of "
            f"{len(idx)} positions. Purify the file this run reads, or point the run at the noise file you "
            "purified (noise rate, noise mode and data path must match)")
    if clean is not None:
        order = _order_test(given, clean)
        entry.update({"clean_agreement_given": order[0], "chance_agreement": order[1], "order_z": order[2],
                      "clean_agreement_purified": float((purified == clean).mean()) if len(clean) else None})
        if len(idx) >= _MIN_ORDER_CHECK and order[2] < 5.0:
            raise AlignmentError(
                f"the purified file's labels look unrelated to {name}'s images: its given labels agree with the "
                f"upstream's clean {part} labels at {order[0]:.1%}, what a shuffled order gives ({order[1]:.1%}). "
                "Were the labels purified in another sample order?")
    site = (part, entry["positions"], hash(idx.tobytes()))
    if site not in state.seen_sites:
        state.seen_sites.add(site)
        if not entry["identity"]:
            entry["indices_file"] = _save_indices(state, idx, part)
        state.record["injections"].append(entry)
        _write_record()
        if entry["given_match"]:
            note = "they match the labels that were purified"
        else:
            note = (f"{name} drew its own noisy labels ({entry['given_agreement']:.1%} agree with the ones that were "
                    "purified); the purified labels replace them")
        extra = ""
        if clean is not None and entry.get("clean_agreement_purified") is not None:
            extra = (f"; label accuracy {entry['clean_agreement_given']:.1%} given -> "
                     f"{entry['clean_agreement_purified']:.1%} purified")
        _say(f"{part}: {len(idx)} labels injected; {note}{extra}")
    return purified


def _order_test(given: np.ndarray, clean: np.ndarray) -> tuple[float, float, float]:
    """Agreement of ``given`` with ``clean``, the agreement a random order would give, and the z-score."""
    n = len(clean)
    if n == 0:
        return 0.0, 0.0, 0.0
    size = int(max(given.max(), clean.max())) + 1
    chance = float(np.dot(np.bincount(given, minlength=size) / n, np.bincount(clean, minlength=size) / n))
    agree = float((given == clean).mean())
    sd = math.sqrt(max(chance * (1 - chance), 1e-12) / n)
    return agree, chance, (agree - chance) / sd


def _save_indices(state: _state.Active, idx: np.ndarray, part: str) -> str:
    from dmlp_plugin.io import atomic_write

    k = sum(1 for e in state.record["injections"] if e["part"] == part)
    path = state.record_path.with_name(f"{state.record_path.stem}.{part}{k}.npy")
    with atomic_write(path) as fh:
        np.save(fh, idx)
    return str(path)


# -- containers ---------------------------------------------------------------------------------


def _identity() -> Any:
    from dmlp_plugin.adapter import IdentityMap

    return IdentityMap()


def _is_label_container(obj: Any) -> bool:
    return isinstance(obj, (list, tuple, np.ndarray)) or type(obj).__module__.startswith("torch") and hasattr(obj, "dim")


def _as_int_array(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:  # Co-teaching and CDR keep (N, 1) columns
        arr = arr[:, 0]
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise AlignmentError(f"{what} must be one integer per position, got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64)


def _like(old: Any, new: np.ndarray) -> Any:
    """``new`` in the container type, dtype and shape of ``old``."""
    if isinstance(old, list):
        return [int(y) for y in new]
    if isinstance(old, tuple):
        return tuple(int(y) for y in new)
    if isinstance(old, np.ndarray):
        return new.astype(old.dtype).reshape(old.shape)
    import torch

    return torch.as_tensor(new, dtype=old.dtype).reshape(old.shape)
