"""``dmlp demo``: purify a real feature set shipped inside the package, no download.

The embedded set holds 8,000 CIFAR-10 training images (800 a class) as ImageNet
EfficientNet-Lite0 features reduced to 128 principal components (``benchmarks/demo_data.py``
builds it), with their clean labels. The demo adds symmetric noise, purifies, and reports
label accuracy.
"""

from __future__ import annotations

import argparse
from importlib import resources

import numpy as np

from ..errors import CorruptFileError

__all__ = ["register", "load_demo_data"]


def load_demo_data() -> dict[str, np.ndarray]:
    """The embedded CIFAR-10 subset: ``features`` (8000, 128) float16, ``labels``,
    ``indices`` (into the CIFAR-10 training order) and ``classes``."""
    path = resources.files("dmlp_plugin") / "data_files" / "cifar10_demo.npz"
    try:
        with resources.as_file(path) as p, np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"the embedded demo data could not be read ({exc}); reinstall dmlp-plugin") from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    from .purify import add_config_options

    p = subparsers.add_parser("demo", help="purify an embedded CIFAR-10 feature set (no download)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--noise", type=float, default=0.5, help="symmetric noise rate (default 0.5)")
    p.add_argument("--trusted", type=int, default=500, help="size of the trusted set (default 500)")
    add_config_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("-o", "--output", metavar="OUT.npz", help="also save the result")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import purify_dataset
    from ..noise import make_noisy_labels
    from .console import console
    from .purify import config_from_args, summary_table

    from ..io import check_output_path

    output = None if args.output is None else check_output_path(args.output, "--output", suffixes=(".npz",))
    data = load_demo_data()
    clean = data["labels"].astype(np.int64)
    noise = make_noisy_labels(clean, kind="symmetric", rate=args.noise, convention="dividemix",
                              seed=args.seed)
    # A separate stream from the noise, so the trusted samples are an unbiased draw.
    trusted = np.random.default_rng(args.seed + 1000).choice(len(clean), args.trusted, replace=False)
    result = purify_dataset(data["features"], noise.noisy_labels, val_indices=trusted,
                            val_labels=clean[trusted], clean_labels=clean,
                            config=config_from_args(args), device=args.device, seed=args.seed,
                            progress=not args.no_progress, threads=args.threads,
                            class_names=[str(c) for c in data["classes"]])
    if output is not None:
        result.save(output)
    extra = {"noise": f"symmetric {args.noise:.0%} (DivideMix convention), "
                      f"{noise.realised_rate:.1%} of labels wrong"}
    console.print(summary_table(result, title="dmlp demo: CIFAR-10, EfficientNet-Lite0 features",
                                output=output, extra=extra))
    return 0
