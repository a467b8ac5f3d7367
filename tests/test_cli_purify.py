"""`dmlp purify`, `dmlp demo`, and purification straight from a dataset on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dmlp_plugin import PurifyResult, purify_dataset
from dmlp_plugin.cli import main
from dmlp_plugin.data import ArrayDataset, ImageFolder


def _planted(n=900, c=3, d=12, noise=0.45, seed=0):
    """Gaussian clusters with symmetric noise; trusted indices drawn from their own stream."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    features = (rng.normal(0, 1, (c, d)) * 2.0)[clean] + rng.normal(0, 1, (n, d))
    flip = rng.random(n) < noise
    noisy = np.where(flip, rng.integers(0, c, n), clean)
    trusted = np.random.default_rng(seed + 1000).choice(n, 90, replace=False)
    return features.astype(np.float32), noisy, clean, trusted


@pytest.fixture
def files(tmp_path):
    features, noisy, clean, trusted = _planted()
    paths = {}
    for name, arr in {"features": features, "labels": noisy, "clean": clean, "vi": trusted,
                      "vl": clean[trusted]}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    json_labels = tmp_path / "noisy.json"
    json_labels.write_text(json.dumps(noisy.tolist()))  # DivideMix's noise-file format
    paths["json_labels"] = json_labels
    paths["arrays"] = (features, noisy, clean, trusted)
    return paths


#: One least-squares round: these tests are about the command line.
ONE_ROUND = ("--set", "rounds=1")


def _args(files, out, *extra, config=ONE_ROUND):
    return ["purify", "--features", str(files["features"]), "--labels", str(files["labels"]),
            "--val-indices", str(files["vi"]), "--val-labels", str(files["vl"]),
            "-o", str(out), "--no-progress", *config, *extra]


def test_purify_writes_a_result_that_improves_labels_and_exports(files, tmp_path, capsys):
    out = tmp_path / "res" / "purified.npz"
    code = main(_args(files, out, "--clean-labels", str(files["clean"]), "--export", "dividemix"))
    assert code == 0
    result = PurifyResult.load(out)
    _, noisy, clean, trusted = files["arrays"]
    assert result.accuracy(clean) > (noisy == clean).mean() + 0.15
    exported = json.loads((tmp_path / "res" / "purified.json").read_text())
    assert exported == result.labels.tolist()
    shown = "".join(capsys.readouterr().out.split())  # paths may be folded across lines
    assert "labelaccuracy" in shown and "purified.json" in shown


def test_purify_reads_a_dividemix_json_label_file(files, tmp_path):
    out = tmp_path / "from_json.npz"
    args = _args(files, out)
    args[args.index("--labels") + 1] = str(files["json_labels"])
    assert main(args) == 0
    assert (PurifyResult.load(out).given_labels == files["arrays"][1]).all()


def test_purify_matches_the_python_api(files, tmp_path):
    out = tmp_path / "cli.npz"
    assert main(_args(files, out, "--set", "round_eta=0.3", "--set", "logistic_weight_decay=0.01")) == 0
    features, noisy, clean, trusted = files["arrays"]
    from dmlp_plugin import PurifyConfig

    config = PurifyConfig(rounds=1, round_eta=0.3, logistic_weight_decay=(0.01,))
    api = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted], config=config, seed=0,
                         device="cpu")
    cli = PurifyResult.load(out)
    assert cli.config == config
    np.testing.assert_array_equal(cli.soft_labels, api.soft_labels)


def test_paper_mode_from_the_command_line_matches_the_python_api(files, tmp_path):
    out = tmp_path / "paper.npz"
    paper = ("--mode", "paper", "--epochs", "4", "--set", "eac_period=2", "--set", "batch_size=300")
    assert main(_args(files, out, config=paper)) == 0
    features, noisy, clean, trusted = files["arrays"]
    from dmlp_plugin import PurifyConfig

    config = PurifyConfig.paper(epochs=4, eac_period=2, batch_size=300)
    api = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted], config=config, seed=0,
                         device="cpu")
    cli = PurifyResult.load(out)
    assert cli.config == config and [r["epoch"] for r in cli.history] == [1, 2, 3, 4]
    np.testing.assert_array_equal(cli.soft_labels, api.soft_labels)


