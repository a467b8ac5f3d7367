"""Downstream check on CPU: a small CNN trained from scratch on given, purified and clean labels.

    nice -n 10 python benchmarks/downstream_cnn.py --write-results     # full grid, 1.5-3 h on 2 cores
    python benchmarks/downstream_cnn.py --smoke                         # tiny subset, 1 epoch, ~1 min

Does label purification help a network that learns from the images, not only a linear
probe on the purifier's own features? For each noise setting the script trains the same
small CNN on the CIFAR-10 training images three ways, and reports its accuracy on the
10,000 test images:

- **given**: the noisy labels, the 1,000 trusted samples carrying their clean labels (what a
  user holds without purification);
- **purified**: ``purify_dataset(features, noisy, val_indices=trusted, ...)`` with
  ``PurifyConfig()`` (the product's default) on the shared k-means features;
- **clean**: the clean labels (one run, shared by every setting).

Protocol of ``purify_cifar10.py`` (its noise and trusted draws are imported, seed 0).
Settings: symmetric 80%, CIFAR-10N ``worse_label``, symmetric 50% (``--settings``).

The CNN: five 3×3 conv layers (32-32-64-64-128 channels, BatchNorm + ReLU, max-pooling
after the 2nd, 4th and 5th), global average pooling, one linear layer. SGD (momentum 0.9,
Nesterov, weight decay 5e-4), OneCycle learning rate (peak ``--lr``), batch 128, random
horizontal flip and random 4-pixel shift (zero padding), both done on whole batches of
tensors. The test accuracy is that of the final epoch (no early stopping on test data).

Resumable: each finished run is saved as JSON in ``--cache`` (default
``~/.cache/dmlp/downstream``) under a key made of the training labels' hash and the
training settings, so a rerun skips finished runs, and a run whose labels changed (for
instance because the default changed) is trained again. With ``--write-results`` the
section ``<!-- downstream:start -->``…``<!-- downstream:end -->`` of RESULTS.md is rewritten
after every finished run, with the runs not finished yet marked "not run"; ``--report``
only rewrites it from the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from driver import (RESULTS, Section, add_cifar, add_shared, add_threads, add_write_results, command_line, comma_list,
                    git_revision, load_average, load_train, markdown_table, read_json, shared_dir, threads_text,
                    timestamp, write_json)

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.safe_pickle import load_pickle
from dmlp_plugin.errors import DmlpError
from dmlp_plugin.reproduce.cifar_inputs import NUM_CLASSES, draw_trusted, noisy_labels

SECTION = Section("downstream")
START, END = SECTION.start, SECTION.end
DEFAULT_CACHE = Path.home() / ".cache" / "dmlp" / "downstream"
DEFAULT_SETTINGS = "sym-0.8,cifar-n-worse_label,sym-0.5"
# The reference runs of this CNN (12 epochs, test accuracy %), for the table.
REFERENCE = {("clean", "clean"): 83.7, ("sym-0.5", "given"): 75.0, ("sym-0.8", "given"): 54.9}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# -- the network and its training --------------------------------------------------------------


def small_cnn(num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """Five 3×3 conv layers, 32-32-64-64-128, BatchNorm/ReLU; pooling after the 2nd, 4th, 5th."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         *block(64, 128), nn.MaxPool2d(2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Random horizontal flip and random shift by up to ``shift`` pixels (zero fill), per sample.

    ``x`` is a float batch ``(B, C, H, W)``; done with one gather, no per-image loop.
    """
    b, c, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift <= 0:
        return x
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1  # OneCycle peak
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0


def _normalise(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float().div_(255.0) - mean) / std


def train_cnn(train_x: np.ndarray, labels: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              cfg: TrainConfig = TrainConfig(), *, num_classes: int = NUM_CLASSES,
              log: Callable[[str], None] | None = None) -> dict:
    """Train :func:`small_cnn` on ``train_x`` (N, 3, H, W uint8) with ``labels``; test accuracy.

    Returns ``test_acc`` (final epoch), ``train_loss`` per epoch, ``epoch_seconds`` and ``seconds``.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xs = torch.from_numpy(np.ascontiguousarray(train_x))
    ys = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    model = small_cnn(num_classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    steps = (len(xs) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps)
    losses, epoch_seconds = [], []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(xs), generator=gen)
        total, count = 0.0, 0
        for i in range(steps):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb = augment(_normalise(xs[idx], mean, std), gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        epoch_seconds.append(time.perf_counter() - t0)
        losses.append(total / max(count, 1))
        if log is not None:
            log(f"    epoch {epoch + 1}/{cfg.epochs}: loss {losses[-1]:.3f}, {epoch_seconds[-1]:.1f} s")
    test_acc = evaluate(model, test_x, test_y, mean, std)
    return {"test_acc": test_acc, "train_loss": losses, "epoch_seconds": epoch_seconds,
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
             batch: int = 1000) -> float:
    model.eval()
    xs = torch.from_numpy(np.ascontiguousarray(x))
    correct = 0
    for i in range(0, len(xs), batch):
        xb = _normalise(xs[i:i + batch], mean, std).contiguous(memory_format=torch.channels_last)
        correct += int((model(xb).argmax(1).numpy() == np.asarray(y[i:i + batch])).sum())
    return correct / max(len(xs), 1)


# -- runs, the cache --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    setting: str  # "clean", "sym-0.8", "cifar-n-worse_label", ...
    labels_kind: str  # "clean", "given" or "purified"
    labels: np.ndarray  # (N,) training labels of this run
    label_acc: float  # on the non-trusted rows


def cache_key(labels: np.ndarray, num_test: int, cfg: TrainConfig) -> str:
    """A key of the training labels (which also fixes the number of rows) and the training settings."""
    h = hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    h.update(json.dumps({**asdict(cfg), "num_test": num_test}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def cache_path(cache: Path, run: Run, num_test: int, cfg: TrainConfig) -> Path:
    return cache / f"{run.setting}--{run.labels_kind}--{cache_key(run.labels, num_test, cfg)}.json"


def load_cached(cache: Path, run: Run, num_test: int, cfg: TrainConfig) -> dict | None:
    return read_json(cache_path(cache, run, num_test, cfg))


def earlier_results(cache: Path, runs: list[Run], finished: dict, num_test: int,
                    cfg: TrainConfig) -> dict[tuple[str, str], dict]:
    """For runs not in ``finished``: the newest cached result of the same setting, kind, sizes
    and training settings, trained on other labels (an earlier default, say), for the
    report to show, marked."""
    out = {}
    for run in runs:
        key = (run.setting, run.labels_kind)
        if key in finished:
            continue
        found = []
        for path in cache.glob(f"{run.setting}--{run.labels_kind}--*.json"):
            old = read_json(path)
            if old is None:
                continue
            if (old.get("num_train"), old.get("num_test"), old.get("train_config")) == (
                    len(run.labels), num_test, asdict(cfg)):
                found.append((path.stat().st_mtime, old))
        if found:
            out[key] = max(found, key=lambda t: t[0])[1]
    return out


def run_all(runs: list[Run], train_x: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, cfg: TrainConfig,
            cache: Path, *, train_missing: bool = True, on_result: Callable[[dict], None] | None = None,
            log: Callable[[str], None] = print) -> dict[tuple[str, str], dict]:
    """Train every run not in ``cache`` (in order), saving each result as soon as it finishes.

    Returns ``{(setting, labels_kind): result}`` for the finished runs (cached or new); a
    result has ``"cached": True`` when it was read from the cache.
    """
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], dict] = {}
    for run in runs:
        found = load_cached(cache, run, len(test_y), cfg)
        if found is not None:
            found["cached"] = True
            results[(run.setting, run.labels_kind)] = found
            log(f"{run.setting} / {run.labels_kind}: cached, test accuracy {100 * found['test_acc']:.2f}%")
            continue
        if not train_missing:
            continue
        log(f"{run.setting} / {run.labels_kind}: training on {len(run.labels):,} images "
            f"(labels {100 * run.label_acc:.1f}% correct) …")
        out = train_cnn(train_x, run.labels, test_x, test_y, cfg, log=log)
        out.update({"setting": run.setting, "labels_kind": run.labels_kind, "label_acc": run.label_acc,
                    "num_train": len(run.labels), "num_test": len(test_y), "train_config": asdict(cfg),
                    "threads": torch.get_num_threads(), "date": timestamp(),
                    "revision": git_revision(), "load_average": load_average()})
        write_json(cache_path(cache, run, len(test_y), cfg), out, indent=1)
        log(f"{run.setting} / {run.labels_kind}: test accuracy {100 * out['test_acc']:.2f}% "
            f"({out['seconds'] / 60:.1f} min)")
        out["cached"] = False
        results[(run.setting, run.labels_kind)] = out
        if on_result is not None:
            on_result(results)
    return results


def make_runs(clean: np.ndarray, features: np.ndarray, settings: list[tuple[str, np.ndarray]],
              trusted: np.ndarray, *, config: PurifyConfig | None = None, seed: int = 0,
              log: Callable[[str], None] = print) -> tuple[list[Run], dict[str, float]]:
    """The runs in the order they should finish: clean, then per setting given then purified.

    ``settings``: ``(name, noisy labels)`` pairs. Also returns the purification wall time per setting.
    """
    keep = np.ones(len(clean), bool)
    keep[trusted] = False

    def acc(labels: np.ndarray) -> float:
        return float((labels[keep] == clean[keep]).mean())

    runs = [Run("clean", "clean", clean.astype(np.int64), 1.0)]
    seconds = {}
    for name, noisy in settings:
        given = noisy.astype(np.int64).copy()
        given[trusted] = clean[trusted]
        t0 = time.perf_counter()
        result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted],
                                num_classes=int(clean.max()) + 1, config=config or PurifyConfig(), seed=seed,
                                device="cpu")
        seconds[name] = time.perf_counter() - t0
        purified = np.asarray(result.labels, dtype=np.int64)
        log(f"{name}: given labels {100 * acc(given):.1f}% correct, purified {100 * acc(purified):.1f}% "
            f"({seconds[name]:.1f} s)")
        runs += [Run(name, "given", given, acc(given)), Run(name, "purified", purified, acc(purified))]
    return runs, seconds


