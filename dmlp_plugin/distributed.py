"""``torch.distributed`` plumbing for runs under ``torchrun``.

dmlp-plugin never starts processes itself: ``torchrun`` (``python -m torch.distributed.run``)
starts one per device and describes the group in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). This module reads them,
joins the group (:func:`init`), splits ``N`` rows between ranks (:func:`shard_indices`,
with :class:`~torch.utils.data.distributed.DistributedSampler`) and brings the per-rank
results back together through files (:func:`gather_rows`): each rank writes its rows and
their dataset indices to a folder every rank sees, and rank 0 merges them in index order
into one ``.npy`` per array, streamed in blocks so its memory stays bounded however large
``N`` is. Results travel by files rather than collectives so that NCCL groups need not
move host arrays through the GPUs, and so that rank 0 never holds ``world_size`` copies.

    >>> from dmlp_plugin import distributed as dist
    >>> s = dist.init()                              # joins torchrun's group, if any
    >>> rows = dist.shard_indices(n, s.rank, s.world_size)
    >>> folder = dist.shared_folder("/shared/scratch")
    >>> merged = dist.gather_rows(folder, rows, {"soft_labels": mine[rows]}, n=n)   # rank 0: paths
    >>> dist.remove_folder(folder)
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import CorruptFileError, InputError, MissingFileError, ShapeError
from .atomic import atomic_write

__all__ = [
    "Session",
    "init",
    "teardown",
    "rank",
    "world_size",
    "local_rank",
    "is_distributed",
    "rank_device",
    "backend_for",
    "barrier",
    "broadcast_object",
    "shard_indices",
    "shared_folder",
    "remove_folder",
    "write_shard",
    "merge_shards",
    "read_shard_folder",
    "gather_rows",
    "DEFAULT_TIMEOUT",
]

# Rank 0 merges while the others may wait at a barrier; a large merge (a million rows of
# 2,048 floats is 8 GB) outlasts NCCL's 10-minute default.
DEFAULT_TIMEOUT = timedelta(minutes=60)

# Whether this module started the default process group (and so may destroy it).
_STARTED = False

# Bytes copied per block when merging: bounds rank 0's memory however large N is.
_MERGE_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class Session:
    """Where this process stands in a distributed run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        From the process group (``0, 1, 0`` outside one).
    device : torch.device
        This rank's device: ``cuda:LOCAL_RANK`` when CUDA is used.
    backend : str or None
        ``"nccl"`` or ``"gloo"``; ``None`` for a single process.
    owns_group : bool
        Whether :func:`init` started the group (:func:`teardown` ends it; so does exit).
    """

    rank: int
    world_size: int
    local_rank: int
    device: Any
    backend: str | None
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def _initialized() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from None


def world_size() -> int:
    """Processes in the run: the process group's size, else ``$WORLD_SIZE``, else 1."""
    return _dist().get_world_size() if _initialized() else _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's rank: the process group's, else ``$RANK``, else 0."""
    return _dist().get_rank() if _initialized() else _env_int("RANK", 0)


def local_rank() -> int:
    """This process's index on its node (``$LOCAL_RANK``, set by torchrun), else 0."""
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    """Whether this process is one of several (an initialised group, or torchrun's variables)."""
    return world_size() > 1


def rank_device(device: Any = None) -> Any:
    """This rank's ``torch.device``: ``cuda:LOCAL_RANK`` when CUDA is asked for or, with
    ``device=None``, available; otherwise what :func:`~dmlp_plugin.device.choose_device` gives.

    An explicit ``"cuda:K"`` is replaced too: under torchrun each rank owns the GPU of its
    local rank, and two ranks on one GPU would only slow each other down.
    """
    import torch

    from .device import choose_device

    dev = choose_device(device)
    if dev.type == "cuda":
        index = local_rank()
        if index >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK={index} but this node has {torch.cuda.device_count()} CUDA devices; "
                             "start at most that many processes per node (torchrun --nproc_per_node)")
        return torch.device("cuda", index)
    return dev


def backend_for(device: Any) -> str:
    """``"nccl"`` for a CUDA device (when CUDA is available), else ``"gloo"``."""
    import torch

    return "nccl" if device.type == "cuda" and torch.cuda.is_available() else "gloo"


def init(device: Any = None, *, timeout: timedelta = DEFAULT_TIMEOUT) -> Session:
    """Join the run's process group and say where this process stands in it.

    An already initialised group is used as it is. Otherwise, when torchrun's variables
    say there are several processes, the group is initialised from them
    (``init_method="env://"``, backend from :func:`backend_for`) and kept for the rest of
    the process: later calls reuse it, and it is destroyed at exit (or by
    :func:`teardown`). Tearing it down after each use would make the next call race the
    previous rendezvous on the same port. A script that wants a group of its own
    initialises it before calling dmlp-plugin. A single process gets a session of one and
    touches nothing.

    Raises
    ------
    InputError
        ``WORLD_SIZE`` says several processes but the rendezvous variables are missing.
    """
    import torch

    from .device import choose_device

    global _STARTED
    if not is_distributed():
        return Session(0, 1, 0, choose_device(device), None, False)
    dev = rank_device(device)
    dist = _dist()
    if dev.type == "cuda":
        # NCCL collectives (barrier, object broadcast) run on the current device
        torch.cuda.set_device(dev)
    if not _initialized():
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE") if not os.environ.get(v)]
        if missing:
            raise InputError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {', '.join(missing)} not set: "
                             "launch several processes with torchrun (python -m torch.distributed.run)")
        dist.init_process_group(backend_for(dev), init_method="env://", timeout=timeout)
        if not _STARTED:
            atexit.register(teardown)
        _STARTED = True
    return Session(dist.get_rank(), dist.get_world_size(), local_rank(), dev, dist.get_backend(), _STARTED)


