"""Opening the images behind a purified file, and making the thumbnails a page inlines.

``open_images`` takes a folder in any of the forms the package reads: an ImageFolder
(``root/<class>/<image>``), the CIFAR python folders (``cifar-10-batches-py`` or
``cifar-100-python``, or the flat folder of pickles DivideMix reads), CDR's ``.npy``
layout (``data/cifar10/train_images.npy``), or Clothing1M's annotation files. The form
is told from what the folder holds unless ``dataset`` names it.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import CorruptFileError, MissingFileError

if TYPE_CHECKING:  # ..data loads torch, which `dmlp --help` must not wait for
    from ..data import ArrayDataset, ImageDataset

__all__ = ["open_images", "thumbnail_uri", "thumbnail_uri_bytes", "image_location", "CIFAR10_CLASSES", "THUMBNAIL_SIZE"]

#: Longest side of a thumbnail, in pixels; smaller images are inlined as they are.
THUMBNAIL_SIZE = 128

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def open_images(root: str | os.PathLike, dataset: str | None = None, split: str = "train") -> ImageDataset:
    """The images under ``root``, in the dataset's index order.

    Parameters
    ----------
    root
        The dataset's folder.
    dataset
        ``"cifar10"``, ``"cifar100"``, ``"clothing1m"``, ``"imagefolder"`` or ``"cdr-npy"``;
        told from the folder's contents when omitted.
    split
        ``"train"`` or ``"test"`` (for Clothing1M, one of its splits).

    Raises
    ------
    MissingFileError, CorruptFileError, InputError
        The folder is absent, or holds none of the forms above, or a file is unreadable.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"image folder not found: {root}")
    name = dataset or _detect(root)
    if name == "cdr-npy":
        return _cdr_npy(root, split)
    from ..data import load_dataset

    return load_dataset(name, root, split)


def _detect(root: Path) -> str:
    flat_pickles = (root / "data_batch_1").is_file() and (root / "batches.meta").is_file()  # DivideMix's folder
    if (root / "cifar-10-batches-py").is_dir() or flat_pickles:
        return "cifar10"
    if (root / "cifar-100-python").is_dir() or (root / "train").is_file() and (root / "meta").is_file():
        return "cifar100"
    if (root / "data" / "cifar10" / "train_images.npy").is_file():
        return "cdr-npy"
    if any((root / sub / "noisy_label_kv.txt").is_file() for sub in ("", "annotations")):
        return "clothing1m"
    return "imagefolder"


def _cdr_npy(root: Path, split: str) -> ArrayDataset:
    """CIFAR-10 as CDR reads it: ``(N, 3072)`` channel-planar uint8 rows and ``(N,)`` labels."""
    folder = root / "data" / "cifar10"
    try:
        rows = np.load(folder / f"{split}_images.npy", allow_pickle=False)
        labels = np.load(folder / f"{split}_labels.npy", allow_pickle=False)
    except FileNotFoundError as exc:
        raise MissingFileError(f"CDR's CIFAR-10 layout in {root}: {exc.filename} is missing") from None
    except ValueError as exc:
        raise CorruptFileError(f"cannot read CDR's CIFAR-10 layout in {folder}: {exc}") from exc
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        raise CorruptFileError(f"{folder / f'{split}_images.npy'}: expected (N, 3072) uint8, got "
                               f"{rows.dtype} {rows.shape}")
    images = np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    from ..data import ArrayDataset

    return ArrayDataset(images, labels, CIFAR10_CLASSES, name=f"cdr-npy:{split}")


def thumbnail_uri(image: Image.Image, size: int = THUMBNAIL_SIZE) -> str:
    """A ``data:`` URI of ``image``: PNG (lossless) when it fits in ``size``, else a JPEG
    shrunk to ``size`` on its longest side (a photo's PNG would be several times larger)."""
    image = image.convert("RGB")
    buffer = io.BytesIO()
    if max(image.size) <= size:
        image.save(buffer, format="PNG", optimize=True)
        kind = "png"
    else:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        image.save(buffer, format="JPEG", quality=85)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def thumbnail_uri_bytes(size: int = THUMBNAIL_SIZE, image_size: tuple[int, int] | None = None) -> int:
    """An upper bound of ``len(thumbnail_uri(image, size))``, for any image or for one of
    ``image_size`` (width, height) when it is known. The PNG of ``w`` by ``h`` RGB pixels
    is their bytes, a filter byte a row, deflate's few bytes a block and the chunks'
    headers; a JPEG (an image larger than ``size``) of at most ``size`` by ``size`` pixels
    is smaller than their PNG (on noise, a third). Base64 makes 4 characters of 3 bytes."""
    width, height = image_size if image_size and max(image_size) <= size else (size, size)
    raw = 3 * width * height + height
    encoded = raw + raw // 100 + 1024
    return len("data:image/jpeg;base64,") + 4 * -(-encoded // 3)


def image_location(images: ImageDataset, index: int) -> str:
    """Where row ``index``'s image lives: its file for file-backed datasets, else
    ``name[index]`` (CIFAR's images sit in batch files, one array each)."""
    files = getattr(images, "files", None)
    root = getattr(images, "root", None)
    if files is not None and root is not None:
        return str(Path(root) / files[index])
    return f"{images.name}[{index}]"
