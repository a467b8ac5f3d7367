"""Paper mode in the paper's regime: label accuracy per epoch (the curves of the paper's
Figures 2-4) on strong features, against the official ``DMLP.py`` on the same inputs.
``docs/paper-mode.md`` explains the results.

    python benchmarks/paper_regime.py run --official PATH     # the main runs (resumable, cached)
    python benchmarks/paper_regime.py run --methods 'lab+head=official,paper+seed=1,...'
    python benchmarks/paper_regime.py tune                    # tuning runs, on draw 1
    python benchmarks/paper_regime.py step --official PATH --features efficientnet-lite0 --rates 0.2
    python benchmarks/paper_regime.py check --official PATH --features kmeans --rates 0.2
    python benchmarks/paper_regime.py report                  # RESULTS.md section and the PNG

``PATH`` is the official script or a clone of github.com/yuanpengtu/DMLP (``$DMLP_OFFICIAL``).
The RESULTS.md section shows what is cached: to repeat it all, run ``run`` (defaults), ``run
--methods`` with the names of :data:`ATTRIBUTION`, :data:`CHOSEN` and
``paper+seed=1,paper+seed=2,official-intent+seed=1,official-intent+seed=2``, ``tune``, and
``step`` and ``check`` for each feature set, then ``report``. About 1.5 h on one busy CPU
thread.

Inputs: the CIFAR-10 features of all 50,000 training images (original order) and the
10,000 test images: ImageNet-trained EfficientNet-Lite0 (``.bench-cache/cifar10_efficientnet-lite0.npz``,
made by ``dmlp features --dataset cifar10 --backbone efficientnet-lite0 --split train,test``)
and the k-means features of the shared folder (``$DMLP_SHARED``, for contrast); the clean
training labels; the test labels of the built CIFAR-10 folder. Protocol (the paper's for
CIFAR): symmetric noise at 20% and 80% (DivideMix convention) on all 50,000 rows, 1,000
random clean rows as the trusted set, label accuracy on the other 49,000, after every epoch.
Draw 0 is reported; draw 1 (its own noise and trusted rows) is for tuning.

Methods (``--methods``, comma-separated):

- ``paper``: ``PurifyConfig.paper()``; ``paper+key=value+...``: with overrides;
- ``official``: the official script as it is (its EAC feedback never fires);
  ``official-intent``: with its guard fixed so that it mixes every 20 epochs
  (``benchmarks/official_dmlp.py`` says exactly what is substituted); both see the same
  trusted rows and the same 7,000-row batches as paper mode;
- ``lab+head=official`` / ``lab+steps=official`` (diagnostics): paper mode with the
  official head loss or the official label steps put back (see :func:`run_lab`);
- ``...+seed=k``: the run's own seed (head initialisation), same noise and trusted rows;
- ``probe``: the ceiling, a linear probe (L-BFGS logistic regression) fitted on the clean
  labels of the 49,000 rows: its accuracy on those rows, cross-fitted (5 folds) and on the
  test set; and the same probe fitted on the given labels (what a linear head trained on
  them reaches).

``step``: the official script's and paper mode's label variables after each of the first
epochs (IPC only, identical inputs), and where paper mode's first IPC gradient points.
``check``: two epochs of the official script with and without the harness's speed-ups.

Every run is cached in ``.bench-cache/paper_regime/`` (git-ignored) as one ``.npz``; a
rerun skips what is there (``--redo NAME`` reruns a method).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import driver
from driver import RESULTS, ROOT, Section, add_threads, comma_list, markdown_table, write_json, write_npz
from official_dmlp import read_official_source, run_official

from dmlp_plugin.atomic import atomic_write

CACHE = driver.CACHE / "paper_regime"
PLOT = ROOT / "docs" / "img" / "paper_mode_curves.png"
SECTION = Section("paper-regime")
FEATURES = {"efficientnet-lite0": "EfficientNet-Lite0 (ImageNet, 1,280-d)", "kmeans": "k-means (512-d)"}
REPORT_SEED, TUNING_SEED = 0, 1
NUM_TRUSTED = 1000


# ----------------------------------------------------------------------------- inputs
def load_features(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(train (50000, d), test (10000, d))`` float32 of a feature set."""
    if name == "kmeans":
        from dmlp_plugin.reproduce.cifar_inputs import FEATURES as KMEANS
        from dmlp_plugin.reproduce.cifar_inputs import find_shared

        path = find_shared() / KMEANS
        how = "set $DMLP_SHARED to the folder holding features/cifar10_kmeans_pca512.npz"
    else:
        path = CACHE.parent / f"cifar10_{name}.npz"
        how = (f"dmlp features --dataset cifar10 --root ~/.cache/dmlp/cifar10 --split train,test "
               f"--backbone {name} -o {path}")
    if not path.is_file():
        raise SystemExit(f"missing features {path}: {how}")
    with np.load(path, allow_pickle=False) as z:
        return z["train"].astype(np.float32), z["test"].astype(np.float32)


