"""``dmlp pretrain``: SimCLR pretraining whose checkpoint ``dmlp features`` reads directly.

    dmlp pretrain --dataset cifar10 --root ~/data -o simclr_r18.pt          # GPU: hours
    dmlp features --dataset cifar10 --root ~/data --checkpoint simclr_r18.pt -o feats.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..features.config import SimCLRConfig

    d = SimCLRConfig()
    p = subparsers.add_parser(
        "pretrain", help="pretrain a backbone with SimCLR (GPU recommended)",
        description="Train a backbone (default ResNet-18 with the CIFAR stem) with SimCLR on a "
        "dataset's images, without labels. The checkpoint is written after every epoch; rerunning "
        "the same command resumes it (raise --epochs to extend a finished run). The defaults are "
        f"the GPU recipe ({d.epochs} epochs of batch {d.batch_size}): see docs/features.md for times.")
    p.add_argument("--dataset", required=True, metavar="NAME", help="cifar10, cifar100, clothing1m or imagefolder")
    p.add_argument("--root", type=Path, required=True, metavar="DIR", help="the dataset's folder")
    p.add_argument("--split", default="train", help="split to train on (default: train)")
    p.add_argument("--backbone", default=d.backbone, help=f"backbone name (default: {d.backbone}; also resnet50-cifar)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"(default: {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default: {d.batch_size})")
    p.add_argument("--optimizer", choices=("lars", "sgd"), default=d.optimizer, help=f"(default: {d.optimizer})")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="base learning rate per 256 images (default: 0.4 for lars, 0.3 for sgd)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default: {d.weight_decay})")
    p.add_argument("--temperature", type=float, default=d.temperature, help=f"NT-Xent temperature (default: {d.temperature})")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help=f"(default: {d.warmup_epochs})")
    p.add_argument("--image-size", type=int, default=d.image_size, help=f"crop size (default: {d.image_size})")
    p.add_argument("--workers", type=int, default=d.num_workers, help=f"data-loading processes (default: {d.num_workers})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"(default: {d.seed})")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="checkpoint file (.pt)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the checkpoint exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..features.config import SimCLRConfig
    from ..features.simclr import pretrain_simclr
    from .console import console

    if args.output.is_dir():
        raise InputError(f"--output {args.output} is a folder; give a file name")
    config = SimCLRConfig(backbone=args.backbone, epochs=args.epochs, batch_size=args.batch_size,
                          optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                          temperature=args.temperature, warmup_epochs=args.warmup_epochs,
                          image_size=args.image_size, num_workers=args.workers, seed=args.seed)
    dataset = load_dataset(args.dataset, args.root, args.split)
    result = pretrain_simclr(dataset, config, checkpoint=args.output, resume=not args.no_resume,
                             device=args.device)
    if result.history:
        console.print(f"NT-Xent loss: first epoch {result.history[0]:.4f}, last {result.history[-1]:.4f} "
                      f"({len(result.history)} epochs)", highlight=False)
    console.print(f"checkpoint: {result.checkpoint}  (dmlp features --checkpoint {result.checkpoint} ...)",
                  highlight=False)
    return 0
