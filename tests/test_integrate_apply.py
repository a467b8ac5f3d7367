"""The recipe engine and the applier, on small synthetic clones (no upstream code needed)."""

from __future__ import annotations

import json
import stat

import pytest
from clone_fixtures import DATA, RECIPE, TRAIN, make_clone, snapshot

from dmlp_integrations import apply
from dmlp_integrations.recipe import TAG, Insert, IntegrationError, Py2Prints, Recipe, Replace

def test_plan_inserts_tagged_lines_at_anchors(tmp_path):
    clone = make_clone(tmp_path / "clone")
    plan = apply.plan(RECIPE, clone)
    train = plan.changes[0].after.decode()
    lines = train.splitlines()
    at = lines.index("args = parser.parse_args()")
    assert lines[at - 2:at] == [f"import ours  {TAG}", f"ours.setup(parser)  {TAG}"]
    assert train.count("next(it)") == 2 and "it.next()" not in train
    data = plan.changes[1].after.decode().splitlines()
    # `within` picks the anchor inside class B, with that line's indentation
    assert data[8] == "        self.done = True"
    assert data[9] == "        self.labels = ours.fix(self.labels)  " + TAG
    assert "ours" not in "".join(data[:9])
    assert snapshot(clone)["train.py"][0] == TRAIN.encode()  # planning writes nothing


def test_integrate_then_revert_is_byte_exact_and_keeps_modes(tmp_path):
    clone = make_clone(tmp_path / "clone")
    before = snapshot(clone)
    plan, _ = apply.integrate(RECIPE, clone, version="test")
    assert plan is not None
    marker = json.loads((clone / apply.MARKER).read_text())
    assert set(marker["files"]) == {"train.py", "pkg/data.py"}
    assert stat.S_IMODE((clone / "train.py").stat().st_mode) == 0o755
    assert apply.status(RECIPE, clone).state is apply.State.INTEGRATED
    restored = apply.revert(RECIPE, clone)
    assert sorted(restored) == ["pkg/data.py", "train.py"]
    assert snapshot(clone) == before


def test_integrate_is_idempotent(tmp_path):
    clone = make_clone(tmp_path / "clone")
    apply.integrate(RECIPE, clone)
    once = snapshot(clone)
    plan, message = apply.integrate(RECIPE, clone)
    assert plan is None and "already integrated" in message
    assert snapshot(clone) == once


def test_missing_anchor_refuses_before_writing_anything(tmp_path):
    clone = make_clone(tmp_path / "clone")
    (clone / "pkg" / "data.py").write_text(DATA.replace("class B(object)", "class C(object)"))
    before = snapshot(clone)
    with pytest.raises(IntegrationError, match=r"pkg/data.py: scope anchor 'class B\(' not found"):
        apply.integrate(RECIPE, clone)
    assert snapshot(clone) == before
    assert apply.status(RECIPE, clone).state is apply.State.UNSUPPORTED


def test_every_problem_is_listed_at_once(tmp_path):
    clone = make_clone(tmp_path / "clone")
    (clone / "train.py").write_text(TRAIN.replace("args = parser.parse_args()", "args = parse()")
                                    .replace("y = it.next()", "y = 1"))
    with pytest.raises(IntegrationError) as err:
        apply.plan(RECIPE, clone)
    text = str(err.value)
    assert "anchor 'args = parser.parse_args()' not found" in text
    assert "expected 2 occurrence(s) of 'it.next()', found 1" in text


def test_ambiguous_anchor_names_the_lines(tmp_path):
    clone = make_clone(tmp_path / "clone")
    recipe = Recipe("toy", "u", ("c",), "train.py", edits=(Insert("pkg/data.py", "self.done = True", lines=("x",)),))
    with pytest.raises(IntegrationError, match="ambiguous: it is on lines 4, 9"):
        apply.plan(recipe, clone)


def test_edits_made_after_integration_are_never_overwritten(tmp_path):
    clone = make_clone(tmp_path / "clone")
    apply.integrate(RECIPE, clone)
    with open(clone / "train.py", "a") as fh:
        fh.write("# my change\n")
    assert apply.status(RECIPE, clone).state is apply.State.MODIFIED
    with pytest.raises(IntegrationError, match="train.py changed since"):
        apply.integrate(RECIPE, clone)
    with pytest.raises(IntegrationError, match="train.py changed after integration"):
        apply.revert(RECIPE, clone)
    assert (clone / "train.py").read_text().endswith("# my change\n")
    assert (clone / apply.MARKER).exists()


