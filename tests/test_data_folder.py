"""ImageFolder, ArrayDataset and the load_dataset factory."""

from __future__ import annotations

import numpy as np
import pytest
import torchvision
from PIL import Image

from dmlp_plugin.data import ArrayDataset, ImageDataset, ImageFolder, load_dataset
from dmlp_plugin.errors import CorruptFileError, InputError, LabelError, MissingFileError, ShapeError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    # Created out of order, mixed extensions and case, a nested file and a non-image.
    layout = {"zebra": ["b.png", "a.JPG"], "ant": ["z.jpg", "sub/m.jpeg", "c.bmp"], "moose": ["x.png"]}
    for cls, names in layout.items():
        for i, name in enumerate(names):
            path = root / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (5, 4), (len(cls), i, 7)).save(path, format=Image.registered_extensions()[path.suffix.lower()])
    (root / "ant" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_order_matches_torchvision(folder):
    ds = ImageFolder(folder)
    reference = torchvision.datasets.ImageFolder(str(folder))
    assert ds.classes == ["ant", "moose", "zebra"] == reference.classes
    assert [str(folder / f) for f in ds.files] == [path for path, _ in reference.samples]
    np.testing.assert_array_equal(ds.targets, reference.targets)
    assert "ant/notes.txt" not in ds.files and "ant/sub/m.jpeg" in ds.files
    image, label, index = ds[4]
    assert (label, index) == (2, 4) and image.mode == "RGB" and image.size == (5, 4)


def test_imagefolder_fingerprint_and_split_subfolder(folder, tmp_path):
    ds = ImageFolder(folder)
    assert ImageFolder(folder).fingerprint() == ds.fingerprint()
    (folder / "zebra" / "b.png").rename(folder / "zebra" / "c.png")
    assert ImageFolder(folder).fingerprint() != ds.fingerprint()
    # load_dataset uses root/split when that folder exists, else root itself
    nested = tmp_path / "nested"
    nested.mkdir()
    folder.rename(nested / "train")
    assert load_dataset("imagefolder", nested, "train").classes == ["ant", "moose", "zebra"]
    assert load_dataset("imagefolder", nested / "train", "train").classes == ["ant", "moose", "zebra"]


def test_imagefolder_bad_inputs(tmp_path, folder):
    with pytest.raises(MissingFileError, match="not found"):
        ImageFolder(tmp_path / "absent")
    (tmp_path / "flat").mkdir()
    with pytest.raises(MissingFileError, match="no class subfolders"):
        ImageFolder(tmp_path / "flat")
    (tmp_path / "flat" / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        ImageFolder(tmp_path / "flat")
    (folder / "yak").mkdir()
    with pytest.warns(UserWarning, match="yak"):
        ds = ImageFolder(folder)
    assert ds.classes == ["ant", "moose", "yak", "zebra"]  # keeps its index, as torchvision gives it
    assert ds.targets.max() == 3
    (folder / "moose" / "x.png").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match="x.png"):
        ds.load_image(ds.files.index("moose/x.png"))


def test_array_dataset():
    images = np.arange(4 * 2 * 3 * 3, dtype=np.uint8).reshape(4, 2, 3, 3)
    ds = ArrayDataset(images, [2, 0, 1, 2])
    assert isinstance(ds, ImageDataset) and ds.classes == ["0", "1", "2"] and ds.targets.dtype == np.int64
    image, label, index = ds[3]
    assert (label, index) == (2, 3)
    np.testing.assert_array_equal(np.asarray(image), images[3])
    assert ArrayDataset(images, [0, 0, 1, 1], classes=["a", "b", "c"]).num_classes == 3


@pytest.mark.parametrize("images, labels, classes, error, match", [
    (np.zeros((2, 4, 4, 3), np.float32), [0, 1], None, InputError, "uint8"),
    (np.zeros((2, 4, 4), np.uint8), [0, 1], None, ShapeError, r"\(N, H, W, 3\)"),
    (np.zeros((2, 4, 4, 3), np.uint8), [0, 1, 1], None, ShapeError, "N = 2"),
    (np.zeros((2, 4, 4, 3), np.uint8), [0.0, 1.0], None, LabelError, "integers"),
    (np.zeros((2, 4, 4, 3), np.uint8), [0, 2], ["a", "b"], LabelError, "2 classes"),
])
def test_array_dataset_bad_inputs(images, labels, classes, error, match):
    with pytest.raises(error, match=match):
        ArrayDataset(images, np.asarray(labels), classes)


def test_load_dataset_unknown_name_suggests():
    with pytest.raises(InputError, match="Did you mean clothing1m"):
        load_dataset("clothing", "/nowhere")
