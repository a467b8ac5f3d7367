"""Every user mistake on the command line gets one line naming the flag, exit 2, no
traceback, and no work done or file written (issue 11's list, one test each)."""

from __future__ import annotations

import numpy as np
import pytest

import dmlp_plugin
from dmlp_plugin.cli import main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, 400)
    features = (3 * np.eye(10, 16)[clean] + rng.normal(size=(400, 16))).astype(np.float32)
    noisy = np.where(rng.random(400) < 0.4, rng.integers(0, 10, 400), clean)
    trusted = np.concatenate([np.flatnonzero(clean == k)[:5] for k in range(10)])
    paths = {}
    for name, arr in {"features": features, "labels": noisy, "clean": clean, "vi": trusted,
                      "vl": clean[trusted]}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    return paths


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if purification starts: these mistakes must be caught before."""
    def refuse(*args, **kwargs):
        raise AssertionError("purify_dataset ran before the mistake was reported")
    monkeypatch.setattr(dmlp_plugin, "purify_dataset", refuse)


def _args(files, out, *extra, **replace):
    flags = {"--features": files["features"], "--labels": files["labels"], "--val-indices": files["vi"],
             "--val-labels": files["vl"], "-o": out}
    for flag, value in replace.items():
        flags["--" + flag.replace("_", "-")] = value
    argv = ["purify", "--no-progress", "--set", "rounds=2"]
    for flag, value in flags.items():
        if value is not None:
            argv += [flag, str(value)]
    return argv + list(extra)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:")
    return " ".join(" ".join(lines).split())  # rich may wrap a long line


def test_output_under_a_file_is_refused_before_any_work(files, tmp_path, capsys, no_work):
    blocker = tmp_path / "file.npy"
    blocker.write_text("x")
    assert main(_args(files, blocker / "out.npz")) == 2
    msg = _one_line_error(capsys)
    assert "--output" in msg and "is a file, not a folder" in msg


def test_output_with_the_wrong_suffix_or_a_folder_is_refused(files, tmp_path, capsys, no_work):
    assert main(_args(files, tmp_path / "out.npy")) == 2
    assert "--output must end in .npz" in _one_line_error(capsys)
    folder = tmp_path / "somewhere.npz"
    folder.mkdir()
    assert main(_args(files, folder)) == 2
    assert "is a folder" in _one_line_error(capsys)


def test_export_path_under_a_file_is_refused_before_any_work(files, tmp_path, capsys, no_work):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    argv = _args(files, tmp_path / "out.npz", "--export", "npy", "--export-path", str(blocker / "labels.npy"))
    assert main(argv) == 2
    msg = _one_line_error(capsys)
    assert "--export-path" in msg and "not a folder" in msg
    assert not (tmp_path / "out.npz").exists()
    assert main(_args(files, tmp_path / "out.npz", "--export-path", str(tmp_path / "x.npy"))) == 2
    assert "--export-path needs --export" in _one_line_error(capsys)


def test_a_features_file_with_several_arrays_names_the_features_key_flag(files, tmp_path, capsys):
    npz = tmp_path / "feats.npz"
    np.savez(npz, train=np.load(files["features"]), test=np.load(files["features"])[:5])
    assert main(_args(files, tmp_path / "out.npz", features=npz)) == 2
    msg = _one_line_error(capsys)
    assert "name one with --features-key" in msg and "key=" not in msg


def test_bad_trusted_indices_name_the_val_indices_flag(files, tmp_path, capsys):
    bad = tmp_path / "vi_bad.npy"
    np.save(bad, np.concatenate([np.load(files["vi"])[:-1], [400]]))
    assert main(_args(files, tmp_path / "out.npz", val_indices=bad)) == 2
    msg = _one_line_error(capsys)
    assert "--val-indices has 1 index(es) outside [0, 400)" in msg and "val_indices" not in msg


def test_fractional_labels_name_the_labels_flag(files, tmp_path, capsys):
    bad = tmp_path / "soft.npy"
    np.save(bad, np.load(files["labels"]) + 0.25)
    assert main(_args(files, tmp_path / "out.npz", labels=bad)) == 2
    msg = _one_line_error(capsys)
    assert "--labels must be integer class indices" in msg and "astype" not in msg


def test_a_trusted_label_above_every_class_is_called_a_typo_not_missing_classes(files, tmp_path, capsys):
    vl = np.load(files["vl"])
    vl[3] = 12
    bad = tmp_path / "vl_bad.npy"
    np.save(bad, vl)
    assert main(_args(files, tmp_path / "out.npz", val_labels=bad)) == 2
    msg = _one_line_error(capsys)
    assert "--val-labels contain class 12, but --labels only go up to class 9" in msg
    assert "missing" not in msg and "--num-classes" in msg


def test_a_text_file_named_npy_says_it_is_text(files, tmp_path, capsys):
    text = tmp_path / "labels.npy"
    text.write_text("\n".join(map(str, np.load(files["labels"]))))
    assert main(_args(files, tmp_path / "out.npz", labels=text)) == 2
    msg = _one_line_error(capsys)
    assert "--labels file" in msg and "not a numpy .npy file" in msg and "looks like text" in msg
    assert "pickle" not in msg


def test_both_or_neither_trusted_form_is_one_message(files, tmp_path, capsys, no_work):
    assert main(_args(files, tmp_path / "out.npz", val_features=files["features"])) == 2
    assert "pass exactly one of --val-indices or --val-features" in _one_line_error(capsys)
    assert main(_args(files, tmp_path / "out.npz", val_indices=None)) == 2
    assert "pass exactly one of --val-indices or --val-features" in _one_line_error(capsys)


def test_an_unknown_config_field_suggests_the_close_one(files, tmp_path, capsys, no_work):
    assert main(_args(files, tmp_path / "out.npz", "--set", "eta=0.3")) == 2
    msg = _one_line_error(capsys)
    assert "did you mean 'round_eta'" in msg and "extra" not in msg


def test_bad_thread_counts_are_refused_by_the_parser(files, tmp_path, capsys, no_work):
    with pytest.raises(SystemExit) as info:
        main(_args(files, tmp_path / "out.npz", "--threads", "0"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and "expected a count >= 1 or auto" in err and "Traceback" not in err


def test_summary_labels_its_accuracy_as_non_trusted_rows(files, tmp_path, capsys):
    out = tmp_path / "out.npz"
    assert main(_args(files, out, "--clean-labels", str(files["clean"]), "--threads", "1")) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "label accuracy (non-trusted rows)" in text
    result = dmlp_plugin.PurifyResult.load(out)
    clean = np.load(files["clean"])
    shown = f"{result.accuracy(clean, exclude_trusted=True):.2%}"
    assert shown in text and result.metadata["threads"] == 1


def test_plot_writes_a_png_of_the_run(files, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    plot = tmp_path / "plots" / "run.png"
    assert main(_args(files, tmp_path / "out.npz", "--clean-labels", str(files["clean"]), "--plot", str(plot))) == 0
    image = imread(plot)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0  # a picture, not a blank
    assert "run.png" in "".join(capsys.readouterr().out.split())


def test_plot_path_and_missing_matplotlib_are_refused_before_any_work(files, tmp_path, capsys, no_work,
                                                                    monkeypatch):
    assert main(_args(files, tmp_path / "out.npz", "--plot", str(tmp_path / "run.jpg"))) == 2
    assert "--plot must end in .png" in _one_line_error(capsys)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(_args(files, tmp_path / "out.npz", "--plot", str(tmp_path / "run.png"))) == 2
    msg = _one_line_error(capsys)
    assert "pip install 'dmlp-plugin[plot]'" in msg  # brackets survive rich's markup