def load_labels() -> tuple[np.ndarray, np.ndarray | None]:
    """Clean training labels (original order) and the test labels (None when not built)."""
    from dmlp_plugin.errors import DmlpError
    from dmlp_plugin.reproduce.cifar_inputs import (
        DEFAULT_CIFAR_ROOT,
        TRAIN_LABELS,
        find_shared,
        load_test_labels,
    )

    path = find_shared() / TRAIN_LABELS
    if not path.is_file():
        raise SystemExit(f"missing clean labels {path}: set $DMLP_SHARED to the folder holding data/cifar10/")
    clean = np.load(path, allow_pickle=False).astype(np.int64)
    try:
        test = load_test_labels(DEFAULT_CIFAR_ROOT)
    except DmlpError:  # the test accuracies are a side metric: skipped without the built folder
        test = None
    return clean, test


def draw(clean: np.ndarray, rate: float, seed: int) -> dict[str, np.ndarray]:
    """Noisy labels, trusted rows, the training rows and the order paper mode batches them in."""
    import torch

    from dmlp_plugin.noise import make_noisy_labels
    from dmlp_plugin.reproduce.cifar_inputs import draw_trusted

    noisy = make_noisy_labels(clean, kind="symmetric", rate=rate, convention="dividemix", seed=seed).noisy_labels
    trusted = draw_trusted(len(clean), NUM_TRUSTED, seed)
    rows = np.setdiff1d(np.arange(len(clean)), trusted)
    # paper mode's first draw from its generator is the partition: randperm of the rows.
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).numpy()
    return {"noisy": noisy, "trusted": trusted, "rows": rows, "split": np.concatenate([rows[order], trusted])}


# ----------------------------------------------------------------------------- methods
def parse_method(name: str) -> tuple[str, dict]:
    """``paper+eac_eta=0.5+eac_lr=0.03`` -> ("paper", {"eac_eta": 0.5, "eac_lr": 0.03})."""
    base, *parts = name.split("+")
    overrides = {}
    for part in parts:
        key, _, value = part.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:  # a word: head=official
            overrides[key] = value
    return base, overrides


def run_paper_mode(x: np.ndarray, clean: np.ndarray, d: dict, overrides: dict, seed: int,
                   threads: int) -> dict[str, np.ndarray]:
    from dmlp_plugin import PurifyConfig, purify_dataset
    from dmlp_plugin.engine import paper_loop

    config = PurifyConfig.paper(**overrides)
    margins: list[float] = []
    original = paper_loop._mix

    def measured(views, *rest):  # instrumentation: how confident the mixed-in labels are
        out = original(views, *rest)
        top = views[0].flat_labels().topk(2, dim=1).values
        margins.append(float((top[:, 0] - top[:, 1]).mean()))
        return out

    paper_loop._mix = measured
    start = time.perf_counter()
    try:
        result = purify_dataset(x, d["noisy"], val_indices=d["trusted"], val_labels=clean[d["trusted"]],
                                clean_labels=clean, config=config, seed=seed, threads=threads, feature_check=False)
    finally:
        paper_loop._mix = original
    seconds = time.perf_counter() - start
    curve = [h.get("label_accuracy", np.nan) for h in result.history]
    changed = [h.get("changed", np.nan) for h in result.history]
    return {"curve": np.asarray(curve), "changed": np.asarray(changed), "final": result.labels[d["rows"]],
            "seconds": np.asarray(seconds), "config": np.asarray(json.dumps(overrides)),
            "mix_margin": np.asarray(margins)}


def run_official_mode(x: np.ndarray, test: np.ndarray, clean: np.ndarray, test_labels: np.ndarray | None,
                      d: dict, seed: int, threads: int, official: Path, fix_guard: bool) -> dict[str, np.ndarray]:
    source = read_official_source(official)
    run = run_official(source, x, test, d["noisy"], clean,
                       test_labels if test_labels is not None else np.zeros(len(test), np.int64), d["split"],
                       seed=seed, threads=threads, fix_guard=fix_guard)
    rec = run.record
    # Back to the original row order of the 49,000 training rows.
    position = np.argsort(rec["idx_to_train"])
    return {"curve": rec["acc_mean"], "curve_v1": rec["acc_v1"], "head_v1": rec["head_v1"],
            "head_v2": rec["head_v2"], "test_head_v1": rec["test_head_v1"], "test_ls_v1": rec["test_ls_v1"],
            "final": rec["final_mean"][position], "final_v1": rec["final_v1"][position],
            "seconds": np.asarray(run.seconds), "source_sha256": np.asarray(run.source_sha256)}


