"""Outputs never overwrite the result or an input, and a run that cannot write is refused first.

The hostile test left ``out.npz`` a raw ``.npy`` with ``-o out.npz --export npy
--export-path out.npz``, overwrote the ``--labels`` file with ``--export-path``, and ran
two minutes before a full disk gave a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

import dmlp_plugin
from dmlp_plugin.cli import main
from dmlp_plugin.errors import DataFileError
from dmlp_plugin.io import check_room_for_result


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {name: tmp_path / f"{name}.npy" for name in ("features", "labels", "val_indices", "val_labels")}
    labels = rng.integers(0, 4, 200)
    np.save(paths["features"], rng.normal(size=(200, 8)).astype(np.float32))
    np.save(paths["labels"], labels)
    np.save(paths["val_indices"], np.arange(40))
    np.save(paths["val_labels"], labels[:40])

    def must_not_run(*args, **kwargs):
        raise AssertionError("purification ran although an output was refused")

    monkeypatch.setattr(dmlp_plugin, "purify_dataset", must_not_run)
    monkeypatch.chdir(tmp_path)
    return paths


def purify(inputs: dict[str, Path], *outputs: str) -> list[str]:
    args = ["purify", "--no-progress"]
    for name, path in inputs.items():
        args += [f"--{name.replace('_', '-')}", str(path)]
    return [*args, *outputs]


def contents(paths: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in paths.items()}


def one_line(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_export_path_equal_to_the_output_is_refused(inputs, capsys):
    assert main(purify(inputs, "-o", "out.npz", "--export", "npy", "--export-path", "out.npz")) == 2
    assert "--export-path out.npz is the same file as --output out.npz" in one_line(capsys)
    assert not Path("out.npz").exists()


@pytest.mark.parametrize("make", ["relative", "symlink"])
def test_the_same_output_under_another_name_is_refused(inputs, capsys, make, tmp_path):
    (tmp_path / "sub").mkdir()
    if make == "relative":
        export = "sub/../out.npz"
    else:
        export = "sub/link.npy"
        (tmp_path / "sub" / "link.npy").symlink_to(tmp_path / "out.npz")  # dangling until out.npz is written
    assert main(purify(inputs, "-o", str(tmp_path / "out.npz"), "--export", "npy", "--export-path", export)) == 2
    assert "is the same file as --output" in one_line(capsys)


@pytest.mark.parametrize("make", ["same", "relative", "symlink", "hardlink"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(inputs, capsys, make, tmp_path):
    before = contents(inputs)
    export = {"same": str(inputs["labels"]), "relative": "./sub/../labels.npy", "symlink": "alias.npy",
              "hardlink": "hard.npy"}[make]
    (tmp_path / "sub").mkdir()
    if make == "symlink":
        (tmp_path / "alias.npy").symlink_to(inputs["labels"])
    if make == "hardlink":
        os.link(inputs["labels"], tmp_path / "hard.npy")
    assert main(purify(inputs, "-o", "out.npz", "--export", "npy", "--export-path", export)) == 2
    assert f"--export-path {Path(export)} is the input --labels" in one_line(capsys)
    assert contents(inputs) == before


def test_the_result_file_may_not_be_an_input_either(inputs, capsys, tmp_path):
    (tmp_path / "features.npz").symlink_to(inputs["features"])
    assert main(purify(inputs, "-o", "features.npz")) == 2
    assert "--output features.npz is the input --features" in one_line(capsys)


Usage = namedtuple("Usage", "total used free")


def test_a_disk_too_small_for_the_outputs_is_refused_before_the_run(inputs, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9 - 1000, 1000))
    assert main(purify(inputs, "-o", "out.npz", "--export", "dividemix")) == 2
    err = one_line(capsys)
    assert "not enough disk space for --output out.npz, --export-path out.json: it needs up to 1.1 MB" in err
    assert f"{Path.cwd()} has 1.0 kB free" in err
    assert not Path("out.npz").exists()


def test_the_room_check_sizes_the_outputs_from_the_inputs(tmp_path, monkeypatch):
    labels = np.arange(50_000) % 10
    free = {"bytes": 10 ** 12}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(0, 0, free["bytes"]))
    check_room_for_result(tmp_path / "out.npz", tmp_path / "out.json", "dividemix", labels=labels)
    # 50,000 rows of 10 classes: 81 bytes a row and 1 MiB of metadata, plus 3 bytes a label as JSON
    free["bytes"] = 50_000 * 81 + (1 << 20) + 50_000 * 3 + 255
    with pytest.raises(DataFileError, match="not enough disk space"):
        check_room_for_result(tmp_path / "out.npz", tmp_path / "out.json", "dividemix", labels=labels)


def test_noise_may_not_overwrite_its_clean_labels(tmp_path, capsys):
    labels = tmp_path / "clean.npy"
    np.save(labels, np.arange(100) % 10)
    before = labels.read_bytes()
    assert main(["noise", "--labels", str(labels), "--kind", "symmetric", "--rate", "0.5", "-o", str(labels)]) == 2
    assert "--output" in one_line(capsys) and labels.read_bytes() == before


def test_trusted_gets_one_line_on_a_full_disk_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    labels = tmp_path / "clean.npy"
    np.save(labels, np.arange(1000) % 10)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code = main(["trusted", "--labels", str(labels), "--per-class", "5", "-o", str(tmp_path / "t.npy")])
    err = one_line(capsys)
    assert code == 2 and err.startswith(f"error: cannot write {tmp_path / 't.npy'}: no space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.npy"]
