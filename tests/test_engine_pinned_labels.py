"""The labels of fixed configs, pinned by hash: a refactor of the engine must leave them
identical. A change of behaviour that is meant updates the pins in the same commit, which
says so (``DMLP_WRITE_PINS=1 python -m pytest tests/test_engine_pinned_labels.py``).

The configs name every behaviour-bearing field they rely on (the network's precision is
float32, not "auto", which follows the hardware), so a change of a default does not move
them, and the data are planted clusters whose labels have no near ties that a different
BLAS could flip.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlp_plugin import PurifyConfig, PurifyResult, purify_dataset

from streaming_fixtures import planted
from test_features_distributed import free_port, single_process  # noqa: F401  (autouse)

PINS = Path(__file__).parent / "data" / "pinned_labels.json"

#: The network kept small so the pin is cheap; what it pins is the code path.
_NETWORK = dict(mlp_candidate=True, mlp_hidden=64, mlp_epochs=4, mlp_precision="float32")

CONFIGS = {
    "default": PurifyConfig(**_NETWORK),
    "fast": PurifyConfig(mlp_candidate=False),
    "paper": PurifyConfig.paper(epochs=30, batch_size=500),
    "chunked": PurifyConfig(mlp_candidate=False, max_memory="3MB"),
}

#: Run under torchrun's environment by two gloo processes (rank 0's labels).
DISTRIBUTED = ("fast", "paper")


def _inputs():
    x, clean, noisy, trusted = planted(n=3000, d=32, c=6, seed=3, spread=0.45, noise=0.5)
    return x, noisy, dict(val_indices=trusted, val_labels=clean[trusted], seed=0, device="cpu", threads=1)


def _digest(result: PurifyResult) -> str:
    """The hard labels, the candidate chosen, and every candidate's held-out log-loss to
    three decimals (which pins each candidate's computation, also those not chosen)."""
    h = hashlib.sha256(np.ascontiguousarray(result.labels, dtype=np.int64).tobytes())
    scores = result.metadata.get("candidate_nll") or {}
    h.update(json.dumps([result.metadata.get("selected"), sorted((k, round(v, 3)) for k, v in scores.items())])
             .encode())
    return h.hexdigest()[:16]


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from dmlp_plugin import distributed

    x, noisy, kw = _inputs()
    for name in DISTRIBUTED:
        result = purify_dataset(x, noisy, config=CONFIGS[name], **kw)
        if rank == 0:
            result.save(Path(folder) / f"{name}.npz")
    distributed.teardown()


def _measured(tmp_path: Path) -> dict[str, str]:
    x, noisy, kw = _inputs()
    out = {name: _digest(purify_dataset(x, noisy, config=config, **kw)) for name, config in CONFIGS.items()}
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    for name in DISTRIBUTED:
        out[f"torchrun x2 {name}"] = _digest(PurifyResult.load(tmp_path / f"{name}.npz"))
    return out


@pytest.mark.slow
def test_the_pinned_configs_give_the_pinned_labels(tmp_path):
    measured = _measured(tmp_path)
    if os.environ.get("DMLP_WRITE_PINS") == "1":
        PINS.parent.mkdir(exist_ok=True)
        PINS.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(PINS.read_text())
    assert set(pinned) == set(measured)
    moved = {name: (pinned[name], digest) for name, digest in measured.items() if pinned[name] != digest}
    assert not moved, f"labels moved (pinned, now): {moved}"