@pytest.mark.parametrize("extra, message", [
    (["--set", "round_etaa=0.3"], "did you mean 'round_eta'"),
    (["--set", "round_eta"], "FIELD=VALUE"),
    (["--set", "rounds=many"], "rounds"),
    (["--set", "eac_eta=0.3"], "'eac_eta' (a setting of the paper pipeline, --mode paper"),
    (["--mode", "paper", "--set", "rounds=3"], "'rounds' (a setting of the default pipeline, --mode default"),
])
def test_purify_rejects_bad_config_without_writing(files, tmp_path, capsys, extra, message):
    out = tmp_path / "never.npz"
    assert main(_args(files, out, *extra, config=())) == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("mode", [[], ["--mode", "default"]], ids=["implicit", "explicit"])
def test_epochs_outside_paper_mode_fail_with_one_line_naming_rounds(files, tmp_path, capsys, mode):
    out = tmp_path / "never.npz"
    assert main(_args(files, out, *mode, "--epochs", "5", config=())) == 2
    err = _one_line_error(capsys)
    assert "--epochs is a setting of --mode paper" in err and "--set rounds=K" in err
    assert not out.exists()


def _one_line_error(capsys) -> str:
    """The error's one line (rich wraps it at the console's width), with no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[0].startswith("error:")
    return " ".join(" ".join(lines).split())


def test_purify_bad_labels_exit_2_and_leave_no_file(files, tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    labels = files["arrays"][1].copy()
    labels[5] = -1
    np.save(bad, labels)
    out = tmp_path / "never.npz"
    args = _args(files, out)
    args[args.index("--labels") + 1] = str(bad)
    assert main(args) == 2
    assert "negative" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never.npz*"))


def test_purify_missing_file_is_named(files, tmp_path, capsys):
    args = _args(files, tmp_path / "x.npz")
    args[args.index("--features") + 1] = str(tmp_path / "nope.npy")
    assert main(args) == 2
    assert "nope.npy" in capsys.readouterr().err


def test_demo_improves_label_accuracy(capsys):
    assert main(["demo", "--no-progress", "--noise", "0.5"]) == 0
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if "label accuracy" in l)
    before, after = (float(p.split("%")[0].split()[-1]) for p in line.split("→"))
    # 50% DivideMix noise leaves ~55% right; the default purifier reaches ~80% on these
    # EfficientNet-Lite0 features (the k-means features shipped before reached ~66%).
    assert 50 < before < 60 and after > before + 18
    table = " ".join(text.replace("│", " ").split())  # cells may wrap over lines
    chosen = table[table.index("labels from"):]
    assert chosen.split()[2] in ("logistic", "round") and "trusted log-loss" in chosen[:120]


def test_purify_from_a_dataset_with_kmeans_features():
    """Images whose colour encodes the class: unsupervised features must separate them."""
    rng = np.random.default_rng(0)
    c, n = 3, 300
    clean = rng.integers(0, c, n)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]])
    images = np.clip(colours[clean][:, None, None, :] + rng.normal(0, 30, (n, 12, 12, 3)), 0, 255)
    noisy = np.where(rng.random(n) < 0.5, rng.integers(0, c, n), clean)
    dataset = ArrayDataset(images.astype(np.uint8), noisy)
    trusted = np.random.default_rng(9).choice(n, 30, replace=False)
    result = purify_dataset(dataset, backbone="kmeans", val_indices=trusted, val_labels=clean[trusted],
                            num_classes=c, config=None, seed=0,
                            feature_options=dict(cache=False, progress=False, num_centroids=16, output_dim=8))
    assert (result.given_labels == noisy).all()  # labels default to the dataset's targets
    assert result.accuracy(clean) > 0.95 > (noisy == clean).mean() + 0.2


def test_cli_purify_dataset_from_an_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    colours = {"red": (220, 30, 30), "green": (30, 220, 30)}
    clean = []
    for k, (name, colour) in enumerate(colours.items()):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(40):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (10, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / name / f"{i:02d}.png")
    folder = ImageFolder(tmp_path / "imgs")
    clean = np.asarray(folder.targets)
    noisy = np.where(rng.random(len(clean)) < 0.3, 1 - clean, clean)
    trusted = np.array([0, 1, 2, 40, 41, 42])
    for name, arr in {"noisy": noisy, "vi": trusted, "vl": clean[trusted]}.items():
        np.save(tmp_path / f"{name}.npy", arr)
    out = tmp_path / "out.npz"
    code = main(["purify", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"),
                 "--backbone", "kmeans", "--labels", str(tmp_path / "noisy.npy"),
                 "--val-indices", str(tmp_path / "vi.npy"), "--val-labels", str(tmp_path / "vl.npy"),
                 "-o", str(out), "--no-progress", *ONE_ROUND])
    assert code == 0
    result = PurifyResult.load(out)
    assert result.accuracy(clean) > (noisy == clean).mean()
    assert result.class_names == ["green", "red"]


def test_purify_reads_labels_from_a_torch_file_holding_numpy_arrays(files, tmp_path):
    """CIFAR-N label files are torch.save'd dicts of numpy arrays; --labels-key picks one."""
    import torch

    noisy = files["arrays"][1]
    path = tmp_path / "human.pt"
    torch.save({"worse_label": noisy, "clean_label": files["arrays"][2]}, path)
    out = tmp_path / "from_pt.npz"
    args = _args(files, out, "--labels-key", "worse_label")
    args[args.index("--labels") + 1] = str(path)
    assert main(args) == 0
    assert (PurifyResult.load(out).given_labels == noisy).all()


