"""Reading inputs and writing outputs, atomically and within bounds.

Every file dmlp-plugin writes goes through :func:`~dmlp_plugin.atomic.atomic_write`: the
content lands in a temporary file in the destination folder and is renamed over the target
only once it is complete, so an interrupted or failed run never leaves a half-written file
behind. Outputs are checked before any work (:func:`check_output_path`,
:func:`check_distinct_paths`, :func:`check_free_space`), and an array file's declared size
is checked against the file and the memory left before it is read (:func:`open_npz`,
:func:`load_array`), so a small file that inflates to gigabytes is refused, not read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, Mapping

import numpy as np

from .argument_names import shown
from .atomic import atomic_write, remove_stale_temps
from .errors import CorruptFileError, DataFileError, InputError, MissingFileError
from .sizes import available_memory, export_file_bytes, format_bytes, result_file_bytes

__all__ = [
    "atomic_write",
    "check_output_path",
    "check_distinct_paths",
    "check_free_space",
    "check_room_for_result",
    "open_npz",
    "load_array",
    "check_text_size",
    "open_text",
    "array_checksum",
    "export_labels",
    "EXPORT_FORMATS",
]

PathLike = str | os.PathLike


def check_output_path(path: PathLike, what: str = "output", *, suffixes: tuple[str, ...] = (),
                      size: int | None = None) -> Path:
    """Refuse, before any work, an output path that cannot be written.

    :func:`atomic_write` creates missing folders, so the nearest existing ancestor must be
    a folder this process may write in; ``path`` itself must not be a folder; with
    ``suffixes`` its extension must be one of them; with ``size`` (bytes, an upper bound)
    the file system must have that much room (:func:`check_free_space`). Temporary files
    that killed writers of ``path`` left behind are removed. Raises :class:`InputError`
    naming ``what`` (as :func:`~dmlp_plugin.argument_names.shown` calls it).
    """
    path = Path(path)
    name = shown(what)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{name} must end in {' or '.join(suffixes)}, got {path.name!r}")
    if path.is_dir():
        raise InputError(f"{name} {path} is a folder; give a file name inside it")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise InputError(f"{name} {path} cannot be written: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{name} {path} cannot be written: no permission to write in {ancestor}")
    remove_stale_temps(path)
    if size is not None:
        check_free_space({path: size}, {path: what})
    return path


def _existing_ancestor(path: Path) -> Path:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _same_file(a: Path, b: Path) -> bool:
    """Whether writing ``a`` would write ``b``: the same path once links and ``..`` are
    resolved, or the same file under two names (a hard link)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return False


def check_distinct_paths(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]) -> None:
    """Refuse an output that is another output or one of the inputs.

    Paths are compared as the files they name: through symbolic links, relative parts and
    hard links. ``outputs`` and ``inputs`` map what each is called (``"--output"``) to its
    path, or to ``None`` when it was not given.

    Raises
    ------
    InputError
        Naming both arguments.
    """
    given_outputs = [(shown(k), Path(v)) for k, v in outputs.items() if v is not None]
    given_inputs = [(shown(k), Path(v)) for k, v in inputs.items() if v is not None]
    for i, (name, path) in enumerate(given_outputs):
        for other, other_path in given_outputs[:i]:
            if _same_file(path, other_path):
                raise InputError(f"{name} {path} is the same file as {other} {other_path}; "
                                 "give each output its own path")
        for other, other_path in given_inputs:
            if _same_file(path, other_path):
                raise InputError(f"{name} {path} is the input {other} {other_path}; writing it would "
                                 "overwrite the input, so give another path")


