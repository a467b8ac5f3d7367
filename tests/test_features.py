"""Backbones by name, checkpoint loading with prefix remapping, cached extraction, and
``dmlp features``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dmlp_plugin.data import ArrayDataset
from dmlp_plugin.errors import ConfigError, CorruptFileError, InputError, MissingFileError
from dmlp_plugin.features import cache as cache_module
from dmlp_plugin.features.backbones import create_backbone, feature_dim, parse_backbone
from dmlp_plugin.features.checkpoints import load_checkpoint
from dmlp_plugin.features.extract import default_transform, extract_features, save_features

TINY = "timm:test_resnet"  # a 370k-parameter ResNet from timm's test models: fast on CPU


# -- backbones ------------------------------------------------------------------------------

def test_names_resolve_to_a_library_and_stem():
    spec = parse_backbone("resnet18-cifar")
    assert (spec.arch, spec.source, spec.cifar_stem) == ("resnet18", "torchvision", True)
    assert spec.name == "torchvision:resnet18-cifar"
    assert parse_backbone("timm:resnet18").source == "timm"
    assert parse_backbone("test_resnet").source == "timm"  # not in torchvision
    assert parse_backbone("resnet18", cifar_stem=True).cifar_stem


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(InputError, match="resnet18") as info:
        parse_backbone("resnet81")
    assert "unknown backbone 'resnet81'" in str(info.value)
    with pytest.raises(InputError, match="library"):
        parse_backbone("keras:resnet18")
    with pytest.raises(InputError, match="not a timm model"):
        parse_backbone("timm:resnet81")


def test_cifar_stem_keeps_full_resolution():
    model = create_backbone("resnet18-cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert feature_dim(model) == 512
    out = model.eval()(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 512)
    deep = create_backbone(f"{TINY}-cifar")  # timm's deep stem: first conv at stride 1
    assert deep.conv1[0].stride == (1, 1) and isinstance(deep.maxpool, nn.Identity)
    with pytest.raises(ConfigError, match="ResNet-style"):
        create_backbone("timm:test_vit-cifar")


# -- checkpoints ----------------------------------------------------------------------------

def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def head(prefix: str) -> dict:
    return {f"{prefix}fc.0.weight": torch.zeros(4, 4), f"{prefix}fc.2.weight": torch.zeros(2, 4)}


STYLES = {
    "raw": lambda sd: sd,
    "moco": lambda sd: {"epoch": 200, "arch": "resnet50", "state_dict": {
        **prefixed(sd, "module.encoder_q."), **head("module.encoder_q."),
        **prefixed(sd, "module.encoder_k."), "module.queue": torch.zeros(8, 16),
        "module.queue_ptr": torch.zeros(1, dtype=torch.long)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0]}]}},
    "simclr": lambda sd: {**prefixed(sd, "backbone."), **head("backbone.")},
    "byol": lambda sd: {"model": {**prefixed(sd, "online_network.encoder."),
                                  "online_network.projector.net.0.weight": torch.zeros(3, 3),
                                  "predictor.net.0.weight": torch.zeros(3, 3),
                                  **prefixed(sd, "target_network.encoder.")}},
    "solo-learn": lambda sd: {"state_dict": {**prefixed(sd, "backbone."), "projector.0.weight": torch.zeros(2, 2),
                                             **prefixed(sd, "momentum_backbone."), "classifier.weight": torch.zeros(10, 2)}},
    "lightning": lambda sd: {"epoch": 3, "state_dict": {**prefixed(sd, "model.encoder."),
                                                         "model.projection_head.0.weight": torch.zeros(2, 2)}},
}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_checkpoints_load_exactly_whatever_the_prefix(tmp_path, style):
    torch.manual_seed(0)
    source = create_backbone(TINY)
    state = source.state_dict()
    path = tmp_path / f"{style}.pt"
    torch.save(STYLES[style](state), path)
    torch.manual_seed(1)
    target = create_backbone(TINY)
    report = load_checkpoint(target, path)
    assert report.ok and not report.missing
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key
    if style != "raw":
        assert report.dropped  # heads, queue, momentum/target encoders went away


def test_checkpoint_of_another_architecture_lists_mismatched_keys(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save({"state_dict": prefixed(create_backbone("resnet18").state_dict(), "module.")}, path)
    with pytest.raises(InputError) as info:
        load_checkpoint(create_backbone("resnet50"), path)
    message = str(info.value)
    assert "does not match the backbone" in message
    assert "layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in message
    assert "missing from the checkpoint" in message and "layer1.0.conv3.weight" in message
    # the ImageNet stem against a CIFAR-stem checkpoint names the one differing tensor
    cifar = tmp_path / "cifar.pt"
    torch.save(create_backbone("resnet18-cifar").state_dict(), cifar)
    with pytest.raises(InputError, match=r"conv1.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)"):
        load_checkpoint(create_backbone("resnet18"), cifar)


def test_partial_checkpoints_need_strict_false(tmp_path):
    state = create_backbone(TINY).state_dict()
    kept = dict(list(state.items())[:10])
    path = tmp_path / "partial.pt"
    torch.save({**kept, "extra.weight": torch.zeros(3)}, path)
    with pytest.raises(InputError, match="extra.weight"):
        load_checkpoint(create_backbone(TINY), path)
    target = create_backbone(TINY)
    with pytest.warns(UserWarning, match="loaded partially"):
        report = load_checkpoint(target, path, strict=False)
    assert sorted(report.loaded) == sorted(kept) and report.unexpected == ["extra.weight"]
    assert all(torch.equal(target.state_dict()[k], v) for k, v in kept.items())
    torch.save({"unrelated.weight": torch.zeros(3)}, path)
    with pytest.raises(InputError, match="0 tensors matched"):
        load_checkpoint(create_backbone(TINY), path, strict=False)


def test_unreadable_and_untrusted_checkpoints(tmp_path):
    with pytest.raises(MissingFileError):
        load_checkpoint(create_backbone(TINY), tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(CorruptFileError, match="cannot read"):
        load_checkpoint(create_backbone(TINY), tmp_path / "junk.pt")
    path = tmp_path / "args.pt"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": create_backbone(TINY).state_dict()}, path)
    with pytest.raises(CorruptFileError, match="trusted=True"):
        load_checkpoint(create_backbone(TINY), path)
    assert load_checkpoint(create_backbone(TINY), path, trusted=True).ok
    torch.save({"epoch": 1, "notes": "x"}, tmp_path / "empty.pt")
    with pytest.raises(CorruptFileError, match="no state dict"):
        load_checkpoint(create_backbone(TINY), tmp_path / "empty.pt")


# -- extraction -----------------------------------------------------------------------------

class MeanColour(nn.Module):
    """Features = per-channel means of the left and right image halves, times a weight.

    Easy to compute by hand, sensitive to flips, and it counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        w = x.shape[3] // 2
        return torch.cat([x[..., :w].mean((2, 3)), x[..., w:].mean((2, 3))], 1) * self.scale


