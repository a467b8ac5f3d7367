"""Text label files (``.json``, ``.txt``, ``.csv``) are sized before they are read whole.

A ``.json`` or ``.txt`` label file (DivideMix's noise file, plain text labels) used to be
read whole whatever its size. Now its size is checked first: against what its row count
can need, when the reader knows it, and against the memory that parsing it takes. A
pipe or a device in its place is refused without blocking. The large files here are
sparse (``truncate``), so they cost no disk and no time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from dmlp_adapters.dividemix import DivideMixAdapter
from dmlp_plugin import io as dmlp_io
from dmlp_plugin.cli import main
from dmlp_plugin.errors import CorruptFileError, DataFileError
from dmlp_plugin.io import JSON_MEMORY_FACTOR, TEXT_BYTES_PER_VALUE, TEXT_MEMORY_FACTOR, load_array
from dmlp_plugin.sizes import available_memory
from dmlp_plugin.trusted_csv import read_labelled_csv
from dmlp_plugin.validation import as_labels


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    path.write_bytes(head)
    os.truncate(path, size)
    return path


@pytest.fixture
def no_parsing(monkeypatch):
    """Fail the test if a parser is reached: refusals must come from the size alone."""
    def must_not_parse(*args, **kwargs):
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(json, "load", must_not_parse)
    monkeypatch.setattr(np, "loadtxt", must_not_parse)


@pytest.mark.parametrize("suffix", [".json", ".txt", ".csv"])
def test_a_huge_sparse_label_file_is_refused_by_the_memory_it_would_take(tmp_path, no_parsing, suffix):
    room = available_memory()
    if room is None:
        pytest.skip("this system does not say how much memory is available")
    path = sparse(tmp_path / f"labels{suffix}", 1 << 40, b"[1, 2, " if suffix == ".json" else b"1\n2\n")
    start = time.perf_counter()
    with pytest.raises(DataFileError, match=r"labels file .* is 1099\.5 GB of text, which takes up to .* of memory "
                                            r"to parse, more than the .* available; refusing to read it"):
        load_array(path, what="labels")
    assert time.perf_counter() - start < 1


def test_the_memory_bound_is_the_factor_times_the_size(tmp_path, monkeypatch, no_parsing):
    monkeypatch.setattr(dmlp_io, "available_memory", lambda: 10 ** 9)
    for suffix, factor in ((".txt", TEXT_MEMORY_FACTOR), (".json", JSON_MEMORY_FACTOR)):
        fits, too_big = 10 ** 9 // factor, 10 ** 9 // factor + 1
        dmlp_io.check_text_size("x", "labels", fits, memory_factor=factor)
        with pytest.raises(DataFileError, match="more than the 1.0 GB available"):
            load_array(sparse(tmp_path / f"big{suffix}", too_big), what="labels")


def test_a_file_larger_than_its_rows_can_need_is_refused(tmp_path, monkeypatch):
    labels = np.arange(1000) % 10
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(labels.tolist(), indent=4))  # a generous writer: 7 to 8 bytes a label
    np.testing.assert_array_equal(load_array(path, what="labels", rows=1000), labels)
    limit = 1000 * TEXT_BYTES_PER_VALUE + 4096
    sparse(path, limit + 1, path.read_bytes())
    monkeypatch.setattr(json, "load", lambda fh: pytest.fail("the file was parsed"))
    with pytest.raises(DataFileError, match=r"labels file .* is 68\.1 kB, more than 1,000 values can take as text "
                                            r"\(at most 68\.1 kB\); it is not the file for these 1,000 rows"):
        load_array(path, what="labels", rows=1000)
    with pytest.raises(DataFileError, match="more than 1,000 values can take"):
        as_labels(path, "clean_labels", length=1000)  # the row count reaches the read through as_labels


def test_dividemix_noise_files_are_bounded_too(tmp_path, monkeypatch, no_parsing):
    monkeypatch.setattr(dmlp_io, "available_memory", lambda: 10 ** 8)
    with pytest.raises(DataFileError, match="DivideMix noise file .*0.5_sym.json is 10.0 MB of text"):
        DivideMixAdapter().read_labels(sparse(tmp_path / "0.5_sym.json", 10 ** 7, b"[1"))


def test_the_command_line_says_it_in_one_line(tmp_path, capsys, monkeypatch, no_parsing):
    monkeypatch.setattr(dmlp_io, "available_memory", lambda: 10 ** 8)
    labels = sparse(tmp_path / "clean.txt", 10 ** 8)
    code = main(["noise", "--labels", str(labels), "--rate", "0.2", "-o", str(tmp_path / "noisy.npy")])
    err = " ".join(capsys.readouterr().err.split())  # the console wraps its one line
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert err.startswith(f"error: clean label file {labels} is 100.0 MB of text")
    assert not (tmp_path / "noisy.npy").exists()


def test_a_pipe_or_a_device_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "labels.txt"
    os.mkfifo(fifo)  # no writer: a plain open() would wait for one forever
    with pytest.raises(DataFileError, match="labels file .* is not a regular file"):
        load_array(fifo, what="labels")
    if Path("/dev/zero").exists():
        (tmp_path / "zero.json").symlink_to("/dev/zero")  # endless, and its size reads 0
        with pytest.raises(DataFileError, match="not a regular file"):
            load_array(tmp_path / "zero.json", what="labels")


def test_json_nested_past_the_interpreter_is_one_error(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("[" * 200_000)
    with pytest.raises(CorruptFileError, match="its JSON is nested too deeply"):
        load_array(path, what="labels")


def test_text_that_fits_still_loads(tmp_path):
    (tmp_path / "a.txt").write_text("\ufeff3\n1\n2\n")  # a byte-order mark, as spreadsheets write
    (tmp_path / "b.json").write_text("[[0.5, 0.5], [1, 0]]")
    np.testing.assert_array_equal(load_array(tmp_path / "a.txt", rows=3), [3, 1, 2])
    np.testing.assert_array_equal(load_array(tmp_path / "b.json"), [[0.5, 0.5], [1, 0]])


def test_a_huge_labelled_csv_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(dmlp_io, "available_memory", lambda: 10 ** 9)
    path = sparse(tmp_path / "labelled.csv", 10 ** 8, b"index,true_label\n")
    with pytest.raises(DataFileError, match="labelled CSV file .* is 100.0 MB of text"):
        read_labelled_csv(path)