def check_free_space(sizes: Mapping[PathLike, int], names: Mapping[PathLike, str] | None = None) -> None:
    """Refuse, before any work, outputs that will not fit where they go.

    ``sizes`` maps each output path to an upper bound of its size in bytes. Outputs on one
    file system are added up; an atomic write needs the room of the new file while the old
    one still exists.

    Raises
    ------
    DataFileError
        Naming the outputs, the room they need and the room there is.
    """
    need: dict[int, list] = {}
    for path, size in sizes.items():
        ancestor = _existing_ancestor(Path(path))
        try:
            device = os.stat(ancestor).st_dev
        except OSError:
            continue
        entry = need.setdefault(device, [0, ancestor, []])
        entry[0] += int(size)
        entry[2].append(f"{shown((names or {}).get(path, 'output'))} {path}")
    for total, ancestor, what in need.values():
        free = shutil.disk_usage(ancestor).free
        if total > free:
            raise DataFileError(f"not enough disk space for {', '.join(what)}: it needs up to "
                                f"{format_bytes(total)} and {ancestor.resolve()} has {format_bytes(free)} free; "
                                "free some space or write elsewhere")


def check_room_for_result(output: PathLike, export_path: PathLike | None, export_format: str | None, *,
                          labels: object = None, rows: object = None, num_classes: int | None = None) -> None:
    """:func:`check_free_space` for a purification's outputs (the result file and the
    export), before it runs. Their size follows from the number of rows (of ``labels``, else
    of ``rows``: features or a dataset) and the class count (``num_classes``, else the
    largest label + 1, else the dataset's classes); when neither can be read yet, the
    check is left to the write."""
    try:
        n = len(labels if labels is not None else rows)  # type: ignore[arg-type]
        c = num_classes or (int(np.max(labels)) + 1 if labels is not None and n else len(rows.classes))  # type: ignore
    except (TypeError, ValueError, AttributeError):
        return
    sizes = {Path(output): result_file_bytes(n, c)}
    names = {Path(output): "output"}
    if export_path is not None and export_format is not None:
        sizes[Path(export_path)] = export_file_bytes(n, c, export_format)
        names[Path(export_path)] = "export_path"
    check_free_space(sizes, names)


#: The first bytes of every ``.npy`` file.
_NPY_MAGIC = b"\x93NUMPY"