def dataset(n: int = 37, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, n))


def by_hand(images: np.ndarray, flip: bool = False) -> np.ndarray:
    x = images[:, :, ::-1] if flip else images
    x = (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return np.concatenate([x[:, :, :4].mean((1, 2)), x[:, :, 4:].mean((1, 2))], 1).astype(np.float32)


def test_extraction_is_in_index_order_with_a_flipped_view(tmp_path):
    ds = dataset()
    model = MeanColour()
    f, f_flip = extract_features(ds, model, views=("none", "hflip"), batch_size=10, cache_dir=tmp_path,
                                 progress=False, device="cpu")
    assert f.shape == (37, 6) and f.dtype == np.float32
    np.testing.assert_allclose(f, by_hand(ds.images), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_flip, by_hand(ds.images, flip=True), rtol=1e-5, atol=1e-5)
    assert model.calls == 2 * 4  # two views of 4 batches
    assert model.training  # the caller's module gets its mode back


def test_rerun_hits_the_cache_without_calling_the_model(tmp_path):
    ds = dataset()
    model = MeanColour()
    first = extract_features(ds, model, cache_dir=tmp_path, progress=False, device="cpu")
    calls = model.calls
    again = extract_features(ds, model, cache_dir=tmp_path, progress=False, device="cpu")
    assert model.calls == calls
    np.testing.assert_array_equal(first, again)
    assert isinstance(again, np.memmap)  # served memory-mapped from the .npy
    records = list(tmp_path.glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["dataset"] == ds.fingerprint()
    # anything in the key changes -> recomputed: weights, dataset, views
    with torch.no_grad():
        model.scale.fill_(2.0)
    doubled = extract_features(ds, model, cache_dir=tmp_path, progress=False, device="cpu")
    assert model.calls > calls
    np.testing.assert_allclose(doubled, 2 * np.asarray(first), rtol=1e-6)
    calls = model.calls
    extract_features(dataset(seed=1), model, cache_dir=tmp_path, progress=False, device="cpu")
    assert model.calls > calls
    calls = model.calls
    extract_features(ds, model, cache=False, cache_dir=tmp_path, progress=False, device="cpu")
    assert model.calls > calls


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DMLP_CACHE_DIR", str(tmp_path / "env"))
    assert cache_module.default_cache_dir() == tmp_path / "env" / "features"
    extract_features(dataset(5), MeanColour(), progress=False, device="cpu")
    assert list((tmp_path / "env" / "features").glob("*.none.npy"))


def test_checkpoint_weights_are_used_and_keyed(tmp_path):
    ds = dataset(6)
    torch.manual_seed(3)
    trained = create_backbone(TINY)
    ckpt = tmp_path / "moco.pt"
    torch.save({"state_dict": prefixed(trained.state_dict(), "module.encoder_q.")}, ckpt)
    with pytest.warns(UserWarning, match="random weights"):
        random = extract_features(ds, TINY, cache_dir=tmp_path, progress=False, device="cpu")
    loaded = extract_features(ds, TINY, checkpoint=ckpt, cache_dir=tmp_path, progress=False, device="cpu",
                              amp=False)
    tf = default_transform()
    with torch.no_grad():
        expected = trained.eval()(torch.stack([tf(ds.load_image(i)) for i in range(6)])).numpy()
    np.testing.assert_allclose(loaded, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(random, loaded)
    # mixed precision (bfloat16 on AMX CPUs, else float32) stays close to float32
    mixed = extract_features(ds, TINY, checkpoint=ckpt, cache_dir=tmp_path, progress=False, device="cpu")
    assert np.linalg.norm(mixed - expected) < 0.02 * np.linalg.norm(expected)


def test_outputs_are_written_as_npy_or_npz(tmp_path):
    ds = dataset(9)
    f, g = extract_features(ds, MeanColour(), views=("none", "hflip"), cache=False, progress=False,
                            device="cpu", output=tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as z:
        np.testing.assert_array_equal(z["features"], f)
        np.testing.assert_array_equal(z["features_hflip"], g)
    extract_features(ds, MeanColour(), views=("none", "hflip"), cache=False, progress=False, device="cpu",
                     output=tmp_path / "out.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy", mmap_mode="r"), f)
    np.testing.assert_array_equal(np.load(tmp_path / "out.features_hflip.npy"), g)
    with pytest.raises(InputError, match=".npy or .npz"):
        save_features(tmp_path / "out.csv", {"features": f})


def test_bad_arguments_are_refused(tmp_path):
    ds = dataset(4)
    for views in [("hflip", "hflip"), ("none", "vflip"), ()]:
        with pytest.raises(InputError, match="views"):
            extract_features(ds, MeanColour(), views=views, cache=False, progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        extract_features(ds, MeanColour(), batch_size=0, cache=False, progress=False)
    with pytest.raises(InputError, match="ImageDataset"):
        extract_features(np.zeros((4, 8, 8, 3), np.uint8), MeanColour(), cache=False, progress=False)
    with pytest.raises(InputError, match="unknown backbone"):
        extract_features(ds, "resnet81", cache_dir=tmp_path, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            extract_features(ds, MeanColour(), device="cuda", cache=False, progress=False)


# -- dmlp features --------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    from dmlp_plugin.cli import features as cli_features

    parser = argparse.ArgumentParser(prog="dmlp")
    cli_features.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["features", *map(str, argv)])
    return args.func(args)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            folder = tmp_path / "imgs" / split / c
            folder.mkdir(parents=True)
            for i in range(6 if split == "train" else 3):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "imgs"


def test_cli_extracts_backbone_features_with_a_flipped_view(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DMLP_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tmp_path / "w.pt"
    torch.save(prefixed(create_backbone(f"{TINY}-cifar").state_dict(), "backbone."), ckpt)
    out = tmp_path / "f.npz"
    code = run_cli(["--dataset", "imagefolder", "--root", image_folder, "--split", "train,test",
                    "--backbone", f"{TINY}-cifar", "--checkpoint", ckpt, "--hflip", "--image-size", "16",
                    "--device", "cpu", "-o", out])
    assert code == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["test", "test_hflip", "train", "train_hflip"]
        assert z["train"].shape == (12, 96) and z["test"].shape == (6, 96)
    assert "wrote" in capsys.readouterr().out


def test_cli_kmeans_method(image_folder, tmp_path):
    out = tmp_path / "k.npz"
    code = run_cli(["--dataset", "imagefolder", "--root", image_folder, "--split", "train,test",
                    "--method", "kmeans", "--centroids", "8", "--dim", "4", "--no-cache", "-o", out])
    assert code == 0
    with np.load(out) as z:
        assert z["train"].shape == (12, 4) and z["test"].shape == (6, 4)


def test_cli_refuses_bad_requests(image_folder, tmp_path):
    with pytest.raises(InputError, match="npz"):
        run_cli(["--dataset", "imagefolder", "--root", image_folder, "--split", "train,test",
                 "--backbone", TINY, "-o", tmp_path / "f.npy"])
    with pytest.raises(InputError, match="--backbone"):
        run_cli(["--dataset", "imagefolder", "--root", image_folder, "-o", tmp_path / "f.npy"])
    plain = tmp_path / "plain.pt"
    torch.save(create_backbone(TINY).state_dict(), plain)
    with pytest.raises(InputError, match="does not record its backbone"):
        run_cli(["--dataset", "imagefolder", "--root", image_folder, "--checkpoint", plain, "-o", tmp_path / "f.npy"])
    with pytest.raises(InputError, match="unknown backbone"):
        run_cli(["--dataset", "imagefolder", "--root", image_folder, "--backbone", "resnet81", "-o", tmp_path / "f.npy"])