# -- inputs ---------------------------------------------------------------------------------


def load_images(cifar_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x, train_y, test_x, test_y)`` from the built ``cifar-10-batches-py`` pickles, uint8 NCHW.

    The batches are pickles from a folder the user names: read by the package's restricted
    unpickler, which admits numpy arrays and plain containers only.
    """
    folder = cifar_root if cifar_root.name == "cifar-10-batches-py" else cifar_root / "cifar-10-batches-py"
    parts = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise SystemExit(f"missing CIFAR-10 batches: {', '.join(map(str, missing))}\nbuild the folder with:\n"
                         f"    python ../shared/tools/build_cifar10.py {cifar_root}")

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            d = load_pickle(path, what="CIFAR-10 batch")
        except DmlpError as exc:
            raise SystemExit(str(exc)) from None
        return np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d["labels"], np.int64)

    train = [read(p) for p in parts[:5]]
    test_x, test_y = read(parts[5])
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y


def parse_setting(name: str) -> tuple[str, float]:
    """``sym-0.8`` → ("symmetric", 0.8); ``asym-0.4`` → ("asymmetric", 0.4); ``cifar-n-KEY`` → (KEY, 0)."""
    if name.startswith("sym-"):
        return "symmetric", float(name[4:])
    if name.startswith("asym-"):
        return "asymmetric", float(name[5:])
    if name.startswith("cifar-n-"):
        return name[len("cifar-n-"):], 0.0
    raise SystemExit(f"unknown setting {name!r} (sym-RATE, asym-RATE or cifar-n-KEY)")


def setting_title(name: str) -> str:
    kind, rate = parse_setting(name)
    if kind == "symmetric":
        return f"symmetric {rate:.0%}"
    if kind == "asymmetric":
        return f"asymmetric {rate:.0%}"
    return f"CIFAR-10N {kind}"


# -- report -----------------------------------------------------------------------------------


def render(setting_names: list[str], runs: list[Run], results: dict, args: argparse.Namespace,
           purify_seconds: dict[str, float], earlier: dict | None = None) -> str:
    """The RESULTS.md section. ``earlier``: results on other labels than today's (marked †)."""
    label_acc = {(r.setting, r.labels_kind): r.label_acc for r in runs}
    earlier = earlier or {}

    def cell(key: tuple[str, str], what: str = "test") -> str:
        res = results.get(key)
        if what == "labels":
            return f"{100 * label_acc[key]:.1f}" if key in label_acc else "—"
        if res is None and key in earlier:
            old = earlier[key]
            return f"{100 * old['test_acc']:.2f}† (labels {100 * old['label_acc']:.1f}% correct, {old['revision']})"
        return f"{100 * res['test_acc']:.2f}" if res is not None else "not run"

    head = ["setting", "given labels correct", "purified labels correct", "CNN test: given", "CNN test: purified",
            "purified − given", "CNN test: clean labels"]
    body = []
    for name in setting_names:
        g, p = results.get((name, "given")), results.get((name, "purified"))
        diff = f"{100 * (p['test_acc'] - g['test_acc']):+.2f}" if g and p else "—"
        body.append([setting_title(name), cell((name, "given"), "labels"), cell((name, "purified"), "labels"),
                     cell((name, "given")), cell((name, "purified")), diff, cell(("clean", "clean"))])
    done = [r for r in results.values()]
    epoch_s = [s for r in done for s in r.get("epoch_seconds", [])]
    cfg = args.train_config
    n_runs = 1 + 2 * len(setting_names)
    lines = ["## Downstream: a small CNN trained on given, purified and clean labels", "",
             f"{timestamp()}, git {git_revision()}, {os.cpu_count()} CPU cores "
             f"shared with other jobs, {threads_text()}. {len(done)} of {n_runs} runs finished"
             + (f"; mean epoch {np.mean(epoch_s):.0f} s" if epoch_s else "") + ". Command (resumable: finished "
             "runs are read from the cache, runs whose labels changed are trained again):", "",
             f"    {args.command}", "",
             f"Test accuracy (%) on the {args.num_test:,} CIFAR-10 test images of a CNN trained from scratch on the "
             f"{args.num_train:,} training images for {cfg.epochs} epochs (final epoch, no early stopping), one run "
             "each (seed 0, the noise and trusted draw of `purify_cifar10.py` seed 0). \"given\": the noisy labels, "
             "the 1,000 trusted samples with their clean label; \"purified\": `purify_dataset` with `PurifyConfig()` "
             "on the shared k-means features and the 1,000 trusted samples; \"labels correct\": on the 49,000 "
             "non-trusted samples. The clean-label run is one run shared by all rows.", "",
             *markdown_table(head, body), ""]
    if earlier:
        lines += ["† Not a run on today's labels: the default's labels have changed since that run (the "
                  "labels it was trained on, their accuracy and the revision are in brackets); the command "
                  "above trains it again.", ""]
    if purify_seconds:
        lines += ["Purification wall time (default config, included in nothing above): "
                  + ", ".join(f"{setting_title(k)} {v:.1f} s" for k, v in purify_seconds.items()) + ".", ""]
    lines += [f"The CNN: five 3×3 conv layers (32-32-64-64-128 channels, BatchNorm + ReLU, max-pooling after "
              f"the 2nd, 4th and 5th), global average pooling, a linear layer; SGD (momentum {cfg.momentum}, "
              f"Nesterov, weight decay {cfg.weight_decay:g}), OneCycle learning rate peaking at {cfg.lr:g}, batch "
              f"{cfg.batch_size}, random horizontal flip and 4-pixel shift. The issue's reference runs of this "
              "recipe: " + ", ".join(f"{k[0]} / {k[1]} {v}%" for k, v in REFERENCE.items()) + ".", ""]
    return SECTION.wrap(lines)


