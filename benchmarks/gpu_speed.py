"""GPU speed checks for ``benchmarks/gpu_check.sh``: purification against the naive loop, and
feature-extraction throughput. Each prints a Markdown table and can append a one-line
summary to a file.

    python benchmarks/gpu_speed.py purify --features F.npz --labels clean.npy --device cuda
    python benchmarks/gpu_speed.py features --root ~/.cache/dmlp/cifar10 --device cuda
    python benchmarks/gpu_speed.py score --purified p.npz --clean clean.npy

``purify`` times, on one symmetric-noise draw with a 1,000-sample trusted set (the protocol
of ``benchmarks/purify_cifar10.py``): the naive re-implementation of the official loop
(``naive_official.py``, run for ``--naive-epochs`` and extrapolated to 100), paper mode
(``PurifyConfig.paper()``), paper mode in bfloat16, and the default (``PurifyConfig()``),
each after a warm-up, with the purified-label accuracy on the non-trusted rows. The naive
loop is written for the CPU; here its tensors are created on ``--device`` (PyTorch's
default-device context) and its wall time includes the final copy back, so it is
synchronised. Not part of the package.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from driver import markdown_table

NUM_CLASSES = 10
T = TypeVar("T")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, warm: Callable[[], object], run: Callable[[], T]) -> tuple[T, float]:
    """``warm()`` (first-call costs: allocator, kernel choice), then ``run()`` timed, the device
    synchronised on both sides so that queued GPU work is counted; warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm()
        _sync(device)
        start = time.perf_counter()
        out = run()
        _sync(device)
    return out, time.perf_counter() - start


@contextlib.contextmanager
def _numpy_from_any_device():
    """Let code written for the CPU call ``tensor.numpy()`` on a GPU tensor."""
    original = torch.Tensor.numpy

    def numpy(self, *args, **kwargs):
        return original(self.detach().cpu(), *args, **kwargs)

    torch.Tensor.numpy = numpy  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.numpy = original  # type: ignore[method-assign]


def _table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(markdown_table(head, rows))


def _append(path: Path | None, line: str) -> None:
    if path is not None:
        with open(path, "a") as fh:
            fh.write(line.rstrip("\n") + "\n")


