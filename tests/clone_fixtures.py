"""A small synthetic upstream clone and its recipe, for the applier's tests (no upstream code).

Import what you use into a test module (``from clone_fixtures import ...``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dmlp_integrations.recipe import Insert, Recipe, Replace

TRAIN = """import argparse
parser = argparse.ArgumentParser()
parser.add_argument('--lr', type=float)
args = parser.parse_args()

def train(it):
    x = it.next()
    y = it.next()
    return x, y
"""

DATA = """class A(object):
    def __init__(self):
        self.labels = [1, 2]
        self.done = True

class B(object):
    def __init__(self):
        self.labels = [3]
        self.done = True
"""


def make_clone(root: Path) -> Path:
    """``train.py`` (mode 755) and ``pkg/data.py`` (mode 664) in ``root``."""
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / "pkg" / "data.py").write_text(DATA)
    os.chmod(root / "train.py", 0o755)
    os.chmod(root / "pkg" / "data.py", 0o664)
    return root


RECIPE = Recipe(
    method="toy", upstream="https://example.org/toy", commits=("abc1234",), entry="train.py",
    edits=(
        Insert("train.py", "args = parser.parse_args()", where="before", lines=("import ours", "ours.setup(parser)")),
        Replace("train.py", "it.next()", "next(it)", count=2),
        Insert("pkg/data.py", "self.done = True", within="class B(", lines=("self.labels = ours.fix(self.labels)",)),
    ))


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file and link under ``root``: bytes (a link's target), permission bits, owner and group."""
    out = {}
    for p in sorted(root.rglob("*")):
        info = p.lstat()
        if p.is_symlink():
            out[str(p.relative_to(root))] = (os.readlink(p).encode(), 0, info.st_uid, info.st_gid)
        elif p.is_file():
            out[str(p.relative_to(root))] = (p.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return out


@pytest.fixture
def world(tmp_path) -> tuple[Path, Path]:
    """``(clone, outside)``: a clone made by :func:`make_clone`, and a folder beside it that
    nothing may touch."""
    clone = make_clone(tmp_path / "clone")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    return clone, outside


def fail_rename(monkeypatch, name: str, error: int) -> None:
    """``os.rename`` onto a file called ``name`` fails with ``error``; other renames work."""
    real_rename = os.rename

    def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        if dst == name:
            raise OSError(error, os.strerror(error), dst)
        return real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "rename", rename)
