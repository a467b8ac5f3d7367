"""The example adapter's own tests: what a third-party adapter package should run."""

import numpy as np
from dmlp_adapter_example import ToyLNLAdapter
from toylnl.data import NoisyBlobs, load_label_file, make_blobs, train_val_split

from dmlp_plugin.testing import check_adapter


def test_conforms():
    report = check_adapter(ToyLNLAdapter)
    assert not report.skipped  # conformance_dataset is provided, so the dataset checks ran


def test_split_is_recomputed_exactly():
    for n, seed in [(1000, 1), (37, 5)]:
        train, _ = train_val_split(n, 0.1, seed)
        assert np.array_equal(ToyLNLAdapter(split_seed=seed).index_map().indices(n), train)


def test_written_file_is_what_toylnl_reads(tmp_path):
    features, labels = make_blobs(200)
    path = ToyLNLAdapter().write_labels(labels, tmp_path / "labels.txt")
    assert np.array_equal(load_label_file(str(path)), labels)


def test_inject_into_a_constructed_dataset():
    features, clean = make_blobs(200)
    noisy = (clean + (np.arange(200) % 3 == 0)) % 4
    dataset = NoisyBlobs(features, noisy)
    ToyLNLAdapter().inject(dataset, clean)  # verifies alignment on sampled positions
    assert dataset.train_noisy_labels == NoisyBlobs(features, clean).train_noisy_labels
