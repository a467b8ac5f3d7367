"""Data and the stated tolerance shared by the streaming and distributed purification tests."""

from __future__ import annotations

import numpy as np


def planted(n=6000, d=48, c=10, noise=0.3, seed=0, spread=0.6):
    """Overlapping planted classes (the labels are recoverable, but not all of them) with
    symmetric noise and a trusted set."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * spread
    clean = rng.integers(0, c, n)
    x = (centres[clean] + rng.normal(size=(n, d)) * 1.5).astype(np.float32)
    noisy = clean.copy()
    flip = rng.random(n) < noise
    noisy[flip] = rng.integers(0, c, int(flip.sum()))
    trusted = rng.choice(n, 300, replace=False)
    return x, clean, noisy, trusted


def assert_agree(chunked, whole, atol=5e-3):
    """The stated tolerance: soft labels within ``atol``; a hard label may differ only at a
    near tie, where the two top classes of the in-memory soft label are within ``2·atol``,
    and on at most 0.1% of rows. Summing in another order changes float32 rounding, and the
    logistic candidate's L-BFGS, stopped after 20 iterations, carries that to about 4e-3
    (measured: two processes against one, 3 of 6,000 labels at gaps below 5e-3)."""
    np.testing.assert_allclose(chunked.soft_labels, whole.soft_labels, atol=atol)
    differ = np.flatnonzero(chunked.labels != whole.labels)
    top2 = np.sort(whole.soft_labels[differ], 1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] <= 2 * atol), differ
    assert len(differ) <= len(whole.labels) // 1000
