"""The Datalab export: cleanlab's label-issue columns, one row per sample, read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from dmlp_plugin import PurifyResult
from dmlp_plugin.datalab import DATALAB_COLUMNS, read_datalab_csv
from dmlp_plugin.errors import CorruptFileError


@pytest.fixture
def result():
    rng = np.random.default_rng(0)
    soft = rng.dirichlet(np.ones(4) * 0.5, 60).astype(np.float32)
    given = rng.integers(0, 4, 60)
    return PurifyResult.from_soft_labels(soft, given)


def test_round_trip_keeps_every_row_and_value(result, tmp_path):
    path = result.export(tmp_path / "issues.csv", "datalab")
    header = path.read_text().splitlines()[0]
    assert header == ",".join(DATALAB_COLUMNS) and len(path.read_text().splitlines()) == len(result) + 1
    back = read_datalab_csv(path)
    np.testing.assert_array_equal(back["is_label_issue"], result.changed)
    np.testing.assert_array_equal(back["label_score"], result.label_quality)  # float32 exactly
    np.testing.assert_array_equal(back["given_label"], result.given_labels)
    np.testing.assert_array_equal(back["predicted_label"], result.labels)
    assert back["is_label_issue"].sum() == len(result.label_issues) > 0


def test_pandas_reads_what_datalab_returns(result, tmp_path):
    """Same columns, order and dtypes as cleanlab's own ``Datalab.get_issues("label")`` on the
    purifier's soft labels as pred_probs, and the same scores and predictions."""
    pd = pytest.importorskip("pandas")
    cleanlab = pytest.importorskip("cleanlab", reason="cleanlab compares the columns: pip install cleanlab")
    ours = pd.read_csv(result.export(tmp_path / "issues.csv", "datalab"))
    lab = cleanlab.Datalab({"label": result.given_labels}, label_name="label", verbosity=0)
    lab.find_issues(pred_probs=result.soft_labels.astype(np.float64), issue_types={"label": {}})
    theirs = lab.get_issues("label")
    assert list(ours.columns) == list(theirs.columns)
    assert ours.dtypes.to_dict() == theirs.dtypes.to_dict()
    assert ours.index.equals(theirs.index)
    np.testing.assert_allclose(ours["label_score"], theirs["label_score"], rtol=1e-6)
    np.testing.assert_array_equal(ours["given_label"], theirs["given_label"])
    np.testing.assert_array_equal(ours["predicted_label"], theirs["predicted_label"])


def test_a_csv_without_the_columns_is_named(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("index,label\n0,1\n")
    with pytest.raises(CorruptFileError, match="not a Datalab label-issues CSV: no column\\(s\\) is_label_issue"):
        read_datalab_csv(bad)
