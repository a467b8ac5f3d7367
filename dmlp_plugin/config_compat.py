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

import dataclasses
from typing import Any

from .config import AnyConfig, PaperConfig, PurifyConfig, check_fields
from .errors import ConfigError

__all__ = ["config_from_dict"]

#: Old fields that acted nowhere in a default-pipeline run, or that it now fixes.
_DEFAULT_DROPPED = {"ipc", "epochs", "batch_size", "label_optimizer", "label_lr", "label_betas",
                    "label_weight_decay", "ce_weight", "mse_weight", "prior_weight", "prior", "project_simplex",
                    "reshuffle_every", "precision", "eac", "eac_head", "eac_target", "eac_period", "eac_eta",
                    "eac_final", "select_round", "eac_lr", "eac_weight_decay", "eac_batch_size", "eac_steps",
                    "eac_lr_decay_epoch", "eac_conf_weight", "eac_balance_weight", "extra", "logistic_refit_iter"}
#: Old fields the paper's loop never read.
_PAPER_DROPPED = {"eac_head", "eac_target", "eac_final", "select_round", "trusted_weight", "logistic_candidate",
                  "logistic_weight_decay", "logistic_trusted_weight", "logistic_max_iter", "logistic_refit_iter",
                  "mlp_candidate", "mlp_hidden", "mlp_epochs", "mlp_folds", "mlp_layers", "mlp_precision",
                  "mlp_repeats", "transition_em_steps", "fit_transition_weight", "fit_posterior_offsets", "extra"}


def config_from_dict(data: dict[str, Any]) -> AnyConfig:
    """The config a dict describes (see the module docstring).

    Raises
    ------
    ConfigError
        Unknown fields (with the closest name), bad values, or an old hybrid.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a dict of fields, got {type(data).__name__}")
    data = dict(data)
    mode = data.pop("mode", None)
    if mode is None:
        return _from_flat(data)
    classes = {"default": PurifyConfig, "paper": PaperConfig}
    if mode not in classes:
        raise ConfigError(f"config mode must be 'default' or 'paper', got {mode!r}")
    return _build(classes[mode], data)


def _build(cls: type, data: dict[str, Any]) -> AnyConfig:
    check_fields(data, cls)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _from_flat(old: dict[str, Any]) -> AnyConfig:
    paper_loop = old.get("ipc", False) or old.get("eac_head") == "linear"
    if paper_loop:
        if old.get("eac", True) and (old.get("eac_head", "linear") != "linear"
                                     or old.get("eac_target", "head") != "head"):
            raise ConfigError("this config ran IPC with the least-squares head or the posterior target, a hybrid "
                              "that no longer exists; its labels cannot be remade (see CHANGELOG, the engine split)")
        fields = {f.name for f in dataclasses.fields(PaperConfig)}
        return _build(PaperConfig, {k: v for k, v in old.items() if k in fields and k not in _PAPER_DROPPED})
    if old.get("eac", True) is False or old.get("eac_target", "posterior") != "posterior":
        raise ConfigError("this config ran neither IPC nor the least-squares posterior rounds, a variant that no "
                          "longer exists (see CHANGELOG, the engine split)")
    new = {k: v for k, v in old.items() if k not in _DEFAULT_DROPPED}
    epochs, period = old.get("epochs", 100), old.get("eac_period", 20)
    if isinstance(epochs, int) and isinstance(period, int) and period > 0:
        extra_round = old.get("eac_final", True) and epochs % period != 0
        new["rounds"] = max(1, epochs // period + int(extra_round))
    if "eac_eta" in old:
        new["round_eta"] = old["eac_eta"]
    if old.get("select_round", True) is False:
        raise ConfigError("this config returned the last round without selection (select_round=false), which "
                          "no longer exists (see CHANGELOG, the engine split)")
    return _build(PurifyConfig, new)