def run_probe(x: np.ndarray, test: np.ndarray, clean: np.ndarray, test_labels: np.ndarray | None,
              d: dict) -> dict[str, np.ndarray]:
    from dmlp_plugin.features.probe import fit_linear_classifier

    rows = d["rows"]
    out = {}
    for name, labels in (("clean", clean), ("given", d["noisy"])):
        clf = fit_linear_classifier(x[rows], labels[rows], num_classes=10, epochs=100, device="cpu")
        pred = clf.decision_function(x[rows]).argmax(1)
        out[f"{name}_rows"] = np.asarray((pred == clean[rows]).mean())
        if test_labels is not None:
            out[f"{name}_test"] = np.asarray(clf.score(test, test_labels))
    # Cross-fitted: each fifth of the rows labelled by a probe fitted on the other four
    # fifths' clean labels (what a linear head reaches on rows it was not fitted on).
    folds = np.random.default_rng(0).permutation(len(rows)) % 5
    hits = 0
    for k in range(5):
        clf = fit_linear_classifier(x[rows[folds != k]], clean[rows[folds != k]], num_classes=10, epochs=100,
                                    device="cpu")
        hits += int((clf.decision_function(x[rows[folds == k]]).argmax(1) == clean[rows[folds == k]]).sum())
    out["clean_cv"] = np.asarray(hits / len(rows))
    return out


# ----------------------------------------------------------------------------- attribution lab
# Diagnostics only: paper mode with one of the official script's choices put back, by
# wrapping engine functions for the duration of one run, to see which difference moves
# the labels. ``lab+head=official``: the official EAC loss (the head ends in softmax and
# CE, confidence and balance terms take softmax again; balance weight 2,200).
# ``lab+steps=official``: the official label optimizer, one Adam step over the whole label
# tensor per 7,000-row batch (decay and momentum move the other batches' rows too);
# the batches' gradients are taken at the epoch's start, not after the earlier batches'
# steps. Other ``key=value`` parts are PaperConfig overrides.
def _official_head_loss(self, features, targets, onehot=None):
    import torch
    import torch.nn.functional as F

    prior = self.prior
    with torch.enable_grad():
        params = self.params.detach().clone().requires_grad_(True)
        predict = torch.softmax(F.linear(features.to(params.dtype), params[:, :-1], params[:, -1]), 1)
        loss = F.cross_entropy(predict, targets)
        twice = torch.softmax(predict, 1)
        conf = (twice.log() * twice).sum(1).mean()
        mean = torch.softmax(twice, 1).mean(0)
        loss = loss + 2200.0 * (prior * torch.log(prior / mean)).sum() + 0.4 * conf
        (grad,) = torch.autograd.grad(loss, params)
    return loss.detach(), grad


def _official_label_steps(views, p, prior, weights, config):
    import torch

    from dmlp_plugin.engine.ipc import ipc_loss_and_grad

    losses = []
    for view in views:
        loss, grad = ipc_loss_and_grad(view.labels, view.batches, view.val_features, p.val_onehot, prior, weights)
        for j in range(grad.shape[0]):
            one = torch.zeros_like(grad)
            one[j] = grad[j]
            view.optimizer.step(one)
        losses.append(loss.mean() / len(views))
    return sum(losses)


def run_lab(x: np.ndarray, clean: np.ndarray, d: dict, overrides: dict, seed: int,
            threads: int) -> dict[str, np.ndarray]:
    from dmlp_plugin.engine import eac, paper_loop

    overrides = dict(overrides)
    head, steps = overrides.pop("head", "ours"), overrides.pop("steps", "ours")
    saved = eac.EACHead.loss_and_grad, paper_loop._ipc_step
    try:
        if head == "official":
            eac.EACHead.loss_and_grad = _official_head_loss
        if steps == "official":
            paper_loop._ipc_step = _official_label_steps
        out = run_paper_mode(x, clean, d, overrides, seed, threads)
    finally:
        eac.EACHead.loss_and_grad, paper_loop._ipc_step = saved
    return out


def cache_path(features: str, rate: float, seed: int, method: str) -> Path:
    tag = method if len(method) < 60 else method[:40] + "-" + hashlib.sha1(method.encode()).hexdigest()[:10]
    return CACHE / f"{features}_sym{round(rate * 100)}_s{seed}_{tag}.npz"


