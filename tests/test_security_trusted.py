"""``dmlp trusted`` writes only its named outputs: never one over another or over an input,
checked before any work, with the room they need and without a killed writer's leftovers.

Each output is compared with the others and with the command's inputs as files, through
symbolic links, ``..`` and hard links, as ``dmlp purify`` does (``test_security_outputs.py``).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from review_fixtures import cifar_folder, image_folder

from dmlp_plugin import atomic
from dmlp_plugin.cli import main
from dmlp_plugin.review import label_page_bytes, open_images
from dmlp_plugin.review.label_page import build_label_page

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A working folder holding clean labels (``clean.npy``) and a labelled CSV (``labelled.csv``)."""
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "clean.npy", np.arange(300) % 3)
    with open(tmp_path / "labelled.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "path", "given_label", "given_class", "true_label"])
        writer.writerows([[i, f"img{i}.png", i % 3, f"c{i % 3}", f"c{(i + 1) % 3}"] for i in range(0, 60, 5)])
    return tmp_path


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()}


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["trusted", *args])
    return code, " ".join(capsys.readouterr().err.split())


def alias(folder: Path, how: str, target: str, name: str) -> str:
    """Another name for ``folder / target``: the path itself, ``sub/../target``, a symbolic or a hard link."""
    if how == "same":
        return target
    if how == "relative":
        (folder / "sub").mkdir(exist_ok=True)
        return f"sub/../{target}"
    if how == "symlink":
        (folder / name).symlink_to(folder / target)
    else:
        os.link(folder / target, folder / name)
    return name


HOWS = ["same", "relative", "symlink", "hardlink"]


@pytest.mark.parametrize("how", HOWS)
def test_the_labels_output_may_not_be_the_clean_labels(folder, capsys, how):
    before = files(folder)
    other = alias(folder, how, "clean.npy", "alias.npy")
    code, err = run(capsys, "--labels", "clean.npy", "--per-class", "5", "-o", "t.npy", "--labels-output", other)
    assert code == 2 and f"--labels-output {Path(other)} is the input --labels clean.npy" in err, err
    assert files(folder) == {**before, **({"alias.npy": before["clean.npy"]} if how == "hardlink" else {})}


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_the_indices_may_not_be_the_clean_labels_either(folder, capsys, how):
    before = files(folder)["clean.npy"]
    other = alias(folder, how, "clean.npy", "t.npy")
    code, err = run(capsys, "--labels", "clean.npy", "--size", "30", "-o", other)
    assert code == 2 and "--output t.npy is the input --labels clean.npy" in err
    assert (folder / "clean.npy").read_bytes() == before and not (folder / "t_labels.npy").exists()


def test_the_two_outputs_may_not_be_one_file(folder, capsys):
    code, err = run(capsys, "--labels", "clean.npy", "--per-class", "5", "-o", "t.npy",
                    "--labels-output", "sub/../t.npy")
    assert code == 2 and "--labels-output sub/../t.npy is the same file as --output t.npy" in err
    assert not (folder / "t.npy").exists()


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_from_csv_may_not_overwrite_the_labelled_csv(folder, capsys, how):
    before = files(folder)["labelled.csv"]
    for flag, name in (("-o", "t.npy"), ("--labels-output", "l.npy")):
        outputs = {"-o": "out.npy", "--labels-output": "out_labels.npy", flag: alias(folder, how, "labelled.csv", name)}
        code, err = run(capsys, "--from-csv", "labelled.csv", *[x for pair in outputs.items() for x in pair])
        shown = "--output" if flag == "-o" else flag
        assert code == 2 and f"{shown} {name} is the input --from-csv labelled.csv" in err, err
        assert (folder / "labelled.csv").read_bytes() == before
        assert not (folder / "out.npy").exists() and not (folder / "out_labels.npy").exists()


@pytest.fixture
def images(folder) -> Path:
    return image_folder(folder / "imgs", per_class=8)


