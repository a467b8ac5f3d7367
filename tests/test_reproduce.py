"""`dmlp reproduce`: table definitions, the resumable store, the runner and the CLI.

The runner tests use synthetic 10-class clusters and a tiny protocol (a second or two);
the smoke tests run `dmlp reproduce table5 --smoke` and `table7 --smoke` on the shared
CIFAR-10 features (skipped when ../shared is absent).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig, __version__
from dmlp_plugin.cli import main
from dmlp_plugin.errors import InputError
from dmlp_plugin.reproduce import (FULL, SMOKE, TABLES, Inputs, Protocol, ResultStore, draw_trusted, get_table,
                                   run_table, table_rows)
from dmlp_plugin.reproduce import paper as P
from dmlp_plugin.reproduce.store import make_cell_id, settings_hash

from shared_fixtures import needs_shared, real_cifar10_root, shared_dir  # noqa: F401 (a fixture)

SHARED = shared_dir()
TINY = Protocol(epochs=2, mlp_epochs=1, mlp_repeats=1, probe_iters=3, trusted_scale=0.1, min_trusted=40)


def synthetic_inputs(n: int = 500, d: int = 16, seed: int = 0) -> Inputs:
    """10 well-separated Gaussian clusters, plus a test set drawn alike."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)) * 3.0
    y = rng.integers(0, 10, n + 300)
    x = (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    return Inputs(train=x[:n], test=x[n:], clean=y[:n].astype(np.int64), test_labels=y[n:].astype(np.int64))


# -- the paper's figures -----------------------------------------------------------------------


def _paper_rows(text: str, table: str) -> list[list[str]]:
    section = text.split(f"## Table {table}:")[1].split("\n## ")[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")]


@pytest.mark.shared
def test_embedded_paper_figures_match_the_shared_tables():
    path = SHARED / "paper" / "tables.md" if SHARED else None
    if path is None or not path.is_file():
        pytest.skip(needs_shared("the paper's tables (paper/tables.md)"))
    text = path.read_text()
    rows = _paper_rows(text, "1")
    for method in ("Cross-Entropy", "DMLP-Naive"):
        i = next(k for k, r in enumerate(rows) if r[0] == method)
        for row, which in ((rows[i], "best"), (rows[i + 1], "last")):
            assert row[2].lower() == which
            assert [float(v) for v in row[3:7]] == [P.TABLE1_C10[method][which][r] for r in (0.2, 0.5, 0.8, 0.9)]
    rows = _paper_rows(text, "5")
    for i in range(1, len(rows), 2):  # header first, then Best/Last pairs
        key = (rows[i][0] == "yes", rows[i][1] == "yes")
        for row, which in ((rows[i], "best"), (rows[i + 1], "last")):
            assert [float(v) for v in row[3:7]] == [P.TABLE5_C10[key][which][r] for r in (0.2, 0.5, 0.8, 0.9)]
    head, values = _paper_rows(text, "7")
    table7 = {float(h.rstrip("%")) / 100: float(v) for h, v in zip(head[1:], values[1:])}
    assert table7 == P.TABLE7_CLOTHING1M


# -- table definitions -----------------------------------------------------------------------------


def test_table5_switches_ipc_and_eac_in_paper_mode():
    """The default pipeline has no IPC to ablate: Table 5 is paper mode's, 4 rates × 3 variants."""
    cells = TABLES["table5"].cells()
    assert len(cells) == 4 * 3
    for cell in cells:
        ipc, eac = cell.extra["ipc"], cell.extra["eac"]
        assert cell.extra["mode"] == "paper" and (cell.config.ipc, cell.config.eac) == (ipc, eac)
        # only the two switches differ from the paper's own config
        assert cell.config == PurifyConfig.paper().replace(ipc=ipc, eac=eac)
        assert cell.paper == P.TABLE5_C10[(ipc, eac)]["last"][cell.rate]
    assert {c.series for c in cells} == {f"paper: {v}" for v in ("IPC only", "EAC only", "IPC+EAC")}


def test_table7_sizes_stay_distinct_and_nested_in_the_smoke_protocol():
    cells = TABLES["table7"].cells()
    assert sorted({c.num_trusted for c in cells}) == [100, 250, 500, 1000, 2000, 5000]
    smoke_sizes = [SMOKE.trusted(n) for n in (100, 250, 500, 1000, 2000, 5000)]
    assert smoke_sizes == sorted(set(smoke_sizes)) and smoke_sizes[0] >= SMOKE.min_trusted
    assert smoke_sizes[-1] < SMOKE.train_rows
    assert [FULL.trusted(n) for n in (100, 5000)] == [100, 5000]
    small, large = draw_trusted(3000, smoke_sizes[0], 0), draw_trusted(3000, smoke_sizes[-1], 0)
    assert set(small) <= set(large)  # one seed: a smaller trusted set is part of a larger one
    # the paper's Clothing1M figure only where the CIFAR size is the same fraction of its trusted set
    assert {c.num_trusted: c.paper for c in cells if c.paper is not None} == {100: 75.5, 500: 77.3, 1000: 77.31}


def test_cell_ids_encode_every_setting():
    cells = [c for spec in TABLES.values() for c in spec.cells([0, 1])]
    ids = [c.cell_id(FULL) for c in cells]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9._+-]+_[0-9a-f]{8}", i) for i in ids)
    cell = TABLES["table5"].cells()[0]
    assert cell.cell_id(FULL).startswith("sym20_paper_ipc_s0_")
    assert cell.cell_id(SMOKE).startswith("smoke_sym20_paper_ipc_s0_")
    # a changed config (a new default, say) is a new cell, not a stale hit
    changed = type(cell)(**{**cell.__dict__, "config": cell.config.replace(eac_eta=0.3)})
    assert changed.cell_id(FULL) != cell.cell_id(FULL)
    assert settings_hash({"a": 1, "b": [0.5, 2]}) == settings_hash({"b": [0.5, 2], "a": 1})
    with pytest.raises(InputError, match="letters"):
        make_cell_id("a/b", {})


def test_unknown_table_suggests_the_closest():
    with pytest.raises(InputError, match="did you mean 'table5'"):
        get_table("tabel5")


# -- store -------------------------------------------------------------------------------------------


def test_store_round_trip_and_unreadable_cells(tmp_path):
    store = ResultStore(tmp_path)
    record = {"table": "table5", "cell_id": "x_0123abcd", "metrics": {"label_accuracy": np.float64(0.5)},
              "history": [{"epoch": 1}]}
    path = store.save(record)
    assert path == tmp_path / "table5" / "x_0123abcd.json"
    assert store.load("table5", "x_0123abcd")["metrics"]["label_accuracy"] == 0.5
    assert not list(path.parent.glob("*.tmp*"))  # written atomically, nothing left behind
    (path.parent / "y_0123abcd.json").write_text('{"table": "table5", "cell_')  # an interrupted foreign write
    assert store.load("table5", "y_0123abcd") is None  # so it is run again
    assert [r["cell_id"] for r in store.records("table5")] == ["x_0123abcd"]
    assert any("y_0123abcd" in str(p) for p, _ in store.unreadable)
    assert store.tables() == ["table5"]
    with pytest.raises(InputError):
        store.path("../etc", "x")


# -- runner -------------------------------------------------------------------------------------------


def test_run_table_records_and_resumes(tmp_path):
    inputs = synthetic_inputs()
    store = ResultStore(tmp_path)
    first = run_table("table1", store, lambda: inputs, protocol=TINY)
    assert (first.computed, first.skipped) == (12, 0)
    assert len(list((tmp_path / "table1").glob("*.json"))) == 12
    by_series = {(r["panel"], r["series"]): r for r in first.records}
    baseline = by_series[("sym 50%", "Classifier (given labels)")]
    dmlp = by_series[("sym 50%", "DMLP-Naive (default)")]
    n_untrusted = len(inputs.clean) - TINY.trusted(1000)
    for record in (baseline, dmlp):
        m = record["metrics"]
        assert record["num_trusted"] == 100 and record["code"]["dmlp_plugin"] == __version__
        assert np.asarray(record["confusion_given_purified"]).sum() == n_untrusted
        clean_conf = np.asarray(record["confusion_clean_purified"])
        assert np.trace(clean_conf) / n_untrusted == pytest.approx(m["label_accuracy"])
        assert 0.0 <= m["linear_test_accuracy"] <= 1.0
        assert m["given_label_accuracy"] == pytest.approx(1 - m["realised_noise"])
    # the baseline keeps the given labels (trusted rows clean), so nothing changed and no history
    assert baseline["history"] == [] and baseline["metrics"]["changed"] == 0 and baseline["config"] is None
    assert baseline["metrics"]["label_accuracy"] == baseline["metrics"]["given_label_accuracy"]
    # DMLP: the default's config as run (it has no epochs to shorten, and its network is off),
    # and label accuracy per least-squares round
    assert dmlp["config"] == TINY.adapt(PurifyConfig()).to_dict() == PurifyConfig().to_dict()
    assert dmlp["config"]["mode"] == "default"
    assert [h["round"] for h in dmlp["history"]] == list(range(1, PurifyConfig().rounds + 1))
    assert all(0.0 <= h["label_accuracy"] <= 1.0 for h in dmlp["history"])
    assert dmlp["metrics"]["label_accuracy"] > dmlp["metrics"]["given_label_accuracy"]  # clusters are easy
    assert json.loads((tmp_path / "table1" / f"{dmlp['cell_id']}.json").read_text()) == dmlp

    def no_data():
        raise AssertionError("a finished table must not load its inputs again")

    again = run_table("table1", store, no_data, protocol=TINY)
    assert (again.computed, again.skipped) == (0, 12)
    assert [r["cell_id"] for r in again.records] == [r["cell_id"] for r in first.records]
    forced = run_table("table1", store, lambda: inputs, protocol=TINY, force=True)
    assert forced.computed == 12


def test_interrupted_run_continues_where_it_stopped(tmp_path, monkeypatch):
    import dmlp_plugin.reproduce.runner as runner

    inputs, store, real = synthetic_inputs(), ResultStore(tmp_path), runner.run_cell
    calls = []

    def dies_after_five(*args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        run_table("table1", store, inputs, protocol=TINY)
    assert len(store.records("table1")) == 5
    monkeypatch.setattr(runner, "run_cell", real)
    rest = run_table("table1", store, inputs, protocol=TINY)
    assert (rest.computed, rest.skipped) == (7, 5)


def test_seeds_are_averaged_in_the_table(tmp_path):
    run = run_table("table1", ResultStore(tmp_path), synthetic_inputs(), protocol=TINY, seeds=[0, 1])
    assert len(run.records) == 24 and {r["seed"] for r in run.records} == {0, 1}
    head, body = table_rows("table1", run.records)
    assert len(body) == 12
    row = body[1]  # sym 20%, DMLP-Naive (default)
    assert row[1] == "DMLP-Naive (default) (2 seeds)" and "±" in row[3]
    assert row[head.index("paper")] == "94.20"


# -- CLI ---------------------------------------------------------------------------------------------


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["reproduce", "tabel5", "--results-dir", str(tmp_path)]) == 2
    assert "did you mean 'table5'" in _err(capsys)
    assert main(["reproduce", "--results-dir", str(tmp_path)]) == 2
    assert "name a table" in _err(capsys)
    assert main(["reproduce", "table5", "--smoke", "--shared", str(tmp_path), "--results-dir",
                 str(tmp_path / "r"), "--no-progress"]) == 2
    err = _err(capsys)
    assert f"--shared {tmp_path} lacks" in err and "Traceback" not in err


def test_cli_list_names_every_cell(capsys):
    assert main(["reproduce", "--list", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "table7" in out and out.count("smoke_sym50_default_t") == 6


def _smoke(table: str, tmp_path: Path, cifar_root: Path, capsys) -> tuple[list[dict], str]:
    args = ["reproduce", table, "--smoke", "--results-dir", str(tmp_path), "--shared", str(SHARED),
            "--cifar-root", str(cifar_root), "--threads", "1", "--no-progress", "--markdown"]
    assert main(args) == 0
    out = capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / table).glob("*.json"))]
    assert main(args) == 0  # the rerun finds every cell in the store
    assert f"0 cell(s) computed, {len(records)} from the store" in capsys.readouterr().out
    return records, out


