"""How well the purified result estimates its own residual noise, written to benchmarks/RESULTS.md.

    python benchmarks/residual_noise.py --write-results --threads 1   # full run, ~3 min
    python benchmarks/residual_noise.py --epochs 10 --subset 5000      # smoke run, seconds

Integrations set the upstream options that follow the noise of the labels they train on
(Co-teaching's ``--forget_rate``, CDR's ``--noise_rate``) from
``PurifyResult.estimated_noise_rate()``: one minus the mean purified-label confidence
over the non-trusted rows. This script purifies CIFAR-10 features under symmetric and
asymmetric noise, with the default config and in paper mode, and compares that estimate
(and two other estimates that need no clean labels beyond the trusted set's, which the
result already holds) with the truth: the fraction of non-trusted purified labels that
differ from the clean ones.

Inputs and protocol are those of ``purify_cifar10.py`` (the shared k-means features, the
clean training labels; 1,000 trusted samples drawn from a stream separate from the
noise's). Only the section between ``<!-- residual-noise:start -->`` and
``<!-- residual-noise:end -->`` of RESULTS.md is rewritten.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from driver import (Section, add_protocol, add_threads, add_write_results, command_line, comma_list, end_run,
                    load_train, run_header, markdown_table, parse_protocol, shared_dir, start_run,
                    threads_text)

from dmlp_plugin import PurifyConfig, PurifyResult, purify_dataset
from dmlp_plugin.noise_rate import estimate_noise_rate
from dmlp_plugin.reproduce.cifar_inputs import FEATURES, NUM_CLASSES, draw_trusted, noisy_labels, with_epochs

SECTION = Section("residual-noise")
START, END = SECTION.start, SECTION.end
CONFIGS: dict[str, tuple[str, Callable[[], PurifyConfig]]] = {
    "default": ("PurifyConfig()", PurifyConfig),
    "paper": ("PurifyConfig.paper()", PurifyConfig.paper),
}


# -- estimators: each reads only the result (no clean labels beyond the trusted set's) -------


ESTIMATORS: dict[str, tuple[str, Callable[[PurifyResult], float | None]]] = {
    "confidence": ("1 − mean confidence", partial(estimate_noise_rate, method="confidence")),
    "entropy": ("1 − mean confidence of the soft labels tempered to the trusted log-loss",
                partial(estimate_noise_rate, method="entropy")),
    "agreement": ("from the rate at which purified labels keep the given ones",
                  partial(estimate_noise_rate, method="agreement")),
    "auto": ("`estimated_noise_rate()`, what integrations use: the first of entropy, agreement, confidence "
             "that applies", partial(estimate_noise_rate, method="auto")),
}


# -- runs ----------------------------------------------------------------------------------------


@dataclass
class Run:
    setting: str  # e.g. "Symmetric 50%"
    config: str  # a key of CONFIGS
    seed: int
    given_noise: float  # fraction of the non-trusted given labels that are wrong
    truth: float  # fraction of the non-trusted purified labels that are wrong
    estimates: dict[str, float | None]
    seconds: float

    def error(self, name: str) -> float | None:
        value = self.estimates.get(name)
        return None if value is None else value - self.truth


def noise_settings(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    """``(title, kind, rate)`` for each rate of ``--rates`` and ``--asym-rates``."""
    return ([(f"Symmetric {r:.0%}", "symmetric", r) for r in args.rate_list]
            + [(f"Asymmetric {r:.0%}", "asymmetric", r) for r in args.asym_list])


def run_setting(features: np.ndarray, clean: np.ndarray, setting: str, kind: str, rate: float, *,
                configs: list[str], seed: int, num_trusted: int, epochs: int | None,
                log: Callable[[str], None] = print) -> list[Run]:
    """One noise draw, purified once per config; every estimator against the truth."""
    noisy = noisy_labels(clean, kind, rate, seed)
    trusted = draw_trusted(len(clean), num_trusted, seed)
    keep = np.ones(len(clean), bool)
    keep[trusted] = False
    given_noise = float((noisy[keep] != clean[keep]).mean())
    runs = []
    for name in configs:
        config = with_epochs(CONFIGS[name][1](), epochs)
        start = time.perf_counter()
        result = purify_dataset(features, noisy, threads=None, val_indices=trusted, val_labels=clean[trusted],
                                num_classes=NUM_CLASSES, config=config, seed=seed, device="cpu")
        seconds = time.perf_counter() - start
        truth = float((result.labels[keep] != clean[keep]).mean())
        run = Run(setting, name, seed, given_noise, truth,
                  {key: fn(result) for key, (_, fn) in ESTIMATORS.items()}, seconds)
        runs.append(run)
        log(f"{setting}, seed {seed}, {name}: given {pct(given_noise)}, residual {pct(truth)}, "
            + ", ".join(f"{key} {pct(v)}" for key, v in run.estimates.items()) + f" ({seconds:.1f} s)")
    return runs


# -- reporting -----------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def points(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def runs_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """One row per setting and config (means over seeds): truth, each estimate and its error."""
    head = ["noise", "config", "given noise (%)", "**true residual (%)**"]
    for name in ESTIMATORS:
        head += [f"{name} (%)", "error (pts)"]
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.setting, run.config), []).append(run)
    body = []
    for (setting, config), group in groups.items():
        row = [setting, f"`{CONFIGS[config][0]}`", pct(_mean([r.given_noise for r in group])),
               f"**{pct(_mean([r.truth for r in group]))}**"]
        for name in ESTIMATORS:
            row += [pct(_mean([r.estimates[name] for r in group])), points(_mean([r.error(name) for r in group]))]
        body.append(row)
    return head, body


def error_stats(runs: list[Run], name: str) -> dict[str, float] | None:
    """Mean error (bias), mean absolute error and worst error of one estimator, over runs."""
    errors = [r.error(name) for r in runs]
    if not errors or any(e is None for e in errors):
        return None
    errors = np.asarray(errors)
    return {"bias": float(errors.mean()), "mae": float(np.abs(errors).mean()),
            "worst": float(errors[np.abs(errors).argmax()]), "runs": len(errors)}


def summary_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    head = ["config", "estimator", "runs", "mean error (pts)", "**mean abs. error (pts)**", "worst error (pts)"]
    body = []
    for config in dict.fromkeys(r.config for r in runs):
        chosen = [r for r in runs if r.config == config]
        for name in ESTIMATORS:
            stats = error_stats(chosen, name)
            if stats is None:
                body.append([f"`{CONFIGS[config][0]}`", name, str(len(chosen)), "—", "not available", "—"])
                continue
            body.append([f"`{CONFIGS[config][0]}`", name, str(stats["runs"]), points(stats["bias"]),
                         f"**{abs(100 * stats['mae']):.1f}**", points(stats["worst"])])
    return head, body


def best_by_config(runs: list[Run]) -> dict[str, str]:
    """The estimator with the lowest mean absolute error, per config."""
    out = {}
    for config in dict.fromkeys(r.config for r in runs):
        chosen = [r for r in runs if r.config == config]
        scored = [(stats["mae"], name) for name in ESTIMATORS
                  if (stats := error_stats(chosen, name)) is not None]
        if scored:
            out[config] = min(scored)[1]
    return out


@dataclass
class Report:
    """A finished run for :func:`render` (``accuracy_estimate.py`` reports its runs the same way)."""

    args: argparse.Namespace
    started: str
    load_start: str
    runs: list  # of this script's or accuracy_estimate's Run
    num_train: int
    load_end: str = ""
    total_s: float = 0.0


def render(rep: Report) -> str:
    a = rep.args
    best = best_by_config(rep.runs)
    lines = [*run_header("## Residual noise of the purified labels (`benchmarks/residual_noise.py`)", rep, "."),
             "Integrations set Co-teaching's `--forget_rate` and CDR's `--noise_rate` from "
             "`PurifyResult.estimated_noise_rate()`. Here each estimate is checked against the **true "
             "residual noise**: the fraction of the purified labels (`result.labels`) that differ from the "
             f"clean labels, over the {rep.num_train - a.trusted:,} non-trusted samples. Features: "
             f"`shared/{FEATURES.as_posix()}` ({rep.num_train:,} samples); trusted set: {a.trusted:,} random "
             "clean samples, as in `purify_cifar10.py`; symmetric noise follows DivideMix (the realised rate "
             "is 0.9× the nominal), asymmetric noise is CIFAR-10's class mapping. "
             f"Seeds: {', '.join(map(str, a.seed_list))}"
             + (" (each cell is the mean over seeds)" if len(a.seed_list) > 1 else "")
             + f". Paper mode's epochs: {a.epochs or PurifyConfig.paper().epochs}. "
             "Error = estimate − truth, in points; "
             "negative means the estimate is too low.", "",
             "Estimators (all read the result alone; none sees a clean label outside the trusted set):", ""]
    lines += [f"- **{name}** — {text}." for name, (text, _) in ESTIMATORS.items()]
    lines += ["", "`entropy` tempers the soft labels (`p ∝ soft^t`) until their mean entropy equals the "
              "cross-fitted trusted log-loss of the selected candidate (`metadata[\"candidate_nll\"]`), so it "
              "exists only where the labels are a selected posterior (the default). `agreement` solves "
              "`u = a·g + (1 − a)(1 − g)/(C − 1)` for the purified accuracy `a`, with `u` the rate at which "
              "purified rows keep their given label and `g` the given labels' accuracy on the trusted rows; it "
              "assumes the purified labels' errors are independent of the given labels' (not so for the "
              "default's posterior, which leans on the given label).", "",
              "### Error of each estimator", "", *markdown_table(*summary_table(rep.runs)), ""]
    if best:
        lines += ["Lowest mean absolute error: " + "; ".join(
            f"`{CONFIGS[config][0]}`: **{name}**" for config, name in best.items()) + ".", ""]
    lines += ["### Per setting", "", *markdown_table(*runs_table(rep.runs)), ""]
    return SECTION.wrap(lines)


# -- main ----------------------------------------------------------------------------------------


def protocol_parser(doc: str, section: Section, seeds_help: str) -> argparse.ArgumentParser:
    """The options this script and ``accuracy_estimate.py`` share: the CIFAR-10 protocol's,
    ``--configs`` (of :data:`CONFIGS`), ``--threads`` (default 1) and ``--write-results``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_protocol(p, seeds_help=seeds_help)
    p.add_argument("--configs", default="default,paper", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    add_threads(p, 1, "torch CPU threads (default 1: the cores are shared with other jobs)")
    add_write_results(p, section)
    return p


def parse_protocol_args(p: argparse.ArgumentParser, argv: list[str] | None, script: str) -> argparse.Namespace:
    """:func:`protocol_parser`'s options as lists (``config_list`` too), or the parser's error
    naming an unknown config; ``args.command`` repeats the run."""
    args = p.parse_args(argv)
    parse_protocol(args)
    args.config_list = comma_list(args.configs)
    unknown = [c for c in args.config_list if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    args.command = command_line(script, argv)
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = protocol_parser(__doc__, SECTION, "seeds, comma-separated (tables show the mean)")
    return parse_protocol_args(p, argv, "residual_noise.py")


def start(args: argparse.Namespace) -> tuple[float, Report, np.ndarray, np.ndarray]:
    """A run's start (:func:`driver.start_run`), its empty report, and the training features
    and clean labels (announced)."""
    t0, started, load_start = start_run(args.threads)
    features, clean = load_train(shared_dir(args.shared), args.subset)
    print(f"{len(clean)} × {features.shape[1]} features, {threads_text()}, load {load_start}")
    return t0, Report(args, started, load_start, [], len(clean)), features, clean


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0, rep, features, clean = start(args)
    for title, kind, rate in noise_settings(args):
        for seed in args.seed_list:
            rep.runs += run_setting(features, clean, title, kind, rate, configs=args.config_list, seed=seed,
                                    num_trusted=args.trusted, epochs=args.epochs)
    end_run(rep, t0, [("Residual noise: truth and estimates (%), error = estimate − truth (points)",
                       *runs_table(rep.runs)), ("Error of each estimator (points)", *summary_table(rep.runs))],
            SECTION if args.write_results else None, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
