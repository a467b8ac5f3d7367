"""The small things a first hour trips over: Ctrl-C says what was kept, a text features file is
refused with what to do, `dmlp adapters list` never cuts a URL, and `dmlp run`'s integrity
switch prints no FutureWarning."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dmlp_plugin.cli import main


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    import dmlp_plugin.report as report

    monkeypatch.setattr(report, "write_report", _interrupt)
    assert main(["report", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted; nothing written"


def test_ctrl_c_in_reproduce_says_the_finished_cells_are_kept(tmp_path, monkeypatch, capsys):
    import dmlp_plugin.reproduce.runner as runner

    monkeypatch.setattr(runner, "run_table", _interrupt)
    np.savez(tmp_path / "f.npz", train=np.zeros((4, 2)), test=np.zeros((2, 2)))
    (tmp_path / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / "cifar" / "cifar-10-batches-py" / name).write_bytes(b"")
    assert main(["reproduce", "table1", "--smoke", "--results-dir", str(tmp_path / "r"), "--features",
                 str(tmp_path / "f.npz"), "--cifar-root", str(tmp_path / "cifar"), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"interrupted; the cells finished so far are kept in {tmp_path / 'r'}, and a rerun continues"


def test_a_text_features_file_is_refused_before_any_work(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "f.txt", rng.normal(size=(20, 3)))
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    np.save(tmp_path / "vi.npy", np.arange(4))
    np.save(tmp_path / "vl.npy", np.arange(4) % 2)
    args = ["purify", "--features", str(tmp_path / "f.txt"), "--labels", str(tmp_path / "y.npy"), "--val-indices",
            str(tmp_path / "vi.npy"), "--val-labels", str(tmp_path / "vl.npy"), "-o", str(tmp_path / "out.npz")]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: --features f.txt: features must be .npy, .npz or .pt") and "numpy.save" in err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("width", [40, 200])
def test_adapters_list_prints_every_url_whole(monkeypatch, capsys, width):
    from dmlp_plugin.cli import console as console_module
    from dmlp_plugin.plugins import list_adapters, get_adapter

    monkeypatch.setattr(console_module.console, "width", width)
    assert main(["adapters", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_adapters():
        url = str(get_adapter(name).upstream)
        assert any(line.split()[:1] == [name] and line.rstrip().endswith(url) for line in out.splitlines()), url
    assert "…" not in out


def test_skipping_integrity_checks_prints_no_future_warning():
    code = """
import warnings
warnings.simplefilter("error")  # any warning, FutureWarning included, fails the run
import torch, torch.distributed, torchvision
from dmlp_integrations import cpu
cpu.skip_integrity_checks()
import torchvision.datasets as d
assert d.CIFAR10._check_integrity(None) and d.utils.check_integrity("/no/such/file")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert "Warning" not in done.stderr