def _table_text(out: str) -> str:
    """The summary table's text with its borders dropped and wrapped cells joined."""
    return " ".join(out.replace("│", " ").split())


def test_estimate_accuracy_flag_prints_and_saves_the_estimate(files, tmp_path, capsys):
    out = tmp_path / "est.npz"
    assert main(_args(files, out, "--estimate-accuracy", "--estimate-folds", "3")) == 0
    result = PurifyResult.load(out)
    est = result.accuracy_estimate
    assert est is not None and est.folds == 3 and est.num_rows == 90
    _, noisy, clean, trusted = files["arrays"]
    assert est.given_accuracy == (noisy[trusted] == clean[trusted]).mean()
    shown = _table_text(capsys.readouterr().out)
    low, high = est.interval
    assert (f"estimated accuracy {est.accuracy:.2%} (95% Wilson interval {low:.2%}–{high:.2%}; "
            "3-fold cross-fit on 90 trusted rows)") in shown
    assert f"given labels, same rows {est.given_accuracy:.2%}" in shown
    assert ("warning" in shown) == est.worse_than_given


def test_estimate_accuracy_flag_shows_the_warning_when_labels_get_worse(tmp_path, capsys):
    """Weakly separated clusters with 10% noise: replacing every label by the linear head's
    prediction (the paper's loop without IPC, η = 1: no candidate selection) loses points."""
    from engine_fixtures import planted_clusters

    data = planted_clusters(n=1500, num_trusted=300, rate=0.1, separation=1.5)
    paths = {}
    for name, arr in {"features": data.features, "labels": data.given, "vi": data.trusted,
                      "vl": data.clean[data.trusted]}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    out = tmp_path / "worse.npz"
    args = _args(paths, out, "--estimate-accuracy", config=("--mode", "paper", "--epochs", "10", "--set", "ipc=false",
                                                            "--set", "eac_period=5"))
    with pytest.warns(RuntimeWarning, match="look worse than the given ones"):
        assert main(args) == 0
    est = PurifyResult.load(out).accuracy_estimate
    assert est.worse_than_given and est.accuracy < est.given_accuracy - 0.2
    shown = _table_text(capsys.readouterr().out)
    assert "warning the purified labels look worse than the given ones" in shown


def test_estimate_accuracy_flag_with_a_separate_trusted_set_exits_2(files, tmp_path, capsys):
    features, noisy, clean, trusted = files["arrays"]
    vf = tmp_path / "vf.npy"
    np.save(vf, features[trusted])
    out = tmp_path / "never.npz"
    args = ["purify", "--features", str(files["features"]), "--labels", str(files["labels"]),
            "--val-features", str(vf), "--val-labels", str(files["vl"]), "-o", str(out), "--no-progress",
            "--estimate-accuracy"]
    assert main(args) == 2
    assert "--estimate-accuracy needs --val-indices" in capsys.readouterr().err
    assert not out.exists()
