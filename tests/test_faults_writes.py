"""Faults while writing an output: kills at every step, a full disk, no permission, no memory.

Kills happen in a forked child that ``os._exit``\\ s at the chosen step of the writer's
fault hook (no cleanup of ours runs, as with SIGKILL). ENOSPC and EACCES are injected into
``os.fsync``/``os.replace``; a real full disk comes from ``RLIMIT_FSIZE`` (any POSIX
system) and from a tiny tmpfs where the test may mount one (root with CAP_SYS_ADMIN).
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from dmlp_plugin import atomic
from dmlp_plugin.atomic import atomic_write, remove_stale_temps
from dmlp_plugin.cli import main
from dmlp_plugin.cli import noise as noise_cli
from dmlp_plugin.errors import DataFileError
from dmlp_plugin.io import check_output_path

KILLED = 137
STEPS = ["created", "written", "synced", "replaced"]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".dmlp-" in p.name)


def write_killed_at(path: Path, data: bytes, step: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            atomic.fault_hook = lambda at, target: os._exit(KILLED) if at == step else None
            with atomic_write(path) as fh:
                fh.write(data)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("step", STEPS)
def test_a_killed_write_leaves_old_or_new_and_the_next_write_cleans_up(tmp_path, step):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")
    assert write_killed_at(target, b"new" * 1000, step) == KILLED
    assert target.read_bytes() in (b"old", b"new" * 1000)  # never a half-written file
    assert target.read_bytes() == (b"new" * 1000 if step == "replaced" else b"old")
    if step != "replaced":
        assert len(leftovers(tmp_path)) == 1  # the killed writer's temporary file
    with atomic_write(target) as fh:
        fh.write(b"later")
    assert target.read_bytes() == b"later" and leftovers(tmp_path) == []


def test_a_later_run_cleans_up_before_it_starts(tmp_path):
    target = tmp_path / "out.npz"
    assert write_killed_at(target, b"x" * 100, "written") == KILLED
    assert leftovers(tmp_path)
    check_output_path(target, "output")  # what every command does before its work
    assert leftovers(tmp_path) == []


def fake_temp(folder: Path, name: str, host: str, pid: int, age: float = 0.0) -> Path:
    path = folder / f"{atomic.temp_prefix(name)}{host}-{pid}-abc123.tmp"
    path.write_bytes(b"partial")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_only_temporary_files_of_dead_writers_of_the_same_target_go(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        host = atomic._host_tag()
        dead = fake_temp(tmp_path, "out.npz", host, gone.pid)
        alive = fake_temp(tmp_path, "out.npz", host, live.pid)
        other_target = fake_temp(tmp_path, "other.npz", host, gone.pid)
        foreign_recent = fake_temp(tmp_path, "out.npz", "ffffff", gone.pid)
        foreign_old = fake_temp(tmp_path, "out.npz", "eeeeee", gone.pid, age=2 * 24 * 3600)
        (tmp_path / ".out.npz.user-file.tmp").write_text("not ours")
        assert sorted(remove_stale_temps(tmp_path / "out.npz")) == sorted([dead, foreign_old])
        assert alive.exists() and other_target.exists() and foreign_recent.exists()
        assert (tmp_path / ".out.npz.user-file.tmp").exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("where,error,words", [
    ("fsync", errno.ENOSPC, "no space left on device"),
    ("fsync", errno.EDQUOT, "disk quota exceeded"),
    ("replace", errno.EACCES, "permission denied"),
    ("replace", errno.EROFS, "read-only file system"),
])
def test_a_failed_write_is_one_error_naming_the_file_and_changes_nothing(tmp_path, monkeypatch, where, error, words):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, where, fail)
    with pytest.raises(DataFileError, match=f"cannot write {target}: {words}"):
        with atomic_write(target) as fh:
            fh.write(b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_errors_of_the_callers_own_reads_are_not_called_write_errors(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_write(tmp_path / "out.npy"):
            raise PermissionError(errno.EACCES, "Permission denied", "/some/input")
    assert leftovers(tmp_path) == []


# -- the command line: one line, no traceback -----------------------------------------------------


@pytest.fixture
def labels_file(tmp_path) -> Path:
    path = tmp_path / "clean.npy"
    np.save(path, np.arange(50_000) % 10)
    return path


def noise_args(labels: Path, out: Path) -> list[str]:
    return ["noise", "--labels", str(labels), "--kind", "symmetric", "--rate", "0.5", "-o", str(out)]


def run_in_child(args: list[str], err_file: Path, limit: int | None = None) -> int:
    """``main(args)`` in a forked child, its stderr to ``err_file``, with at most ``limit`` bytes per file."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            sys.stderr = open(err_file, "w")
            if limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            code = main(args)
            sys.stderr.flush()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_file_size_limit_mid_write_is_one_line(tmp_path, labels_file):
    out, err = tmp_path / "noisy.npy", tmp_path / "err.txt"
    code = run_in_child(noise_args(labels_file, out), err, limit=64 << 10)  # the labels need 400 kB
    text = " ".join(err.read_text().split())
    # numpy's short write loses the errno; the message still names the file and the likely cause
    assert code == 2 and text.startswith(f"error: cannot write {out}: only part of it could be written"), text
    assert text.endswith("the disk is full, or a file-size limit was reached")
    assert "Traceback" not in text and not out.exists() and leftovers(tmp_path) == []


@contextmanager
def tiny_tmpfs(folder: Path, size: str):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the file-size-limit test covers ENOSPC")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_refused_before_the_work_and_a_write_that_fills_it_is_one_line(tmp_path, labels_file, capsys):
    with tiny_tmpfs(tmp_path / "small", "64k") as small:
        assert main(noise_args(labels_file, small / "noisy.npy")) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "not enough disk space for --output" in err and "it needs up to 400.3 kB" in err, err
        assert list(small.iterdir()) == []
        (small / "filler").write_bytes(b"x" * (60 << 10))
        with pytest.raises(DataFileError, match="no space left on device"):
            with atomic_write(small / "big.bin") as fh:
                fh.write(b"y" * (32 << 10))
        assert sorted(p.name for p in small.iterdir()) == ["filler"]


@pytest.mark.parametrize("failure,status,line", [
    (lambda: np.zeros(10 ** 15), 1, "error: out of memory: Unable to allocate"),
    (lambda: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied", "/data/clean.npy")), 1,
     "error: permission denied: /data/clean.npy"),
    (lambda: (_ for _ in ()).throw(KeyError("boom")), 1, "error: internal error (KeyError: 'boom'); rerun with "
     "DMLP_DEBUG=1 for the traceback and report it"),
])
def test_memory_and_permission_errors_are_one_line_and_debug_brings_the_traceback(
        tmp_path, monkeypatch, capsys, failure, status, line):
    monkeypatch.setattr(noise_cli, "read_clean_labels", lambda args: failure())
    args = noise_args(tmp_path / "clean.npy", tmp_path / "out.npy")
    assert main(args) == status
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith(line) and "Traceback" not in err
    monkeypatch.setenv("DMLP_DEBUG", "1")
    with pytest.raises((MemoryError, OSError, KeyError)):
        main(args)