@pytest.mark.shared
@pytest.mark.skipif(SHARED is None or not (SHARED / "features" / "cifar10_kmeans_pca512.npz").is_file(),
                    reason=needs_shared("the precomputed CIFAR-10 features"))  # test_without_shared.py: without them
def test_smoke_table5(tmp_path, real_cifar10_root, capsys):  # noqa: F811
    records, out = _smoke("table5", tmp_path, real_cifar10_root, capsys)
    assert len(records) == 12 and all(r["smoke"] and r["num_train"] == SMOKE.train_rows for r in records)
    for r in records:
        assert [h["epoch"] for h in r["history"]] == list(range(1, SMOKE.epochs + 1))
        assert r["metrics"]["realised_noise"] == pytest.approx(0.9 * r["settings"]["rate"], abs=0.03)
        assert r["paper"]["value"] == P.TABLE5_C10[(r["settings"]["ipc"], r["settings"]["eac"])]["last"][
            r["settings"]["rate"]]
    assert "| sym 90% | paper: IPC+EAC |" in out and "92.00" in out and "65.9%" in out


@pytest.mark.shared
@pytest.mark.skipif(SHARED is None or not (SHARED / "features" / "cifar10_kmeans_pca512.npz").is_file(),
                    reason=needs_shared("the precomputed CIFAR-10 features"))  # test_without_shared.py: without them
