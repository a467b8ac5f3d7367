"""The Adapter base class, index maps, registry lookups, and the conformance check."""

from __future__ import annotations

import numpy as np
import pytest
from plugin_fixtures import AdapterPlugin, clean_env, fresh_plugins, make_adapter, pm, registered  # noqa: F401

from dmlp_plugin import get_adapter, list_adapters, plugins
from dmlp_plugin.adapter import (Adapter, IdentityMap, SeededSplitMap, StoredIndexMap, as_label_array,
                                 permutation_split, validate_adapter_class)
from dmlp_plugin.errors import AdapterError, AlignmentError, LabelError, ShapeError, UnknownAdapterError
from dmlp_plugin.result import PurifyResult
from dmlp_plugin.testing import check_adapter


def _result(given, purified, num_classes):
    return PurifyResult.from_soft_labels(np.eye(num_classes, dtype=np.float32)[purified], given)


class Targets:
    """A minimal upstream dataset: labels in ``targets``, items ``(x, label, index)``."""

    def __init__(self, labels):
        self.targets = [int(y) for y in labels]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return None, self.targets[i], i


# -- labels --------------------------------------------------------------------------------


def test_as_label_array_accepts_results_and_integer_valued_floats():
    result = _result(np.array([0, 1, 2]), np.array([2, 1, 0]), 3)
    assert as_label_array(result).tolist() == [2, 1, 0]
    assert as_label_array(np.array([1.0, 2.0])).dtype == np.int64


@pytest.mark.parametrize("labels, error, message", [
    (np.zeros((2, 2), int), ShapeError, "must be 1-D"),
    (np.array([0.5, 1.0]), LabelError, "integer class indices"),
    (np.array([0, -1]), LabelError, "negative values"),
])
def test_as_label_array_rejects(labels, error, message):
    with pytest.raises(error, match=message):
        as_label_array(labels)


# -- index maps ----------------------------------------------------------------------------


def test_identity_map():
    assert IdentityMap().indices(4).tolist() == [0, 1, 2, 3]
    assert IdentityMap().apply(np.array([5, 6])).tolist() == [5, 6]


def test_stored_index_map_from_array_and_file(tmp_path):
    values = np.arange(10) * 10
    assert StoredIndexMap([3, 1, 7]).apply(values).tolist() == [30, 10, 70]
    np.save(tmp_path / "train_idx.npy", np.array([9, 0]))
    mapping = StoredIndexMap(tmp_path / "train_idx.npy")
    assert mapping.apply(values).tolist() == [90, 0]
    assert "train_idx.npy" in repr(mapping)


@pytest.mark.parametrize("indices, message", [([0, 10], "index 10, outside the 10"), ([1, 1, 2], "repeated"),
                                              ([-1], "index -1")])
def test_stored_index_map_rejects_bad_indices(indices, message):
    with pytest.raises(AlignmentError, match=message):
        StoredIndexMap(indices).indices(10)


def test_permutation_split_is_the_global_seed_idiom_without_touching_global_state():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    train, val = permutation_split(100, 7, num_val=0.2)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(7)
    perm = np.random.permutation(100)
    assert np.array_equal(val, perm[:20]) and np.array_equal(train, perm[20:])
    train_last, val_last = permutation_split(100, 7, num_val=20, val_first=False)
    assert np.array_equal(val_last, perm[80:]) and np.array_equal(train_last, perm[:80])


def test_seeded_split_map_parts():
    train = SeededSplitMap(3, num_val=5).indices(50)
    val = SeededSplitMap(3, num_val=5, part="val").indices(50)
    assert (len(train), len(val)) == (45, 5)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))
    assert np.array_equal(train, permutation_split(50, 3, num_val=5)[0])


def test_seeded_split_map_custom_recipe_and_errors():
    mapping = SeededSplitMap(0, recipe=lambda n, seed: (np.arange(n)[::2], np.arange(n)[1::2]))
    assert mapping.indices(6).tolist() == [0, 2, 4]
    overlapping = SeededSplitMap(0, recipe=lambda n, seed: (np.arange(n), np.arange(2)))
    with pytest.raises(AlignmentError, match="overlap"):
        overlapping.indices(6)
    with pytest.raises(ShapeError, match="needs num_val"):
        SeededSplitMap(0)


# -- declaration checks ----------------------------------------------------------------------


@pytest.mark.parametrize("attrs, message", [
    ({"name": "Has Spaces"}, "name 'Has Spaces' must be lowercase"),
    ({"upstream": " "}, "upstream must be a non-empty string"),
    ({"upstream_commits": "abc123"}, "upstream_commits must be a tuple of strings"),
    ({"label_format": None}, "label_format must be a non-empty string"),
])
def test_validate_rejects_bad_declarations(attrs, message):
    with pytest.raises(AdapterError, match=message):
        attrs = dict(attrs)
        validate_adapter_class(make_adapter(attrs.pop("name", "ok"), **attrs))


def test_validate_names_everything_missing():
    class Bare(Adapter):
        pass

    with pytest.raises(AdapterError) as info:
        validate_adapter_class(Bare)
    message = str(info.value)
    assert "attribute(s) name, upstream, upstream_commits, label_format" in message
    assert "method(s) get_labels, read_labels, set_labels, write_labels" in message
    with pytest.raises(AdapterError, match="not a subclass"):
        validate_adapter_class(Targets)


# -- inject and verify -----------------------------------------------------------------------


