"""Single-layer k-means features (Coates & Ng, 2011): unsupervised features on a CPU.

The pipeline, fitted without labels:

1. sample 6x6 patches; normalise each (subtract its mean, divide by ``sqrt(var + 10)``)
   and ZCA-whiten them (``eps = 0.1``);
2. run k-means (Lloyd, matmul distances) on the whitened patches;
3. encode every stride-1 patch of an image with the *triangle* activation
   ``f_k = max(0, mean_j(z_j) - z_k)``, ``z_k = ||patch - c_k||``;
4. sum-pool the activations over the four image quadrants (``4 K`` values an image);
5. reduce with PCA (fitted on the training images) and standardise each dimension.

The encoder never materialises all patches: images go through in small chunks whose
``(patches x K)`` distance block stays in cache, and the buffers are reused, so memory is
``O(chunk x patches x K)`` however many images there are. Step 3 is one GEMM per chunk
(the squared patch norms and centroid norms ride along as two extra columns, so the GEMM
returns squared distances directly) plus a few in-place passes; pooling is a second GEMM.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import ImageDataset
from ..errors import ConfigError, CorruptFileError, InputError, ShapeError
from ..io import atomic_write
from ..device import choose_device
from ._hardware import fast_bfloat16
from ..progress import Reporter, reporting
from .checkpoints import load_torch_file

__all__ = ["KMeansFeatures", "kmeans_features", "dataset_images"]


@dataclass(frozen=True)
class _Whitening:
    mean: torch.Tensor  # (P,) mean of normalised patches
    matrix: torch.Tensor  # (P, P) symmetric ZCA matrix


class KMeansFeatures:
    """Coates & Ng (2011) k-means features for ``uint8`` images, fitted without labels.

    Parameters
    ----------
    num_centroids : int
        ``K``, the dictionary size. The pooled code has ``4 K`` dimensions.
    output_dim : int or None
        Dimensions kept by PCA (capped at ``4 K`` and at the number of fitting images);
        ``None`` skips PCA and returns the standardised pooled code.
    patch_size : int
        Side of the square patches (6 in the paper).
    num_patches : int
        Patches sampled (uniformly over images and positions) to fit whitening and k-means.
    kmeans_iters : int
        Lloyd iterations.
    power : float
        Exponent applied to the pooled activations before PCA. ``1`` leaves them as the
        paper does; the default ``0.5`` (square root) evens out heavy-tailed dimensions
        and gained a few tenths of a point of probe accuracy on CIFAR-10 after PCA.
    pca_images : int
        At most this many images (a random subset) fit the PCA; they are encoded and kept
        in memory at ``4 K`` floats each, so this bounds :meth:`fit`'s memory.
    chunk_size : int
        Images encoded together. Small chunks keep the distance block in cache.
    norm_eps, whiten_eps : float
        Regularisers of patch normalisation (pixel units, 0–255) and ZCA whitening.
    num_threads : int, optional
        CPU worker threads encoding chunks in parallel (each with one torch thread);
        ``torch.get_num_threads()`` by default.
    matmul_dtype : {"auto", "float32", "bfloat16"}
        Input precision of the patch-centroid GEMM, the bulk of the work. ``"auto"``
        picks bfloat16 on CPUs with AMX tiles (4x faster GEMMs there; the pooled code
        moves by ~0.2% relative, far below what matters to a linear classifier) and
        float32 elsewhere. Everything after the GEMM is float32.
    device : str or torch.device, optional
        CUDA when available by default.
    seed : int
        Seeds patch sampling, k-means initialisation and the PCA subset.
    """

    def __init__(
        self,
        num_centroids: int = 1600,
        *,
        output_dim: int | None = 512,
        patch_size: int = 6,
        num_patches: int = 400_000,
        kmeans_iters: int = 10,
        power: float = 0.5,
        pca_images: int = 50_000,
        chunk_size: int = 4,
        norm_eps: float = 10.0,
        whiten_eps: float = 0.1,
        num_threads: int | None = None,
        matmul_dtype: str = "auto",
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        for name, value, low in (("num_centroids", num_centroids, 2), ("patch_size", patch_size, 1),
                                 ("num_patches", num_patches, 2), ("kmeans_iters", kmeans_iters, 1),
                                 ("pca_images", pca_images, 2), ("chunk_size", chunk_size, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if output_dim is not None and (not isinstance(output_dim, int) or output_dim < 1):
            raise ConfigError(f"output_dim must be a positive integer or None, got {output_dim!r}")
        if not power > 0:
            raise ConfigError(f"power must be > 0, got {power}")
        if num_patches < num_centroids:
            raise ConfigError(f"num_patches ({num_patches}) must be at least num_centroids ({num_centroids})")
        self.num_centroids = num_centroids
        self.output_dim = output_dim
        self.patch_size = patch_size
        self.num_patches = num_patches
        self.kmeans_iters = kmeans_iters
        self.power = float(power)
        self.pca_images = pca_images
        self.chunk_size = chunk_size
        self.norm_eps = float(norm_eps)
        self.whiten_eps = float(whiten_eps)
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"num_threads must be a positive integer, got {num_threads!r}")
        self.num_threads = num_threads or torch.get_num_threads()
        if matmul_dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"matmul_dtype must be 'auto', 'float32' or 'bfloat16', got {matmul_dtype!r}")
        self.matmul_dtype = matmul_dtype
        self.device = choose_device(device)
        self.seed = seed
        self.image_shape: tuple[int, int, int] | None = None
        self.whitening: _Whitening | None = None
        self.centroids: torch.Tensor | None = None  # (K, P) in whitened patch space
        self.pooled_mean: torch.Tensor | None = None  # (4K,)
        # output = (pooled ** power - pooled_mean) @ projection, or * scale when output_dim is None
        self.projection: torch.Tensor | None = None  # (4K, D) PCA basis scaled to unit variance
        self.scale: torch.Tensor | None = None  # (4K,) 1/std
        self.explained_variance_ratio: float | None = None

    # ------------------------------------------------------------------ public API
    @property
    def is_fitted(self) -> bool:
        return self.pooled_mean is not None

    @property
    def dim(self) -> int:
        """Dimensions of :meth:`transform`'s output (after fitting)."""
        self._check_fitted()
        return int(self.pooled_mean.shape[0] if self.projection is None else self.projection.shape[1])

    def fit(self, images: np.ndarray, *, progress: Reporter | None = None) -> "KMeansFeatures":
        """Fit whitening, centroids and PCA on ``(N, H, W, 3)`` uint8 images.

        ``progress``, when given, hears the clustering and the encoding for the PCA as
        stages (see :mod:`dmlp_plugin.progress`).
        """
        self._fit(images, progress=progress)
        return self

    def fit_transform(self, images: np.ndarray, *, progress: Reporter | None = None,
                      name: str = "training") -> np.ndarray:
        """:meth:`fit` then :meth:`transform`, encoding each image once when all of them fit the PCA.

        ``name`` names the images in progress stages.
        """
        code = self._fit(images, progress=progress, name=name)
        if code is not None:
            stage = _Counter(progress, f"k-means: projecting {name + ' ' if name else ''}images", 1, unit="GEMM")
            out = self._reduce(code).cpu().numpy()
            stage.add(1)
            stage.end()
            return out
        return self.transform(images, progress=progress, name=name)

    def transform(self, images: np.ndarray, *, progress: Reporter | None = None,
                  name: str = "") -> np.ndarray:
        """``(N, output_dim)`` float32 features of ``(N, H, W, 3)`` uint8 images, in input order.

        ``progress``, when given, hears one stage, ``k-means: encoding {name} images``.
        """
        self._check_fitted()
        images = self._check_images(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        stage = _Counter(progress, f"k-means: encoding {name + ' ' if name else ''}images", len(images))
        # project a few hundred images at a time: encoding is the cost, the GEMM with the
        # PCA basis is cheap, and the pooled block stays small
        step = max(self.chunk_size, 512 // self.chunk_size * self.chunk_size)
        for start in range(0, len(images), step):
            pooled = self._encode(images[start:start + step], stage)
            out[start:start + step] = self._reduce(self._power(pooled)).cpu().numpy()
        stage.end()
        return out

    def encode(self, images: np.ndarray, *, progress: Reporter | None = None) -> torch.Tensor:
        """The pooled triangle code, ``(N, 4 K)`` float32 on the device, before power and PCA."""
        if self.centroids is None:
            raise InputError("KMeansFeatures is not fitted: call fit() first")
        images = self._check_images(images)
        stage = _Counter(progress, "k-means: encoding images", len(images))
        code = self._encode(images, stage)
        stage.end()
        return code

    def save(self, path: str | Path) -> Path:
        """Write the fitted model (a torch file, atomically)."""
        self._check_fitted()
        path = Path(path)
        state = {"format": "dmlp-kmeans-features/1", "config": self._config(),
                 "image_shape": self.image_shape,
                 "whiten_mean": self.whitening.mean.cpu(), "whiten_matrix": self.whitening.matrix.cpu(),
                 "centroids": self.centroids.cpu(), "pooled_mean": self.pooled_mean.cpu(),
                 "projection": _cpu(self.projection), "scale": _cpu(self.scale),
                 "explained_variance_ratio": self.explained_variance_ratio}
        with atomic_write(path) as fh:
            torch.save(state, fh)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> "KMeansFeatures":
        """Read a model written by :meth:`save`."""
        state = load_torch_file(path)
        try:
            if state.get("format") != "dmlp-kmeans-features/1":
                raise KeyError("format")
            model = cls(**state["config"], device=device)
            dev = model.device
            model.image_shape = tuple(state["image_shape"])
            model.whitening = _Whitening(state["whiten_mean"].to(dev), state["whiten_matrix"].to(dev))
            model.centroids = state["centroids"].to(dev)
            model.pooled_mean = state["pooled_mean"].to(dev)
            model.projection = _to(state["projection"], dev)
            model.scale = _to(state["scale"], dev)
            model.explained_variance_ratio = state["explained_variance_ratio"]
        except (KeyError, AttributeError, TypeError, RuntimeError) as exc:
            raise CorruptFileError(f"{path} is not a k-means feature model written by KMeansFeatures.save(): {exc}") from exc
        return model

    def __repr__(self) -> str:
        return (f"KMeansFeatures(num_centroids={self.num_centroids}, output_dim={self.output_dim}, "
                f"power={self.power}, fitted={self.is_fitted})")

    # ------------------------------------------------------------------ fitting
    def _config(self) -> dict:
        return {"num_centroids": self.num_centroids, "output_dim": self.output_dim,
                "patch_size": self.patch_size, "num_patches": self.num_patches,
                "kmeans_iters": self.kmeans_iters, "power": self.power, "pca_images": self.pca_images,
                "chunk_size": self.chunk_size, "matmul_dtype": self.matmul_dtype,
                "norm_eps": self.norm_eps, "whiten_eps": self.whiten_eps, "seed": self.seed}

    def _fit(self, images: np.ndarray, *, progress: Reporter | None, name: str = "training"
             ) -> torch.Tensor | None:
        """Fit everything; return the powered code of all images when all of them fitted the PCA."""
        images = self._check_images(images, fitting=True)
        gen = torch.Generator().manual_seed(self.seed)
        patches = self._normalise(self._sample_patches(images, gen).to(self.device))
        self.whitening = self._fit_whitening(patches)
        patches = self._whiten(patches)
        clustering = _Counter(progress, f"k-means clustering ({self.kmeans_iters} passes over "
                              f"{self.num_patches:,} patches)", self.kmeans_iters * len(patches), unit="patches")
        self.centroids = _lloyd(patches, self.num_centroids, self.kmeans_iters, gen, report=clustering.add)
        clustering.end()
        del patches
        if len(images) > self.pca_images:
            subset = torch.randperm(len(images), generator=gen)[:self.pca_images].sort().values.numpy()
            stage = _Counter(progress, f"k-means: encoding {self.pca_images:,} images for the PCA", len(subset))
            code = self._power(self._encode(images[subset], stage))
        else:
            stage = _Counter(progress, f"k-means: encoding {name + ' ' if name else ''}images", len(images))
            code = self._power(self._encode(images, stage))
        stage.end()
        self._fit_pca(code, progress)
        return code if len(images) <= self.pca_images else None

    def _sample_patches(self, images: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        n, h, w, c = images.shape
        p = self.patch_size
        idx = torch.randint(0, n, (self.num_patches,), generator=gen).numpy()
        rows = torch.randint(0, h - p + 1, (self.num_patches,), generator=gen).numpy()
        cols = torch.randint(0, w - p + 1, (self.num_patches,), generator=gen).numpy()
        # fancy-index one (patch row, patch col) offset at a time: (num_patches, c) each,
        # never a (num_patches, p, p, c) temporary of int64 indices
        out = np.empty((self.num_patches, c, p, p), dtype=np.uint8)
        for i in range(p):
            for j in range(p):
                out[:, :, i, j] = images[idx, rows + i, cols + j]
        # (C, p, p) flattening matches F.unfold's channel-major patch layout
        return torch.from_numpy(out.reshape(self.num_patches, -1)).float()

    def _normalise(self, patches: torch.Tensor) -> torch.Tensor:
        patches = patches - patches.mean(1, keepdim=True)
        return patches.div_(patches.var(1, keepdim=True).add_(self.norm_eps).sqrt_())

    def _fit_whitening(self, patches: torch.Tensor) -> _Whitening:
        mean = patches.mean(0)
        centred = patches - mean
        cov = (centred.T @ centred).double() / (len(patches) - 1)
        evals, evecs = torch.linalg.eigh(cov)
        matrix = (evecs * (evals.clamp_min(0) + self.whiten_eps).rsqrt()) @ evecs.T
        return _Whitening(mean, matrix.float())

    def _whiten(self, patches: torch.Tensor) -> torch.Tensor:
        # W is symmetric, so (x - m) W == W (x - m) row-wise; addmm folds the mean in
        return torch.addmm(self.whitening.mean @ self.whitening.matrix, patches, self.whitening.matrix,
                           beta=-1)

    def _fit_pca(self, code: torch.Tensor, progress: Reporter | None = None) -> None:
        """PCA of the powered code, left unchanged (blocks are centred as they go)."""
        mean = code.mean(0)
        cov = torch.zeros(code.shape[1], code.shape[1], dtype=torch.float64, device=code.device)
        # (rows x 4K)ᵀ(rows x 4K): a minute or more for CIFAR-10 on a CPU, so it is a stage of its own
        stage = _Counter(progress, "k-means: PCA covariance", len(code), unit="rows")
        for block in code.split(8192):
            block = block - mean
            cov += (block.T @ block).double()
            stage.add(len(block))
        stage.end()
        cov /= max(len(code) - 1, 1)
        self.pooled_mean = mean
        if self.output_dim is None:
            self.projection = None
            self.scale = cov.diagonal().clamp_min(1e-12).rsqrt().float()
            self.explained_variance_ratio = 1.0
            return
        dim = min(self.output_dim, cov.shape[0], len(code))
        stage = _Counter(progress, "k-means: PCA components", 7, unit="steps")
        evals, evecs = _top_eigenpairs(cov, dim, torch.Generator().manual_seed(self.seed), report=stage.add)
        stage.end()
        # scaling each component by 1/sqrt(eigenvalue) standardises the output dimensions
        self.projection = (evecs * evals.clamp_min(1e-12).rsqrt()).float()
        self.scale = None
        self.explained_variance_ratio = float(evals.sum() / cov.diagonal().sum().clamp_min(1e-12))

    def _power(self, pooled: torch.Tensor) -> torch.Tensor:
        # activations are >= 0, so a plain power is the signed power
        return pooled if self.power == 1.0 else pooled.pow_(self.power)

    def _reduce(self, code: torch.Tensor) -> torch.Tensor:
        """Centre (in place) and project or scale a powered code."""
        code = code.sub_(self.pooled_mean)
        return code.mul_(self.scale) if self.projection is None else code @ self.projection

    # ------------------------------------------------------------------ encoding
    def _encode(self, images: np.ndarray, stage: "_Counter") -> torch.Tensor:
        n, h, w, _ = images.shape
        p = self.patch_size
        oh, ow = h - p + 1, w - p + 1
        k = self.num_centroids
        dev = self.device
        # [x, ||x||², 1] · [-2c, 1, ||c||²] = ||x - c||², so one GEMM gives squared distances
        c = self.centroids
        rhs = torch.cat([-2 * c, torch.ones(k, 1, device=dev), (c * c).sum(1, keepdim=True)], 1).T.contiguous()
        low = self.matmul_dtype == "bfloat16" or (self.matmul_dtype == "auto" and fast_bfloat16(dev))
        rhs = rhs.bfloat16() if low else rhs
        pool = _quadrant_pooling(oh, ow, dev)  # (4, oh*ow)
        out = torch.empty(n, 4 * k, device=dev)
        chunk = self.chunk_size
        local = threading.local()

        def encode_chunk(start: int) -> None:
            if not hasattr(local, "dist"):
                if dev.type == "cpu":
                    # one intra-op thread per worker: the workers share the cores, with no
                    # OpenMP barrier per small op (those stall badly on a busy machine)
                    torch.set_num_threads(1)
                local.dist = torch.empty(chunk * oh * ow, k, device=dev)
            xb = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).to(dev)
            b = len(xb)
            cols = F.unfold(xb.permute(0, 3, 1, 2).float(), p)  # (b, P, oh*ow)
            x = self._whiten(self._normalise(cols.transpose(1, 2).reshape(b * oh * ow, -1)))
            lhs = torch.cat([x, (x * x).sum(1, keepdim=True), torch.ones(len(x), 1, device=dev)], 1)
            z = local.dist[:len(x)]
            if low:
                z.copy_(torch.mm(lhs.bfloat16(), rhs))
            else:
                torch.mm(lhs, rhs, out=z)
            z.clamp_min_(0).sqrt_()
            # triangle activation max(0, mean_k z - z_k), written over the distances
            torch.sub(z.mean(1, keepdim=True), z, out=z).clamp_min_(0)
            torch.matmul(pool, z.view(b, oh * ow, k), out=out[start:start + b].view(b, 4, k))
            stage.add(b)

        starts = range(0, n, chunk)
        workers = self.num_threads if dev.type == "cpu" else 1
        if workers == 1:
            for start in starts:
                encode_chunk(start)
        else:
            threads = torch.get_num_threads()
            try:
                with ThreadPoolExecutor(workers) as pool_:
                    # list() re-raises the first error of any chunk
                    list(pool_.map(encode_chunk, starts))
            finally:
                # the workers' set_num_threads(1) may reach process-wide settings (MKL's)
                torch.set_num_threads(threads)
        return out

    # ------------------------------------------------------------------ checks
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise InputError("KMeansFeatures is not fitted: call fit() first")

    def _check_images(self, images: np.ndarray, *, fitting: bool = False) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            raise InputError(f"images must be a numpy uint8 array (N, H, W, 3), got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise InputError(f"images must be uint8 (N, H, W, 3), got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[3] != 3:
            raise ShapeError(f"images must be (N, H, W, 3) RGB, got shape {images.shape}")
        if len(images) == 0:
            raise ShapeError("images is empty")
        if min(images.shape[1:3]) < self.patch_size + 1:
            raise ShapeError(f"images of {images.shape[1]}x{images.shape[2]} are too small for "
                             f"{self.patch_size}x{self.patch_size} patches and 4-quadrant pooling")
        if fitting:
            self.image_shape = tuple(images.shape[1:])
        elif self.image_shape is not None and tuple(images.shape[1:]) != self.image_shape:
            raise ShapeError(f"images are {images.shape[1:]} but the model was fitted on {self.image_shape}; "
                             "resize them to the same size")
        return images


def kmeans_features(
    train: ImageDataset,
    *others: ImageDataset,
    num_centroids: int = 1600,
    output_dim: int | None = 512,
    power: float = 1.0,
    image_size: int = 32,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | Reporter = True,
    device: str | torch.device | None = None,
    seed: int = 0,
    **options: Any,
) -> list[np.ndarray]:
    """k-means features of ``train`` (which fits the model) and of each of ``others``.

    Parameters
    ----------
    train, *others : ImageDataset
        In-memory datasets (CIFAR, arrays) are used at their size; others are read image
        by image and resized to ``image_size`` (see :func:`dataset_images`).
    num_centroids, output_dim, power, device, seed, **options
        Passed to :class:`KMeansFeatures`.
    cache, cache_dir
        As in :func:`~dmlp_plugin.features.extract.extract_features`: the result is
        stored under a key of the datasets' fingerprints and every option, so a rerun
        returns at once.
    progress : bool or Reporter
        Report the clustering and the encoding of each dataset as stages: ``True`` on
        stderr (bars on a terminal, plain lines in a log), or to a
        :class:`~dmlp_plugin.progress.Reporter`.

    Returns
    -------
    list of np.ndarray
        ``(N_i, output_dim)`` float32 features, ``train`` first, each in index order.
    """
    from .cache import FeatureCache, cache_key

    model = KMeansFeatures(num_centroids, output_dim=output_dim, power=power, device=device, seed=seed,
                           **options)
    names = [f"split{i}" for i in range(1 + len(others))]
    parts = {"method": "kmeans", "datasets": [d.fingerprint() for d in (train, *others)],
             "config": model._config(), "image_size": image_size}
    store = FeatureCache(cache_dir) if cache else None
    key = cache_key(parts)
    found = store.get(key, names) if store is not None else None
    if found is not None:
        return found
    with reporting(progress) as report:
        shown = _image_names(train, *others)
        arrays = [model.fit_transform(dataset_images(train, image_size, progress=report, name=shown[0]),
                                      progress=report, name=shown[0])]
        arrays += [model.transform(dataset_images(d, image_size, progress=report, name=name), progress=report,
                                   name=name) for d, name in zip(others, shown[1:])]
    if store is not None:
        store.put(key, names, arrays, parts)
    return arrays


def dataset_images(dataset: ImageDataset, image_size: int = 32, *, progress: Reporter | None = None,
                   name: str = "") -> np.ndarray:
    """``(N, H, W, 3)`` uint8 images of a dataset: its in-memory array when it has one,
    else each image loaded and resized (bicubic) to ``image_size`` x ``image_size``
    (a ``k-means: reading {name} images`` stage for ``progress``)."""
    images = getattr(dataset, "images", None)
    if images is not None:
        return np.asarray(images)
    from PIL import Image

    out = np.empty((len(dataset), image_size, image_size, 3), dtype=np.uint8)
    stage = _Counter(progress, f"k-means: reading {name + ' ' if name else ''}images", len(dataset))
    for i in range(len(dataset)):
        image = dataset.load_image(i).convert("RGB")
        out[i] = np.asarray(image.resize((image_size, image_size), Image.BICUBIC))
        stage.add(1)
    stage.end()
    return out


def _image_names(*datasets: ImageDataset) -> list[str]:
    """How progress stages name each dataset's images: its split (``train``, ``test``)
    when the splits differ, else its position."""
    splits = [str(getattr(d, "split", "") or "") for d in datasets]
    if all(splits) and len(set(splits)) == len(splits):
        return splits
    return ["training"] + [f"set {i + 2}" for i in range(len(datasets) - 1)]


class _Counter:
    """One progress stage counted from several threads: ``add(n)`` when ``n`` more units
    are done. Silent without a reporter."""

    def __init__(self, report: Reporter | None, stage: str, total: int, unit: str = "images") -> None:
        self.report, self.stage, self.total, self.unit = report, stage, total, unit
        self.done = 0
        self.lock = threading.Lock()
        if report is not None:
            report(stage, 0, total, unit=unit)

    def add(self, n: int) -> None:
        if self.report is None:
            return
        with self.lock:
            self.done += n
            done = self.done
        self.report(self.stage, done, self.total, unit=self.unit)

    def end(self) -> None:
        if self.report is not None:
            self.report.end(self.stage)


def _lloyd(x: torch.Tensor, k: int, iters: int, gen: torch.Generator,
           report: Callable[[int], None] | None = None) -> torch.Tensor:
    """k-means (Lloyd) on the rows of ``x``; empty clusters restart at random rows.
    ``report(n)`` hears each block of ``n`` rows assigned."""
    n = len(x)
    centroids = x[torch.randperm(n, generator=gen)[:k].to(x.device)].clone()
    # blocks of rows keep the (rows x k) distance matrix to ~100 MB
    block = max(1, (1 << 25) // k)
    assign = torch.empty(n, dtype=torch.long, device=x.device)
    for _ in range(iters):
        half_norm = 0.5 * (centroids * centroids).sum(1)
        for start in range(0, n, block):
            # argmin ||x - c||² == argmax (x·c - ||c||²/2); ||x||² is common to every c
            scores = torch.addmm(half_norm, x[start:start + block], centroids.T, beta=-1)
            assign[start:start + block] = scores.argmax(1)
            if report is not None:
                report(len(scores))
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        centroids = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        if empty.any():
            refill = torch.randint(0, n, (int(empty.sum()),), generator=gen).to(x.device)
            centroids[empty] = x[refill]
    return centroids


def _quadrant_pooling(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``(4, h*w)`` 0/1 matrix summing a map over its four quadrants (row-major order)."""
    rh, cw = math.ceil(h / 2), math.ceil(w / 2)
    rows = torch.arange(h, device=device).unsqueeze(1) >= rh
    cols = torch.arange(w, device=device).unsqueeze(0) >= cw
    quadrant = (rows.long() * 2 + cols.long()).reshape(-1)
    return F.one_hot(quadrant, 4).T.float().contiguous()


def _top_eigenpairs(sym: torch.Tensor, k: int, gen: torch.Generator, *, iters: int = 6,
                    report: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest eigenvalues (descending) and eigenvectors of a PSD matrix.

    A full ``eigh`` of a 6400x6400 covariance takes minutes on two cores; block subspace
    iteration with some oversampling, finished by Rayleigh–Ritz, needs a handful of
    GEMMs and converges fast because pooled-code spectra decay steeply. ``report(n)`` hears
    each of the ``iters + 1`` steps (the iterations, then Rayleigh–Ritz) as it is done.
    """
    report = report or (lambda n: None)
    n = sym.shape[0]
    if n <= 2 * k or n <= 1024:
        evals, evecs = torch.linalg.eigh(sym)
        report(iters + 1)
        return evals.flip(0)[:k], evecs.flip(1)[:, :k]
    width = min(n, k + max(64, k // 4))
    basis = torch.randn(n, width, generator=gen, dtype=sym.dtype).to(sym.device)
    for _ in range(iters):
        basis, _ = torch.linalg.qr(sym @ basis)
        report(1)
    evals, small = torch.linalg.eigh(basis.T @ sym @ basis)
    evals, small = evals.flip(0)[:k], small.flip(1)[:, :k]
    report(1)
    return evals, basis @ small


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.cpu()


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)