def load_array(path: PathLike, *, key: str | None = None, what: str = "array", rows: int | None = None
               ) -> np.ndarray:
    """Load a numpy array from ``.npy``, ``.npz`` (``key`` or the only array), ``.json``
    (a list, as DivideMix's noise files), ``.txt``/``.csv`` (one value per line) or ``.pt``.

    Text files are read whole, so their size is checked first (:func:`check_text_size`):
    against the memory parsing them takes, and, with ``rows`` (the number of values the
    file should hold, one a row, as in a label file), against what that many values can
    take as text.

    Raises :class:`MissingFileError` or :class:`CorruptFileError` naming ``what`` and the
    path; :class:`DataFileError` for a text file too large to be what it claims or to read.
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
            # Memory-mapped: only the header is read here, and large arrays stream from disk.
            _check_npy_file(path, what)
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            members = _npz_members(path, what)
            if key is None:
                if len(members) != 1:
                    raise InputError(
                        f"{what} file {path} holds several arrays {sorted(members)}; name one with {key_name}")
                key = next(iter(members))
            if key not in members:
                raise InputError(f"{what} file {path} has no array {key!r}; it has {sorted(members)}")
            _check_memory(path, what, {key: members[key]})
            with np.load(path, allow_pickle=False) as z:
                return z[key]
        if suffix == ".json":
            with open_text(path, what, rows=rows, memory_factor=JSON_MEMORY_FACTOR) as fh:
                return np.asarray(json.load(fh))
        if suffix in (".txt", ".csv"):
            with open_text(path, what, rows=rows) as fh:
                return np.loadtxt(fh, ndmin=1)
        if suffix in (".pt", ".pth"):
            # The data package's loader also admits numpy arrays (CIFAR-N files hold them).
            from .safe_pickle import load_torch_numpy

            obj = load_torch_numpy(path, what=what)
            if isinstance(obj, dict):
                if key is None:
                    raise InputError(f"{what} file {path} is a dict {sorted(obj)}; name one with {key_name}")
                if key not in obj:
                    raise InputError(f"{what} file {path} has no entry {key!r}; it has {sorted(obj)}")
                obj = obj[key]
            return obj.numpy() if hasattr(obj, "numpy") else np.asarray(obj)
    except (InputError, DataFileError):
        raise
    except RecursionError:  # json.load of "[[[[...": nesting no label file has
        raise CorruptFileError(f"cannot read {what} file {path}: its JSON is nested too deeply") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, RuntimeError) as exc:
        raise CorruptFileError(f"cannot read {what} file {path}: {exc}") from exc
    raise InputError(
        f"{what} file {path} has an unsupported extension {suffix!r}; "
        "use .npy, .npz, .json, .txt, .csv or .pt")


#: The most bytes one value takes in a text file of labels or indices: a number as long as
#: float64's longest repr (``-2.2250738585072014e-308``, 24 characters), with the separator,
#: line end and indentation a writer may add.
TEXT_BYTES_PER_VALUE = 64
#: Room for what is not a value: a header line, comments, brackets.
_TEXT_SLACK = 4096
#: How many times its size in memory a text file can take while it is parsed. Measured peaks
#: (tracemalloc, a million values): ``numpy.loadtxt`` 0.8x for a table of floats, 4-5x for a
#: column of digits, 17x for one long row of digits; ``json.load`` then ``numpy.asarray``
#: 5.5x for a list of digits, 10x of floats, 32x of empty lists. The factors leave room.
TEXT_MEMORY_FACTOR = 20
JSON_MEMORY_FACTOR = 40


def check_text_size(path: PathLike, what: str, size: int, *, rows: int | None = None,
                    memory_factor: int = TEXT_MEMORY_FACTOR) -> None:
    """Refuse, before reading it, a text file of ``size`` bytes that is too large: larger than
    ``rows`` values can take as text (:data:`TEXT_BYTES_PER_VALUE` each), or whose parsing
    (``memory_factor`` times its size) would not fit in the memory available.

    Raises
    ------
    DataFileError
        One line naming ``what``, the file, its size and the limit it passes.
    """
    if rows is not None and size > rows * TEXT_BYTES_PER_VALUE + _TEXT_SLACK:
        raise DataFileError(f"{what} file {path} is {format_bytes(size)}, more than {rows:,} values can take as "
                            f"text (at most {format_bytes(rows * TEXT_BYTES_PER_VALUE + _TEXT_SLACK)}); it is not "
                            f"the file for these {rows:,} rows")
    room = available_memory()
    if room is not None and size * memory_factor > room:
        raise DataFileError(f"{what} file {path} is {format_bytes(size)} of text, which takes up to "
                            f"{format_bytes(size * memory_factor)} of memory to parse, more than the "
                            f"{format_bytes(room)} available; refusing to read it (save large arrays as .npy)")


def open_text(path: PathLike, what: str, *, rows: int | None = None, memory_factor: int = TEXT_MEMORY_FACTOR,
              newline: str | None = None) -> IO[str]:
    """Open a text input (UTF-8, a byte-order mark skipped) once :func:`check_text_size`
    passes. The size is the opened file's own, and only a regular file is read: a FIFO or a
    device (``/dev/zero`` behind a link) has no size to check, so it is refused without
    blocking. ``newline`` is :func:`open`'s (``""`` for :mod:`csv`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataFileError(f"{what} file {path} is not a regular file (a pipe, a device or a socket)")
        check_text_size(path, what, info.st_size, rows=rows, memory_factor=memory_factor)
        os.set_blocking(fd, True)
        return open(fd, encoding="utf-8-sig", newline=newline)
    except BaseException:
        os.close(fd)
        raise


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


