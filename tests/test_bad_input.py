"""Bad inputs to `purify_dataset`: each raises a `DmlpError` whose message names the problem."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.errors import (ConfigError, CorruptFileError, DmlpError, InputError, LabelError,
                                MissingFileError, ShapeError)
from engine_fixtures import one_torch_thread  # noqa: F401  (autouse)

N, D, C, V = 60, 4, 3, 30
TINY = PurifyConfig(rounds=2)


def base() -> dict:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(N, D)).astype(np.float32)
    labels = np.arange(N) % C
    trusted = np.arange(0, 2 * V, 2)
    return dict(features=features, labels=labels, val_indices=trusted, val_labels=labels[trusted], config=TINY)


def changed(**overrides) -> Callable[[dict], dict]:
    """A case: ``overrides`` values may be functions of the base arguments."""
    def make(kw: dict) -> dict:
        return {**kw, **{k: v(kw) if callable(v) else v for k, v in overrides.items()}}
    return make


def with_value(key: str, index, value) -> Callable[[dict], np.ndarray]:
    def make(kw: dict) -> np.ndarray:
        arr = np.array(kw[key], copy=True)
        arr[index] = value
        return arr
    return make


CASES = {
    "labels-shorter": (changed(labels=lambda kw: kw["labels"][:-1]), ShapeError,
                       ["features have 60 rows", "labels have 59"]),
    "labels-negative": (changed(labels=with_value("labels", 4, -1)), LabelError,
                        ["labels contain negative values", "min -1 at index 4"]),
    "labels-out-of-range": (changed(labels=with_value("labels", 7, 3), num_classes=3), LabelError,
                            ["num_classes=3 conflicts", "class 3"]),
    "val-labels-out-of-range": (changed(val_labels=with_value("val_labels", 0, 5), num_classes=3), LabelError,
                                ["num_classes=3 conflicts", "class 5"]),
    "labels-float": (changed(labels=lambda kw: kw["labels"] + 0.5), LabelError,
                     ["labels must be integer class indices", "float64"]),
    "labels-bool": (changed(labels=lambda kw: kw["labels"] > 0), LabelError,
                    ["labels must be integer class indices", "bool"]),
    "labels-2d": (changed(labels=lambda kw: np.eye(C, dtype=int)[kw["labels"]]), ShapeError,
                  ["labels must be 1-D", "(60, 3)"]),
    "features-nan": (changed(features=with_value("features", ([20, 7, 7], [0, 2, 3]), np.nan)), InputError,
                     ["NaN or inf", "2 row(s)", "first: row 7 has NaN"]),
    "features-inf": (changed(features=with_value("features", (9, 0), -np.inf)), InputError,
                     ["row 9 has inf"]),
    "features-string": (changed(features=lambda kw: kw["features"].astype(str)), InputError,
                        ["features must be a numeric", "dtype <U"]),
    "features-object": (changed(features=lambda kw: kw["features"].astype(object)), InputError,
                        ["features must be a numeric", "object"]),
    "features-ragged": (changed(features=[[1.0, 2.0], [3.0]]), InputError, ["features cannot be read as an array"]),
    "features-1d": (changed(features=lambda kw: kw["features"][:, 0]), ShapeError, ["features must be 2-D"]),
    "class-absent-from-trusted": (changed(val_labels=lambda kw: np.where(kw["val_labels"] == 2, 1, kw["val_labels"])),
                                  LabelError, ["no sample of class(es) 2", "at least one clean example"]),
    "trusted-empty": (changed(val_indices=[], val_labels=[]), InputError, ["trusted set is empty"]),
    "trusted-empty-typed": (changed(val_indices=np.zeros(0, np.int64), val_labels=np.zeros(0, np.int64)),
                            InputError, ["trusted set is empty"]),
    "trusted-out-of-range": (changed(val_indices=with_value("val_indices", 3, N)), InputError,
                             ["val_indices has 1 index(es) outside [0, 60)", "first: 60"]),
    "trusted-negative": (changed(val_indices=with_value("val_indices", 0, -1)), InputError,
                         ["outside [0, 60)", "first: -1"]),
    "trusted-duplicated": (changed(val_indices=with_value("val_indices", 1, 0)), InputError,
                           ["duplicated index(es)", "first: 0"]),
    # whole-number floats (a .txt index file) pass, as for labels; fractions do not
    "trusted-float-indices": (changed(val_indices=lambda kw: kw["val_indices"] + 0.5), InputError,
                              ["val_indices must be integers"]),
    "trusted-all-samples": (changed(val_indices=np.arange(N), val_labels=lambda kw: kw["labels"]), InputError,
                            ["covers all 60 samples"]),
    "val-length-mismatch": (changed(val_labels=lambda kw: kw["val_labels"][:-1]), ShapeError,
                            ["val_indices has 30 entries", "val_labels has 29"]),
    "val-labels-missing": (changed(val_labels=None), InputError, ["trusted set is required"]),
    "both-val-indices-and-features": (changed(val_features=lambda kw: kw["features"][:V]), InputError,
                                      ["exactly one of val_indices", "val_features"]),
    "neither-val-indices-nor-features": (changed(val_indices=None), InputError, ["exactly one of val_indices"]),
    "val-features-dims": (changed(val_indices=None, val_features=lambda kw: kw["features"][:V, :2]), ShapeError,
                          ["val_features have 2 dims", "features have 4"]),
    "val-features-rows": (changed(val_indices=None, val_features=lambda kw: kw["features"][:V - 1]), ShapeError,
                          ["val_features has 29 rows", "val_labels has 30"]),
    "trusted-label-above-every-class": (changed(val_labels=with_value("val_labels", 4, 12)), LabelError,
                                        ["val_labels contain class 12, but labels only go up to class 2"]),
    "num-classes-conflict": (changed(num_classes=2), LabelError, ["num_classes=2 conflicts", "contain class 2"]),
    "num-classes-too-small": (changed(num_classes=1), LabelError, ["num_classes must be an integer >= 2"]),
    "num-classes-bool": (changed(num_classes=True), LabelError, ["num_classes must be an integer >= 2"]),
    "clean-labels-length": (changed(clean_labels=lambda kw: kw["labels"][:10]), ShapeError,
                            ["clean_labels has 10 entries", "60 samples"]),
    "class-names-count": (changed(class_names=["a", "b"]), ShapeError, ["class_names has 2 names", "3 classes"]),
    "view2-rows": (changed(features_view2=lambda kw: kw["features"][:10]), ShapeError,
                   ["features_view2 has 10 rows"]),
    "unknown-device": (changed(device="tpu9"), InputError, ["unknown device 'tpu9'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_a_named_dmlp_error(case):
    make, error, fragments = CASES[case]
    kwargs = make(base())
    with pytest.raises(error) as info:
        purify_dataset(**kwargs)
    assert isinstance(info.value, DmlpError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_whole_number_float_labels_are_labels_and_fractions_are_not():
    kwargs = base()
    as_ints = purify_dataset(**kwargs).labels
    kwargs["labels"] = kwargs["labels"].astype(np.float64)  # as a .txt label file loads
    np.testing.assert_array_equal(purify_dataset(**kwargs).labels, as_ints)
    kwargs["labels"] = kwargs["labels"] + 0.5
    with pytest.raises(LabelError, match="labels must be integer class indices, got dtype float64 with fractional"):
        purify_dataset(**kwargs)


def test_errors_are_also_builtin_exceptions():
    kwargs = base()
    kwargs["labels"] = kwargs["labels"][:-1]
    with pytest.raises(ValueError):
        purify_dataset(**kwargs)
    with pytest.raises(FileNotFoundError):
        purify_dataset("/nonexistent/features.npy", kwargs["labels"])


@pytest.mark.parametrize("what", ["features", "labels"])
def test_missing_file_raises_missing_file_error(what, tmp_path):
    kwargs = base()
    kwargs[what] = str(tmp_path / f"{what}.npy")
    with pytest.raises(MissingFileError, match=f"{what} file not found: .*{what}.npy"):
        purify_dataset(**kwargs)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_npy_raises_corrupt_file_error(damage, tmp_path):
    kwargs = base()
    path = tmp_path / "features.npy"
    if damage == "garbage":
        path.write_bytes(b"\x00not numpy" * 50)
    else:
        np.save(path, kwargs["features"])
        path.write_bytes(path.read_bytes()[:-100])
    kwargs["features"] = path
    message = "is not a numpy .npy file" if damage == "garbage" else "declares shape .60, 4. float32 .* truncated"
    with pytest.raises(CorruptFileError, match=f"features file .*features.npy.*{message}|{message} .*features.npy"):
        purify_dataset(**kwargs)


@pytest.mark.parametrize("make,field,value,fragment", [
    (PurifyConfig, "rounds", 0, "rounds must be a positive integer"),
    (PurifyConfig, "rounds", 2.0, "rounds must be a positive integer"),
    (PurifyConfig, "round_eta", 1.5, "round_eta must lie in [0, 1]"),
    (PurifyConfig, "ridge", -1e-3, "ridge must be a number >= 0"),
    (PurifyConfig, "trusted_weight", "5", "trusted_weight must be a number >= 0"),
    (PurifyConfig, "trusted_folds", 1, "trusted_folds must be an integer >= 2"),
    (PurifyConfig, "transition_em_steps", -1, "transition_em_steps must be an integer >= 0"),
    (PurifyConfig, "transition_shrinkage", "no", "transition_shrinkage must be True or False, got 'no'"),
    (PurifyConfig, "fit_transition_weight", 1, "fit_transition_weight must be True or False, got 1"),
    (PurifyConfig, "offsets_min_rows_per_class", 0, "offsets_min_rows_per_class must be a positive integer"),
    (PurifyConfig, "mlp_precision", "float16", "mlp_precision must be one of"),
    (PurifyConfig.paper, "epochs", 0, "epochs must be a positive integer"),
    (PurifyConfig.paper, "epochs", 2.0, "epochs must be a positive integer"),
    (PurifyConfig.paper, "batch_size", True, "batch_size must be a positive integer"),
    (PurifyConfig.paper, "eac_period", -3, "eac_period must be a positive integer"),
    (PurifyConfig.paper, "reshuffle_every", -1, "reshuffle_every must be an integer >= 0"),
    (PurifyConfig.paper, "ridge", -1e-3, "ridge must be a number >= 0"),
    (PurifyConfig.paper, "label_lr", float("nan"), "label_lr must be a number >= 0"),
    (PurifyConfig.paper, "eac_eta", 1.5, "eac_eta must lie in [0, 1]"),
    (PurifyConfig.paper, "label_optimizer", "rmsprop", "label_optimizer must be one of"),
    (PurifyConfig.paper, "ipc", "false", "ipc must be True or False, got 'false'"),
    (PurifyConfig.paper, "prior", "zipf", "prior must be one of"),
    (PurifyConfig.paper, "precision", "float16", "precision must be one of"),
    (PurifyConfig.paper, "label_betas", (0.9, 1.0), "label_betas must be two numbers in [0, 1)"),
    (PurifyConfig.paper, "label_betas", (0.9,), "label_betas must be two numbers"),
])
def test_bad_config_values_raise_config_error(make, field, value, fragment):
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    assert fragment in str(info.value) and isinstance(info.value, DmlpError)
    with pytest.raises(ConfigError):
        make().replace(**{field: value})


def test_paper_mode_with_nothing_on_is_refused():
    with pytest.raises(ConfigError, match="ipc and eac are both off"):
        PurifyConfig.paper(ipc=False, eac=False)


def test_unknown_config_field_in_a_dict_raises_config_error():
    with pytest.raises(ConfigError, match="unknown PurifyConfig field.*: 'colour'"):
        PurifyConfig.from_dict({"epochs": 3, "colour": "red"})


@pytest.mark.parametrize("changes, hint", [
    ({"bogus": 1}, "'bogus'$"),
    ({"eta": 0.3}, "'eta' \\(did you mean 'round_eta'\\?\\)"),  # the paper's symbol names its field
    ({"roundz": 3}, "'roundz' \\(did you mean 'rounds'\\?\\)"),
])
def test_replace_with_an_unknown_field_suggests_the_closest(changes, hint):
    with pytest.raises(ConfigError, match="unknown PurifyConfig field\\(s\\): " + hint):
        PurifyConfig().replace(**changes)


@pytest.mark.parametrize("config", ["fast", 3, ["epochs", 2]])
def test_config_of_the_wrong_type_raises_config_error(config):
    kwargs = base()
    kwargs["config"] = config
    with pytest.raises(ConfigError, match="PurifyConfig"):
        purify_dataset(**kwargs)


def test_config_as_a_dict_is_read_and_validated():
    kwargs = base()
    kwargs["config"] = {"mode": "default", "rounds": 2}
    assert purify_dataset(**kwargs).config == PurifyConfig(rounds=2)
    kwargs["config"] = {"mode": "paper", "epochs": 2, "batch_size": 30}
    assert purify_dataset(**kwargs).config == PurifyConfig.paper(epochs=2, batch_size=30)
    kwargs["config"] = {"epochs": 2, "eac_period": 1}  # a flat config of an older version (no given-labels candidate)
    assert purify_dataset(**kwargs).config == PurifyConfig(rounds=2, given_candidate=False)
    kwargs["config"] = {"mode": "default", "rounds": 0}
    with pytest.raises(ConfigError, match="rounds must be a positive integer"):
        purify_dataset(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_on_a_cpu_only_machine_raises_input_error(device):
    with pytest.raises(InputError, match=f"device '{device}' was asked for but CUDA is not available"):
        purify_dataset(**{**base(), "device": device})


def small_batch_run(ridge: float):
    kwargs = base()
    kwargs["features"] = np.random.default_rng(1).normal(size=(N, 16)).astype(np.float32)
    kwargs["config"] = PurifyConfig.paper(epochs=2, eac_period=1, batch_size=8, ridge=ridge)
    return purify_dataset(**kwargs)


def test_batch_smaller_than_feature_dimension_warns_with_a_larger_ridge():
    with pytest.warns(RuntimeWarning, match="smaller than the feature dimension 16"):
        small_batch_run(1e-3)


def test_batch_smaller_than_feature_dimension_warns_but_purifies():
    with pytest.warns(RuntimeWarning, match="smaller than the feature dimension 16"):
        result = small_batch_run(1e-6)  # the paper's ridge
    assert np.isfinite(result.soft_labels).all() and result.soft_labels.shape == (N, C)
    assert np.allclose(result.soft_labels.sum(1), 1, atol=1e-5)
    assert any(r["ipc_loss"] > 0 for r in result.history)


def test_small_trusted_set_warns():
    kwargs = base()
    kwargs["val_indices"], kwargs["val_labels"] = np.arange(6), kwargs["labels"][:6]
    with pytest.warns(RuntimeWarning, match="only 6 samples for 3 classes"):
        purify_dataset(**kwargs)


@pytest.mark.parametrize("form", ["npy-path", "str-path", "tensor", "float64", "npz-path", "labels-json"])
def test_features_as_paths_and_tensors_give_the_same_result(form, tmp_path):
    kwargs = base()
    reference = purify_dataset(**kwargs).soft_labels
    if form == "npy-path":
        np.save(tmp_path / "f.npy", kwargs["features"])
        kwargs["features"] = tmp_path / "f.npy"
    elif form == "str-path":
        np.save(tmp_path / "f.npy", kwargs["features"])
        kwargs["features"] = str(tmp_path / "f.npy")
    elif form == "tensor":
        kwargs["features"] = torch.from_numpy(kwargs["features"]).requires_grad_()
        kwargs["labels"] = torch.from_numpy(kwargs["labels"])
    elif form == "float64":
        kwargs["features"] = kwargs["features"].astype(np.float64)
    elif form == "npz-path":
        np.savez(tmp_path / "f.npz", feats=kwargs["features"])
        kwargs["features"] = tmp_path / "f.npz"
    else:
        (tmp_path / "labels.json").write_text(str(kwargs["labels"].tolist()))
        kwargs["labels"] = tmp_path / "labels.json"
    assert np.array_equal(purify_dataset(**kwargs).soft_labels, reference)
