"""Clothing1M from its six standard annotation files, on a tiny fixture with real JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmlp_plugin.data import Clothing1M, load_dataset
from dmlp_plugin.errors import CorruptFileError, InputError, MissingFileError

CATEGORIES = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
              "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]

NOISY = {f"images/0/0{i}/n{i}.jpg": (3 * i) % 14 for i in range(6)}
# Clean labels cover the clean train, val and test images, as in the release.
CLEAN = {f"images/1/0{i}/c{i}.jpg": (5 * i + 1) % 14 for i in range(7)}
VAL = ["images/1/05/c5.jpg", "images/1/02/c2.jpg"]
TEST = ["images/1/06/c6.jpg"]
NOISY_TRAIN = ["images/0/04/n4.jpg", "images/0/00/n0.jpg", "images/0/02/n2.jpg", "images/0/05/n5.jpg"]


def _write_lines(path: Path, lines) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def write_clothing1m(root: Path, annotations: Path | None = None) -> Path:
    annotations = annotations or root
    annotations.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate([*NOISY, *CLEAN]):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8 + i, 6), (10 * i, 0, 255 - i)).save(path, quality=95)
    _write_lines(annotations / "noisy_label_kv.txt", [f"{k} {v}" for k, v in NOISY.items()])
    _write_lines(annotations / "clean_label_kv.txt", [f"{k} {v}" for k, v in CLEAN.items()])
    _write_lines(annotations / "noisy_train_key_list.txt", NOISY_TRAIN)
    _write_lines(annotations / "clean_val_key_list.txt", VAL)
    _write_lines(annotations / "clean_test_key_list.txt", TEST)
    _write_lines(annotations / "category_names_eng.txt", CATEGORIES)
    return root


@pytest.fixture
def root(tmp_path):
    return write_clothing1m(tmp_path / "clothing1m")


def test_noisy_train_follows_key_list_with_noisy_labels(root):
    ds = Clothing1M(root)
    assert ds.split == "noisy_train" and len(ds) == 4
    assert ds.classes == CATEGORIES and ds.num_classes == 14
    np.testing.assert_array_equal(ds.targets, [NOISY[k] for k in NOISY_TRAIN])
    image, label, index = ds[1]
    assert (label, index) == (NOISY["images/0/00/n0.jpg"], 1)
    assert image.mode == "RGB" and image.size == (8, 6)


@pytest.mark.parametrize("split, alias", [("clean_val", "val"), ("clean_test", "test"), ("noisy_train", "train")])
def test_splits_and_aliases(root, split, alias):
    ds = load_dataset("clothing1m", root, alias)
    assert ds.split == split
    keys = {"clean_val": VAL, "clean_test": TEST, "noisy_train": NOISY_TRAIN}[split]
    labels = CLEAN if split.startswith("clean") else NOISY
    assert ds.files == keys
    np.testing.assert_array_equal(ds.targets, [labels[k] for k in keys])


def test_clean_train_leaves_out_val_and_test(root):
    ds = Clothing1M(root, "clean_train")
    expected = [k for k in CLEAN if k not in VAL + TEST]
    assert ds.files == expected
    np.testing.assert_array_equal(ds.targets, [CLEAN[k] for k in expected])
    # The release's own clean-train list, when present, decides the order.
    _write_lines(root / "clean_train_key_list.txt", expected[::-1])
    assert Clothing1M(root, "clean_train").files == expected[::-1]


def test_images_are_read_lazily(root):
    (root / NOISY_TRAIN[2]).unlink()
    ds = Clothing1M(root)  # builds without touching images
    ds[0]
    with pytest.raises(MissingFileError, match="n2.jpg"):
        ds[2]
    (root / NOISY_TRAIN[3]).write_bytes(b"not a jpeg")
    with pytest.raises(CorruptFileError, match="n5.jpg"):
        ds[3]


def test_fingerprint_hashes_keys_and_labels_not_pixels(root):
    first = Clothing1M(root).fingerprint()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(root / NOISY_TRAIN[0])
    assert Clothing1M(root).fingerprint() == first
    assert Clothing1M(root, "clean_val").fingerprint() != first
    _write_lines(root / "noisy_label_kv.txt",
                 [f"{k} {(v + 1) % 14 if k == NOISY_TRAIN[0] else v}" for k, v in NOISY.items()])
    assert Clothing1M(root).fingerprint() != first


def test_annotations_subfolder(tmp_path):
    root = write_clothing1m(tmp_path / "c1m", annotations=tmp_path / "c1m" / "annotations")
    assert Clothing1M(root, "clean_test").files == TEST


def test_missing_files(tmp_path, root):
    with pytest.raises(MissingFileError, match="not found"):
        Clothing1M(tmp_path / "nowhere")
    (root / "clean_val_key_list.txt").unlink()
    with pytest.raises(MissingFileError, match="clean_val_key_list.txt"):
        Clothing1M(root, "clean_val")
    (root / "category_names_eng.txt").unlink()
    with pytest.raises(MissingFileError, match="category_names_eng.txt"):
        Clothing1M(root)


def test_malformed_annotations(root):
    _write_lines(root / "noisy_train_key_list.txt", [*NOISY_TRAIN, "images/9/99/ghost.jpg"])
    with pytest.raises(CorruptFileError, match=r"1 keys .*ghost.jpg"):
        Clothing1M(root)
    _write_lines(root / "clean_label_kv.txt", ["images/1/06/c6.jpg 14"])
    with pytest.raises(CorruptFileError, match=r"clean_label_kv.txt.*outside \[0, 14\)"):
        Clothing1M(root, "clean_test")
    _write_lines(root / "clean_label_kv.txt", ["images/1/06/c6.jpg three"])
    with pytest.raises(CorruptFileError, match="not an integer"):
        Clothing1M(root, "clean_test")


def test_unknown_split(root):
    with pytest.raises(InputError, match="noisy_train, clean_train, clean_val, clean_test"):
        Clothing1M(root, "dirty")
