"""Progress that tells the truth: a bar per stage on a terminal, plain lines in a log (at
most one a minute within a stage, with counts and rates), and the long stages of k-means,
feature extraction and writing reported as such."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from rich.console import Console

from dmlp_plugin.data import ArrayDataset
from dmlp_plugin.features.extract import extract_features, save_features
from dmlp_plugin.features.kmeans import kmeans_features
from dmlp_plugin.progress import (Reporter, format_duration, format_rate, progress_bar, reporting,
                                  stage_progress)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines_reporter(interval: float = 60.0):
    stream, clock = io.StringIO(), Clock()
    return stage_progress(True, stream=stream, clock=clock, interval=interval), stream, clock


def test_a_log_gets_a_line_per_stage_start_and_end_and_at_most_one_a_minute():
    report, stream, clock = lines_reporter()
    report("k-means clustering", 0, 400_000, unit="patches")
    for second in range(1, 601):  # ten minutes of updates, one a second
        clock.now = float(second)
        report("k-means clustering", 600 * second, 400_000, unit="patches")
    clock.now = 700.0
    report("k-means: encoding train images", 0, 50_000, unit="images")  # ends the first stage
    clock.now = 710.0
    report("k-means: encoding train images", 5_000, 50_000, unit="images")
    report.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "k-means clustering: started (400,000 patches)"
    within = [line for line in lines if line.startswith("k-means clustering: ") and "/400,000" in line]
    assert len(within) == 10  # t = 60, 120, ..., 600: never two within a minute
    assert within[0] == "k-means clustering: 36,000/400,000 patches (600/s, about 10 min left)"
    assert lines[11] == "k-means clustering: done, 360,000 patches in 11 min (510/s)"
    assert lines[12] == "k-means: encoding train images: started (50,000 images)"
    # 10 s into the new stage: no line until a minute has passed, then the end line
    assert lines[13] == "k-means: encoding train images: done, 5,000 images in 10 s (500/s)"
    assert len(lines) == 14


def test_an_unknown_total_is_counted_and_a_resumed_stage_rates_from_where_it_resumed():
    report, stream, clock = lines_reporter(interval=10)
    report("SimCLR", 300, 1_000, unit="steps")
    clock.now = 20.0
    report("SimCLR", 500, 1_000, unit="steps", detail="epoch 4 loss 5.1")
    report("scoring candidates", 0, None)
    clock.now = 50.0
    report("scoring candidates", 3, None, unit="candidates")
    report.end()
    report.end()  # nothing current: no line
    assert stream.getvalue().splitlines() == [
        "SimCLR: started (1,000 steps), resuming at 300",
        "SimCLR: 500/1,000 steps (10/s, about 50 s left); epoch 4 loss 5.1",
        "SimCLR: done, 500 steps in 20 s (10/s)",
        "scoring candidates: started",
        "scoring candidates: 3 candidates (0.1/s)",
        "scoring candidates: done, 3 candidates in 30 s (0.1/s)",
    ]


def test_a_terminal_gets_a_new_bar_for_each_stage_and_never_a_finished_one_for_work_that_goes_on():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    report = stage_progress(True, console=console, clock=Clock())
    report("purifying", 6, 6, unit="epochs")
    report("choosing the labels", 0, 3, unit="candidates")  # the epochs are done; selection is not
    tasks = report._progress.tasks
    assert [t.description for t in tasks] == ["purifying", "choosing the labels"]
    assert tasks[0].finished and not tasks[1].finished
    assert tasks[1].completed == 0 and tasks[1].total == 3
    report("choosing the labels", 2, 3)
    assert tasks[1].completed == 2 and not tasks[1].finished
    report("writing out.npz", 0, 40)  # a stage may end short of its estimate: it reads done
    assert tasks[1].finished and tasks[1].total == 2
    report.close()
    drawn = console.file.getvalue()
    assert "purifying" in drawn and "choosing the labels" in drawn and "writing out.npz" in drawn


def test_disabled_and_borrowed_reporters():
    silent = stage_progress(False)
    assert type(silent) is Reporter and not silent.enabled
    silent("anything", 1, 2)  # shows nothing, raises nothing
    report, stream, _ = lines_reporter()
    with reporting(report) as inner:
        assert inner is report
        inner("stage", 1, 2)
    assert "done" not in stream.getvalue()  # the owner closes a borrowed reporter, not the block
    report.close()
    assert "stage: done" in stream.getvalue()


def test_progress_bar_writes_lines_in_a_log(capsys):
    with progress_bar(True, 4, "table5 (smoke)") as advance:
        for _ in range(4):
            advance(1, status="sym 50%")
    err = capsys.readouterr().err.splitlines()  # pytest's stderr is not a terminal
    assert err[0] == "table5 (smoke): started (4)"
    assert re.fullmatch(r"table5 \(smoke\): done, 4 in [0-9.]+ s \(.+/s\)", err[-1])


def test_formats():
    assert format_duration(4.2) == "4.2 s" and format_duration(190) == "3 min 10 s"
    assert format_duration(1800) == "30 min" and format_duration(7500) == "2 h 5 min"
    assert format_rate(2137.0) == "2,100" and format_rate(2.46) == "2.5" and format_rate(41.4) == "41"


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)


def test_kmeans_features_report_clustering_and_each_split(tmp_path):
    train = ArrayDataset(_images(30, 0), np.arange(30) % 3, name="progress-train")
    test = ArrayDataset(_images(10, 1), np.arange(10) % 3, name="progress-test")
    report, stream, _ = lines_reporter()
    kmeans_features(train, test, num_centroids=8, output_dim=4, num_patches=500, kmeans_iters=3, device="cpu",
                    cache=False, progress=report)
    report.close()
    lines = stream.getvalue().splitlines()
    started = [line.split(": started")[0] for line in lines if ": started" in line]
    assert started == ["k-means clustering (3 passes over 500 patches)", "k-means: encoding training images",
                       "k-means: PCA covariance", "k-means: PCA components", "k-means: projecting training images",
                       "k-means: encoding set 2 images"]
    # every stage that starts also ends, before the next one starts: no bar left finished-looking
    # while another stage works, none left open
    events = [line.split(": ")[-1].split(",")[0].split(" ")[0] for line in lines]
    assert events == ["started", "done"] * len(started)
    assert "k-means clustering (3 passes over 500 patches): done, 1,500 patches in" in stream.getvalue()
    assert "k-means: encoding training images: done, 30 images" in stream.getvalue()
    assert "k-means: encoding set 2 images: done, 10 images" in stream.getvalue()
    assert "k-means: PCA covariance: done, 30 rows" in stream.getvalue()
    assert "k-means: PCA components: done, 7 steps" in stream.getvalue()


def test_feature_extraction_reports_images_and_the_writing(tmp_path):
    data = ArrayDataset(_images(10, 2), np.arange(10) % 2, name="progress-extract")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 5))
    report, stream, _ = lines_reporter()
    feats = extract_features(data, model, batch_size=4, device="cpu", cache=False, progress=report,
                             output=tmp_path / "f.npy", transform=lambda im: torch.zeros(3, 12, 12))
    report.close()
    text = stream.getvalue()
    assert "features (Sequential): done, 10 images" in text
    assert "writing f.npy: started (1 MiB)" in text and "writing f.npy: done, 1 MiB in" in text
    assert np.array_equal(np.load(tmp_path / "f.npy"), feats)


@pytest.mark.parametrize("array", [np.arange(24, dtype=np.float32).reshape(4, 6),
                                   np.asfortranarray(np.arange(24.0).reshape(4, 6)),
                                   np.arange(20, dtype=np.int64)[::2]])
def test_save_features_writes_exactly_what_np_save_writes(tmp_path, array):
    expected = io.BytesIO()
    np.save(expected, array)
    save_features(tmp_path / "a.npy", {"features": array})
    assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()
    save_features(tmp_path / "a.npz", {"train": array, "test": array[:1]}, progress=True)
    with np.load(tmp_path / "a.npz") as z:
        assert z.files == ["train", "test"]
        assert np.array_equal(z["train"], array) and np.array_equal(z["test"], array[:1])
