"""The GPU tables of ``dmlp reproduce``: log parsers, commands, and a CPU smoke run of table4.

The parsers are checked against lines built from the upstreams' own format strings (read
from the clones when ``DMLP_UPSTREAM_ROOT`` is set) and against hand-written lines. The
``upstream`` test runs ``dmlp reproduce table4 --smoke`` for Co-teaching and CDR, with and
without ``--dmlp``, on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_fixtures import needs_shared, real_cifar10_root, shared_dir  # noqa: F401

from dmlp_plugin.errors import InputError
from dmlp_plugin.reproduce import paper as P
from dmlp_plugin.reproduce.logs import parse_cdr_results, parse_log
from dmlp_plugin.reproduce.upstream import (ITERS_PER_EPOCH, UPSTREAM_TABLES, UpstreamCell, UpstreamProtocol,
                                            build_command, upstream_command, upstream_rows)

ROOT_ENV = "DMLP_UPSTREAM_ROOT"


# -- parsers -----------------------------------------------------------------------------------


def test_coteaching_log_gives_both_networks_and_counts_the_random_weights_evaluation():
    text = "\n".join([
        "Epoch [1/200] Test Accuracy on the 10000 test images: Model1 10.0200 % Model2 9.8800 % Pure Ratio1 0.0000 % "
        "Pure Ratio2 0.0000 %",
        "Epoch [1/200], Iter [50/390] Training Accuracy1: 21.0000, Training Accuracy2: 20.0000, Loss1: 2.1, ...",
        "Epoch [2/200] Test Accuracy on the 10000 test images: Model1 40.5000 % Model2 41.5000 %, Pure Ratio 1 "
        "80.0000 %, Pure Ratio 2 81.0000 %",
        "Epoch [3/200] Test Accuracy on the 10000 test images: Model1 38.0000 % Model2 39.0000 %, Pure Ratio 1 "
        "80.0000 %, Pure Ratio 2 81.0000 %",
    ])
    result = parse_log("coteaching", text)
    assert [e.trained_epochs for e in result.evaluations] == [0, 1, 2]
    assert result.last == pytest.approx(38.5) and result.best == pytest.approx(41.0)
    assert result.evaluations[-1].extra == {"model1": 38.0, "model2": 39.0}


def test_cdr_log_and_results_file(tmp_path):
    text = ("Epoch [1/200] Val Accuracy on the 5000 val data: Model1 9.1000 %\n"
            "Epoch [1/200] Test Accuracy on the 10000 test data: Model1 10.0000 %\n"
            "0.01\n"
            "Epoch [1/200] Test Accuracy on the 10000 test data: Model1 50.2500 % \n"
            "Epoch [2/200] Test Accuracy on the 10000 test data: Model1 47.0000 % \n")
    result = parse_log("cdr", text)
    assert [(e.trained_epochs, e.accuracy) for e in result.evaluations] == [(0, 10.0), (1, 50.25), (2, 47.0)]
    assert result.best == 50.25 and result.last == 47.0
    results = tmp_path / "r.txt"
    results.write_text("epoch train_acc1 val_acc1 test_acc1\n0 0 9.1 10.0\n0 30.0 60.0 50.25\n1 35.0 62.0 47.0\n"
                       "2 36.0 62.0 49.0\n")
    # CDR reports the test accuracy at the first epoch of best validation accuracy
    assert parse_cdr_results(results) == {"selected": 47.0, "best_val": 62.0}
    assert parse_cdr_results(tmp_path / "absent.txt") is None


def test_dividemix_and_elr_plus_logs():
    dm = parse_log("dividemix", "Warmup Net1\n\n| Test Epoch #0\t Accuracy: 35.10%\n\n| Test Epoch #1\t Accuracy: 52.00%\n")
    assert [(e.trained_epochs, e.accuracy) for e in dm.evaluations] == [(1, 35.1), (2, 52.0)]
    elr = parse_log("elr_plus", "\n".join([
        "    epoch          : 1", "    Net1loss       : 1.2", "    val_my_metric  : 0.5",
        "    test_loss      : 1.1", "    test_my_metric : 0.6125", "    test_my_metric2: 0.9",
        "    epoch          : 2", "    test_my_metric : 0.7"]))
    assert [(e.trained_epochs, e.accuracy) for e in elr.evaluations] == [(1, pytest.approx(61.25)),
                                                                        (2, pytest.approx(70.0))]
    assert parse_log("coteaching", "no evaluation here").last is None
    with pytest.raises(InputError, match="no log parser"):
        parse_log("mylnl", "")


def _format_in(path: Path, start: str) -> str:
    """The %-format string of the print that begins with ``start`` in an upstream file."""
    text = path.read_text()
    m = re.search(r"print\s*\(\s*(['\"])(" + re.escape(start) + r".*?)\1\s*%", text)
    assert m, f"{start!r} not printed in {path}"
    return m.group(2).encode().decode("unicode_escape")


@pytest.mark.upstream
def test_parsers_read_what_the_upstream_code_prints():
    root = os.environ.get(ROOT_ENV)
    if not root:
        pytest.skip(f"{ROOT_ENV} is not set")
    root = Path(root)
    cot = root / "Co-teaching" / "main.py"
    fmt = _format_in(cot, "Epoch [%d/%d] Test Accuracy on the %s test images")
    line = fmt % (3, 200, "10000", 61.25, 62.75, 80.0, 81.0)
    assert parse_log("coteaching", line).last == pytest.approx(62.0)
    fmt = _format_in(root / "CDR" / "main.py", "Epoch [%d/%d] Test Accuracy on the %s test data")
    assert parse_log("cdr", fmt % (3, 200, "10000", 71.5)).last == 71.5
    fmt = _format_in(root / "DivideMix" / "Train_cifar.py", "\\n| Test Epoch #")
    assert parse_log("dividemix", fmt % (4, 88.25)).evaluations[0].trained_epochs == 5
    trainer = (root / "ELR" / "ELR_plus" / "base" / "base_trainer.py").read_text()
    assert "'    {:15s}: {}'.format(str(key), value)" in trainer
    lines = "\n".join("    {:15s}: {}".format(k, v) for k, v in [("epoch", 7), ("test_my_metric", 0.9)])
    assert parse_log("elr_plus", lines).last == pytest.approx(90.0)


# -- tables and commands -----------------------------------------------------------------------


def test_paper_figures_match_the_shared_tables():
    shared = shared_dir()
    if shared is None:
        pytest.skip(needs_shared("the paper's tables (paper/tables.md)"))
    text = (shared / "paper" / "tables.md").read_text()

    def row(name: str, which: str) -> list[float]:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"| {name} |"):
                target = line if which == "Best" else lines[i + 1]
                cells = [c.strip() for c in target.strip("|").split("|")]
                nums = [float(c) for c in cells if re.fullmatch(r"\d+(\.\d+)?", c)]
                return nums
        raise AssertionError(name)

    for name, figures in P.TABLE4_C10.items():
        for which in ("best", "last"):
            assert row(name, which.capitalize())[:4] == [figures[which][r] for r in (0.2, 0.5, 0.8, 0.9)], name
    for name, figures in P.TABLE1_DIVIDEMIX_C10.items():
        assert row(name, "Last")[:4] == [figures["last"][r] for r in (0.2, 0.5, 0.8, 0.9)], name
    for name, figures in P.TABLE8_C10.items():
        assert row(name, "Best")[:4] == [figures["best"][r] for r in (0.2, 0.5, 0.8, 0.9)], name


def test_table4_cells_and_ids():
    table = UPSTREAM_TABLES["table4"]
    cells = table.cells()
    assert len(cells) == 3 * 4 * 2
    assert {c.series for c in cells} == {"Co-teaching", "DMLP-Co-teaching", "CDR", "DMLP-CDR", "ELR+", "DMLP-ELR+"}
    cot80 = [c for c in cells if c.method == "coteaching" and c.rate == 0.8]
    assert [(c.dmlp, c.paper) for c in cot80] == [(False, 23.5), (True, 85.3)]
    base, paper_mode = UpstreamProtocol(), UpstreamProtocol(mode="paper")
    noisy, dmlp = cot80
    # the purifier's settings change the --dmlp cell's id only
    assert noisy.cell_id(base) == noisy.cell_id(paper_mode)
    assert dmlp.cell_id(base) != dmlp.cell_id(paper_mode)
    assert dmlp.cell_id(base) != dmlp.cell_id(UpstreamProtocol(epochs=5))
    assert noisy.cell_id(UpstreamProtocol(smoke=True)).startswith("smoke_coteaching_sym80_noisy_s0_")
    with pytest.raises(InputError):
        UpstreamProtocol(mode="fast")


def test_commands_shorten_by_whole_epochs_and_add_dmlp_only_with_a_purified_file(tmp_path):
    clone = tmp_path / "clone"
    (clone / "ELR_plus").mkdir(parents=True)
    (clone / "ELR_plus" / "config_cifar10.json").write_text(json.dumps(
        {"seed": 123, "data_loader": {"args": {"data_dir": "x", "batch_size": 128}},
         "trainer": {"epochs": 200, "save_dir": "y"}}))
    short = UpstreamProtocol(epochs=3)
    cell = UpstreamCell("table4", "coteaching", 0.8, True, 0)
    argv, cwd = build_command(cell, short, clone, tmp_path / "c1", purified=tmp_path / "p.npz")
    assert argv[:2] == ["run", "coteaching"] and cwd == clone
    assert argv[argv.index("--max-iters") + 1] == str(3 * ITERS_PER_EPOCH["coteaching"])
    assert argv[argv.index("--dmlp") + 1] == str(tmp_path / "p.npz")
    assert argv[argv.index("--noise_rate") + 1] == "0.8"
    noisy = UpstreamCell("table4", "cdr", 0.5, False, 1)
    argv, _ = build_command(noisy, short, clone, tmp_path / "c2", purified=None)
    assert "--dmlp" not in argv and argv[argv.index("--seed") + 1] == "2"
    assert argv[argv.index("--max-iters") + 1] == str(3 * 704)
    dm = UpstreamCell("table1-dividemix", "dividemix", 0.9, False, 0)
    argv, _ = build_command(dm, short, clone, tmp_path / "c3", purified=None, dividemix_data=tmp_path / "dm")
    assert argv[argv.index("--num_epochs") + 1] == "2" and "--max-iters" not in argv
    elr = UpstreamCell("table4", "elr_plus", 0.2, True, 0)
    argv, cwd = build_command(elr, short, clone, tmp_path / "c4", purified=tmp_path / "p.npz",
                              cifar_root=tmp_path / "cifar")
    config = json.loads((tmp_path / "c4" / "config.json").read_text())
    assert cwd == clone / "ELR_plus" and config["trainer"]["epochs"] == 3
    assert config["data_loader"]["args"]["data_dir"] == str(tmp_path / "cifar")
    smoke_argv, _ = build_command(cell, UpstreamProtocol(smoke=True), clone, tmp_path / "c5", purified=None)
    assert "--num_iter_per_epoch" in smoke_argv and smoke_argv[smoke_argv.index("--max-iters") + 1] == "2"


@pytest.mark.parametrize("method", ["coteaching", "cdr", "elr_plus"])
def test_a_run_launches_what_dmlp_run_would_without_running_the_cli(tmp_path, monkeypatch, method):
    # The library starts the launcher itself; `dmlp run` with the recorded command must set up
    # the very same process: same script and arguments, same DMLP_RUN_* environment.
    from dmlp_plugin.cli import main
    from dmlp_plugin.cli import run as run_cli

    clone = tmp_path / "clone"
    (clone / "ELR_plus").mkdir(parents=True)
    (clone / "ELR_plus" / "config_cifar10.json").write_text(json.dumps(
        {"seed": 123, "data_loader": {"args": {"data_dir": "x"}}, "trainer": {"epochs": 200, "save_dir": "y"}}))
    for script in ("main.py", "ELR_plus/train.py"):
        (clone / script).write_text("")
    (clone / ".dmlp-integration.json").write_text(json.dumps({"method": method}))
    cell = UpstreamCell("table4", method, 0.8, True, 0)
    command = upstream_command(cell, UpstreamProtocol(smoke=True), clone, tmp_path / "cell",
                               purified=tmp_path / "p.npz", cifar_root=tmp_path / "cifar")
    argv, env = command.launch()
    assert argv[:3] == [sys.executable, "-m", "dmlp_integrations.launch"] and "--dmlp" in argv
    captured = {}
    monkeypatch.setattr(run_cli.subprocess, "call",
                        lambda a, cwd, env: captured.update(argv=a, cwd=cwd, env=env) or 0)
    monkeypatch.setattr(run_cli, "_check_integrated", lambda method, cwd: None)  # the marker is a stand-in
    assert main(command.dmlp_argv()) == 0
    assert captured["argv"] == argv and Path(captured["cwd"]) == command.cwd
    ours = {k: v for k, v in env.items() if k.startswith("DMLP_RUN_")}
    theirs = {k: v for k, v in captured["env"].items() if k.startswith("DMLP_RUN_")}
    assert ours == theirs and ours["DMLP_RUN_MAX_ITERS"] == {"coteaching": "2", "cdr": "1", "elr_plus": "4"}[method]
    assert ("DMLP_RUN_SKIP_MD5" in ours) == (method != "cdr")


def test_the_library_never_runs_its_own_cli():
    import dmlp_plugin

    root = Path(dmlp_plugin.__file__).parent
    shells_out = r"[\"']-m[\"'],\s*[\"']dmlp_plugin[\"']"
    imports = r"dmlp_plugin\.cli|from \.+cli\b"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.parent.name != "cli"
                 and p.name != "__main__.py" and re.search(f"{shells_out}|{imports}", p.read_text())]
    assert offenders == []


def test_rows_average_seeds_and_show_the_injection():
    def rec(series, method, seed, acc, parts=()):
        return {"panel": "sym 80%", "series": series, "method": method, "seed": seed,
                "metrics": {"test_accuracy": acc, "best_test_accuracy": acc, "trained_epochs": 5},
                "purified": {"label_accuracy": 0.9} if method == "dmlp" else None,
                "dmlp_record": {"injections": [{"part": p} for p in parts]} if method == "dmlp" else None,
                "paper": {"value": 85.3, "best": 85.4}}
    head, body = upstream_rows([rec("Co-teaching", "upstream", 0, 20.0), rec("Co-teaching", "upstream", 1, 30.0),
                                rec("DMLP-Co-teaching", "dmlp", 0, 80.0, ["train"])])
    assert body[0][1] == "Co-teaching (2 seeds)" and body[0][2] == "25.00 ± 5.00"
    assert body[1][head.index("--dmlp injected")] == "train" and body[1][head.index("purified labels")] == "90.00"


# -- the CPU smoke run ---------------------------------------------------------------------------


def dmlp_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "dmlp_plugin", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.upstream
@pytest.mark.slow
def test_table4_smoke_stores_parsed_accuracies_and_the_injection(real_cifar10_root, tmp_path):
    root = os.environ.get(ROOT_ENV)
    if not root:
        pytest.skip(f"{ROOT_ENV} is not set (a folder holding DivideMix/, ELR/, CDR/, Co-teaching/)")
    if shared_dir() is None:
        pytest.skip(needs_shared("the precomputed CIFAR-10 features"))
    before = {p: p.stat().st_mtime for p in Path(root, "Co-teaching").rglob("*") if p.is_file()}
    results = tmp_path / "results"
    args = ["reproduce", "table4", "--smoke", "--upstream-root", root, "--data", str(real_cifar10_root),
            "--methods", "coteaching,cdr", "--rates", "0.8", "--jobs", "4", "--results-dir", str(results),
            "--markdown", "--shared", str(shared_dir())]
    run = dmlp_cli(*args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    records = {r["key"]: r for r in map(json.loads, map(Path.read_text, (results / "table4").glob("*.json")))}
    assert set(records) == {f"smoke_{m}_sym80_{d}" for m in ("coteaching", "cdr") for d in ("noisy", "dmlp")}
    for key, record in records.items():
        acc = record["metrics"]["test_accuracy"]
        assert isinstance(acc, float) and 0.0 <= acc <= 100.0, key
        assert record["returncode"] == 0 and record["stopped"] == "max-iters"
        log = Path(record["log"]).read_text()
        assert "Test Accuracy on the" in log
        if record["method"] == "dmlp":
            rec = record["dmlp_record"]
            assert rec["method"] == record["upstream"]
            purified = np.load(record["purified"]["path"], allow_pickle=False)
            assert rec["labels_sha"]  # the file the run checked its labels against
            assert {i["part"] for i in rec["injections"]} == ({"train"} if record["upstream"] == "coteaching"
                                                             else {"all"})
            assert any(c["samples_checked"] > 0 for c in rec["loader_checks"])
            assert "--dmlp" in record["command"] and purified is not None
        else:
            assert record["dmlp_record"] is None and "--dmlp" not in record["command"]
            assert not (Path(record["log"]).parent / "dmlp-record.json").exists()
    # Co-teaching trains one step before its evaluation; CDR's number is its evaluation before training
    assert records["smoke_coteaching_sym80_dmlp"]["metrics"]["trained_epochs"] == 1
    assert records["smoke_cdr_sym80_dmlp"]["metrics"]["trained_epochs"] == 0
    assert "| sym 80% | DMLP-CDR |" in run.stdout
    # the user's clone was copied, not changed
    assert {p: p.stat().st_mtime for p in Path(root, "Co-teaching").rglob("*") if p.is_file()} == before
    assert not Path(root, "Co-teaching", ".dmlp-integration.json").exists()
    again = dmlp_cli(*args, timeout=60)
    assert again.returncode == 0 and "0 cell(s) computed, 4 from the store" in again.stdout


@pytest.mark.slow
def test_table8_runs_a_features_file_source_beside_kmeans(real_cifar10_root, tmp_path):
    shared = shared_dir()
    if shared is None:
        pytest.skip(needs_shared("the precomputed CIFAR-10 features"))
    with np.load(shared / "features" / "cifar10_kmeans_pca512.npz") as z:
        # a different "source": the k-means features with their leading components dropped
        np.savez(tmp_path / "other.npz", train=z["train"][:, 64:], test=z["test"][:, 64:])
    results = tmp_path / "results"
    args = ["reproduce", "table8", "--smoke", "--rates", "0.8", "--source", f"r18-simclr={tmp_path / 'other.npz'}",
            "--results-dir", str(results), "--cifar-root", str(real_cifar10_root), "--shared", str(shared),
            "--markdown", "--no-progress", "--threads", "1"]
    run = dmlp_cli(*args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (results / "table8").glob("*.json")]
    assert sorted(r["key"] for r in records) == sorted(f"smoke_{s}_sym80_{m}" for s in ("kmeans", "r18-simclr")
                                                       for m in ("default", "paper"))
    simclr = [r for r in records if r["settings"]["source"] == "r18-simclr"]
    assert all(r["paper"]["value"] == 92.9 and r["feature_dims"] == 128 for r in simclr)
    assert "R18 (M): not run; give --source r18-moco=" in run.stdout
    bad = dmlp_cli("reproduce", "table8", "--smoke", "--source", "oops", "--results-dir", str(results))
    assert bad.returncode == 2 and "NAME=FILE" in bad.stderr
