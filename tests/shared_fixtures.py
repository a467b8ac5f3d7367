"""Fixtures for tests that read ``../shared`` (skipped when it is absent).

Import the fixtures you use into a test module (``from shared_fixtures import ...``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def needs_shared(what: str) -> str:
    """A skip reason for a test that reads the developers' shared folder: what it needs, and
    that a user without that folder loses nothing (it is not distributed with the package)."""
    return (f"needs {what} from the developers' shared folder ($DMLP_SHARED or ../shared), which is not "
            "distributed with dmlp-plugin; set DMLP_SHARED if you have a copy")


def shared_dir() -> Path | None:
    """``$DMLP_SHARED`` or ``../shared`` beside the repository, if it holds the CIFAR-10 labels."""
    path = Path(os.environ.get("DMLP_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
    return path if (path / "data" / "cifar10" / "train_labels_original_order.npy").is_file() else None


@pytest.fixture(scope="session")
def real_cifar10_root(tmp_path_factory) -> Path:
    """The CIFAR-10 build in ~/.cache/dmlp when there is one, else built from ../shared (~20 s)."""
    cached = Path.home() / ".cache" / "dmlp" / "cifar10"
    if (cached / "cifar-10-batches-py" / "batches.meta").is_file():
        return cached
    shared = shared_dir()
    if shared is None:
        pytest.skip("needs CIFAR-10 in ~/.cache/dmlp/cifar10: extract the python version from "
                    "https://www.cs.toronto.edu/~kriz/cifar.html there, or build it from image files with "
                    "`dmlp data cifar10 --from-folder IMAGES ~/.cache/dmlp/cifar10`")
    out = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(shared / "tools" / "build_cifar10.py"), str(out)], check=True)
    return out