def teardown() -> None:
    """Destroy the process group if :func:`init` started it (a no-op otherwise)."""
    global _STARTED
    if _STARTED and _initialized():
        _dist().destroy_process_group()
    _STARTED = False


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if _initialized() and _dist().get_world_size() > 1:
        _dist().barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable, small: paths, flags)."""
    if not (_initialized() and _dist().get_world_size() > 1):
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """The dataset indices rank ``rank`` of ``world_size`` handles, ascending.

    :class:`~torch.utils.data.distributed.DistributedSampler` (``shuffle=False``) deals
    indices round-robin (rank ``r`` gets ``r, r + W, r + 2W, ...``) and pads the last round
    with indices from the start so every rank gets the same count. The padding is dropped
    here: each index belongs to exactly one rank, so the merged result has no duplicates,
    and the last ranks simply get one row fewer (or none when ``n < world_size``).
    """
    from torch.utils.data.distributed import DistributedSampler

    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"cannot shard {n} rows for rank {rank} of {world_size}")
    if n == 0:
        return np.zeros(0, np.int64)
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
    dealt = np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))
    # the k-th index dealt to this rank sits at position rank + k * W of the padded list,
    # and padding occupies positions n and up
    return dealt[rank + np.arange(len(dealt)) * world_size < n]


def shared_folder(base: str | os.PathLike | None = None) -> Path:
    """A fresh folder for one exchange, created by rank 0 in ``base`` and named to all ranks.

    ``base`` defaults to the system temporary folder, which is enough on one node; across
    nodes it must be storage every node mounts at the same path.

    Raises
    ------
    MissingFileError
        On a rank that cannot see the folder (``base`` is not shared between nodes).
    """
    path = None
    if rank() == 0:
        root = Path(base).expanduser() if base is not None else Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        # absolute: ranks on other nodes need not share rank 0's working directory
        path = str(Path(tempfile.mkdtemp(prefix=".dmlp-shards-", dir=root)).resolve())
    path = Path(broadcast_object(path))
    if not path.is_dir():
        raise MissingFileError(f"rank {rank()} cannot see the shard folder {path} made by rank 0: "
                               "on several nodes, pass a folder on storage every node shares")
    barrier()  # every rank has looked before anyone may use (or remove) it
    return path


def remove_folder(folder: str | os.PathLike) -> None:
    """Remove an exchange folder (rank 0's job; a no-op elsewhere)."""
    if rank() == 0:
        shutil.rmtree(folder, ignore_errors=True)


def _shard_path(folder: Path, rank: int, name: str) -> Path:
    return folder / f"rank-{rank:05d}.{name}.npy"


def write_shard(folder: str | os.PathLike, rank: int, indices: np.ndarray,
                arrays: Mapping[str, np.ndarray]) -> list[Path]:
    """Write one rank's rows: ``arrays`` (rows aligned with ``indices``) and ``indices``,
    each atomically, the indices last so their presence means the shard is whole."""
    folder = Path(folder)
    indices = np.asarray(indices, dtype=np.int64)
    written = []
    for name, array in arrays.items():
        if name == "indices" or not name.isidentifier():
            raise InputError(f"shard array name {name!r} must be an identifier other than 'indices'")
        array = np.asarray(array)
        if len(array) != len(indices):
            raise ShapeError(f"shard array {name!r} has {len(array)} rows but {len(indices)} indices")
        path = _shard_path(folder, rank, name)
        with atomic_write(path) as fh:
            np.save(fh, np.ascontiguousarray(array))
        written.append(path)
    path = _shard_path(folder, rank, "indices")
    with atomic_write(path) as fh:
        np.save(fh, indices)
    written.append(path)
    return written


def merge_shards(folder: str | os.PathLike, world_size: int, n: int, names: list[str], *,
                 targets: Mapping[str, str | os.PathLike] | None = None,
                 block_rows: int | None = None) -> dict[str, Path]:
    """Merge the shards of ``world_size`` ranks into one ``(n, ...)`` ``.npy`` per name,
    rows in dataset index order.

    Each output is written atomically and in blocks read from the shards' memory maps, so
    memory stays at one block (64 MiB by default) however large ``n`` is. Every index in
    ``[0, n)`` must come from exactly one shard.

    Parameters
    ----------
    targets : mapping, optional
        Output path per name; ``<folder>/merged.<name>.npy`` by default.
    block_rows : int, optional
        Rows per block; by default as many as fit in 64 MiB.

    Returns
    -------
    dict
        Name → path of the merged ``.npy``.

    Raises
    ------
    MissingFileError
        A rank's shard is absent from ``folder``.
    CorruptFileError
        Shards overlap, miss indices, or disagree on an array's width or dtype.
    """
    folder = Path(folder)
    shard_rows = []
    for r in range(world_size):
        path = _shard_path(folder, r, "indices")
        if not path.is_file():
            raise MissingFileError(f"the shard of rank {r} is missing from {folder}: that rank failed, or it "
                                   "wrote to another folder (on several nodes, the folder must be shared)")
        shard_rows.append(np.load(path, allow_pickle=False))
    owner = np.concatenate([np.full(len(rows), r, np.int64) for r, rows in enumerate(shard_rows)])
    position = np.concatenate([np.arange(len(rows)) for rows in shard_rows])
    everything = np.concatenate(shard_rows) if shard_rows else np.zeros(0, np.int64)
    order = np.argsort(everything, kind="stable")
    if len(everything) != n or not np.array_equal(everything[order], np.arange(n)):
        counts = np.bincount(everything[(everything >= 0) & (everything < n)], minlength=n)
        missing, doubled = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
        raise CorruptFileError(f"the shards in {folder} do not cover indices 0..{n - 1} once each: "
                               f"{len(missing)} missing (e.g. {missing[:3].tolist()}), "
                               f"{len(doubled)} repeated (e.g. {doubled[:3].tolist()})")
    owner, position = owner[order], position[order]
    merged = {}
    for name in names:
        shards = [np.load(_shard_path(folder, r, name), mmap_mode="r", allow_pickle=False)
                  if len(shard_rows[r]) else None for r in range(world_size)]
        shapes = {(a.shape[1:], a.dtype.str) for a in shards if a is not None}
        if len(shapes) != 1:
            raise CorruptFileError(f"the shards of {name!r} in {folder} disagree on row shape or dtype: {sorted(shapes)}")
        (row_shape, dtype), = shapes
        target = Path(targets[name]) if targets and name in targets else folder / f"merged.{name}.npy"
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": (n, *row_shape)}
        row_bytes = max(1, np.dtype(dtype).itemsize * int(np.prod(row_shape)))
        step = block_rows or max(1, _MERGE_BLOCK_BYTES // row_bytes)
        with atomic_write(target) as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            for start in range(0, n, step):
                stop = min(start + step, n)
                block = np.empty((stop - start, *row_shape), dtype=dtype)
                who, where = owner[start:stop], position[start:stop]
                for r, shard in enumerate(shards):
                    mine = who == r
                    if shard is not None and mine.any():
                        block[mine] = shard[where[mine]]
                fh.write(block.tobytes())
        merged[name] = target
    return merged


def read_shard_folder(folder: str | os.PathLike, *, key: str | None = None, what: str = "features") -> np.ndarray:
    """A folder of shards (``rank-NNNNN.<name>.npy`` beside ``rank-NNNNN.indices.npy``, as
    :func:`write_shard` leaves them) as one memory-mapped ``(n, ...)`` array in index order.

    The shards are merged once, in blocks (:func:`merge_shards`), into
    ``<folder>/merged.<name>.npy``; later calls map that file. ``key`` names the array when
    the shards hold several.
    """
    folder = Path(folder)
    ranks = sorted(folder.glob("rank-*.indices.npy"))
    names = sorted({p.name.split(".")[1] for p in folder.glob("rank-*.*.npy")} - {"indices"})
    if not ranks or not names:
        raise InputError(f"{what} folder {folder} holds no shards (rank-NNNNN.<name>.npy with "
                         "rank-NNNNN.indices.npy); give a feature file instead")
    if key is None and len(names) > 1:
        raise InputError(f"{what} folder {folder} holds shards of several arrays {names}; name one with a key")
    name = key if key is not None else names[0]
    if name not in names:
        raise InputError(f"{what} folder {folder} has no shards of {name!r}; it has {names}")
    target = folder / f"merged.{name}.npy"
    if not target.is_file():
        n = sum(len(np.load(p, mmap_mode="r", allow_pickle=False)) for p in ranks)
        merge_shards(folder, len(ranks), n, [name], targets={name: target})
    return np.load(target, mmap_mode="r", allow_pickle=False)


def gather_rows(folder: str | os.PathLike, indices: np.ndarray, arrays: Mapping[str, np.ndarray], *, n: int,
                targets: Mapping[str, str | os.PathLike] | None = None) -> dict[str, Path] | None:
    """Every rank's rows, merged by rank 0 in index order: the collective form of
    :func:`write_shard` + :func:`merge_shards`.

    Each rank passes the dataset ``indices`` it covered and its ``arrays`` (rows aligned
    with them); all ranks must call it with the same names. Rank 0 returns the paths of the
    merged ``.npy`` files (see :func:`merge_shards`); the other ranks return ``None`` as
    soon as their shard is written and every shard is there, without waiting for the merge.
    """
    r, w = rank(), world_size()
    write_shard(folder, r, indices, arrays)
    barrier()
    if r != 0:
        return None
    return merge_shards(folder, w, n, list(arrays), targets=targets)
