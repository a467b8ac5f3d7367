"""How close the cross-fitted accuracy estimate comes to the truth, written to benchmarks/RESULTS.md.

    python benchmarks/accuracy_estimate.py --write-results --folds 5,10  # full run, ~50 min on 1 thread
    python benchmarks/accuracy_estimate.py --epochs 10 --subset 5000 --rates 0.5 --asym-rates "" \\
        --draws ""                                              # smoke run, seconds

``purify_dataset(..., estimate_accuracy=True)`` estimates the accuracy of the returned
labels on the non-trusted rows from the trusted rows alone (each fold of the trusted set
purified as ordinary rows with its given labels, then scored against its clean labels;
:mod:`dmlp_plugin.accuracy_estimate`). This script compares that estimate and its 95%
Wilson interval with the truth, the accuracy of ``result.labels`` on the non-trusted
rows, under the settings of ``purify_cifar10.py`` (symmetric 20/50/80/90%, asymmetric
20/40%; the default config and paper mode), and times each run against a plain run
(``estimate_accuracy=False``) on the same input, one after the other in this process.
It also checks that the labels returned are the same with and without the estimate.

Inputs and protocol are those of ``purify_cifar10.py`` (the shared k-means features, the
clean training labels; 1,000 trusted samples drawn from a stream separate from the
noise's); the test set is not needed. Only the section between
``<!-- accuracy-estimate:start -->`` and ``<!-- accuracy-estimate:end -->`` of
RESULTS.md is rewritten.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from driver import Section, comma_list, end_run, run_header, markdown_table, warm_up
from residual_noise import CONFIGS, Report, noise_settings, parse_protocol_args, protocol_parser, start

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.accuracy_estimate import DEFAULT_FOLDS
from dmlp_plugin.reproduce.cifar_inputs import FEATURES, NUM_CLASSES, draw_trusted, noisy_labels, with_epochs

SECTION = Section("accuracy-estimate")
START, END = SECTION.start, SECTION.end
TARGET_POINTS = 3.0  # the estimate should fall within this many points of the truth


@dataclass
class Run:
    setting: str  # e.g. "Symmetric 50%"
    config: str  # a key of CONFIGS
    seed: int
    folds: int
    given: float  # accuracy of the given labels on the non-trusted rows
    truth: float  # accuracy of the returned labels on the non-trusted rows
    estimate: float
    interval: tuple[float, float]
    given_trusted: float  # accuracy of the given labels on the trusted rows, as the estimate measures it
    warned: bool  # purify_dataset warned that the labels look worse than the given ones
    plain_s: float  # purify_dataset without the estimate
    estimate_s: float  # purify_dataset with it (the same full run plus the fold runs)
    same_labels: bool  # the returned labels are identical with and without the estimate

    @property
    def error(self) -> float:
        return self.estimate - self.truth

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.truth <= self.interval[1]

    @property
    def ratio(self) -> float:
        return self.estimate_s / self.plain_s


def run_setting(features: np.ndarray, clean: np.ndarray, setting: str, kind: str, rate: float, *,
                configs: list[str], seed: int, num_trusted: int, epochs: int | None,
                folds: Sequence[int] = (DEFAULT_FOLDS,), log: Callable[[str], None] = print) -> list[Run]:
    """One noise draw: per config a plain run, then one run with the estimate per fold
    count, against the truth."""
    noisy = noisy_labels(clean, kind, rate, seed)
    trusted = draw_trusted(len(clean), num_trusted, seed)
    keep = np.ones(len(clean), bool)
    keep[trusted] = False
    given = float((noisy[keep] == clean[keep]).mean())
    runs = []
    for name in configs:
        common = dict(threads=None, val_indices=trusted, val_labels=clean[trusted], num_classes=NUM_CLASSES,
                      config=with_epochs(CONFIGS[name][1](), epochs), seed=seed, device="cpu")
        start = time.perf_counter()
        plain = purify_dataset(features, noisy, **common)
        plain_s = time.perf_counter() - start
        for k in folds:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                start = time.perf_counter()
                result = purify_dataset(features, noisy, **common, estimate_accuracy=True, estimate_folds=k)
                estimate_s = time.perf_counter() - start
            est = result.accuracy_estimate
            run = Run(setting, name, seed, k, given, float((result.labels[keep] == clean[keep]).mean()),
                      est.accuracy, est.interval, est.given_accuracy,
                      any("look worse than the given ones" in str(w.message) for w in caught),
                      plain_s, estimate_s, bool(np.array_equal(plain.labels, result.labels)))
            runs.append(run)
            log(f"{setting}, seed {seed}, {name}, {k} folds: truth {pct(run.truth)}, estimate {pct(run.estimate)} "
                f"[{pct(run.interval[0])}, {pct(run.interval[1])}], error {points(run.error)}; "
                f"{plain_s:.1f} s plain, {estimate_s:.1f} s with the estimate ({run.ratio:.1f}×)"
                + ("" if run.same_labels else "; LABELS DIFFER"))
    return runs


# -- reporting -----------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def points(x: float) -> str:
    return f"{100 * x:+.2f}"


def runs_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """One row per run: the truth, the estimate, its interval and error, the warning, the cost."""
    head = ["noise", "config", "draw", "folds", "given (%)", "**true acc. (%)**", "estimate (%)", "95% interval",
            "error (pts)", f"within ±{TARGET_POINTS:g}?", "covered?", "given, trusted rows (%)",
            "warned?", "plain (s)", "with estimate (s)", "ratio"]
    body = []
    for r in runs:
        within = abs(100 * r.error) <= TARGET_POINTS
        body.append([r.setting, f"`{CONFIGS[r.config][0]}`", str(r.seed), str(r.folds), pct(r.given), f"**{pct(r.truth)}**",
                     pct(r.estimate), f"{pct(r.interval[0])}–{pct(r.interval[1])}", points(r.error),
                     "yes" if within else "**no**", "yes" if r.covered else "**no**", pct(r.given_trusted),
                     ("yes" if r.warned else "no") + ("" if r.warned == (r.truth < r.given) else " (**wrong**)"),
                     f"{r.plain_s:.1f}", f"{r.estimate_s:.1f}", f"{r.ratio:.1f}×"])
    return head, body


def summary_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Per config and fold count: bias, mean absolute and worst error, hits, coverage,
    warnings, cost."""
    head = ["config", "folds", "runs", "mean error (pts)", "**mean abs. error (pts)**", "worst error (pts)",
            f"within ±{TARGET_POINTS:g}", "interval covers truth", "warning right", "mean time ratio"]
    body = []
    for config, folds in dict.fromkeys((r.config, r.folds) for r in runs):
        chosen = [r for r in runs if (r.config, r.folds) == (config, folds)]
        errors = np.array([r.error for r in chosen])
        n = len(chosen)
        body.append([f"`{CONFIGS[config][0]}`", str(folds), str(n), points(errors.mean()),
                     f"**{100 * np.abs(errors).mean():.2f}**", points(errors[np.abs(errors).argmax()]),
                     f"{sum(abs(100 * e) <= TARGET_POINTS for e in errors)}/{n}",
                     f"{sum(r.covered for r in chosen)}/{n}",
                     f"{sum(r.warned == (r.truth < r.given) for r in chosen)}/{n}",
                     f"{np.mean([r.ratio for r in chosen]):.1f}×"])
    return head, body


