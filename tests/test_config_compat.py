"""Configs of both pipelines, and the flat ``PurifyConfig`` of versions before the engine was
split into two (``dmlp_plugin/config_compat.py``), which old result files and stored cells hold."""

from __future__ import annotations

import json

import pytest

from dmlp_plugin import PurifyConfig
from dmlp_plugin.config import PaperConfig
from dmlp_plugin.config import config_from_dict
from dmlp_plugin.errors import ConfigError

#: ``PurifyConfig().to_dict()`` as versions up to 29a29a7 saved it: one flat config for both
#: methods, the default running the least-squares rounds every ``eac_period`` epochs.
OLD_DEFAULT = json.loads("""{
  "ipc": false, "epochs": 100, "batch_size": 7000, "ridge": 0.001, "label_optimizer": "adam",
  "label_lr": 0.01, "label_betas": [0.5, 0.999], "label_weight_decay": 0.0003, "ce_weight": 1.0,
  "mse_weight": 1.0, "prior_weight": 1.0, "prior": "trusted", "project_simplex": true, "reshuffle_every": 0,
  "precision": "float32", "eac": true, "eac_head": "least-squares", "eac_target": "posterior",
  "eac_period": 20, "eac_eta": 0.5, "eac_final": true, "select_round": true, "trusted_weight": 7.0,
  "logistic_candidate": true, "logistic_weight_decay": [0.02, 0.005, 0.001], "logistic_trusted_weight": 2.0,
  "logistic_max_iter": 20, "mlp_candidate": true, "mlp_hidden": 1024, "mlp_epochs": 12, "mlp_folds": 4,
  "mlp_layers": 2, "mlp_precision": "auto", "mlp_repeats": 2, "transition_em_steps": 20,
  "fit_transition_weight": true, "fit_posterior_offsets": true, "eac_lr": 0.03, "eac_weight_decay": 0.0003,
  "eac_batch_size": 500, "eac_steps": 98, "eac_lr_decay_epoch": 0, "eac_conf_weight": 0.4,
  "eac_balance_weight": 1.0, "extra": {}
}""")

#: ``PurifyConfig.paper().to_dict()`` of the same versions: IPC and the linear head.
OLD_PAPER = {**OLD_DEFAULT, "ipc": True, "ridge": 1e-06, "prior": "uniform", "project_simplex": False,
             "eac_head": "linear", "eac_target": "head", "eac_eta": 1.0, "eac_final": False, "select_round": False,
             "logistic_candidate": False, "mlp_candidate": False, "eac_lr": 0.006, "eac_lr_decay_epoch": 3}


def one_line_error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# -- old flat configs ------------------------------------------------------------------------

def test_an_old_default_config_loads_as_the_default_pipeline():
    config = PurifyConfig.from_dict(OLD_DEFAULT)
    assert type(config) is PurifyConfig
    # 100 epochs mixing every 20: five rounds; what ran is kept (the network was on then).
    assert config == PurifyConfig(rounds=5, round_eta=0.5, mlp_candidate=True, given_candidate=False,
                                  logistic_weight_decay=(0.02, 0.005, 0.001))


@pytest.mark.parametrize("epochs,period,final,rounds", [
    (100, 20, True, 5), (60, 20, True, 3), (40, 10, True, 4), (6, 3, True, 2),
    (45, 20, True, 3),  # the old final mixing round after the last multiple of T
    (45, 20, False, 2), (5, 20, True, 1), (5, 20, False, 1),
])
def test_old_mixing_epochs_become_rounds(epochs, period, final, rounds):
    old = {**OLD_DEFAULT, "epochs": epochs, "eac_period": period, "eac_final": final, "eac_eta": 0.3}
    config = config_from_dict(old)
    assert config.rounds == rounds and config.round_eta == 0.3


def test_a_few_old_fields_are_enough_and_retired_ones_are_dropped():
    """Files saved before fair selection carry ``logistic_refit_iter``; partial dicts take
    the old defaults for what they leave out."""
    assert PurifyConfig.from_dict({**OLD_DEFAULT, "logistic_refit_iter": 5}) == PurifyConfig.from_dict(OLD_DEFAULT)
    assert config_from_dict({"logistic_weight_decay": [1e-3, 1e-4]}).logistic_weight_decays == (1e-3, 1e-4)
    assert config_from_dict({"epochs": 6, "eac_period": 3}) == PurifyConfig(rounds=2, given_candidate=False)
    with pytest.raises(ConfigError, match="logistic_weight_decay must be"):
        PurifyConfig(logistic_weight_decay=())


def test_an_old_paper_config_loads_as_the_papers_loop():
    config = PurifyConfig.from_dict(OLD_PAPER)
    assert type(config) is PaperConfig
    assert config == PurifyConfig.paper()
    changed = config_from_dict({**OLD_PAPER, "epochs": 30, "batch_size": 500, "eac_period": 10,
                                "precision": "bfloat16"})
    assert changed == PurifyConfig.paper(epochs=30, batch_size=500, eac_period=10, precision="bfloat16")
    # IPC alone, and the linear head alone (the paper's ablations), are still the paper's loop.
    assert config_from_dict({**OLD_PAPER, "eac": False}) == PurifyConfig.paper(eac=False)
    assert config_from_dict({**OLD_PAPER, "ipc": False}) == PurifyConfig.paper(ipc=False)