def test_smoke_table7(tmp_path, real_cifar10_root, capsys):  # noqa: F811
    records, out = _smoke("table7", tmp_path, real_cifar10_root, capsys)
    assert len(records) == 24
    sizes = sorted({r["num_trusted"] for r in records})
    assert sizes == [SMOKE.trusted(n) for n in (100, 250, 500, 1000, 2000, 5000)]
    for r in records:  # label accuracy is measured on the rows outside the trusted set
        assert np.asarray(r["confusion_given_purified"]).sum() == SMOKE.train_rows - r["num_trusted"]
    assert "| default, sym 80% | 5000 trusted |" in out and "Clothing1M" in out


def test_benchmark_uses_the_package_protocol():
    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        import purify_cifar10 as bench
    finally:
        sys.path.remove(str(bench_dir))
    from dmlp_plugin.reproduce import cifar_inputs

    for name in ("draw_trusted", "noisy_labels", "probe_accuracy", "with_epochs", "subset", "Inputs"):
        assert getattr(bench, name) is getattr(cifar_inputs, name)


def test_a_protocol_shortens_the_network_candidate_only_where_it_runs():
    network = PurifyConfig(mlp_candidate=True)
    assert SMOKE.adapt(network).mlp_epochs == 2
    assert SMOKE.adapt(network).mlp_repeats == 1 < network.mlp_repeats
    assert FULL.adapt(network) == network
    assert SMOKE.adapt(PurifyConfig()) == PurifyConfig()  # the network is off by default: nothing to shorten
    paper = SMOKE.adapt(PurifyConfig.paper())  # paper mode has no network; its epochs shorten
    assert paper.epochs == SMOKE.epochs and paper.eac_period < PurifyConfig.paper().eac_period
