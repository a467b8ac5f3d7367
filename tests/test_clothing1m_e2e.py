"""Clothing1M end to end on a fixture in the release's file formats: key lists → features →
purification against the separate clean validation set → the ``noisy_label_kv.txt`` that
DivideMix's ``Train_clothing1M.py`` reads, relabelled."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.data import Clothing1M, load_dataset
from dmlp_plugin.errors import LabelError, ShapeError
from dmlp_plugin.features import dataset_features

CATEGORIES = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
              "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]
# one colour a class, far apart in RGB, so a random 1x1-conv encoder separates them
PALETTE = np.array([(r, g, b) for r in (20, 130, 240) for g in (20, 130, 240) for b in (20, 240)][:14])


class Fixture:
    """A miniature release: 42 noisy-train, 28 clean-val and 14 clean-test JPEGs."""

    def __init__(self, root: Path) -> None:
        rng = np.random.default_rng(0)
        self.root = root
        ann = root / "annotations"
        ann.mkdir(parents=True)

        def image(key: str, label: int) -> str:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = PALETTE[label] + rng.normal(0, 12, (12, 12, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
            return key

        # keys as the release writes them: images/<d>/<dd>/<name>.jpg
        self.train_keys = [image(f"images/{i % 10}/{i:02d}/{1000 + i}.jpg", i % 14) for i in range(42)]
        self.clean_train = np.arange(42) % 14
        noisy = self.clean_train.copy()
        flipped = rng.choice(42, 12, replace=False)
        noisy[flipped] = (noisy[flipped] + rng.integers(1, 14, 12)) % 14
        self.noisy = noisy
        val = [image(f"images/{i % 10}/{50 + i:02d}/{2000 + i}.jpg", i % 14) for i in range(28)]
        test = [image(f"images/{i % 10}/{90 + i:02d}/{3000 + i}.jpg", i % 14) for i in range(14)]
        # noisy_label_kv.txt covers more images than the training list, as the release's does
        self.extra = ["images/9/99/9998.jpg 3", "images/9/99/9999.jpg 11"]
        kv = [f"{k} {y}" for k, y in zip(self.train_keys, noisy)]
        kv.insert(7, self.extra[0])
        kv.append(self.extra[1])
        write = lambda name, lines: (ann / name).write_text("".join(f"{line}\n" for line in lines))  # noqa: E731
        write("noisy_label_kv.txt", kv)
        write("clean_label_kv.txt", [f"{k} {i % 14}" for i, k in enumerate(val)]
              + [f"{k} {i % 14}" for i, k in enumerate(test)])
        write("noisy_train_key_list.txt", self.train_keys)
        write("clean_val_key_list.txt", val)
        write("clean_test_key_list.txt", test)
        write("category_names_eng.txt", CATEGORIES)


def encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 1), nn.ReLU())


def read_like_dividemix(data_path: Path) -> dict[str, int]:
    """The training labels as DivideMix's ``clothing_dataset`` builds them: each line of
    ``<data_path>/noisy_label_kv.txt`` maps ``<data_path>/<key without "images/">`` to its label."""
    labels = {}
    for line in (data_path / "noisy_label_kv.txt").read_text().splitlines():
        entry = line.split()
        labels[f"{data_path}/{entry[0][7:]}"] = int(entry[1])
    return labels


@pytest.fixture(scope="module")
def purified(tmp_path_factory):
    fx = Fixture(tmp_path_factory.mktemp("clothing1m") / "clothing1m")
    train = load_dataset("clothing1m", fx.root, "train")
    val = load_dataset("clothing1m", fx.root, "val")
    assert train.files == fx.train_keys  # index i is the i-th key of the training list
    np.testing.assert_array_equal(train.targets, fx.noisy)
    options = {"image_size": 12, "cache": False}
    val_features = dataset_features(val, encoder(), device="cpu", options=options)[0]
    with pytest.warns(RuntimeWarning, match="only 28 samples for 14 classes"):
        result = purify_dataset(train, backbone=encoder(), feature_options=options, val_features=val_features,
                                val_labels=val.targets, num_classes=14, device="cpu", seed=0,
                                config=PurifyConfig(rounds=1))  # one round suffices at this size
    return fx, train, result


def test_purification_uses_the_separate_clean_set_and_fixes_labels(purified):
    fx, train, result = purified
    assert result.metadata["trusted_protocol"] == "separate" and result.metadata["num_trusted"] == 28
    assert result.labels.shape == (42,) and result.class_names == CATEGORIES
    before, after = (fx.noisy == fx.clean_train).mean(), (result.labels == fx.clean_train).mean()
    assert before == pytest.approx(30 / 42)
    assert after > before  # the colours make the clean labels learnable from 28 trusted images


def test_exported_label_file_is_what_dividemix_reads(purified, tmp_path):
    fx, train, result = purified
    # DivideMix's --data_path holds the annotation files and the images without their
    # "images/" prefix: give it the image folder, with the relabelled file beside it
    data_path = tmp_path / "dividemix-data"
    shutil.copytree(fx.root / "images", data_path)
    for name in ("clean_label_kv.txt", "noisy_train_key_list.txt", "clean_val_key_list.txt",
                 "clean_test_key_list.txt"):
        shutil.copy(fx.root / "annotations" / name, data_path / name)
    written = train.write_label_kv(result.labels, data_path / "noisy_label_kv.txt")
    assert written == data_path / "noisy_label_kv.txt"

    lines = written.read_text().splitlines()
    original = (fx.root / "annotations" / "noisy_label_kv.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [line.split()[0] for line in original]  # same keys, same order
    assert fx.extra[0] in lines and fx.extra[1] in lines  # lines outside the split untouched
    labels = read_like_dividemix(data_path)
    for key, label in zip(fx.train_keys, result.labels):
        path = f"{data_path}/{key[7:]}"
        assert labels[path] == label and Path(path).is_file()
    assert sum(labels[f"{data_path}/{k[7:]}"] != y for k, y in zip(fx.train_keys, fx.noisy)) > 0
    # our own loader, given the new file in place of the release's, reads the purified labels
    reread = tmp_path / "reread"
    shutil.copytree(fx.root / "annotations", reread)
    shutil.copy(written, reread / "noisy_label_kv.txt")
    np.testing.assert_array_equal(Clothing1M(reread, "train").targets, result.labels)


def test_label_writer_refuses_misaligned_labels(purified, tmp_path):
    fx, train, result = purified
    with pytest.raises(ShapeError, match="one label per sample"):
        train.write_label_kv(result.labels[:-1], tmp_path / "kv.txt")
    with pytest.raises(LabelError, match=r"\[0, 14\)"):
        train.write_label_kv(np.full(42, 14), tmp_path / "kv.txt")
    assert not (tmp_path / "kv.txt").exists()


@pytest.mark.upstream
def test_dividemix_clothing_dataset_yields_the_purified_labels(purified, tmp_path):
    """DivideMix's own ``dataloader_clothing1M.clothing_dataset`` (mode ``"all"``, what
    warm-up and co-divide train on) over the exported file."""
    root = os.environ.get("DMLP_UPSTREAM_ROOT")
    module = Path(root or "") / "DivideMix" / "dataloader_clothing1M.py"
    if not root or not module.is_file():
        pytest.skip("DMLP_UPSTREAM_ROOT does not hold DivideMix/dataloader_clothing1M.py")
    fx, train, result = purified
    data_path = tmp_path / "data"
    shutil.copytree(fx.root / "images", data_path)
    for p in (fx.root / "annotations").iterdir():
        shutil.copy(p, data_path / p.name)
    train.write_label_kv(result.labels, data_path / "noisy_label_kv.txt")
    spec = importlib.util.spec_from_file_location("dividemix_clothing_loader", module)
    loader = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loader
    try:
        spec.loader.exec_module(loader)
        random.seed(0)
        import torchvision.transforms as T

        dataset = loader.clothing_dataset(str(data_path), T.ToTensor(), mode="all", num_samples=len(train))
        expected = {f"{data_path}/{k[7:]}": int(y) for k, y in zip(fx.train_keys, result.labels)}
        assert len(dataset) > 0
        for i in range(len(dataset)):
            _, target, path = dataset[i]
            assert target == expected[path]
    finally:
        sys.modules.pop(spec.name, None)