def test_inject_puts_labels_where_the_loader_reads_them():
    adapter = make_adapter("plain")()
    given = np.array([0, 1, 2, 0, 1, 2])
    purified = np.array([1, 1, 2, 2, 0, 0])
    dataset = Targets(given)
    assert adapter.inject(dataset, _result(given, purified, 3)) is dataset
    assert dataset.targets == purified.tolist()


def test_verify_alignment_catches_labels_that_do_not_reach_the_loader():
    class Cached(Targets):  # the loader reads a copy made at construction
        def __init__(self, labels):
            super().__init__(labels)
            self._cache = list(self.targets)

        def __getitem__(self, i):
            return None, self._cache[i], i

    adapter = make_adapter("plain")()
    given = np.zeros(30, int)
    with pytest.raises(AlignmentError, match=r"30 of 30 sampled positions disagree.*loader yields 0, purified label is 1"):
        adapter.inject(Cached(given), np.ones(30, int), num_checks=None)


def test_verify_alignment_always_checks_the_first_and_last_positions():
    class LastShifted(Targets):
        def __getitem__(self, i):
            return None, self.targets[i] + (i == len(self) - 1), i

    labels = np.zeros(1000, int)
    with pytest.raises(AlignmentError, match="position 999"):
        make_adapter("plain")().verify_alignment(LastShifted(labels), labels, num_checks=3)
    with pytest.raises(ShapeError, match="num_checks"):
        make_adapter("plain")().verify_alignment(Targets(labels), labels, num_checks=1)


def test_inject_rejects_a_result_under_the_wrong_split_seed():
    class Split(Adapter):
        name, upstream, upstream_commits, label_format = "split", "https://example.org", (), "npy"

        def __init__(self, seed=1):
            self.seed = seed

        def index_map(self, dataset=None):
            return SeededSplitMap(self.seed, num_val=0.2)

        write_labels = read_labels = None  # not used here
        get_labels = make_adapter("x").get_labels
        set_labels = make_adapter("x").set_labels

    rng = np.random.default_rng(0)
    given, purified = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    dataset = Targets(given[SeededSplitMap(1, num_val=0.2).indices(50)])  # the upstream split with seed 1
    with pytest.raises(AlignmentError, match="before injection.*differ.*given labels"):
        Split(seed=2).inject(dataset, _result(given, purified, 4))
    assert dataset.targets == given[SeededSplitMap(1, num_val=0.2).indices(50)].tolist()  # untouched
    Split(seed=1).inject(dataset, _result(given, purified, 4))
    assert dataset.targets == purified[SeededSplitMap(1, num_val=0.2).indices(50)].tolist()


def test_inject_rejects_a_length_mismatch_and_odd_items():
    adapter = make_adapter("plain")()
    with pytest.raises(AlignmentError, match="holds 5 samples but IdentityMap\\(\\) gives 4"):
        adapter.inject(Targets(np.zeros(5, int)), np.zeros(4, int))

    class Bare(Targets):
        def __getitem__(self, i):
            return self.targets[i]

    with pytest.raises(AdapterError, match="override loader_labels"):
        adapter.inject(Bare(np.zeros(3, int)), np.ones(3, int))


# -- registry lookups ------------------------------------------------------------------------


def test_get_adapter_suggests_close_matches(pm):
    with registered(pm, AdapterPlugin(make_adapter("mixmatchy"), make_adapter("mix-match-plus")), name="mm"):
        with pytest.raises(UnknownAdapterError, match="did you mean 'mixmatchy'") as info:
            get_adapter("mixmatchyy")
        assert isinstance(info.value, KeyError)
        assert ("Registered adapters: cdr, coteaching, dividemix, elr_plus, mix-match-plus, mixmatchy, torchvision"
                in str(info.value))
        with pytest.raises(UnknownAdapterError, match=r"no adapter named 'zzz'\. Registered"):
            get_adapter("zzz")
        assert list_adapters("mix*") == ["mix-match-plus", "mixmatchy"]


# -- conformance -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", plugins.build_plugin_manager(skip_broken=True).adapters)
def test_registered_adapter_conforms(fresh_plugins, name, tmp_path):
    entry = plugins.get_plugin_manager().adapters[name]
    report = check_adapter(entry.cls, tmp_dir=tmp_path)
    assert "inject" in report.passed or report.skipped
    if entry.source.is_builtin:  # ours must exercise the dataset checks
        assert not report.skipped


def test_check_adapter_reports_every_failed_check():
    class Sloppy(Adapter):
        name, upstream, upstream_commits, label_format = "sloppy", "https://example.org", (), "npy"

        def write_labels(self, labels, path):
            np.save(path, labels)  # np.save appends .npy, so the returned path is wrong
            return path

        def read_labels(self, path):
            return np.load(path)

        def get_labels(self, dataset):
            return np.asarray(dataset.targets)

        def set_labels(self, dataset, labels):
            dataset.shadow = list(labels)  # never reaches the loader

        @classmethod
        def conformance_dataset(cls, labels):
            return Targets(labels)

    with pytest.raises(AdapterError) as info:
        check_adapter(Sloppy)
    message = str(info.value)
    assert "label file round trip" in message
    assert "- inject:" in message and "disagree" in message
    assert "verify_alignment accepts aligned labels" not in message  # that one holds


def test_check_adapter_without_a_dataset_skips_and_says_why():
    report = check_adapter(make_adapter("nodata", write_labels=lambda self, labels, path: _save(labels, path),
                                        read_labels=lambda self, path: np.load(path)))
    assert "dataset checks" in report.skipped and "label file round trip" in report.passed
    assert "inject" not in report.passed


def _save(labels, path):
    from dmlp_plugin.io import export_labels

    return export_labels(labels, path, "npy")
