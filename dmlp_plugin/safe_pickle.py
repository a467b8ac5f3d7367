"""Reading pickles that hold only numpy arrays and plain containers.

The CIFAR python folders and the CIFAR-N ``.pt`` label files are pickles. Unpickling an
arbitrary file can run arbitrary code, so both readers here resolve only the few numpy
globals an array needs and refuse everything else. Failures become
:class:`~dmlp_plugin.errors.MissingFileError` or
:class:`~dmlp_plugin.errors.CorruptFileError` naming the file.
"""

from __future__ import annotations

import codecs
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptFileError, MissingFileError

try:  # numpy >= 2 moved the pickle helpers; files written by numpy 1.x name the old module
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

__all__ = ["load_pickle", "load_torch_numpy"]

# (module, name) as written in the pickle -> the object it stands for. Both numpy module
# spellings appear in real files: the 2009 CIFAR release and 2021 CIFAR-N files predate numpy 2.
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS[(_module, "_reconstruct")] = _reconstruct
    _NUMPY_GLOBALS[(_module, "scalar")] = scalar
# Python 3 pickles of bytes (protocol 2) rebuild them with _codecs.encode.
_NUMPY_GLOBALS[("_codecs", "encode")] = codecs.encode


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are expected") from None


def load_pickle(path: str | os.PathLike, *, what: str = "pickle") -> Any:
    """Unpickle a Python 2 or 3 pickle of numpy arrays, lists, dicts and strings.

    Byte strings are decoded as latin-1, as the CIFAR readers upstream do.

    Raises
    ------
    MissingFileError
        ``path`` does not exist.
    CorruptFileError
        The file is truncated, not a pickle, or refers to anything but numpy arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as exc:
        # A truncated array payload surfaces as ValueError from numpy, a cut header as EOFError.
        raise CorruptFileError(f"cannot read {what} file {path}: {exc}") from exc


def load_torch_numpy(path: str | os.PathLike, *, what: str = "torch") -> Any:
    """``torch.load`` a file that may hold numpy arrays, with ``weights_only=True``.

    Files such as CIFAR-N's were written by ``torch.save`` on a dict of numpy arrays,
    which the weights-only loader rejects by default; the numpy globals are allowed here
    and nothing else is.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} file not found: {path}")
    allowed: list[Any] = [(obj, f"{module}.{name}") for (module, name), obj in _NUMPY_GLOBALS.items()]
    # torch also checks the class of each object it rebuilds: numpy >= 1.25 gives every
    # dtype its own class (Int64DType, ...), which must be allowed too.
    allowed += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdFD"}, key=str)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile,
            OSError) as exc:  # OSError: torch's zip reader on a truncated file
        raise CorruptFileError(f"cannot read {what} file {path}: {exc}") from exc