def _read_npy_header(fh, source: str) -> tuple[int, tuple[int, ...], np.dtype]:
    """``(bytes the array declares, shape, dtype)`` from an open ``.npy`` stream, after its header."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:  # 3.0 (utf-8 field names) has no public reader
            shape, _, dtype = fmt._read_array_header(fh, version)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise CorruptFileError(f"{source} has a damaged numpy header: {exc}") from exc
    if dtype.hasobject:
        raise CorruptFileError(f"{source} holds Python objects (dtype {dtype}), which are never unpickled; "
                               "save plain numbers")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize, tuple(shape), dtype


def _describe(shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> str:
    return f"shape {shape} {dtype} ({format_bytes(nbytes)})"


def _check_npy_file(path: Path, what: str) -> None:
    """The header is numpy's, and the data it declares is all in the file."""
    _check_npy_header(path, what)
    with open(path, "rb") as fh:
        nbytes, shape, dtype = _read_npy_header(fh, f"{what} file {path}")
        offset = fh.tell()
    size = path.stat().st_size
    if offset + nbytes > size:
        raise CorruptFileError(f"{what} file {path} declares {_describe(shape, dtype, nbytes)} but holds only "
                               f"{format_bytes(size - offset)} of data: it is truncated or damaged")


#: deflate cannot shrink data more than about 1032 to 1; an entry that claims more lies.
_MAX_DEFLATE_RATIO = 1100


def _npz_members(path: Path, what: str) -> dict[str, tuple[int, tuple[int, ...], np.dtype]]:
    """Each array of a ``.npz`` with its declared size, checked against the archive entry
    that holds it, reading only the headers."""
    members = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                source = f"{what} file {path}, array {info.filename!r}"
                if not info.filename.endswith(".npy"):
                    continue
                if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size or \
                        info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                    raise CorruptFileError(f"{source} claims to inflate {format_bytes(info.compress_size)} to "
                                           f"{format_bytes(info.file_size)}, more than compression allows")
                with archive.open(info) as fh:
                    nbytes, shape, dtype = _read_npy_header(fh, source)
                    offset = fh.tell()
                if offset + nbytes != info.file_size:
                    raise CorruptFileError(f"{source} declares {_describe(shape, dtype, nbytes)} but the archive "
                                           f"holds {format_bytes(max(info.file_size - offset, 0))} of data")
                members[info.filename[:-4]] = (nbytes, shape, dtype)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, EOFError) as exc:  # RuntimeError: encrypted entry
        raise CorruptFileError(f"cannot read {what} file {path}: {exc}") from exc
    return members


def _check_memory(path: Path, what: str, members: Mapping[str, tuple[int, tuple[int, ...], np.dtype]]) -> None:
    total = sum(nbytes for nbytes, _, _ in members.values())
    room = available_memory()
    if room is not None and total > room:
        biggest = max(members, key=lambda k: members[k][0])
        raise DataFileError(f"{what} file {path} inflates to {format_bytes(total)} (array {biggest!r}: "
                            f"{_describe(members[biggest][1], members[biggest][2], members[biggest][0])}), more "
                            f"than the {format_bytes(room)} of memory available; refusing to read it")


def open_npz(path: PathLike, *, what: str = "array", expected: str = "a .npz archive") -> np.lib.npyio.NpzFile:
    """``np.load`` of a ``.npz`` after checking it: a zip (not a single ``.npy``, not text),
    every array's declared size consistent with its archive entry, and all of them
    together within the memory available. Use as a context manager.

    Raises
    ------
    MissingFileError, CorruptFileError
        Naming ``what`` and the path; ``expected`` says what the file should have been.
    DataFileError
        The arrays would not fit in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head == _NPY_MAGIC:
        raise CorruptFileError(f"{what} file {path} is a single numpy array (.npy), not {expected}")
    if head[:2] != b"PK":
        raise CorruptFileError(f"{what} file {path} is not {expected} (not a zip archive)")
    _check_memory(path, what, _npz_members(path, what))
    return np.load(path, allow_pickle=False)


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
