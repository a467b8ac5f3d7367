"""`PurifyResult`: what purification returns, and its file format.

A result is saved as one ``.npz``: the arrays, plus a JSON metadata string under the key
``__meta__`` (schema version, config, class count and names, input checksums, history,
timings, and the accuracy estimate when one was made). Files are written atomically.

Optional entries are added to ``__meta__`` without a new schema version: readers take
them with ``.get`` and ignore keys they do not know, so files written before an entry
existed still load (the entry is then ``None``), and older readers still load files that
have it. The version changes only when an existing entry changes meaning or a required
one is added.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .accuracy_estimate import AccuracyEstimate
from .config import PurifyConfig
from .errors import CorruptFileError, MissingFileError
from .io import PathLike, atomic_write, export_labels, open_npz

__all__ = ["PurifyResult", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_ARRAYS = ("soft_labels", "labels", "given_labels", "confidence", "changed", "label_quality",
           "label_issues", "trusted_indices")


@dataclass
class PurifyResult:
    """Purified labels and a record of how they were made.

    All per-sample arrays are in the original index order of the training set, trusted
    samples included (they carry their clean labels).

    Attributes
    ----------
    soft_labels : np.ndarray, shape (N, C), float32
        Purified label distributions; each row is on the probability simplex.
    labels : np.ndarray, shape (N,), int64
        Hard purified labels, ``soft_labels.argmax(1)``.
    given_labels : np.ndarray, shape (N,), int64
        The noisy labels that went in (trusted samples: their given noisy label too).
    confidence : np.ndarray, shape (N,), float32
        ``soft_labels.max(1)``: how sure the purifier is of ``labels``.
    changed : np.ndarray, shape (N,), bool
        ``labels != given_labels``.
    label_quality : np.ndarray, shape (N,), float32
        ``soft_labels[i, given_labels[i]]``: the purifier's belief that the given label is
        right. Low means a likely label error.
    label_issues : np.ndarray, shape (K,), int64
        Indices of the samples whose label was changed, most likely error first (ascending
        ``label_quality``), like ``cleanlab.filter.find_label_issues(...,
        return_indices_ranked_by=...)``.
    trusted_indices : np.ndarray, shape (V,), int64
        Indices of training samples used as the trusted set (empty when the trusted set
        was given as separate ``val_features``).
    num_classes : int
    class_names : list of str or None
    config : PurifyConfig
        The configuration actually used.
    history : list of dict
        One record per epoch: losses and, when clean labels were given, label accuracy.
    timings : dict
        Seconds per stage: ``setup`` (reading and checking the inputs), ``factor``
        (partitioning and factoring the IPC batches and the least-squares head, before the
        first epoch), ``epochs`` (the epoch loop), ``finish`` (the logistic candidate and
        the output rows), ``accuracy_estimate`` (only with ``estimate_accuracy``), ``total``.
    metadata : dict
        Input checksums, device, seed, package version, anything else worth keeping.
    accuracy_estimate : AccuracyEstimate or None
        The cross-fitted estimate of the labels' accuracy on the non-trusted rows, from
        ``purify_dataset(..., estimate_accuracy=True)``; ``None`` when none was made.
    """

    soft_labels: np.ndarray
    labels: np.ndarray
    given_labels: np.ndarray
    confidence: np.ndarray
    changed: np.ndarray
    label_quality: np.ndarray
    label_issues: np.ndarray
    trusted_indices: np.ndarray
    num_classes: int
    class_names: list[str] | None = None
    config: PurifyConfig = field(default_factory=PurifyConfig)
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    accuracy_estimate: AccuracyEstimate | None = None

    @classmethod
    def from_soft_labels(cls, soft_labels: np.ndarray, given_labels: np.ndarray, **kwargs: Any) -> "PurifyResult":
        """Derive hard labels, confidence, change mask and the issue ranking from soft labels."""
        soft = np.asarray(soft_labels, dtype=np.float32)
        given = np.asarray(given_labels, dtype=np.int64)
        labels = soft.argmax(1).astype(np.int64)
        quality = soft[np.arange(len(given)), given].astype(np.float32)
        changed = labels != given
        issues = np.flatnonzero(changed)
        issues = issues[np.argsort(quality[issues], kind="stable")].astype(np.int64)
        kwargs.setdefault("trusted_indices", np.zeros(0, np.int64))
        return cls(soft_labels=soft, labels=labels, given_labels=given, confidence=soft.max(1),
                   changed=changed, label_quality=quality, label_issues=issues,
                   num_classes=soft.shape[1], **kwargs)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_changed(self) -> int:
        return int(self.changed.sum())

    def accuracy(self, clean_labels: np.ndarray, *, exclude_trusted: bool = False) -> float:
        """Fraction of hard labels equal to ``clean_labels``."""
        mask = np.ones(len(self.labels), bool)
        if exclude_trusted and len(self.trusted_indices):
            mask[self.trusted_indices] = False
        return float((self.labels[mask] == np.asarray(clean_labels)[mask]).mean())

    @property
    def estimated_accuracy(self) -> float | None:
        """Estimated accuracy of ``labels`` on the non-trusted rows, in ``[0, 1]``, from
        cross-fitting over the trusted set (:mod:`dmlp_plugin.accuracy_estimate`); ``None``
        unless purified with ``estimate_accuracy=True``."""
        return None if self.accuracy_estimate is None else self.accuracy_estimate.accuracy

    @property
    def estimated_accuracy_interval(self) -> tuple[float, float] | None:
        """``(low, high)``: the Wilson interval of :attr:`estimated_accuracy` (95% by
        default); ``None`` without an estimate."""
        return None if self.accuracy_estimate is None else self.accuracy_estimate.interval

    def estimated_noise_rate(self, method: str = "auto") -> float:
        """Estimated fraction of wrong labels among the purified (non-trusted) samples.

        Needs no clean labels; :func:`dmlp_plugin.noise_rate.estimate_noise_rate` lists
        the methods (``"auto"``: tempered to the trusted log-loss in the default config,
        from agreement with the given labels in paper mode). Integrations set Co-teaching's
        forget rate and CDR's noise rate from it. 0 when no method applies.
        """
        from .noise_rate import estimate_noise_rate

        value = estimate_noise_rate(self, method)
        return 0.0 if value is None else value

    # -- files -----------------------------------------------------------------------------

    def save(self, path: PathLike) -> Path:
        """Write the result to one ``.npz`` file, atomically. Returns the path."""
        path = Path(path)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "num_classes": int(self.num_classes),
            "class_names": self.class_names,
            "config": self.config.to_dict(),
            "history": self.history,
            "timings": self.timings,
            "metadata": self.metadata,
        }
        if self.accuracy_estimate is not None:
            meta["accuracy_estimate"] = self.accuracy_estimate.to_dict()
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        with atomic_write(path) as fh:
            np.savez_compressed(fh, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: PathLike) -> "PurifyResult":
        """Read a result written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"purified-label file not found: {path}")
        try:
            with open_npz(path, what="purified-label", expected="a dmlp-plugin result (.npz from dmlp purify)") as z:
                if "__meta__" not in z.files:
                    raise CorruptFileError(f"{path} is not a dmlp-plugin result file (no __meta__ entry)")
                meta = json.loads(str(z["__meta__"]))
                arrays = {name: z[name] for name in _ARRAYS}
            if not isinstance(meta, dict):
                raise CorruptFileError(f"{path} has malformed metadata (not a JSON object)")
            version = meta.get("schema_version")
            if version != SCHEMA_VERSION:
                raise CorruptFileError(
                    f"{path} has schema version {version}; this dmlp-plugin reads version {SCHEMA_VERSION}")
            estimate = meta.get("accuracy_estimate")  # absent from files written before it existed
            return cls(num_classes=meta["num_classes"], class_names=meta.get("class_names"),
                       config=PurifyConfig.from_dict(meta["config"]), history=meta.get("history", []),
                       timings=meta.get("timings", {}), metadata=meta.get("metadata", {}),
                       accuracy_estimate=None if estimate is None else AccuracyEstimate.from_dict(estimate),
                       **arrays)
        except CorruptFileError:
            raise
        except (ValueError, OSError, EOFError, KeyError, TypeError, AttributeError,
                zipfile.BadZipFile, json.JSONDecodeError) as exc:
            # ConfigError is a ValueError: a stored config that no longer validates.
            raise CorruptFileError(f"cannot read purified-label file {path}: {type(exc).__name__}: {exc}") from exc

    def export(self, path: PathLike, fmt: str = "npy") -> Path:
        """Write the labels in an upstream format: ``"dividemix"`` (JSON list of ints),
        ``"npy"`` (int64) or ``"soft-npy"`` (float32 ``(N, C)``); or ``"datalab"``, a CSV
        in cleanlab Datalab's label-issue columns (:mod:`dmlp_plugin.datalab`)."""
        if fmt == "datalab":
            from .datalab import write_datalab_csv

            return write_datalab_csv(path, labels=self.labels, given_labels=self.given_labels,
                                     label_quality=self.label_quality)
        return export_labels(self.soft_labels if fmt == "soft-npy" else self.labels, path, fmt)