def run_one(features: str, rate: float, seed: int, method: str, args: argparse.Namespace, data: dict) -> None:
    """Run ``method`` on one cell unless it is cached; write its ``.npz`` atomically."""
    path = cache_path(features, rate, seed, method)
    if path.exists() and method not in args.redo:
        return
    x, test = data["features"][features]
    clean, test_labels = data["labels"]
    d = draw(clean, rate, seed)
    base, overrides = parse_method(method)
    # "+seed=k": the run's own seed (head initialisation; paper mode's batches too), on the
    # same noise and trusted rows.
    run_seed = overrides.pop("seed", seed)
    print(f"{datetime.datetime.now():%H:%M:%S} {features} sym{rate:.0%} seed {seed}: {method}", flush=True)
    if base == "paper":
        out = run_paper_mode(x, clean, d, overrides, run_seed, args.threads)
    elif base == "lab":
        out = run_lab(x, clean, d, overrides, run_seed, args.threads)
    elif base in ("official", "official-intent"):
        if args.official is None:
            print("  skipped: pass --official PATH (a clone of github.com/yuanpengtu/DMLP)", flush=True)
            return
        out = run_official_mode(x, test, clean, test_labels, d, run_seed, args.threads, args.official,
                                fix_guard=base == "official-intent")
    elif base == "probe":
        out = run_probe(x, test, clean, test_labels, d)
    else:
        raise SystemExit(f"unknown method {method!r}")
    out["given"] = np.asarray((d["noisy"][d["rows"]] == clean[d["rows"]]).mean())
    write_npz(path, out)
    summary = {k: float(v) for k, v in out.items() if np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype,
                                                                                         np.number)}
    if "curve" in out:
        summary["last"] = float(out["curve"][-1])
    if "final" in out:
        summary["final"] = float((out["final"] == clean[d["rows"]]).mean())
    print("  " + json.dumps({k: round(v, 4) for k, v in summary.items()}), flush=True)


def load(features: str, rate: float, seed: int, method: str) -> dict[str, np.ndarray] | None:
    path = cache_path(features, rate, seed, method)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- first epochs, step by step
def _our_label_trace(x: np.ndarray, clean: np.ndarray, d: dict, seed: int, epochs: int, threads: int,
                     overrides: dict) -> list[np.ndarray]:
    """Paper mode's raw label variables (original row order) after each of ``epochs`` epochs.

    Reads them by wrapping the loop's IPC step (benchmark-only instrumentation): after the
    step of epoch ``k`` and before any mixing, which is what the official script's labels
    are when its guard never fires."""
    from dmlp_plugin import PurifyConfig, purify_dataset
    from dmlp_plugin.engine import paper_loop

    trace: list[np.ndarray] = []
    original = paper_loop._ipc_step

    def traced(views, *rest):
        loss = original(views, *rest)
        trace.append(views[0].flat_labels().detach().cpu().numpy().copy())
        return loss

    paper_loop._ipc_step = traced
    try:
        purify_dataset(x, d["noisy"], val_indices=d["trusted"], val_labels=clean[d["trusted"]], clean_labels=clean,
                       config=PurifyConfig.paper(epochs=epochs, **overrides), seed=seed, threads=threads,
                       feature_check=False)
    finally:
        paper_loop._ipc_step = original
    return trace