def test_tagged_file_without_marker_is_refused(tmp_path):
    clone = make_clone(tmp_path / "clone")
    apply.integrate(RECIPE, clone)
    (clone / apply.MARKER).unlink()
    with pytest.raises(IntegrationError, match="already carries dmlp-plugin edits"):
        apply.plan(RECIPE, clone)


def test_links_out_of_the_clone_are_not_followed(tmp_path):
    clone = make_clone(tmp_path / "clone")
    outside = tmp_path / "outside.py"
    outside.write_text(TRAIN)
    (clone / "train.py").unlink()
    (clone / "train.py").symlink_to(outside)
    with pytest.raises(IntegrationError, match="symbolic link"):
        apply.integrate(RECIPE, clone)
    assert outside.read_text() == TRAIN


def test_edit_that_breaks_syntax_is_refused(tmp_path):
    clone = make_clone(tmp_path / "clone")
    recipe = Recipe("toy", "u", ("c",), "train.py", edits=(Replace("train.py", "x = it.next()", "x = (", count=1),))
    with pytest.raises(IntegrationError, match="does not compile after integration"):
        apply.plan(recipe, clone)


def test_interrupted_integration_can_be_reverted(tmp_path):
    clone = make_clone(tmp_path / "clone")
    before = snapshot(clone)
    apply.integrate(RECIPE, clone)
    # as if the run stopped after the marker and the first file were written
    (clone / "pkg" / "data.py").write_text(DATA)
    apply.revert(RECIPE, clone)
    assert snapshot(clone) == before


def test_revert_without_marker_says_so(tmp_path):
    clone = make_clone(tmp_path / "clone")
    with pytest.raises(IntegrationError, match="is not integrated"):
        apply.revert(RECIPE, clone)


def test_check_tells_tested_snapshot_from_modified_one(tmp_path):
    clone = make_clone(tmp_path / "clone")
    exact = Recipe("toy", "u", ("abc1234",), "train.py", edits=RECIPE.edits,
                   file_hashes={"train.py": apply.sha256(TRAIN.encode()), "pkg/data.py": apply.sha256(DATA.encode())})
    assert "match the tested commit abc1234" in apply.status(exact, clone).message
    (clone / "train.py").write_text(TRAIN + "\n# local tweak\n")
    st = apply.status(exact, clone)
    assert st.state is apply.State.PRISTINE and st.untested == ("train.py",)


def test_crlf_files_keep_their_newlines(tmp_path):
    clone = make_clone(tmp_path / "clone")
    (clone / "train.py").write_bytes(TRAIN.replace("\n", "\r\n").encode())
    plan = apply.plan(RECIPE, clone)
    after = plan.changes[0].after
    assert b"\r\n" in after and b"\n" not in after.replace(b"\r\n", b"")


PY2 = '''import sys
def f(x):
    print 'a %s' % x
    print x, 1,
    print
    print ('already', x)
    print(x)
    if x: y = 1
    print 'multi %s' % (x,
                        x)
    s = "print y"
    return sys
'''


def test_py2_prints_become_calls():
    out = Py2Prints("m.py", count=4).apply(PY2)
    assert "print x" not in out
    compile(out, "m.py", "exec")
    lines = out.splitlines()
    assert lines[2].startswith("    print('a %s' % x)")
    assert lines[3].startswith('    print(x, 1, end=" ")')
    assert lines[4].startswith("    print()")
    assert lines[5] == "    print ('already', x)"  # already a call: untouched
    assert lines[8] == "    print('multi %s' % (x,"  # a statement over two lines is wrapped whole
    assert lines[9] == "                        x))  " + TAG + ": compat"
    assert 's = "print y"' in out  # strings are not statements


def test_py2_prints_count_is_checked():
    with pytest.raises(IntegrationError, match="expected 5 Python 2 print statement"):
        Py2Prints("m.py", count=5).apply(PY2)
