"""Train toylnl's softmax classifier: ``python -m toylnl.train --labels labels.txt``."""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from .data import NoisyBlobs, load_label_file, make_blobs


def train(dataset: NoisyBlobs, num_classes: int, *, epochs: int = 50, lr: float = 0.1) -> np.ndarray:
    """Full-batch softmax regression on the dataset's (possibly noisy) labels; returns weights."""
    x = np.concatenate([dataset.data, np.ones((len(dataset), 1), np.float32)], axis=1)
    y = np.eye(num_classes)[np.asarray(dataset.train_noisy_labels)]
    w = np.zeros((x.shape[1], num_classes))
    for _ in range(epochs):
        logits = x @ w
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= lr * x.T @ (p - y) / len(x)
    return w


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(prog="toylnl.train")
    parser.add_argument("--labels", help="label file, one integer per line (default: clean labels)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1, help="split seed")
    args = parser.parse_args(argv)
    features, clean = make_blobs(args.num_samples, args.num_classes)
    labels = load_label_file(args.labels) if args.labels else clean
    w = train(NoisyBlobs(features, labels, split_seed=args.seed), args.num_classes)
    val = NoisyBlobs(features, clean, train=False, split_seed=args.seed)
    x = np.concatenate([val.data, np.ones((len(val), 1), np.float32)], axis=1)
    accuracy = float(((x @ w).argmax(1) == np.asarray(val.train_noisy_labels)).mean())
    print(f"validation accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
