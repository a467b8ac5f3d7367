"""Reading inputs and writing outputs, atomically.

Every file dmlp-plugin writes goes through :func:`atomic_write`: the content lands in a
temporary file in the destination folder and is renamed over the target only once it is
complete, so an interrupted or failed run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from .argument_names import shown
from .errors import CorruptFileError, InputError, MissingFileError

__all__ = [
    "atomic_write",
    "check_output_path",
    "load_array",
    "array_checksum",
    "export_labels",
    "EXPORT_FORMATS",
]

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_path(path: PathLike, what: str = "output", *, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work, an output path that cannot be written.

    :func:`atomic_write` creates missing folders, so the nearest existing ancestor must be
    a folder this process may write in; ``path`` itself must not be a folder; with
    ``suffixes`` its extension must be one of them. Raises :class:`InputError` naming
    ``what`` (as :func:`~dmlp_plugin.argument_names.shown` calls it).
    """
    path = Path(path)
    name = shown(what)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{name} must end in {' or '.join(suffixes)}, got {path.name!r}")
    if path.is_dir():
        raise InputError(f"{name} {path} is a folder; give a file name inside it")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{name} {path} cannot be written: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{name} {path} cannot be written: no permission to write in {ancestor}")
    return path


#: The first bytes of every ``.npy`` file.
_NPY_MAGIC = b"\x93NUMPY"


def load_array(path: PathLike, *, key: str | None = None, what: str = "array") -> np.ndarray:
    """Load a numpy array from ``.npy``, ``.npz`` (``key`` or the only array), ``.json``
    (a list, as DivideMix's noise files), ``.txt``/``.csv`` (one value per line) or ``.pt``.

    Raises :class:`MissingFileError` or :class:`CorruptFileError` naming ``what`` and the path.
    """
    path = Path(path)
    key_name = shown(f"{what}_key", "key=")
    what = shown(what)
    if not path.exists():
        raise MissingFileError(f"{what} file not found: {path}")
    if path.is_dir():
        if any(path.glob("rank-*.indices.npy")):  # shards written under torchrun (dmlp_plugin.distributed)
            from .distributed import read_shard_folder

            return read_shard_folder(path, key=key, what=what)
        raise InputError(f"{what} path is a folder, expected a file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            _check_npy_header(path, what)
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if key is None:
                    if len(z.files) != 1:
                        raise InputError(
                            f"{what} file {path} holds several arrays {z.files}; name one with {key_name}")
                    key = z.files[0]
                if key not in z.files:
                    raise InputError(f"{what} file {path} has no array {key!r}; it has {z.files}")
                return z[key]
        if suffix == ".json":
            with open(path) as fh:
                return np.asarray(json.load(fh))
        if suffix in (".txt", ".csv"):
            return np.loadtxt(path, ndmin=1)
        if suffix in (".pt", ".pth"):
            # The data package's loader also admits numpy arrays (CIFAR-N files hold them).
            from .data._safe_pickle import load_torch_numpy

            obj = load_torch_numpy(path, what=what)
            if isinstance(obj, dict):
                if key is None:
                    raise InputError(f"{what} file {path} is a dict {sorted(obj)}; name one with {key_name}")
                if key not in obj:
                    raise InputError(f"{what} file {path} has no entry {key!r}; it has {sorted(obj)}")
                obj = obj[key]
            return obj.numpy() if hasattr(obj, "numpy") else np.asarray(obj)
    except (InputError, MissingFileError, CorruptFileError):
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, RuntimeError) as exc:
        raise CorruptFileError(f"cannot read {what} file {path}: {exc}") from exc
    raise InputError(
        f"{what} file {path} has an unsupported extension {suffix!r}; "
        "use .npy, .npz, .json, .txt, .csv or .pt")


def _check_npy_header(path: Path, what: str) -> None:
    """A file named ``.npy`` that is not one (often text) gets a message saying so, instead of
    numpy's about pickles."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head != _NPY_MAGIC:
        texty = head and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        raise CorruptFileError(
            f"{what} file {path} is not a numpy .npy file (it lacks numpy's header)"
            + ("; it looks like text: name it .txt or .csv" if texty else ""))


def array_checksum(array: np.ndarray) -> str:
    """A short content hash (sha256 of dtype, shape and bytes) used to tie outputs to inputs."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(arr.dtype).encode())
    h.update(str(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()[:16]


EXPORT_FORMATS = ("dividemix", "npy", "soft-npy")


def export_labels(labels: np.ndarray, path: PathLike, fmt: str) -> Path:
    """Write labels in a format upstream code reads, atomically.

    Parameters
    ----------
    labels
        ``(N,)`` integer hard labels for ``"dividemix"`` and ``"npy"``; ``(N, C)`` soft
        labels for ``"soft-npy"``.
    path
        Destination file.
    fmt
        ``"dividemix"``: a JSON list of ints, the noise file DivideMix reads
        (``json.load`` then used as ``train_label``). ``"npy"``: ``.npy`` int64.
        ``"soft-npy"``: ``.npy`` float32 ``(N, C)``.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    if fmt == "soft-npy":
        arr = np.asarray(labels, dtype=np.float32)
        if arr.ndim != 2:
            raise InputError(f"soft-npy export needs (N, C) soft labels, got shape {arr.shape}")
    else:
        arr = np.asarray(labels)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{fmt} export needs (N,) integer labels, got {arr.dtype} {arr.shape}")
        arr = arr.astype(np.int64)
    if fmt == "dividemix":
        with atomic_write(path, "w") as fh:
            json.dump(arr.tolist(), fh)
    else:
        with atomic_write(path, "wb") as fh:
            np.save(fh, arr)
    return path