@pytest.mark.parametrize("changes,says", [
    ({**OLD_DEFAULT, "ipc": True}, "IPC with the least-squares head"),  # IPC feeding the least-squares rounds
    ({**OLD_PAPER, "eac_target": "posterior"}, "posterior target"),  # the linear head under the posterior
    ({**OLD_DEFAULT, "eac_target": "head"}, "no longer exists"),  # the least-squares head's own scores mixed in
    ({**OLD_DEFAULT, "eac": False}, "neither IPC nor the least-squares posterior rounds"),
    ({**OLD_DEFAULT, "select_round": False}, "select_round=false"),
], ids=["ipc-least-squares", "linear-posterior", "least-squares-head-target", "nothing", "no-selection"])
def test_hybrids_that_no_longer_exist_fail_with_one_line(changes, says):
    message = one_line_error(changes)
    assert says in message and "no longer exist" in message


# -- unknown fields, and fields of the other pipeline ----------------------------------------

@pytest.mark.parametrize("build,says", [
    (lambda: PurifyConfig().replace(roundz=3), "'roundz' (did you mean 'rounds'?)"),
    (lambda: PurifyConfig().replace(eta=0.3), "'eta' (did you mean 'round_eta'?)"),  # the paper's symbol
    (lambda: PurifyConfig.paper(epochz=3), "'epochz' (did you mean 'epochs'?)"),
    (lambda: PurifyConfig.paper(eta=0.3), "'eta' (did you mean 'eac_eta'?)"),
    (lambda: config_from_dict({"mode": "default", "round_etaa": 0.3}), "did you mean 'round_eta'?"),
    (lambda: config_from_dict({"mode": "paper", "batchsize": 9}), "did you mean 'batch_size'?"),
])
def test_unknown_fields_suggest_the_closest(build, says):
    with pytest.raises(ConfigError) as info:
        build()
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("build,field,pipeline", [
    (lambda: PurifyConfig().replace(epochs=5), "epochs", "paper"),
    (lambda: PurifyConfig().replace(eac_eta=0.3), "eac_eta", "paper"),
    (lambda: PurifyConfig.paper(rounds=3), "rounds", "default"),
    (lambda: PurifyConfig.paper().replace(mlp_candidate=True), "mlp_candidate", "default"),
    (lambda: config_from_dict({"mode": "default", "ipc": True}), "ipc", "paper"),
    (lambda: config_from_dict({"mode": "paper", "logistic_candidate": True}), "logistic_candidate", "default"),
])
def test_a_field_of_the_other_pipeline_is_named_as_such(build, field, pipeline):
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert f"'{field}' (a setting of the {pipeline} pipeline" in message and "did you mean" not in message
    assert ("--mode paper" if pipeline == "paper" else "--mode default") in message


def test_a_bad_mode_and_a_non_dict_are_refused():
    assert "'fast'" in one_line_error({"mode": "fast"})
    with pytest.raises(ConfigError, match="a config must be a dict of fields, got list"):
        config_from_dict([1, 2])


# -- today's configs -------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    PurifyConfig(),
    PurifyConfig(rounds=3, round_eta=0.3, logistic_weight_decay=(1e-2, 1e-4), mlp_candidate=True, max_memory="8GB"),
    PurifyConfig.paper(),
    PurifyConfig.paper(epochs=30, label_betas=(0.6, 0.99), eac=False, precision="bfloat16"),
], ids=["default", "default-changed", "paper", "paper-changed"])
def test_configs_round_trip_through_json_with_their_mode(config):
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["mode"] == config.mode
    loaded = PurifyConfig.from_dict(saved)
    assert type(loaded) is type(config) and loaded == config


def test_each_config_has_only_its_pipelines_fields():
    default, paper = set(PurifyConfig().to_dict()), set(PurifyConfig.paper().to_dict())
    assert {"rounds", "round_eta", "logistic_candidate", "mlp_candidate", "trusted_folds"} <= default
    assert {"ipc", "epochs", "eac_period", "eac_eta", "precision", "batch_size"} <= paper
    assert not {"epochs", "eac_period", "eac_eta", "ipc", "precision", "eac_head", "eac_target", "eac_final",
                "select_round", "extra"} & default
    assert not {"rounds", "logistic_candidate", "mlp_candidate", "eac_head", "eac_target", "extra"} & paper
    assert default & paper == {"mode", "ridge"}  # max_memory is left out at None


def test_the_paper_fields_of_the_upgrade_are_paper_configs():
    import dataclasses

    from dmlp_plugin.config_compat import PAPER_FIELDS

    assert set(PAPER_FIELDS) == {f.name for f in dataclasses.fields(PaperConfig)}


def test_an_old_default_had_no_given_labels_candidate():
    assert config_from_dict(OLD_DEFAULT).given_candidate is False