def render(rep: Report) -> str:
    a = rep.args
    misses = [r for r in rep.runs if abs(100 * r.error) > TARGET_POINTS]
    differ = [r for r in rep.runs if not r.same_labels]
    lines = [*run_header("## Accuracy estimate of the purified labels (`benchmarks/accuracy_estimate.py`)", rep,
                         ": other jobs shared the cores, so times are upper bounds, and the ratios are the "
                         "fairer figure."),
             "`purify_dataset(..., estimate_accuracy=True)` estimates the accuracy of the returned labels on "
             "the non-trusted rows without their clean labels: the trusted set is split into "
             f"`estimate_folds` folds ({DEFAULT_FOLDS} by default; stratified by class); each fold is purified as ordinary rows carrying their "
             "given labels, with the other folds as the trusted set, and scored against its clean labels; the "
             "pooled fraction correct is the estimate, with a 95% Wilson interval over the "
             f"{a.trusted:,} held-out rows. **Truth**: the accuracy of `result.labels` on the "
             f"{rep.num_train - a.trusted:,} non-trusted rows. Features: `shared/{FEATURES.as_posix()}` "
             f"({rep.num_train:,} samples); trusted set: {a.trusted:,} random clean samples, noise and draws as "
             f"in `purify_cifar10.py`. Paper mode's epochs: {a.epochs or PurifyConfig.paper().epochs}. "
             "Error = estimate − truth. "
             "\"Warned?\" is whether `purify_dataset` warned that the labels look worse than the given ones; "
             "it is marked wrong where that disagrees with the truth (returned labels less accurate than the "
             "given ones on the non-trusted rows). Times: a plain run (`estimate_accuracy=False`), then the "
             "same call with the estimate, one after the other in one process; ratio = with / plain.", "",
             "### Summary", "", *markdown_table(*summary_table(rep.runs)), ""]
    if misses:
        lines += [f"Outside ±{TARGET_POINTS:g} points: " + "; ".join(
            f"{r.setting}, `{CONFIGS[r.config][0]}`, draw {r.seed}, {r.folds} folds ({points(r.error)})"
            for r in misses) + ".", ""]
    else:
        lines += [f"Every run is within ±{TARGET_POINTS:g} points of the truth.", ""]
    lines += ["Returned labels identical with and without the estimate: "
              + ("in every run." if not differ else f"**not** in {len(differ)} run(s)."), "",
              "### Per run", "", *markdown_table(*runs_table(rep.runs)), ""]
    return SECTION.wrap(lines)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = protocol_parser(__doc__, SECTION, "noise draws (seeds) run with every config, comma-separated")
    p.add_argument("--draws", default="1,2,3,4",
                   help="further noise draws run with the default config only (it is 5× cheaper than paper "
                        "mode); '' to skip")
    p.add_argument("--folds", default=str(DEFAULT_FOLDS),
                   help="fold counts of the estimate, comma-separated: each is run on --seeds with every "
                        "config; --draws use the first")
    args = parse_protocol_args(p, argv, "accuracy_estimate.py")
    args.draw_list = [d for d in comma_list(args.draws, int) if d not in args.seed_list]
    args.fold_list = comma_list(args.folds, int)
    if not args.fold_list:
        p.error("--folds needs at least one fold count")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0, rep, features, clean = start(args)
    warm_up()  # so the first plain run does not pay for first-call overheads and skew its ratio
    common = dict(num_trusted=args.trusted, epochs=args.epochs)
    for title, kind, rate in noise_settings(args):
        for seed in args.seed_list:
            rep.runs += run_setting(features, clean, title, kind, rate, configs=args.config_list, seed=seed,
                                    folds=args.fold_list, **common)
        if "default" in args.config_list:
            for seed in args.draw_list:
                rep.runs += run_setting(features, clean, title, kind, rate, configs=["default"], seed=seed,
                                        folds=args.fold_list[:1], **common)
    end_run(rep, t0, [("Accuracy estimate against the truth (%)", *runs_table(rep.runs)),
                      ("Summary", *summary_table(rep.runs))], SECTION if args.write_results else None, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
