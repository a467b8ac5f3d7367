"""The methods the suite compares, each ``(features, noisy, trusted, clean) -> record``.

A record holds the label accuracy on the non-trusted rows, the wall time, and for
dmlp-plugin's default pipeline every candidate's record (``metadata["candidates"]``), so
one run gives the accuracy of any subset of its candidates: the selection is the first of
the lowest trusted log-loss, and the candidates fitted without the network are those
fitted with it (the network is fitted last, from the generator's later draws).

Methods: ``dmlp`` (the default pipeline with every candidate, the network included, or
``dmlp-nonet`` without it), ``paper`` (``PurifyConfig.paper()``), and the peers of
``peers.py`` (``fc-logistic``, ``cleanlab``, ``knn``). Variants for choosing settings are
``dmlp:<name>`` with the overrides of :data:`VARIANTS`. ``estimates`` is not compared with
the others: it runs the default with ``estimate_accuracy=True`` and records how far the
result's own estimates (its accuracy, its residual noise) fall from the truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import suite_data as data
from driver import read_json

__all__ = ["METHODS", "ESTIMATES", "VARIANTS", "run_method", "method_digest", "select", "result_path", "load"]

HERE = Path(__file__).resolve().parent

#: Overrides of PurifyConfig tried on the tuning draws (``--methods dmlp:NAME``).
VARIANTS: dict[str, dict] = {
    "noem": {"transition_em_steps": 0},
    "noweightoffsets": {"fit_transition_weight": False, "fit_posterior_offsets": False},
    "noweight": {"fit_transition_weight": False},
    "nooffsets": {"fit_posterior_offsets": False},
    "onedecay": {"logistic_weight_decay": 5e-3},
    "strongdecay": {"logistic_weight_decay": (0.1, 0.03, 0.01, 0.003)},
    "decay5": {"logistic_weight_decay": (0.1, 0.05, 0.02, 0.005, 0.001)},
    "decay3w": {"logistic_weight_decay": (0.1, 0.02, 0.004)},
    "decayhi": {"logistic_weight_decay": (0.3, 0.1, 0.03, 0.01)},
    "rounds10": {"rounds": 10},
    "strong10": {"rounds": 10, "logistic_weight_decay": (0.1, 0.03, 0.01)},
    "net1": {"mlp_candidate": True, "mlp_layers": 1},
    "given": {"given_candidate": True},
    "noshrink": {"transition_shrinkage": False},
    "offsets20": {"offsets_min_rows_per_class": 20},
}

PEERS = ("fc-logistic", "cleanlab", "knn")
METHODS = ("dmlp", "dmlp-nonet", "paper", *PEERS)
#: Methods run and reported on their own, outside the comparison.
ESTIMATES = "estimates"
NOISE_RATE_METHODS = ("auto", "entropy", "confidence", "agreement")


#: Bump when a change of the engine or of peers.py moves results: the cache keys on it
#: (and on each dmlp method's config), not on the code's bytes, so edits that change no
#: label do not rerun the suite.
ENGINE_REVISION = "2026-12-06.2"
PAPER_REVISION = "2026-12-06.1"  # paper mode runs its own loop (engine/paper_loop.py)
PEERS_REVISION = "2026-12-06.1"


def method_digest(method: str) -> str:
    """What a method's results depend on, besides its inputs."""
    import hashlib
    import json

    if method in PEERS:
        key = PEERS_REVISION
    else:
        revision = PAPER_REVISION if method == "paper" else ENGINE_REVISION
        key = revision + json.dumps(config_of(method).to_dict(), sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def config_of(method: str):
    from dmlp_plugin import PurifyConfig

    if method == "paper":
        return PurifyConfig.paper()
    if method == "dmlp":
        return PurifyConfig(mlp_candidate=True)
    if method in ("dmlp-nonet", ESTIMATES):
        return PurifyConfig(mlp_candidate=False)
    return PurifyConfig(**VARIANTS[method.split(":", 1)[1]])


def run_method(method: str, cell: data.Cell) -> dict:
    """One method on one cell: ``{"label_acc", "seconds", "info", ...}``."""
    x, noisy, trusted, clean = data.cell_inputs(cell)
    keep = np.ones(len(clean), bool)
    keep[trusted] = False
    if method in PEERS:
        import peers

        fn = {"fc-logistic": peers.fc_logistic, "cleanlab": peers.cleanlab_relabel, "knn": peers.knn_relabel}[method]
        kwargs = {"cache_dir": data.CACHE / "knn"} if method == "knn" else {}
        if method == "knn":
            kwargs["cache_dir"].mkdir(parents=True, exist_ok=True)
        result = fn(x, noisy, trusted, clean[trusted], **kwargs)
        return {"label_acc": float((result.labels[keep] == clean[keep]).mean()), "seconds": result.seconds,
                "info": _plain(result.info)}
    return _run_dmlp(method, x, noisy, trusted, clean, keep)


def _run_dmlp(method: str, x, noisy, trusted, clean, keep) -> dict:
    from dmlp_plugin import purify_dataset

    config = config_of(method)
    t0 = time.perf_counter()
    result = purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], clean_labels=clean,
                            config=config, seed=0, device="cpu", threads=None, estimate_accuracy=method == ESTIMATES)
    seconds = time.perf_counter() - t0
    out = {"label_acc": float((result.labels[keep] == clean[keep]).mean()), "seconds": seconds,
           "timings": result.timings, "candidates": result.metadata.get("candidates"),
           "feature_check": result.metadata.get("feature_check")}
    if method == ESTIMATES:
        out.update(_estimates(result))
    if method == "paper":
        out["history"] = [{"epoch": r["epoch"], "label_accuracy": r.get("label_accuracy")} for r in result.history]
    return out


def _estimates(result) -> dict:
    """The result's own estimates: its accuracy estimate with interval and warning, and each
    residual-noise estimate (the report sets them beside the truth)."""
    from dmlp_plugin.noise_rate import estimate_noise_rate

    est = result.accuracy_estimate
    return {"accuracy_estimate": {"accuracy": est.accuracy, "interval": list(est.interval),
                                  "given_accuracy": est.given_accuracy, "num_rows": est.num_rows},
            "warned": est.worse_than_given,  # what makes purify_dataset warn
            "noise_rate": {m: estimate_noise_rate(result, m) for m in NOISE_RATE_METHODS}}


def select(candidates: list[dict], families: tuple[str, ...] | None = None,
           names: tuple[str, ...] | None = None) -> dict:
    """The candidate the default pipeline would select among ``families`` (or ``names``)."""
    pool = [c for c in candidates
            if (families is None or c["family"] in families) and (names is None or c["name"] in names)]
    best = None
    for c in pool:  # the first of the lowest log-loss, as the engine's selection
        if best is None or c["trusted_nll"] < best["trusted_nll"]:
            best = c
    return best


def _plain(info: dict) -> dict:
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool)) or v is None}


#: Every (method, cell) result, one JSON file each, under a key of the code that made it.
RUNS = data.CACHE / "suite" / "runs"


def result_path(method: str, cell: data.Cell, digest: str) -> Path:
    return RUNS / method.replace(":", "_") / f"{cell.key}-{digest}.json"


def load(method: str, cell: data.Cell, digest: str) -> dict | None:
    return read_json(result_path(method, cell, digest))