def _update_stats(y0: np.ndarray, y: np.ndarray, given: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    delta = y - y0
    rows = np.arange(len(given))
    label = y.argmax(1)
    return {"mean abs change per row": float(np.abs(delta).sum(1).mean()),
            "given entry (mean)": float(y[rows, given].mean()),
            "largest other entry (mean)": float(np.where(np.eye(10, dtype=bool)[given], -np.inf, y).max(1).mean()),
            "argmax changed": float((label != given).mean()),
            "changed to correct": float(((label != given) & (label == clean)).mean()),
            "changed away from correct": float(((label != given) & (given == clean)).mean()),
            "label accuracy": float((label == clean).mean())}


def ipc_direction(x: np.ndarray, clean: np.ndarray, d: dict, seed: int) -> dict[str, float]:
    """Where paper mode's first IPC gradient points, row by row (one-hot given labels, the
    batches paper mode draws): does it favour the clean class, and would one plain step of
    any size improve the labels? Also the condition number of the first batch's ``FᵀF``."""
    import torch

    from dmlp_plugin.engine.ipc import (
        IPCLossWeights,
        factor,
        ipc_loss_and_grad,
        partition,
    )

    rows = d["rows"]
    given, truth = torch.from_numpy(d["noisy"][rows]), torch.from_numpy(clean[rows])
    index = partition(len(rows), 7000, generator=torch.Generator().manual_seed(seed))
    batches = factor(torch.from_numpy(x[rows]), index, ridge=1e-6)
    onehot = torch.nn.functional.one_hot(given, 10).float()
    val = torch.nn.functional.one_hot(torch.from_numpy(clean[d["trusted"]]), 10).float()
    _, grad = ipc_loss_and_grad(batches.gather(onehot), batches, torch.from_numpy(x[d["trusted"]]), val,
                                torch.full((10,), 0.1), IPCLossWeights())
    down = -batches.scatter(grad, len(rows))  # the direction the labels move
    noisy, r = given != truth, torch.arange(len(rows))
    out = {"noisy rows where it favours the clean class over the given one":
           float((down[r, truth] > down[r, given])[noisy].float().mean()),
           "clean rows whose given entry it pushes down": float((down[r, given] < 0)[~noisy].float().mean())}
    scale = 0.01 / float(down.abs().mean())
    for step in (0.001, 0.01, 0.1, 0.3, 1.0):  # mean absolute change per entry
        out[f"accuracy after one plain step, mean step {step}"] = float(
            ((onehot + step / 0.01 * scale * down).argmax(1) == truth).float().mean())
    f = torch.from_numpy(x[rows][index[0].numpy()]).double()
    gram = f.T @ f
    out["condition number of the first batch's FᵀF"] = float(torch.linalg.cond(gram))
    # The official script inverts FᵀF in float32: how far is its inverse from one?
    residual = torch.inverse(gram.float()).double() @ gram - torch.eye(gram.shape[0], dtype=torch.float64)
    out["largest entry of inverse32(FᵀF)·FᵀF − I"] = float(residual.abs().max())
    return out


def step_comparison(args: argparse.Namespace, data: dict) -> dict:
    """Official (as it is) and paper mode's IPC on identical inputs, the first epochs."""
    features, rate, seed, epochs = args.features[0], args.rates[0], args.seed, args.step_epochs
    x, test = data["features"][features]
    clean, test_labels = data["labels"]
    d = draw(clean, rate, seed)
    rows, given = d["rows"], d["noisy"][d["rows"]]
    y0 = np.eye(10, dtype=np.float32)[given]
    run = run_official(read_official_source(args.official), x, test, d["noisy"], clean,
                       test_labels if test_labels is not None else np.zeros(len(test), np.int64), d["split"],
                       seed=seed, threads=args.threads, epochs=epochs, dump_epochs=tuple(range(1, epochs + 1)))
    position = np.argsort(run.record["idx_to_train"])
    out = {"features": features, "rate": rate, "seed": seed, "epochs": [],
           "ipc_direction": ipc_direction(x, clean, d, seed)}
    traces = {name: _our_label_trace(x, clean, d, seed, epochs, args.threads, overrides)
              for name, overrides in (("paper mode", {"eac": False}),
                                      ("paper mode, label_weight_decay=0", {"eac": False, "label_weight_decay": 0.0}))}
    for k in range(1, epochs + 1):
        official = run.record[f"labels_v1_epoch{k}"][position]
        entry = {"epoch": k, "official": _update_stats(y0, official, given, clean[rows])}
        for name, trace in traces.items():
            ours = trace[k - 1]
            entry[name] = _update_stats(y0, ours, given, clean[rows])
            a, b = (official - y0).ravel(), (ours - y0).ravel()
            entry[name]["cosine with official update"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            entry[name]["argmax agrees with official"] = float((ours.argmax(1) == official.argmax(1)).mean())
        out["epochs"].append(entry)
    return out


def check_harness(args: argparse.Namespace, data: dict) -> dict:
    """Two epochs of the official script with and without the harness's speed-ups: identical?"""
    features, rate, seed = args.features[0], args.rates[0], args.seed
    x, test = data["features"][features]
    clean, test_labels = data["labels"]
    d = draw(clean, rate, seed)
    source = read_official_source(args.official)
    records = [run_official(source, x, test, d["noisy"], clean,
                            test_labels if test_labels is not None else np.zeros(len(test), np.int64), d["split"],
                            seed=seed, threads=args.threads, epochs=2, vectorise=fast, cache_solve=fast,
                            dump_epochs=(1, 2)).record for fast in (True, False)]
    same = {k: bool(np.array_equal(records[0][k], records[1][k])) for k in records[0] if k != "seconds"}
    return {"features": features, "rate": rate, "seed": seed, "identical": all(same.values()), "arrays": same}


# ----------------------------------------------------------------------------- report
MAIN_METHODS = ["probe", "paper", "paper+eac=false", "official", "official-intent"]
TUNING = ["paper", "paper+ipc=false", "paper+eac=false", "paper+eac_eta=0.5", "paper+eac_eta=0.2",
          "paper+eac_conf_weight=0", "paper+eac_lr=0.03", "paper+eac_period=50", "paper+label_lr=0.001",
          "paper+label_lr=0.03", "paper+eac=false+label_optimizer=sgd+label_lr=0.1",
          "paper+eac=false+label_optimizer=sgd+label_lr=1", "paper+label_optimizer=sgd+label_lr=0.1",
          "paper+label_optimizer=sgd+label_lr=1", "paper+ipc=false+eac_eta=0.5",
          "paper+label_lr=0.001+eac_eta=0.5", "paper+ipc=false+eac_conf_weight=0",
          "paper+ipc=false+eac_eta=0.5+eac_conf_weight=0", "lab+head=official", "lab+steps=official",
          "lab+head=official+steps=official"]
LABELS = {"paper+label_lr=0.001+eac_eta=0.5": "paper mode, label_lr=0.001, eac_eta=0.5", "paper": "paper mode", "paper+eac=false": "paper mode, IPC only", "official": "official, as it is",
          "official-intent": "official, intent", "paper+ipc=false": "paper mode, EAC only"}
CHECKPOINTS = (1, 10, 19, 20, 21, 40, 60, 80, 100)


def pct(v: float | None) -> str:
    return "—" if v is None or np.isnan(v) else f"{100 * float(v):.1f}"


def final_accuracy(features: str, rate: float, seed: int, method: str, clean: np.ndarray) -> float | None:
    run = load(features, rate, seed, method)
    if run is None:
        return None
    return float((run["final"] == clean[draw_rows(len(clean), seed)]).mean())


def draw_rows(n: int, seed: int) -> np.ndarray:
    from dmlp_plugin.reproduce.cifar_inputs import draw_trusted

    return np.setdiff1d(np.arange(n), draw_trusted(n, NUM_TRUSTED, seed))


def summary_table(args: argparse.Namespace, clean: np.ndarray) -> list[str]:
    head = ["features", "noise", "given", "probe, clean labels: rows / cross-fitted / test",
            "probe, given labels: rows",
            "paper mode", "paper mode, best epoch", "paper mode, IPC only", "official, as it is",
            "official, intent"]
    body = []
    for features in args.features:
        for rate in args.rates:
            probe = load(features, rate, REPORT_SEED, "probe") or {}
            paper = load(features, rate, REPORT_SEED, "paper")
            best = (f"{pct(paper['curve'].max())} (epoch {int(paper['curve'].argmax()) + 1})"
                    if paper is not None else "—")
            body.append([FEATURES[features], f"sym {rate:.0%}", pct(probe.get("given")),
                         (f"{pct(probe.get('clean_rows'))} / {pct(probe.get('clean_cv'))} / "
                         f"{pct(probe.get('clean_test'))}"),
                         pct(probe.get("given_rows")),
                         pct(final_accuracy(features, rate, REPORT_SEED, "paper", clean)), best]
                        + [pct(final_accuracy(features, rate, REPORT_SEED, m, clean))
                           for m in ("paper+eac=false", "official", "official-intent")])
    return markdown_table(head, body)


def curve_table(args: argparse.Namespace, methods: list[str], seed: int) -> list[str]:
    """Label accuracy at chosen epochs, per cell and method (the curves, summarised)."""
    head = ["features", "noise", "method"] + [f"ep {e}" for e in CHECKPOINTS] + ["final", "s"]
    body = []
    for features in args.features:
        for rate in args.rates:
            for method in methods:
                run = load(features, rate, seed, method)
                if run is None or "curve" not in run:
                    continue
                curve = run["curve"]
                cells = [pct(curve[e - 1]) if e <= len(curve) else "—" for e in CHECKPOINTS]
                final = float((run["final"] == _clean()[draw_rows(50000, seed)]).mean())
                body.append([FEATURES[features], f"sym {rate:.0%}", LABELS.get(method, method)] + cells
                            + [pct(final), f"{float(run['seconds']):.0f}"])
    return markdown_table(head, body)


def step_table(step: dict) -> list[str]:
    names = [n for n in step["epochs"][0] if n != "epoch"]
    keys = list(step["epochs"][0]["paper mode"])
    head = ["epoch", "run"] + keys
    body = []
    for entry in step["epochs"]:
        for name in names:
            stats = entry[name]
            body.append([str(entry["epoch"]), name] + [f"{stats[k]:.4f}" if k in stats else "—" for k in keys])
    return markdown_table(head, body)


_CLEAN: list[np.ndarray] = []


def _clean() -> np.ndarray:
    if not _CLEAN:
        _CLEAN.append(load_labels()[0])
    return _CLEAN[0]


def plot(args: argparse.Namespace, path: Path) -> bool:
    """One panel per feature set and noise rate: label accuracy per epoch of each method,
    with the given labels and the probes as horizontal lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: pip install matplotlib (the PNG is skipped)")
        return False
    fig, axes = plt.subplots(len(args.features), len(args.rates), squeeze=False,
                             figsize=(5.2 * len(args.rates), 3.6 * len(args.features) + 0.8))
    styles = {"paper": ("C0", "-"), "paper+eac=false": ("C0", ":"), CHOSEN[0]: ("C4", "-"),
              "official": ("C3", ":"), "official-intent": ("C3", "-")}
    for i, features in enumerate(args.features):
        for j, rate in enumerate(args.rates):
            ax = axes[i][j]
            for method, (color, style) in styles.items():
                run = load(features, rate, REPORT_SEED, method)
                if run is not None:
                    epochs = np.arange(1, len(run["curve"]) + 1)
                    ax.plot(epochs, 100 * run["curve"], color=color, linestyle=style,
                            label=LABELS.get(method, method))
            probe = load(features, rate, REPORT_SEED, "probe")
            if probe is not None:
                for key, color, label in (("given", "k", "given labels"),
                                          ("clean_cv", "C2", "probe on clean labels (cross-fitted)"),
                                          ("given_rows", "C1", "probe on given labels")):
                    ax.axhline(100 * float(probe[key]), color=color, linestyle="--", linewidth=0.9, label=label)
            ax.set_title(f"{FEATURES[features]}, symmetric {rate:.0%}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel("labels correct (%)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    return True


INTRO = ("`benchmarks/paper_regime.py`; `docs/paper-mode.md` explains the numbers. CIFAR-10, all 50,000 training "
         "rows, 1,000 random clean rows as the trusted set, symmetric noise (DivideMix convention); label accuracy "
         f"(%) on the other 49,000 rows, draw (seed) {REPORT_SEED}. *Paper mode*: `PurifyConfig.paper()`. "
         "*Official*: `DMLP.py` of yuanpengtu/DMLP, run by `benchmarks/official_dmlp.py` on the same features, "
         "labels, trusted rows and 7,000-row batches, on the CPU, with its per-sample loops vectorised and its "
         "constant `(FᵀF)⁻¹Fᵀ` computed once (checked to give identical labels); *as it is*, its EAC feedback "
         "never fires; *intent*: its guard fixed so that it mixes during its epochs 21, 41, 61 and 81 (1-based). "
         "Its labels are the argmax of the mean of its two views (one feature file, two heads). *Probes*: "
         "L-BFGS logistic regression fitted on the 49,000 rows' clean labels (the ceiling) or given labels, "
         "scored on the clean labels of the rows it was fitted on, cross-fitted (5 folds), and on the test set.")
CHOSEN = ["paper+label_lr=0.001+eac_eta=0.5", "paper+ipc=false+eac_eta=0.5+eac_conf_weight=0"]
ATTRIBUTION = ["paper", "lab+head=official", "lab+steps=official", "lab+head=official+steps=official",
               "official-intent", "paper+ipc=false", "paper+eac_conf_weight=0"]


def _json_sections() -> list[str]:
    lines = []
    for path in sorted(CACHE.glob("step_*.json")):
        found = json.loads(path.read_text())
        lines += [(f"First epochs, step by step: {FEATURES[found['features']]}, sym {found['rate']:.0%}, seed "
                  f"{found['seed']}. IPC only (the official script as it is, whose labels only IPC moves, and "
                  "paper mode with `eac=False`), identical inputs and batches; label variables after each "
                  "epoch's IPC step, against the one-hot given labels:"), ""]
        lines += step_table(found) + [""]
        if "ipc_direction" in found:
            lines += ["Paper mode's first IPC gradient on the same inputs (the direction the labels move): "
                      + "; ".join(f"{k}: {v:.4g}" for k, v in found["ipc_direction"].items()) + ".", ""]
    for path in sorted(CACHE.glob("check_*.json")):
        found = json.loads(path.read_text())
        lines += [(f"Harness check ({FEATURES[found['features']]}, sym {found['rate']:.0%}): two epochs of the "
                  "official script with and without the harness's speed-ups give identical labels, losses and "
                  f"accuracies: **{found['identical']}**."), ""]
    return lines


def spread_table(args: argparse.Namespace) -> list[str]:
    """Final label accuracy over run seeds 0-2 (head initialisation; paper mode's batches too)
    on the report draw's noise and trusted rows."""
    body = []
    for features in args.features:
        for rate in args.rates:
            for method in ("paper", "official-intent"):
                names = [method] + [f"{method}+seed={k}" for k in (1, 2)]
                found = [final_accuracy(features, rate, REPORT_SEED, n, _clean()) for n in names]
                found = [v for v in found if v is not None]
                if len(found) > 1:
                    body.append([FEATURES[features], f"sym {rate:.0%}", LABELS[method],
                                 " / ".join(pct(v) for v in found), pct(float(np.mean(found)))])
    if not body:
        return []
    return markdown_table(["features", "noise", "method", "run seeds 0 / 1 / 2", "mean"], body)


def render(args: argparse.Namespace) -> str:
    lines = ["## Paper mode in the paper's regime", "", INTRO, ""]
    lines += summary_table(args, _clean()) + [""]
    lines += [("Label accuracy per epoch (the curves of the paper's Figures 2-4, drawn in "
               "`docs/img/paper_mode_curves.png`). Paper mode mixes at the end of epochs 20, 40, ..., 100; "
               "`s`: wall time in seconds "
               f"({args.threads} thread, shared busy cores):"), ""]
    lines += curve_table(args, [m for m in MAIN_METHODS if m != "probe"], REPORT_SEED) + [""]
    spread = spread_table(args)
    if spread:
        lines += [("Over run seeds (the heads' initialisation, and paper mode's batches; the same noise and "
                  "trusted rows):"), ""] + spread + [""]
    lines += [("Attribution: paper mode with one of the official script's choices put back (`lab+head=official`: "
               "the official EAC loss; `lab+steps=official`: one Adam step over the whole label tensor per "
               "batch), and two ablations:"), ""]
    lines += curve_table(args, ATTRIBUTION, REPORT_SEED) + [""]
    lines += [(f"Two settings chosen on the tuning draw ({TUNING_SEED}) by their mean final accuracy over both "
               f"noise rates on the EfficientNet features, run on the report draw ({REPORT_SEED}):"), ""]
    lines += curve_table(args, ["paper"] + CHOSEN, REPORT_SEED) + [""]
    tuned = [m for m in TUNING if any(load(f, r, TUNING_SEED, m) for f in args.features for r in args.rates)]
    if tuned:
        lines += [(f"Tuning runs (draw {TUNING_SEED}: its own noise and trusted rows; `paper+key=value` is "
                   "`PurifyConfig.paper(key=value)`):"), ""]
        lines += curve_table(args, tuned, TUNING_SEED) + [""]
    lines += _json_sections()
    lines += [f"Command: `python benchmarks/paper_regime.py report --features {','.join(args.features)}`."]
    return SECTION.wrap(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "tune", "step", "check", "report"))
    parser.add_argument("--features", default="efficientnet-lite0,kmeans",
                        help="comma-separated: efficientnet-lite0, kmeans")
    parser.add_argument("--rates", default="0.2,0.8")
    parser.add_argument("--seed", type=int, default=None, help=f"draw (default {REPORT_SEED}; tune: {TUNING_SEED})")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all of the action's)")
    parser.add_argument("--official", type=Path, default=os.environ.get("DMLP_OFFICIAL"),
                        help="DMLP.py, or a clone of github.com/yuanpengtu/DMLP ($DMLP_OFFICIAL)")
    add_threads(parser, 1)
    parser.add_argument("--redo", default="", help="comma-separated methods to rerun although cached")
    parser.add_argument("--step-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    args.features = comma_list(args.features)
    args.rates = comma_list(args.rates, float)
    args.redo = set(comma_list(args.redo))
    unknown = [f for f in args.features if f not in FEATURES]
    if unknown:
        parser.error(f"unknown feature set(s) {unknown}; known: {', '.join(FEATURES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.action == "report":
        SECTION.write(render(args), RESULTS)
        if plot(args, PLOT):
            print(f"wrote {PLOT}")
        return 0
    data = {"features": {f: load_features(f) for f in args.features}, "labels": load_labels()}
    if args.action in ("step", "check"):
        if args.official is None:
            raise SystemExit("pass --official PATH (a clone of github.com/yuanpengtu/DMLP)")
        args.seed = REPORT_SEED if args.seed is None else args.seed
        found = step_comparison(args, data) if args.action == "step" else check_harness(args, data)
        name = f"{args.action}_{args.features[0]}_sym{round(args.rates[0] * 100)}.json"
        write_json(CACHE / name, found, indent=1)
        print(json.dumps(found, indent=1))
        return 0
    seed = args.seed if args.seed is not None else (REPORT_SEED if args.action == "run" else TUNING_SEED)
    methods = comma_list(args.methods) if args.methods else (MAIN_METHODS if args.action == "run" else TUNING)
    for features in args.features:
        for rate in args.rates:
            for method in methods:
                run_one(features, rate, seed, method, args, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