def cmd_purify(args: argparse.Namespace) -> int:
    from naive_official import naive_official

    from dmlp_plugin import PurifyConfig, purify_dataset
    from dmlp_plugin.config import PaperConfig
    from dmlp_plugin.reproduce.cifar_inputs import draw_trusted, noisy_labels, with_epochs

    with np.load(args.features) as z:
        train = z["train"] if "train" in z.files else z[z.files[0]]
    features = np.ascontiguousarray(train[: args.rows, : args.dims], dtype=np.float32)
    clean = np.load(args.labels).astype(np.int64)[: len(features)]
    noisy = noisy_labels(clean, "symmetric", args.rate, 0)
    trusted = draw_trusted(len(clean), min(args.trusted, len(clean) // 5), 0)
    mask = np.ones(len(clean), bool)
    mask[trusted] = False
    device = args.device
    rows = []

    def purify(name: str, config: PurifyConfig | PaperConfig) -> None:
        config = with_epochs(config, args.epochs)
        kw = dict(val_indices=trusted, val_labels=clean[trusted], num_classes=NUM_CLASSES, seed=0, device=device,
                  progress=False)
        result, seconds = _timed(device, lambda: purify_dataset(features, noisy, config=with_epochs(config, 2), **kw),
                                 lambda: purify_dataset(features, noisy, config=config, **kw))
        acc = float((result.labels[mask] == clean[mask]).mean())
        # The default pipeline has no epochs: its rounds, and no per-epoch figure.
        paper = isinstance(config, PaperConfig)
        rows.append([name, device, str(config.epochs) if paper else f"{config.rounds} rounds", f"{seconds:.2f}",
                     f"{seconds * 100 / config.epochs:.2f}" if paper else "—", f"{100 * acc:.2f}"])

    naive_s = None
    if args.naive_epochs > 0:
        with torch.device(device), _numpy_from_any_device():
            out, naive_s = _timed(device,
                                  lambda: naive_official(features[mask][:2000], noisy[mask][:2000], features[trusted],
                                                         clean[trusted], num_classes=NUM_CLASSES, epochs=1, views=1,
                                                         seed=0),
                                  lambda: naive_official(features[mask], noisy[mask], features[trusted],
                                                         clean[trusted], num_classes=NUM_CLASSES,
                                                         epochs=args.naive_epochs, views=1, seed=0))
        acc = float((out.labels == clean[mask]).mean())
        rows.append(["naive official loop", device, str(args.naive_epochs), f"{naive_s:.2f}",
                     f"{naive_s * 100 / args.naive_epochs:.2f}", f"{100 * acc:.2f} (after {args.naive_epochs})"])
    purify("paper mode", PurifyConfig.paper())
    purify("paper mode, bfloat16", PurifyConfig.paper(precision="bfloat16"))
    purify("default", PurifyConfig())
    print(f"Purification speed: {len(features)} rows x {features.shape[1]} dims, symmetric {args.rate:.0%}, "
          f"{len(trusted)} trusted, on {_device_name(device)}")
    print(_table(["run", "device", "epochs", "seconds", "s per 100 epochs", "label accuracy (%)"], rows))
    by = {r[0]: r for r in rows}
    line = (f"paper {by['paper mode'][4]} s/100 ep ({by['paper mode'][5]}%), "
            f"default {by['default'][3]} s ({by['default'][5]}%)")
    if naive_s is not None:
        speedup = float(by["naive official loop"][4]) / max(float(by["paper mode"][4]), 1e-9)
        line += f", naive {by['naive official loop'][4]} s/100 ep (paper mode's speed-up: {speedup:.1f}x)"
    print(line)
    _append(args.summary, line)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from dmlp_plugin.data import load_dataset
    from dmlp_plugin.data.arrays import ArrayDataset
    from dmlp_plugin.features import extract_features

    test = load_dataset("cifar10", args.root, "test")
    n = min(args.images, len(test.targets))
    data = ArrayDataset(test.images[:n], test.targets[:n], name="cifar10-test-head")
    warm = ArrayDataset(test.images[: args.batch_size], test.targets[: args.batch_size], name="warm")
    rows = []
    for amp in (False, True):
        opts = dict(cache=False, progress=False, batch_size=args.batch_size, device=args.device, amp=amp)
        # random weights (their warning silenced): speed only
        out, seconds = _timed(args.device, lambda: extract_features(warm, args.backbone, **opts),
                              lambda: extract_features(data, args.backbone, **opts))
        rows.append([args.backbone, _device_name(args.device), "autocast" if amp else "float32", str(n),
                     f"{seconds:.2f}", f"{n / seconds:.0f}", str(np.asarray(out).shape[1])])
    print(f"Feature extraction throughput (CIFAR-10 test images, batch {args.batch_size})")
    print(_table(["backbone", "device", "precision", "images", "seconds", "images/s", "dims"], rows))
    line = f"{args.backbone}: {rows[0][5]} img/s float32, {rows[1][5]} img/s autocast"
    print(line)
    _append(args.summary, line)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from dmlp_plugin.result import PurifyResult

    result = PurifyResult.load(args.purified)
    clean = np.load(args.clean).astype(np.int64)
    mask = np.ones(len(clean), bool)
    mask[result.trusted_indices] = False
    given = float((result.given_labels[mask] == clean[mask]).mean())
    acc = float((result.labels[mask] == clean[mask]).mean())
    line = f"{args.name}: labels {100 * given:.2f}% -> {100 * acc:.2f}% ({len(clean)} rows)"
    print(line)
    _append(args.summary, line)
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return "CPU"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("purify", help="paper mode and the default against the naive loop")
    a.add_argument("--features", type=Path, required=True, help=".npz with 'train' (N, d), CIFAR order")
    a.add_argument("--labels", type=Path, required=True, help="clean labels (.npy)")
    a.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    a.add_argument("--dims", type=int, default=None, help="first D dimensions (default: all)")
    a.add_argument("--rate", type=float, default=0.8)
    a.add_argument("--trusted", type=int, default=1000)
    a.add_argument("--epochs", type=int, default=None, help="paper mode's epochs (default 100; the default has none)")
    a.add_argument("--naive-epochs", type=int, default=5, help="epochs of the naive loop, extrapolated (0: skip)")
    a.add_argument("--summary", type=Path, help="append a one-line summary here")
    a.set_defaults(func=cmd_purify)
    f = sub.add_parser("features", help="backbone feature-extraction throughput")
    f.add_argument("--root", type=Path, required=True, help="folder holding cifar-10-batches-py")
    f.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    f.add_argument("--backbone", default="resnet18-cifar")
    f.add_argument("--images", type=int, default=10000)
    f.add_argument("--batch-size", type=int, default=512)
    f.add_argument("--summary", type=Path)
    f.set_defaults(func=cmd_features)
    s = sub.add_parser("score", help="accuracy of a purified file against clean labels")
    s.add_argument("--purified", type=Path, required=True)
    s.add_argument("--clean", type=Path, required=True)
    s.add_argument("--name", default="purified")
    s.add_argument("--summary", type=Path)
    s.set_defaults(func=cmd_score)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
