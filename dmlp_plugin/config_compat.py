"""Configs as saved by every version: today's ``{"mode": ..., fields}``, and the single flat
``PurifyConfig`` of versions before the engine was split into two pipelines (0.1.0.dev0
up to commit 29a29a7), which result files and stored reproduce cells still hold.

An old flat config is read as the pipeline it ran: the paper's loop when it ran IPC or the
linear head, the default pipeline otherwise. Its fields that acted are carried over
(``epochs / eac_period`` mixing epochs become ``rounds``); those that acted nowhere in it
are dropped. Hybrids the split removed (IPC feeding the least-squares rounds, the linear
head under the posterior target) fail with one line saying so.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

__all__ = ["upgrade"]

#: The paper loop's fields, as PaperConfig has them (a test checks the two agree).
PAPER_FIELDS = ("ipc", "epochs", "batch_size", "ridge", "label_optimizer", "label_lr", "label_betas",
                "label_weight_decay", "ce_weight", "mse_weight", "prior_weight", "prior", "project_simplex",
                "reshuffle_every", "precision", "eac", "eac_period", "eac_eta", "eac_lr", "eac_weight_decay",
                "eac_lr_decay_epoch", "eac_batch_size", "eac_steps", "eac_conf_weight", "eac_balance_weight",
                "max_memory")

#: Old fields that acted nowhere in a default-pipeline run, or that it now fixes.
_DEFAULT_DROPPED = {"ipc", "epochs", "batch_size", "label_optimizer", "label_lr", "label_betas",
                    "label_weight_decay", "ce_weight", "mse_weight", "prior_weight", "prior", "project_simplex",
                    "reshuffle_every", "precision", "eac", "eac_head", "eac_target", "eac_period", "eac_eta",
                    "eac_final", "select_round", "eac_lr", "eac_weight_decay", "eac_batch_size", "eac_steps",
                    "eac_lr_decay_epoch", "eac_conf_weight", "eac_balance_weight", "extra", "logistic_refit_iter"}

def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Today's ``{"mode": ..., fields}`` form of a config dict of any version (see the module
    docstring); a dict that has a ``"mode"`` is returned as it is.

    Raises
    ------
    ConfigError
        A hybrid of an old version that no longer exists.
    """
    if "mode" in data:
        return dict(data)
    old = dict(data)
    paper_loop = old.get("ipc", False) or old.get("eac_head") == "linear"
    if paper_loop:
        if old.get("eac", True) and (old.get("eac_head", "linear") != "linear"
                                     or old.get("eac_target", "head") != "head"):
            raise ConfigError("this config ran IPC with the least-squares head or the posterior target, a hybrid "
                              "that no longer exists; its labels cannot be remade (see CHANGELOG, the engine split)")
        return {"mode": "paper", **{k: v for k, v in old.items() if k in PAPER_FIELDS}}
    if old.get("eac", True) is False or old.get("eac_target", "posterior") != "posterior":
        raise ConfigError("this config ran neither IPC nor the least-squares posterior rounds, a variant that no "
                          "longer exists (see CHANGELOG, the engine split)")
    if old.get("select_round", True) is False:
        raise ConfigError("this config returned the last round without selection (select_round=false), which "
                          "no longer exists (see CHANGELOG, the engine split)")
    new = {k: v for k, v in old.items() if k not in _DEFAULT_DROPPED}
    epochs, period = old.get("epochs", 100), old.get("eac_period", 20)
    if isinstance(epochs, int) and isinstance(period, int) and period > 0:
        extra_round = old.get("eac_final", True) and epochs % period != 0
        new["rounds"] = max(1, epochs // period + int(extra_round))
    if "eac_eta" in old:
        new["round_eta"] = old["eac_eta"]
    new.setdefault("given_candidate", False)  # added with the split: the old pipeline had none
    return {"mode": "default", **new}
