"""`PurifyResult` files: round trip, atomic writes, corrupt inputs, exporters."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig
from dmlp_plugin import result as result_module
from dmlp_plugin.errors import CorruptFileError, InputError, MissingFileError
from dmlp_plugin.result import PurifyResult


@pytest.fixture
def result() -> PurifyResult:
    rng = np.random.default_rng(0)
    n, c = 40, 4
    logits = rng.normal(size=(n, c)) * 3
    soft = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = rng.integers(0, c, n)
    trusted = np.array([3, 11, 29])
    soft[trusted] = np.eye(c)[given[trusted]]
    history = [{"epoch": e, "ipc_loss": 1.0 / e, "eac_mixed": e % 2 == 0} for e in range(1, 5)]
    return PurifyResult.from_soft_labels(
        soft, given, trusted_indices=trusted, class_names=["a", "b", "c", "d"],
        config=PurifyConfig.paper(epochs=4, eac_period=2, label_betas=(0.6, 0.99)),
        history=history, timings={"total": 0.5}, metadata={"seed": 3, "transition": [[0.5, 0.5]]})


ARRAYS = ("soft_labels", "labels", "given_labels", "confidence", "changed", "label_quality",
          "label_issues", "trusted_indices")


def test_save_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "sub" / "labels.npz")
    assert path.exists()
    loaded = PurifyResult.load(path)
    for name in ARRAYS:
        a, b = getattr(result, name), getattr(loaded, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert loaded.config == result.config
    assert loaded.history == result.history
    assert loaded.metadata == result.metadata and loaded.timings == result.timings
    assert loaded.num_classes == 4 and loaded.class_names == ["a", "b", "c", "d"]
    assert len(loaded.label_issues) == result.num_changed > 0


def test_a_default_config_round_trips_with_its_tuples(result, tmp_path):
    result.config = PurifyConfig(rounds=3, logistic_weight_decay=(1e-2, 1e-4), max_memory="8GB")
    loaded = PurifyResult.load(result.save(tmp_path / "labels.npz"))
    assert type(loaded.config) is PurifyConfig and loaded.config == result.config


def _write_old_file(path, result, config: dict) -> None:
    """A result file as versions before the engine split wrote it: schema 1, one flat config."""
    meta = {"schema_version": 1, "num_classes": 4, "class_names": ["a", "b", "c", "d"], "config": config,
            "history": [{"epoch": 1, "label_accuracy": 0.5, "eac_mixed": False}], "timings": {"total": 0.5},
            "metadata": {"seed": 3, "selected": "round 5"}}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **{name: getattr(result, name) for name in ARRAYS})


def test_a_file_saved_with_an_old_flat_config_still_loads(result, tmp_path):
    from test_config_compat import OLD_DEFAULT, OLD_PAPER

    _write_old_file(tmp_path / "default.npz", result, {**OLD_DEFAULT, "epochs": 60, "eac_eta": 0.3})
    loaded = PurifyResult.load(tmp_path / "default.npz")
    assert loaded.config == PurifyConfig(rounds=3, round_eta=0.3, mlp_candidate=True, given_candidate=False,
                                         logistic_weight_decay=(0.02, 0.005, 0.001))
    assert np.array_equal(loaded.soft_labels, result.soft_labels) and loaded.history[0]["epoch"] == 1
    assert loaded.metadata["selected"] == "round 5"
    _write_old_file(tmp_path / "paper.npz", result, {**OLD_PAPER, "epochs": 30})
    assert PurifyResult.load(tmp_path / "paper.npz").config == PurifyConfig.paper(epochs=30)
    # Saved again, it is written in today's form, and reads back the same.
    again = PurifyResult.load(loaded.save(tmp_path / "resaved.npz"))
    assert again.config == loaded.config


def test_a_file_whose_old_config_no_longer_exists_is_one_line_naming_it(result, tmp_path):
    from test_config_compat import OLD_DEFAULT

    _write_old_file(tmp_path / "hybrid.npz", result, {**OLD_DEFAULT, "ipc": True})  # IPC + least-squares rounds
    with pytest.raises(CorruptFileError) as info:
        PurifyResult.load(tmp_path / "hybrid.npz")
    message = str(info.value)
    assert "hybrid.npz" in message and "no longer exists" in message and "\n" not in message


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def failing_savez(*args, **kwargs):
    fh = args[0]
    fh.write(b"PK\x03\x04 partial archive")
    raise OSError("disk full")


def test_failed_write_leaves_no_file_and_no_temp_file(result, tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez_compressed", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        result.save(tmp_path / "labels.npz")
    assert files_in(tmp_path) == []


def test_failed_write_leaves_an_existing_file_untouched(result, tmp_path, monkeypatch):
    path = result.save(tmp_path / "labels.npz")
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez_compressed", failing_savez)
    with pytest.raises(OSError):
        result.save(path)
    assert files_in(tmp_path) == ["labels.npz"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert np.array_equal(PurifyResult.load(path).soft_labels, result.soft_labels)


@pytest.mark.parametrize("keep", [0, 3, 0.5, -30])
def test_truncated_file_raises_corrupt(result, tmp_path, keep):
    path = result.save(tmp_path / "labels.npz")
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(CorruptFileError, match="labels.npz"):
        PurifyResult.load(path)


def test_garbage_and_foreign_files_raise_corrupt(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(CorruptFileError):
        PurifyResult.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    with pytest.raises(CorruptFileError, match="not a dmlp-plugin result"):
        PurifyResult.load(foreign)
    damaged = tmp_path / "damaged.npz"
    with zipfile.ZipFile(damaged, "w") as z:
        z.writestr("__meta__.npy", b"\x93NUMPY garbage")
    with pytest.raises(CorruptFileError):
        PurifyResult.load(damaged)


def test_missing_file_raises_missing(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        PurifyResult.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("version", [0, 2, None])
def test_wrong_schema_version_raises_corrupt(result, tmp_path, monkeypatch, version):
    monkeypatch.setattr(result_module, "SCHEMA_VERSION", version)
    path = result.save(tmp_path / "labels.npz")
    monkeypatch.undo()
    with pytest.raises(CorruptFileError, match="schema version"):
        PurifyResult.load(path)


# -- exporters -------------------------------------------------------------------------------

def test_export_dividemix_is_a_json_list_of_ints(result, tmp_path):
    path = result.export(tmp_path / "noise.json", "dividemix")
    with open(path) as fh:
        loaded = json.load(fh)
    assert isinstance(loaded, list) and all(type(v) is int for v in loaded)
    assert loaded == result.labels.tolist()


def test_export_npy_is_int64(result, tmp_path):
    loaded = np.load(result.export(tmp_path / "labels.npy", "npy"))
    assert loaded.dtype == np.int64 and np.array_equal(loaded, result.labels)


def test_export_soft_npy_is_float32(result, tmp_path):
    loaded = np.load(result.export(tmp_path / "soft.npy", "soft-npy"))
    assert loaded.dtype == np.float32 and loaded.shape == (40, 4)
    assert np.array_equal(loaded, result.soft_labels)


def test_export_default_format_is_npy(result, tmp_path):
    assert np.array_equal(np.load(result.export(tmp_path / "labels.npy")), result.labels)


@pytest.mark.parametrize("fmt", ["csv", "DivideMix", "", "soft"])
def test_export_unknown_format_raises_input_error(result, tmp_path, fmt):
    with pytest.raises(InputError, match="unknown export format"):
        result.export(tmp_path / "out", fmt)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("meta", [{"schema_version": 1}, [1]], ids=["fields-missing", "not-an-object"])
def test_malformed_metadata_raises_corrupt(result, tmp_path, meta):
    path = tmp_path / "labels.npz"
    np.savez(path, __meta__=np.array(json.dumps(meta)), **{name: getattr(result, name) for name in ARRAYS})
    with pytest.raises(CorruptFileError):
        PurifyResult.load(path)


# -- the accuracy estimate (an optional entry of __meta__) -----------------------------------

def test_accuracy_estimate_round_trips(result, tmp_path):
    from dmlp_plugin.accuracy_estimate import AccuracyEstimate

    result.accuracy_estimate = AccuracyEstimate(0.8125, (0.78, 0.84), 0.6, (0.57, 0.63), 1000, 5, 0.95, 260, 47)
    loaded = PurifyResult.load(result.save(tmp_path / "labels.npz"))
    assert loaded.accuracy_estimate == result.accuracy_estimate
    assert loaded.estimated_accuracy == 0.8125 and loaded.estimated_accuracy_interval == (0.78, 0.84)
    assert isinstance(loaded.estimated_accuracy_interval, tuple)


def test_a_file_without_an_accuracy_estimate_still_loads(result, tmp_path):
    """Files written before the estimate existed have no such entry, and the same schema
    version: they load, with no estimate."""
    path = tmp_path / "old.npz"
    meta = {"schema_version": 1, "num_classes": 4, "class_names": None, "config": result.config.to_dict(),
            "history": [], "timings": {}, "metadata": {}}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **{name: getattr(result, name) for name in ARRAYS})
    loaded = PurifyResult.load(path)
    assert loaded.accuracy_estimate is None
    assert loaded.estimated_accuracy is None and loaded.estimated_accuracy_interval is None
    assert "accuracy_estimate" not in json.loads(str(np.load(result.save(tmp_path / "new.npz"))["__meta__"]))


@pytest.mark.parametrize("estimate", [{"accuracy": 0.8}, [0.8], {"accuracy": "high", "interval": [0, 1]}])
def test_a_malformed_accuracy_estimate_raises_corrupt(result, tmp_path, estimate):
    meta = {"schema_version": 1, "num_classes": 4, "config": result.config.to_dict(), "accuracy_estimate": estimate}
    path = tmp_path / "labels.npz"
    np.savez(path, __meta__=np.array(json.dumps(meta)), **{name: getattr(result, name) for name in ARRAYS})
    with pytest.raises(CorruptFileError, match="labels.npz"):
        PurifyResult.load(path)