def plot(names: list[str], results: dict, path: Path):
    """Bars of CNN test accuracy per setting: given, purified and (the one shared run) clean
    labels, through the report's ``plot_downstream``. Settings not run yet show no bar."""
    from dmlp_plugin.report import plot_downstream

    clean = results.get(("clean", "clean"))
    records = [{"panel": setting_title(name), "series": f"{kind} labels",
                "metrics": {"downstream_test_accuracy": 100 * r["test_acc"]}}
               for name in names for kind in ("given", "purified")
               if (r := results.get((name, kind))) is not None]
    if clean is not None:
        records += [{"panel": setting_title(name), "series": "clean labels",
                     "metrics": {"downstream_test_accuracy": 100 * clean["test_acc"]}} for name in names]
    return plot_downstream(records, path, title="a small CNN trained on the given, purified and clean labels")


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared(p)
    add_cifar(p)
    p.add_argument("--settings", default=DEFAULT_SETTINGS,
                   help="comma-separated: sym-RATE, asym-RATE, cifar-n-KEY (in the order to run)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="OneCycle peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="noise/trusted draw and training seed")
    p.add_argument("--trusted", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None,
                   help="train on a random subset of this many training images (labels purified on all)")
    p.add_argument("--test-limit", type=int, default=None, help="test on the first N test images")
    add_threads(p, 2)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of finished runs (JSON)")
    p.add_argument("--smoke", action="store_true", help="2,000 training images, 1,000 test images, 1 epoch")
    p.add_argument("--report", action="store_true", help="train nothing; report the cached runs")
    add_write_results(p, SECTION)
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="also draw the test accuracies as bars (needs matplotlib)")
    args = p.parse_args(argv)
    if args.smoke:
        args.limit, args.test_limit, args.epochs = args.limit or 2000, args.test_limit or 1000, 1
    args.setting_list = comma_list(args.settings)
    args.train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report"]
    args.command = command_line("downstream_cnn.py", given, prefix="nice -n 10 python")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    features, clean = load_train(shared_dir(args.shared))
    train_x, train_y, test_x, test_y = load_images(args.cifar_root)
    if not np.array_equal(train_y, clean):
        raise SystemExit("the built CIFAR-10 training labels differ from train_labels_original_order.npy")
    trusted = draw_trusted(len(clean), args.trusted, args.seed)
    settings = []
    for name in args.setting_list:
        kind, rate = parse_setting(name)
        if kind not in ("symmetric", "asymmetric") and not args.cifar_n.is_file():
            print(f"{name}: skipped, no CIFAR-10N file at {args.cifar_n} (--cifar-n)")
            continue
        settings.append((name, noisy_labels(clean, kind, rate, args.seed, args.cifar_n)))
    runs, purify_seconds = make_runs(clean, features, settings, trusted, seed=args.seed)
    if args.limit and args.limit < len(clean):
        rows = np.sort(np.random.default_rng(12345).permutation(len(clean))[:args.limit])
        train_x = train_x[rows]
        runs = [Run(r.setting, r.labels_kind, r.labels[rows], r.label_acc) for r in runs]
    if args.test_limit:
        test_x, test_y = test_x[:args.test_limit], test_y[:args.test_limit]
    args.num_train, args.num_test = len(train_x), len(test_y)
    names = [name for name, _ in settings]

    def report(results: dict) -> None:
        if args.write_results:
            earlier = earlier_results(args.cache, runs, results, args.num_test, args.train_config)
            SECTION.write(render(names, runs, results, args, purify_seconds, earlier), RESULTS, quiet=True)

    print(f"{len(train_x):,} training / {len(test_y):,} test images, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads, cache {args.cache}")
    results = run_all(runs, train_x, test_x, test_y, args.train_config, args.cache,
                      train_missing=not args.report, on_result=report)
    report(results)
    for name in names:
        g, p = results.get((name, "given")), results.get((name, "purified"))
        print(f"{setting_title(name):>24}: given {'%.2f' % (100 * g['test_acc']) if g else 'not run'}, "
              f"purified {'%.2f' % (100 * p['test_acc']) if p else 'not run'}")
    c = results.get(("clean", "clean"))
    print(f"{'clean labels':>24}: {'%.2f' % (100 * c['test_acc']) if c else 'not run'}")
    if args.write_results:
        print(f"wrote the {SECTION.name} section of {RESULTS}")
    if args.plot:
        drawn = plot(names, results, args.plot)
        print(f"wrote {drawn.path}" if drawn else "no finished run to plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
