"""Compare purifier configurations on *tuning* draws, kept apart from the benchmark's.

The benchmark (``purify_cifar10.py``) reports noise draws 0-4. Choosing a default by
those same draws would tune to them, so settings are chosen here, on draws 100 and up
(their own noise, trusted set and engine seed), and only then re-measured by the
benchmark. Prints, per noise setting, the mean label accuracy (%) of each configuration
on the non-trusted rows, and each one's mean over settings.

    OMP_NUM_THREADS=1 python benchmarks/tuning.py --config "default=PurifyConfig()" \\
        --config "wd1e-3=PurifyConfig(logistic_weight_decay=1e-3)" --draws 100,101,102
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from driver import add_cifar, add_shared, comma_list, shared_dir
from purify_cifar10 import NUM_CLASSES, draw_trusted, load_inputs, noisy_labels

from dmlp_plugin import PurifyConfig, purify_dataset

SETTINGS = (  # (name, kind, rate)
    ("sym 20%", "symmetric", 0.2), ("sym 50%", "symmetric", 0.5), ("sym 80%", "symmetric", 0.8),
    ("sym 90%", "symmetric", 0.9), ("asym 20%", "asymmetric", 0.2), ("asym 40%", "asymmetric", 0.4),
    ("C10N aggre", "aggre_label", 0.0), ("C10N rand1", "random_label1", 0.0),
    ("C10N worst", "worse_label", 0.0),
)


def evaluate(features: np.ndarray, clean: np.ndarray, config: PurifyConfig | str, kind: str, rate: float,
             draw: int, cifar_n: Path) -> float:
    noisy = noisy_labels(clean, kind, rate, draw, cifar_n)
    trusted = draw_trusted(len(clean), 1000, draw)
    rest = np.setdiff1d(np.arange(len(clean)), trusted)
    if config == "given":
        labels = noisy
    elif isinstance(config, str):  # a peer from peers.py
        import peers

        labels = peers.PEERS[config](features, noisy, trusted, clean[trusted]).labels
    else:
        labels = purify_dataset(features, noisy, threads=None, val_indices=trusted, val_labels=clean[trusted],
                                num_classes=NUM_CLASSES, config=config, seed=draw, device="cpu").labels
    return 100 * float((labels[rest] == clean[rest]).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", default=[], metavar="NAME=EXPR",
                   help="a PurifyConfig expression, or peer:NAME from peers.PEERS, or 'given'")
    p.add_argument("--draws", default="100,101,102")
    p.add_argument("--settings", default=None, help="comma-separated setting names (default: all)")
    add_shared(p)
    add_cifar(p)
    args = p.parse_args(argv)
    inputs = load_inputs(shared_dir(args.shared), args.cifar_root)
    configs = {}
    for item in args.config or ["default=PurifyConfig()"]:
        name, _, expr = item.partition("=")
        configs[name] = (expr if expr == "given" else expr.split(":", 1)[1] if expr.startswith("peer:")
                         else eval(expr, {"PurifyConfig": PurifyConfig}))
    draws = comma_list(args.draws, int)
    chosen = [s for s in SETTINGS if args.settings is None or s[0] in comma_list(args.settings)]
    table: dict[str, dict[str, float]] = {name: {} for name in configs}
    for setting, kind, rate in chosen:
        for name, config in configs.items():
            start = time.perf_counter()
            accs = [evaluate(inputs.train, inputs.clean, config, kind, rate, d, args.cifar_n) for d in draws]
            table[name][setting] = float(np.mean(accs))
            print(f"{setting:<11} {name:<22} {table[name][setting]:6.2f}  "
                  f"({', '.join(f'{a:.2f}' for a in accs)})  {time.perf_counter() - start:5.1f} s", flush=True)
    names = [s[0] for s in chosen]
    print("\n| config | " + " | ".join(names) + " | mean |")
    print("|---" * (len(names) + 2) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[s]:.2f}" for s in names) + f" | {np.mean(list(row.values())):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
