"""Bounded reads: an array file's declared size is checked before anything is read.

The hostile test read a 1.9 MB ``.npz`` that inflates to 2 GB in full before any shape
check, and got numpy's raw ``_ArrayMemoryError`` from a declared shape of 10**12.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dmlp_plugin import io as dmlp_io
from dmlp_plugin.cli import main
from dmlp_plugin.errors import CorruptFileError, DataFileError
from dmlp_plugin.io import load_array, open_npz
from dmlp_plugin.result import PurifyResult

HUGE = (10 ** 12,)


def npy_bytes(shape: tuple[int, ...], body: bytes, dtype: str = "<f8") -> bytes:
    """A ``.npy`` whose header declares ``shape`` but which holds only ``body``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + body


@pytest.fixture
def no_reading(monkeypatch):
    """Fail the test if numpy reads an array's data."""
    def read_array(*args, **kwargs):
        raise AssertionError("the array was read")

    monkeypatch.setattr(np.lib.format, "read_array", read_array)


def test_a_npy_declaring_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "features.npy"
    path.write_bytes(npy_bytes(HUGE, bytes(16)))
    with pytest.raises(CorruptFileError, match=r"declares shape \(1000000000000,\) float64 \(8000.0 GB\) but holds "
                                               r"only 16 B of data: it is truncated or damaged"):
        load_array(path, what="features")


def test_a_npz_entry_declaring_more_than_it_holds_is_refused(tmp_path, no_reading):
    path = tmp_path / "labels.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.npy", npy_bytes(HUGE, bytes(16)))
    with pytest.raises(CorruptFileError, match=r"array 'labels.npy' declares shape \(1000000000000,\) float64 "
                                               r"\(8000.0 GB\) but the archive holds 16 B of data"):
        load_array(path, what="labels")


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch, no_reading):
    path = tmp_path / "labels.npz"
    np.savez_compressed(path, labels=np.zeros(2_000_000))  # 16 MB of zeros, a few kB on disk
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(dmlp_io, "available_memory", lambda: 8_000_000)
    with pytest.raises(DataFileError, match=r"inflates to 16.0 MB \(array 'labels': shape \(2000000,\) float64 "
                                            r"\(16.0 MB\)\), more than the 8.0 MB of memory available"):
        load_array(path, what="labels")
    with pytest.raises(CorruptFileError, match="inflates to 16.0 MB"):
        PurifyResult.load(path)


def test_an_array_that_fits_still_loads(tmp_path, monkeypatch):
    path = tmp_path / "labels.npz"
    np.savez_compressed(path, labels=np.arange(500_000))  # 4 MB
    monkeypatch.setattr(dmlp_io, "available_memory", lambda: 8_000_000)
    np.testing.assert_array_equal(load_array(path, what="labels"), np.arange(500_000))


def patch_sizes(path: Path, file_size: int) -> None:
    """Rewrite the uncompressed size the zip's headers give for its (only) entry."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature) + offset
        data[at:at + 4] = file_size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_an_entry_claiming_more_than_deflate_can_give_is_refused(tmp_path, no_reading):
    path = tmp_path / "labels.npz"
    np.savez_compressed(path, labels=np.arange(1000))
    patch_sizes(path, 2 ** 32 - 1)
    with pytest.raises(CorruptFileError, match="claims to inflate .* to 4.3 GB, more than compression allows"):
        load_array(path, what="labels")


def test_a_npy_given_where_a_result_belongs_says_so(tmp_path):
    np.save(tmp_path / "purified.npy", np.arange(3))
    (tmp_path / "purified.txt").write_text("1 2 3\n")
    with pytest.raises(CorruptFileError, match=r"is a single numpy array \(\.npy\), not a dmlp-plugin result"):
        PurifyResult.load(tmp_path / "purified.npy")
    with pytest.raises(CorruptFileError, match=r"is not a \.npz archive \(not a zip archive\)"):
        open_npz(tmp_path / "purified.txt", what="labels")


def test_the_command_line_reports_a_bad_array_in_one_line(tmp_path, capsys):
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    (tmp_path / "features.npy").write_bytes(npy_bytes(HUGE, bytes(16)))
    code = main(["purify", "--features", str(tmp_path / "features.npy"), "--labels", str(tmp_path / "labels.npy"),
                 "--val-indices", str(tmp_path / "labels.npy"), "--val-labels", str(tmp_path / "labels.npy"),
                 "-o", str(tmp_path / "out.npz"), "--no-progress"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and err.startswith("error: --features file") and "declares shape (1000000000000,)" in err
    assert "Traceback" not in err and "MemoryError" not in err