@pytest.mark.parametrize("how", HOWS)
def test_to_label_may_not_write_its_csv_over_the_given_labels(folder, images, capsys, how):
    np.savetxt(folder / "given.csv", open_images(images).targets, fmt="%d")
    before = files(folder)["given.csv"]
    other = alias(folder, how, "given.csv", "alias.csv")
    code, err = run(capsys, "--to-label", "6", "--images", "imgs", "--labels", "given.csv", "-o", other)
    assert code == 2 and f"--output {Path(other)} is the input --labels given.csv" in err, err
    assert (folder / "given.csv").read_bytes() == before and not list(folder.glob("*.html"))


def test_to_label_may_not_write_its_page_over_its_csv(folder, images, capsys):
    (folder / "page.html").symlink_to(folder / "rows.csv")  # dangling until the CSV is written
    code, err = run(capsys, "--to-label", "6", "--images", "imgs", "-o", "rows.csv", "--page", "page.html")
    assert code == 2 and "--page page.html is the same file as --output rows.csv" in err
    assert not (folder / "rows.csv").exists()


def test_a_disk_too_small_refuses_draw_and_from_csv_before_writing(folder, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9 - 500, 500))
    before = files(folder)
    for args in (("--labels", "clean.npy", "--per-class", "10"), ("--from-csv", "labelled.csv")):
        code, err = run(capsys, *args, "-o", "t.npy")
        # 30 (or 12) indices as int64 .npy, twice: 2 x (8 x rows + 256) bytes in all
        assert code == 2 and "not enough disk space for --output t.npy, --labels-output t_labels.npy" in err, err
        assert "has 500 B free" in err
    assert files(folder) == before


def test_a_disk_too_small_refuses_to_label_before_an_image_is_read(folder, images, capsys, monkeypatch):
    def must_not_read(self, index):
        raise AssertionError("an image was read although the outputs cannot fit")

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9 - 2000, 2000))
    monkeypatch.setattr(type(open_images(images)), "load_image", must_not_read)
    before = files(folder)
    code, err = run(capsys, "--to-label", "6", "--images", "imgs", "-o", "to_label.csv")
    assert code == 2 and "not enough disk space for --output to_label.csv, --page to_label.html" in err, err
    assert files(folder) == before


def test_the_page_bound_holds_for_the_page_written(folder, images):
    imgs = open_images(images)  # image files: their size is unknown until read, so 128 x 128 is assumed
    rows = np.arange(0, len(imgs), 2)
    names = ['a "quoted" & <odd> name', "ü" * 40, "c"]
    bound = label_page_bytes(imgs, rows, imgs.targets, names, csv_name="x&y.csv")
    written = build_label_page(imgs, rows, imgs.targets, names, folder / "p.html", csv_name="x&y.csv").path
    size = written.stat().st_size
    assert size <= bound < size + len(rows) * 70_000  # every thumbnail at most its bound (PNG of 128 x 128)


def test_the_page_bound_is_close_for_images_of_known_size(folder):
    imgs = open_images(cifar_folder(folder / "cifar", n=60)[0])  # 32 x 32 noise: PNG hardly compresses it
    rows = np.arange(len(imgs))
    bound = label_page_bytes(imgs, rows, imgs.targets, imgs.classes)
    size = build_label_page(imgs, rows, imgs.targets, imgs.classes, folder / "p.html").path.stat().st_size
    assert size <= bound < 1.3 * size


def test_stale_temporary_files_of_the_outputs_go_first(folder, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [folder / f"{atomic.temp_prefix(name)}{atomic._host_tag()}-{dead.pid}-abc.tmp"
             for name in ("t.npy", "t_labels.npy")]
    for path in stale:
        path.write_bytes(b"partial")
    code, _ = run(capsys, "--labels", "clean.npy", "--per-class", "200", "-o", "t.npy")
    assert code == 2  # refused (only 100 of each class): the leftovers went before the work
    assert not any(path.exists() for path in stale)
