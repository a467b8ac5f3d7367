"""Peers on the purify benchmark's inputs: label accuracy of each label-cleaning method, one table.

    python benchmarks/peer_table.py --write-results            # full run (see README.md)
    python benchmarks/peer_table.py --subset 5000 --rates 0.5 --asym-rates "" --cifar-n-keys "" --seeds 0

Inputs and protocol are ``purify_cifar10.py``'s, imported from it: the shared CIFAR-10
k-means features, the clean training labels, its noise (DivideMix symmetric 20/50/80/90%,
asymmetric 20/40%, CIFAR-10N ``aggre_label``/``random_label1``/``worse_label``) and its
trusted draws (1,000 clean samples, ``draw_trusted``). For each setting and draw (seeds 0,
1, 2) every peer of ``peers.py`` relabels the same input; the table shows the label
accuracy on the non-trusted rows, averaged over draws, each peer's wall time, and the
linear test accuracy (``purify_cifar10.probe_accuracy``) of the default's and the best
peer's labels on ``--probe-seeds``.

Resumable: every (peer, setting, draw) result is saved in ``--cache`` (default
``~/.cache/dmlp/peers``) under a key of the inputs and the code that made it (``peers.py``
for the peers; also every ``dmlp_plugin/**/*.py`` for the default), so a rerun after a
change of the engine reruns only the default. ``--write-results`` rewrites the section
between ``<!-- peers:start -->`` and ``<!-- peers:end -->`` of RESULTS.md.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import peers
from driver import (HERE, RESULTS, Section, add_cifar, add_protocol, add_threads, add_write_results, command_line,
                    comma_list, git_revision, load_average, markdown_table, parse_protocol, print_table,
                    read_json, shared_dir, timestamp, warm_up, write_json)
from purify_cifar10 import draw_trusted, load_inputs, noisy_labels, probe_accuracy, subset

SECTION = Section("peers")
DEFAULT_CACHE = Path.home() / ".cache" / "dmlp" / "peers"
PEER_NAMES = list(peers.PEERS)  # given, default, cleanlab, knn, trusted-probe, fc-logistic
OTHERS = [p for p in PEER_NAMES if p not in ("given", "default")]
DESCRIBE = {
    "given": "the noisy labels, the trusted rows with their clean labels",
    "default": "`purify_dataset(..., config=PurifyConfig())`, dmlp-plugin's default",
    "cleanlab": "cleanlab 2.9 `find_label_issues` (defaults: `prune_by_noise_rate`) on 5-fold out-of-fold "
                "probabilities of a logistic probe on the given labels; flagged labels become the probe's "
                "predicted class. The probe's C is chosen from {0.001, 0.01, 0.1, 1} by the accuracy on the "
                "trusted rows of a probe fitted on the other rows",
    "knn": "SimiFeat-style vote: each label becomes the majority of its k nearest neighbours' labels (exact "
           "cosine neighbours on the features), repeated for r rounds on the previous round's labels; "
           "(k, r) chosen from {5, 10, 20, 50, 100, 200} × {1, 2, 3} by the accuracy of the trusted rows' own "
           "voted labels (the votes use given labels only, never a clean one)",
    "trusted-probe": "logistic regression on the 1,000 trusted rows alone (clean labels), C chosen from "
                     "{0.001, 0.01, 0.1, 1} by 5-fold cross-validation on them; predicts every label",
    "fc-logistic": "forward-corrected logistic regression: T[i, j] = P(given = j | clean = i) counted on the "
                   "trusted rows (+0.5 per cell); max Σ log (softmax(Wx) @ T)[given] on the non-trusted rows for "
                   "each C in {0.001, 0.01, 0.1, 1}, scored on the held-out trusted rows by the relabelling rule "
                   "argmax_i p(clean = i | x)·T[i, given]; the best C refitted on all rows (trusted rows with "
                   "their clean labels, without T); labels by the same rule",
}


# -- cache ----------------------------------------------------------------------------------------


def _code_digest(path: Path) -> bytes:
    """The file's syntax tree without docstrings: edits to comments, docstrings or line
    breaks do not invalidate cached runs; any change to the code does."""
    try:
        tree = ast.parse(path.read_text())
    except SyntaxError:  # a file someone is editing: its bytes
        return path.read_bytes()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def _code_hash(peer: str) -> str:
    """A hash of the code that makes a peer's labels: peers.py; for the default also dmlp_plugin/."""
    h = hashlib.sha1(_code_digest(HERE / "peers.py"))
    if peer == "default":
        import dmlp_plugin

        root = Path(dmlp_plugin.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(_code_digest(path))
    return h.hexdigest()[:12]


def _input_hash(features: np.ndarray, noisy: np.ndarray, trusted: np.ndarray, clean: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in (features, noisy, trusted, clean):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def run_peer(name: str, features: np.ndarray, noisy: np.ndarray, trusted: np.ndarray, clean: np.ndarray, *,
             seed: int, cache: Path | None, inputs_key: str, knn_cache: Path | None = None) -> dict:
    """One peer on one input: its labels' accuracy on the non-trusted rows, its choices and wall time."""
    path = None
    if cache is not None:
        path = cache / "runs" / f"{name}-{inputs_key}-{_code_hash(name)}-s{seed}.json"
        out = read_json(path)
        if out is not None:
            out["cached"] = True
            return out
    kwargs = {"default": {"seed": seed}, "knn": {"cache_dir": knn_cache},
              "cleanlab": {"seed": seed}, "trusted-probe": {"seed": seed}}.get(name, {})
    result = peers.PEERS[name](features, noisy, trusted, clean[trusted], **kwargs)
    keep = np.ones(len(clean), bool)
    keep[trusted] = False
    out = {"peer": name, "label_acc": float((result.labels[keep] == clean[keep]).mean()),
           "seconds": result.seconds, "info": result.info,
           "labels": result.labels.astype(int).tolist() if name != "given" else None, "cached": False}
    if path is not None:
        write_json(path, out)
    return out


def cached_probe(inputs, labels: np.ndarray, args: argparse.Namespace) -> float:
    """``probe_accuracy`` of ``labels``, cached on the labels, the features and the iterations."""
    key = hashlib.sha1(np.ascontiguousarray(labels, np.int64).tobytes()
                       + np.ascontiguousarray(inputs.train[:: 97]).tobytes()
                       + str(args.probe_iters).encode()).hexdigest()[:16]
    path = None if args.no_cache else args.cache / "probe" / f"{key}.json"
    found = None if path is None else read_json(path)
    if found is not None:
        return float(found["test_acc"])
    acc = probe_accuracy(inputs, labels, args.probe_iters)
    if path is not None:
        write_json(path, {"test_acc": acc})
    return acc


# -- settings ---------------------------------------------------------------------------------------


def settings_of(args: argparse.Namespace) -> list[tuple[str, str, str, float]]:
    """``(key, title, kind, rate)`` per setting, in table order."""
    out = [(f"sym-{r:g}", f"symmetric {r:.0%}", "symmetric", r) for r in args.rate_list]
    out += [(f"asym-{r:g}", f"asymmetric {r:.0%}", "asymmetric", r) for r in args.asym_list]
    out += [(f"cifar-n-{k}", f"CIFAR-10N {k}", k, 0.0) for k in args.key_list]
    return out


def run_all(args: argparse.Namespace, inputs, log=print, on_draw=None) -> dict:
    """``{setting key: {"title", "noise", "draws": {seed: {peer: result}}, "probe": {peer: {seed: acc}}}}``.

    Draw-major: every setting on the first draw, then the next draw, so an interrupted run
    leaves a whole table over fewer draws; ``on_draw(results)`` is called after each
    (setting, draw). The linear test accuracies come last.
    """
    cifar_n = args.cifar_n if args.cifar_n and args.cifar_n.is_file() else None
    out: dict = {}
    todo = []
    for key, title, kind, rate in settings_of(args):
        if kind not in ("symmetric", "asymmetric") and (cifar_n is None or len(inputs.clean) != 50000):
            log(f"{title}: skipped (no CIFAR-10N file at {args.cifar_n}, or a subset)")
            continue
        todo.append((key, title, kind, rate))
        out[key] = {"title": title, "draws": {}, "probe": {}, "noise": []}
    for seed in args.seed_list:
        for key, title, kind, rate in todo:
            entry = out[key]
            noisy = noisy_labels(inputs.clean, kind, rate, seed, cifar_n)
            trusted = draw_trusted(len(noisy), args.trusted, seed)
            keep = np.ones(len(noisy), bool)
            keep[trusted] = False
            entry["noise"].append(float((noisy[keep] != inputs.clean[keep]).mean()))
            inputs_key = _input_hash(inputs.train, noisy, trusted, inputs.clean)
            results = {}
            for name in args.peer_list:
                results[name] = run_peer(name, inputs.train, noisy, trusted, inputs.clean, seed=seed,
                                         cache=None if args.no_cache else args.cache, inputs_key=inputs_key,
                                         knn_cache=args.cache)
                r = results[name]
                log(f"{title}, draw {seed}, {name:<14} {100 * r['label_acc']:6.2f}  {r['seconds']:7.1f} s"
                    + ("  (cached)" if r.get("cached") else "") + (f"  {compact(r['info'])}" if r["info"] else ""))
            entry["draws"][seed] = results
            if on_draw is not None:
                on_draw(out)
    if args.probe_iters > 0:
        for key, entry in out.items():
            best = best_peer(entry["draws"])
            for seed in args.probe_seed_list:
                for name in dict.fromkeys(("default", best)):
                    r = entry["draws"].get(seed, {}).get(name)
                    if r is None or r["labels"] is None:
                        continue
                    acc = cached_probe(inputs, np.asarray(r["labels"]), args)
                    entry["probe"].setdefault(name, {})[seed] = acc
                    log(f"{entry['title']}, draw {seed}, linear test accuracy on {name}'s labels: {100 * acc:.2f}")
            if on_draw is not None:
                on_draw(out)
    return out


def compact(info: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.items() if not isinstance(v, dict))


# -- tables -------------------------------------------------------------------------------------------


def done(results: dict) -> list[dict]:
    """The settings with at least one finished draw."""
    return [e for e in results.values() if e["draws"]]


def mean_acc(entry: dict, peer: str) -> float | None:
    values = [d[peer]["label_acc"] for d in entry["draws"].values() if peer in d]
    return float(np.mean(values)) if values else None


def best_peer(draws: dict) -> str:
    """The non-default peer with the highest mean label accuracy over ``draws``."""
    names = [p for p in OTHERS if all(p in d for d in draws.values())]
    return max(names, key=lambda p: np.mean([d[p]["label_acc"] for d in draws.values()])) if names else "default"


def paired(entry: dict, a: str, b: str) -> tuple[float, float, int, int]:
    """Mean and std (over draws) of ``a − b`` in points, draws where a > b, number of draws."""
    diffs = [100 * (d[a]["label_acc"] - d[b]["label_acc"]) for d in entry["draws"].values() if a in d and b in d]
    if not diffs:
        return float("nan"), float("nan"), 0, 0
    return float(np.mean(diffs)), float(np.std(diffs)), sum(x > 0 for x in diffs), len(diffs)


def pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def accuracy_table(results: dict, peer_list: list[str]) -> tuple[list[str], list[list[str]]]:
    head = (["setting", "noise", "draws"] + [f"**{p}**" if p == "default" else p for p in peer_list]
            + ["best peer", "default − best peer"])
    body = []
    for entry in done(results):
        best = best_peer(entry["draws"])
        row = [entry["title"], f"{100 * np.mean(entry['noise']):.1f}%", str(len(entry["draws"]))]
        for p in peer_list:
            acc = mean_acc(entry, p)
            row.append(f"**{pct(acc)}**" if p == "default" else pct(acc))
        diff = paired(entry, "default", best) if "default" in peer_list and best != "default" else None
        row += [best, f"{diff[0]:+.2f} ± {diff[1]:.2f}" if diff and diff[3] else "—"]
        body.append(row)
    return head, body


def probe_table(results: dict) -> tuple[list[str], list[list[str]]]:
    head = ["setting", "default: linear test acc", "best peer", "best peer: linear test acc"]
    body = []
    for entry in done(results):
        if not entry["probe"]:
            continue
        best = best_peer(entry["draws"])
        d = entry["probe"].get("default", {})
        b = entry["probe"].get(best, {})
        body.append([entry["title"], pct(float(np.mean(list(d.values())))) if d else "—", best,
                     pct(float(np.mean(list(b.values())))) if b else "—"])
    return head, body


def time_table(results: dict, peer_list: list[str]) -> tuple[list[str], list[list[str]]]:
    head = ["peer", "mean wall time (s)", "min", "max", "runs timed"]
    body = []
    for p in peer_list:
        if p == "given":
            continue
        times = [d[p]["seconds"] for e in done(results) for d in e["draws"].values() if p in d]
        if times:
            body.append([p, f"{np.mean(times):.1f}", f"{min(times):.1f}", f"{max(times):.1f}", str(len(times))])
    return head, body


def choices_table(results: dict) -> tuple[list[str], list[list[str]]]:
    head = ["setting", "cleanlab C", "cleanlab flagged", "knn (k, rounds)", "trusted-probe C", "fc-logistic C"]
    body = []
    for entry in done(results):
        def per_draw(peer: str, fmt) -> str:
            vals = [fmt(d[peer]["info"]) for d in entry["draws"].values() if peer in d]
            return " / ".join(vals) if vals else "—"
        body.append([entry["title"], per_draw("cleanlab", lambda i: f"{i['C']:g}"),
                     per_draw("cleanlab", lambda i: f"{i['flagged']:,}"),
                     per_draw("knn", lambda i: f"({i['k']}, {i['rounds']})"),
                     per_draw("trusted-probe", lambda i: f"{i['C']:g}"),
                     per_draw("fc-logistic", lambda i: f"{i['C']:g}")])
    return head, body


def verdicts(results: dict) -> list[str]:
    """One "where we win / where we lose" sentence per setting, from the paired per-draw differences.

    A peer the default beats on some draws and loses to on others is a tie.
    """
    lines = []
    for entry in done(results):
        if "default" not in next(iter(entry["draws"].values())):
            continue
        groups: dict[str, list[tuple[float, str]]] = {"wins": [], "ties": [], "loses": []}
        for p in OTHERS:
            m, s, better, n = paired(entry, "default", p)
            if n == 0:
                continue
            text = f"{p} ({m:+.2f} ± {s:.2f} points, default ahead in {better}/{n} draws)"
            group = "wins" if better == n else "loses" if better == 0 else "ties"
            groups[group].append((m, text))
        parts = [f"**{verb}** " + {"wins": "against ", "ties": "with ", "loses": "to "}[verb]
                 + "; ".join(t for _, t in sorted(items, reverse=True))
                 for verb, items in groups.items() if items]
        lines.append(f"- {entry['title']}: the default " + ", ".join(parts) + ".")
    return lines


def render(results: dict, args: argparse.Namespace, seconds: float, load_start: str, load_end: str) -> str:
    lines = ["## Peers on the same inputs", "",
             f"{timestamp()}, git {git_revision()}, {os.cpu_count()} CPU "
             f"cores shared with other jobs, {torch.get_num_threads()} torch thread(s), load average {load_start} → "
             f"{load_end}: wall times are upper bounds. Whole run {seconds / 60:.1f} min (cached runs cost nothing). "
             "Command (resumable: finished runs are read from the cache, and a change to `dmlp_plugin/` reruns "
             "only the default):", "", f"    {args.command}", "",
             "Label accuracy (%) on the non-trusted rows, mean over the finished draws of "
             f"{', '.join(map(str, args.seed_list))} (column \"draws\"; each draw its own noise, except "
             f"CIFAR-10N's fixed human labels, and its own {args.trusted:,}-sample trusted set, as in "
             "`purify_cifar10.py`). Inputs: the shared CIFAR-10 k-means features (512 dims; a linear probe on "
             "clean labels reaches 65.9%). "
             "\"default − best peer\": the mean ± std over draws of the paired difference.", "",
             *markdown_table(*accuracy_table(results, args.peer_list)), "",
             "The trusted-set probe ignores the noisy labels, so it scores the same in every setting of a draw "
             "(each draw's trusted set is the same across settings, as in `purify_cifar10.py`).", "",
             "Where we win / where we lose (the default against each peer; paired over draws, mean ± std of "
             "default − peer; a tie when the draws disagree):", "", *verdicts(results), ""]
    head, body = probe_table(results)
    if body:
        lines += [f"Linear test accuracy (%) of a classifier trained on each method's labels "
                  f"(`purify_cifar10.probe_accuracy`, {args.probe_iters} L-BFGS iterations, draw(s) "
                  f"{', '.join(map(str, args.probe_seed_list))}; the best peer is that setting's):", "",
                  *markdown_table(head, body), ""]
    lines += ["Wall time per run (s; one run = one setting and draw; a cached run keeps the time it took when it "
              "ran, under that moment's load, so compare times within one rerun of the table only roughly):", "",
              *markdown_table(*time_table(results, args.peer_list)), "",
              "What each peer chose (per draw):", "", *markdown_table(*choices_table(results)), "",
              "The peers (`benchmarks/peers.py`; every hyperparameter is chosen on the trusted rows, never on "
              "the other rows' clean labels; logistic regressions are full-batch L-BFGS in torch on standardised "
              "features with scikit-learn's objective Σ loss + ‖W‖²/(2C), checked against scikit-learn in "
              "`tests/test_peers.py`):", ""]
    lines += [f"- **{p}**: {DESCRIBE[p]}." for p in args.peer_list]
    return SECTION.wrap([*lines, ""])


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_protocol(p, seeds="0,1,2", seeds_help="draws (noise, trusted set, seeds), comma-separated",
                 cifar_n_keys=True, epochs=False)
    add_cifar(p)
    p.add_argument("--peers", default=",".join(PEER_NAMES), help=f"comma-separated, of {', '.join(PEER_NAMES)}")
    p.add_argument("--probe-iters", type=int, default=100, help="linear test accuracy's L-BFGS iterations (0 skips)")
    p.add_argument("--probe-seeds", default="0", help="draws on which the linear test accuracy is measured")
    add_threads(p, 1, "torch CPU threads (1 on a shared machine)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of finished runs and kNN neighbours")
    p.add_argument("--no-cache", action="store_true", help="rerun everything (the kNN neighbours stay cached)")
    add_write_results(p, SECTION)
    args = p.parse_args(argv)
    parse_protocol(args)
    args.probe_seed_list = comma_list(args.probe_seeds, int)
    args.peer_list = comma_list(args.peers)
    unknown = [q for q in args.peer_list if q not in peers.PEERS]
    if unknown:
        p.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEER_NAMES)}")
    args.command = command_line("peer_table.py", argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, load_start = time.perf_counter(), load_average()
    inputs = load_inputs(shared_dir(args.shared), args.cifar_root)
    if args.subset:
        inputs = subset(inputs, args.subset)
    if "cleanlab" in args.peer_list:
        importlib.import_module("cleanlab.filter")  # now, so its import time is in no peer's wall time
    if "default" in args.peer_list:
        warm_up()  # one tiny purification, so the first timed run pays no first-call overheads

    def write(partial: dict) -> None:
        if args.write_results:
            SECTION.write(render(partial, args, time.perf_counter() - t0, load_start, load_average()), RESULTS,
                          quiet=True)

    results = run_all(args, inputs, on_draw=write)
    load_end = load_average()
    print_table("Label accuracy (%), mean over draws", *accuracy_table(results, args.peer_list))
    print_table("Wall time (s)", *time_table(results, args.peer_list))
    for line in verdicts(results):
        print(line)
    if args.write_results:
        SECTION.write(render(results, args, time.perf_counter() - t0, load_start, load_end), RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
