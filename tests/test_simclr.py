"""SimCLR: the loss, LARS, the schedule, a tiny CPU run whose loss falls, resumable
checkpoints that feature extraction loads directly, and ``dmlp pretrain``."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dmlp_plugin.data import ArrayDataset
from dmlp_plugin.errors import ConfigError, CorruptFileError
from dmlp_plugin.features.backbones import create_backbone
from dmlp_plugin.features.checkpoints import load_checkpoint
from dmlp_plugin.features.config import SimCLRConfig
from dmlp_plugin.features.simclr import LARS, _lr_at, nt_xent_loss, pretrain_simclr, read_pretrain_config

TINY = "timm:test_resnet-cifar"


def tiny_config(**kw) -> SimCLRConfig:
    opts = dict(backbone=TINY, epochs=5, batch_size=64, warmup_epochs=1, projection_hidden=128,
                projection_dim=32, num_workers=0, seed=0)
    opts.update(kw)
    return SimCLRConfig(**opts)


def cifar_like(n: int) -> ArrayDataset:
    """Real CIFAR-10 test images when the build is there, else smooth random images."""
    from pathlib import Path

    root = Path.home() / ".cache" / "dmlp" / "cifar10"
    if (root / "cifar-10-batches-py" / "test_batch").is_file():
        from dmlp_plugin.data import CIFAR10

        data = CIFAR10(root, "test")
        return ArrayDataset(data.images[:n], data.targets[:n])
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(n, 3, 8, 8)).astype(np.float32))
    x = F.interpolate(x, size=32, mode="bilinear")
    x = ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return ArrayDataset(x, np.zeros(n, dtype=int))


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = torch.stack([z[i] @ z[k] / t for k in range(2 * n) if k != i])
        total = total - (z[i] @ z[j] / t - torch.logsumexp(sims, 0))
    return total / (2 * n)


def test_nt_xent_matches_the_definition_and_rewards_agreement():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    torch.testing.assert_close(nt_xent_loss(z1, z2, 0.5), reference_nt_xent(z1, z2, 0.5))
    assert nt_xent_loss(z1, z1, 0.2) < nt_xent_loss(z1, z2, 0.2)


def test_lars_scales_updates_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars": False, "weight_decay": 0.0}],
               lr=0.1, momentum=0.9, weight_decay=0.5, eta=0.02)
    w.grad = torch.tensor([[0.5, 0.0]])
    b.grad = torch.tensor([2.0])
    opt.step()
    update = torch.tensor([[0.5, 0.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])
    trust = 0.02 * 5 / update.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.1 * trust * update)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))


def test_schedule_warms_up_then_decays_to_zero():
    lrs = [_lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] < 1e-3
    assert _lr_at(55, 100, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_config_is_validated():
    with pytest.raises(ConfigError, match="optimizer"):
        SimCLRConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="negatives"):
        SimCLRConfig(batch_size=1)
    with pytest.raises(ConfigError, match="crop_scale"):
        SimCLRConfig(crop_scale=(0.5, 0.2))
    assert SimCLRConfig(batch_size=512).base_lr == pytest.approx(0.8)
    assert SimCLRConfig(optimizer="sgd", batch_size=256).base_lr == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="exceeds"):
        pretrain_simclr(cifar_like(10), tiny_config(batch_size=64), progress=False)


@pytest.mark.slow
def test_tiny_run_lowers_the_loss_and_its_checkpoint_feeds_extraction(tmp_path):
    data = cifar_like(256)
    ckpt = tmp_path / "simclr.pt"
    result = pretrain_simclr(data, tiny_config(), checkpoint=ckpt, device="cpu", progress=False)
    history = result.history
    assert len(history) == 5
    # chance level is log(2B - 1) = log(127) ~ 4.84; the loss must fall clearly below the start
    assert history[0] > 4.3
    assert min(history[-2:]) < history[0] - 0.15, history

    # the checkpoint loads into a fresh backbone by name, the projection head dropped
    fresh = create_backbone(TINY)
    report = load_checkpoint(fresh, ckpt)
    assert report.ok and any(k.startswith("projector.") for k in report.dropped)
    for key, value in result.backbone.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert read_pretrain_config(ckpt)["backbone"] == TINY

    # resuming with more epochs continues from epoch 5 and keeps the history
    longer = pretrain_simclr(data, tiny_config(epochs=6), checkpoint=ckpt, device="cpu", progress=False)
    assert len(longer.history) == 6 and longer.history[:5] == history
    with pytest.raises(ConfigError, match="backbone"):
        pretrain_simclr(data, tiny_config(backbone="timm:test_resnet", epochs=7), checkpoint=ckpt, progress=False)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CorruptFileError, match="not a dmlp SimCLR checkpoint"):
        pretrain_simclr(data, tiny_config(), checkpoint=tmp_path / "foreign.pt", progress=False)


def test_cli_pretrain_then_features_reads_the_backbone_from_the_checkpoint(tmp_path, monkeypatch):
    from dmlp_plugin.cli import features as cli_features
    from dmlp_plugin.cli import pretrain as cli_pretrain

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs" / "only"
    folder.mkdir(parents=True)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    parser = argparse.ArgumentParser(prog="dmlp")
    sub = parser.add_subparsers(dest="command")
    cli_pretrain.register(sub)
    cli_features.register(sub)
    ckpt = tmp_path / "c.pt"
    args = parser.parse_args(["pretrain", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"),
                              "--backbone", TINY, "--epochs", "1", "--batch-size", "8", "--workers", "0",
                              "--device", "cpu", "-o", str(ckpt)])
    assert args.func(args) == 0 and ckpt.is_file()
    monkeypatch.setenv("DMLP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "f.npy"
    args = parser.parse_args(["features", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"),
                              "--checkpoint", str(ckpt), "--image-size", "32", "--device", "cpu", "-o", str(out)])
    assert args.func(args) == 0
    assert np.load(out).shape == (16, 96)
