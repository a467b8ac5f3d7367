"""``dmlp noise``: writes what the API makes, reports the realised rate, fails cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_data_cifar import write_cifar10
from test_noise_cifar_n import cifar10n_table, write_pt

from dmlp_plugin import cli
from dmlp_plugin.noise import make_noisy_labels


@pytest.fixture
def dmlp(monkeypatch, capsys):
    """Run ``dmlp`` with only this subcommand registered; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMANDS", ("noise",))

    def run(*argv):
        code = cli.main(["noise", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, " ".join(err.split())  # undo rich's line wrapping
    return run


@pytest.fixture
def clean(tmp_path):
    labels = np.random.default_rng(0).integers(0, 10, 4000)
    np.save(tmp_path / "clean.npy", labels)
    return tmp_path / "clean.npy", labels


def test_writes_the_api_labels_and_reports_both_rates(dmlp, clean, tmp_path):
    path, labels = clean
    code, out, _ = dmlp("--labels", path, "--rate", 0.5, "--seed", 3, "-o", tmp_path / "noisy.npy")
    assert code == 0
    expected = make_noisy_labels(labels, kind="symmetric", rate=0.5, seed=3)
    written = np.load(tmp_path / "noisy.npy")
    assert written.dtype == np.int64
    np.testing.assert_array_equal(written, expected.noisy_labels)
    assert "50.00%" in out and f"{expected.realised_rate:.2%}" in out and "4,000" in out
    assert 0.42 < expected.realised_rate < 0.48  # the DivideMix convention keeps ~1/10 of the draws right
    assert str(tmp_path / "noisy.npy") in "".join(out.split())  # the full path, however wrapped


def test_json_output_is_the_dividemix_noise_file(dmlp, clean, tmp_path):
    path, labels = clean
    code, out, _ = dmlp("--labels", path, "--kind", "asymmetric", "--dataset", "cifar10", "--rate", 0.4,
                        "--convention", "exclusive", "-o", tmp_path / "noise.json")
    assert code == 0 and "dividemix" in out
    written = json.loads((tmp_path / "noise.json").read_text())
    expected = make_noisy_labels(labels, kind="asymmetric", dataset="cifar10", rate=0.4, convention="exclusive")
    assert written == expected.noisy_labels.tolist()


def test_from_a_cifar_folder_with_pixel_instance_noise(dmlp, tmp_path):
    write_cifar10(tmp_path, per_batch=40)
    code, out, _ = dmlp("--dataset", "cifar10", "--root", tmp_path, "--kind", "instance", "--rate", 0.3,
                        "-o", tmp_path / "inst.npy")
    assert code == 0 and "instance" in out
    assert np.load(tmp_path / "inst.npy").shape == (200,)


def test_cifar_n_checked_against_the_dataset(dmlp, tmp_path):
    table = cifar10n_table(200)
    _, train, _ = write_cifar10(tmp_path, per_batch=40)
    table["clean_label"] = train
    table["worse_label"] = (train + 1) % 10
    pt = write_pt(tmp_path / "CIFAR-10_human.pt", table)
    code, out, _ = dmlp("--cifar-n", pt, "--dataset", "cifar10", "--root", tmp_path, "-o", tmp_path / "w.npy")
    assert code == 0 and "40.21%" in out and "100.00%" in out
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), (train + 1) % 10)
    short = write_pt(tmp_path / "short.pt", cifar10n_table(150))
    code, _, err = dmlp("--cifar-n", short, "--dataset", "cifar10", "--root", tmp_path, "-o", tmp_path / "x.npy")
    assert code == 2 and "150 labels but the dataset has 200" in err
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("args, message", [
    (["--rate", 1.5], "noise rate must be in [0, 1], got 1.5"),
    (["--rate", 0.2, "--kind", "asymmetric", "--dataset", "clothing1m"],
     "no asymmetric noise mapping for dataset 'clothing1m'; mappings are defined for cifar10, cifar100"),
    (["--kind", "symmetric"], "--rate is required"),
    (["--rate", 0.2, "--kind", "instance"], "needs --features"),
    (["--rate", 0.2, "-o", "{dir}"], "is a folder"),
])
def test_errors_leave_no_file_behind(dmlp, clean, tmp_path, args, message):
    path, _ = clean
    out = tmp_path / "out" / "noisy.npy"
    out.parent.mkdir()
    args = [a.replace("{dir}", str(out.parent)) if isinstance(a, str) else a for a in args]
    code, _, err = dmlp("--labels", path, "-o", out, *args)
    assert code == 2 and message in err
    assert not any(out.parent.iterdir())


def test_error_keeps_an_existing_output(dmlp, clean, tmp_path):
    path, _ = clean
    out = tmp_path / "noisy.json"
    out.write_text("[1, 2, 3]")
    code, _, _ = dmlp("--labels", path, "--rate", -0.5, "-o", out)
    assert code == 2 and out.read_text() == "[1, 2, 3]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.npy", "noisy.json"]


@pytest.mark.parametrize("args, message", [
    ([], "give clean labels with --labels FILE or --dataset NAME --root DIR"),
    (["--root", "."], "--root needs --dataset"),
    (["--dataset", "cifar10", "--root", "{tmp}/nowhere"], "expected the folder 'cifar-10-batches-py'"),
])
def test_missing_inputs(dmlp, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = dmlp(*args, "--rate", 0.2, "-o", tmp_path / "n.npy")
    assert code == 2 and message in err
    assert not (tmp_path / "n.npy").exists()
