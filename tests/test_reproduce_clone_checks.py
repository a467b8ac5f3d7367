"""``dmlp reproduce`` runs upstream code only in a clone that is cleanly integrated.

It used to take any clone holding an integration marker as integrated, so a forged or
interrupted marker led it to run a half-patched (or someone else's) upstream. Now a clone
with a marker must be what :func:`dmlp_integrations.apply.status` calls integrated, and is
refused in one line otherwise, before anything is written into it.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from clone_fixtures import RECIPE, fail_rename, snapshot, world  # noqa: F401

from dmlp_integrations import apply
from dmlp_integrations.marker import MARKER
from dmlp_integrations.recipe import IntegrationError
from dmlp_plugin.failures import describe_failure
from dmlp_plugin.reproduce import upstream
from dmlp_plugin.reproduce.upstream import UpstreamInputs, UpstreamRunError, prepare_clone


@pytest.fixture
def toy(monkeypatch, world):
    """``prepare_clone("toy", ...)`` on the test clone and recipe; returns (inputs for a clone
    used in place, inputs for a copy, the work folder, the folders data was laid out in)."""
    clone, _ = world
    monkeypatch.setattr(upstream, "_recipe", lambda method: RECIPE)
    monkeypatch.setitem(upstream.FOLDERS, "toy", clone.name)
    monkeypatch.setitem(upstream.DISPLAY, "toy", "Toy")
    prepared: list[Path] = []
    monkeypatch.setattr(upstream, "_prepare_data", lambda method, folder, cifar_root: prepared.append(folder))

    def inputs(in_place: bool) -> UpstreamInputs:
        return UpstreamInputs(clone.parent, clone.parent / "cifar", lambda: None, "none", in_place)
    return inputs, clone.parent / "work", prepared


def interrupt(clone: Path, monkeypatch) -> None:
    """Integrate ``clone`` until a rename fails: the marker says in progress, one file is edited."""
    with monkeypatch.context() as patched:
        fail_rename(patched, "data.py", errno.EACCES)
        with pytest.raises(IntegrationError):
            apply.integrate(RECIPE, clone)
    assert apply.status(RECIPE, clone).state is apply.State.INTERRUPTED


def forge_state(clone: Path, state: str) -> None:
    marker = json.loads((clone / MARKER).read_text())
    marker["state"] = state
    (clone / MARKER).write_text(json.dumps(marker))


def refused(inputs: UpstreamInputs, work: Path) -> str:
    with pytest.raises(UpstreamRunError) as caught:
        prepare_clone("toy", inputs, work)
    message, status = describe_failure(caught.value)
    assert status == 2 and "\n" not in message
    return message


def test_a_cleanly_integrated_clone_is_used(toy, world):
    inputs, work, prepared = toy
    clone, _ = world
    apply.integrate(RECIPE, clone)
    assert prepare_clone("toy", inputs(True), work) == clone and prepared == [clone]


def test_a_pristine_clone_is_integrated_in_place_or_as_a_copy(toy, world):
    inputs, work, prepared = toy
    clone, _ = world
    before = snapshot(clone)
    copy = prepare_clone("toy", inputs(False), work)
    assert copy == work / clone.name and apply.status(RECIPE, copy).state is apply.State.INTEGRATED
    assert snapshot(clone) == before  # the user's clone is only read
    assert prepare_clone("toy", inputs(False), work) == copy  # the copy is reused: its marker is clean
    assert prepare_clone("toy", inputs(True), work) == clone
    assert apply.status(RECIPE, clone).state is apply.State.INTEGRATED and prepared == [copy, copy, clone]


def test_an_interrupted_marker_is_refused_in_one_line(toy, world, monkeypatch):
    inputs, work, prepared = toy
    clone, _ = world
    interrupt(clone, monkeypatch)
    left = snapshot(clone)
    message = refused(inputs(True), work)
    assert f"{clone} is not cleanly integrated for toy: interrupted" in message
    assert f"run `dmlp integrate toy {clone} --revert`" in message
    assert snapshot(clone) == left and prepared == []


@pytest.mark.parametrize("state", ["in-progress", "finished"])
def test_a_forged_marker_is_refused_in_one_line(toy, world, state):
    inputs, work, prepared = toy
    clone, _ = world
    apply.integrate(RECIPE, clone)
    forge_state(clone, state)
    left = snapshot(clone)
    message = refused(inputs(True), work)
    expected = "interrupted" if state == "in-progress" else "field 'state' is 'finished'"
    assert expected in message, message
    assert snapshot(clone) == left and prepared == []


def test_a_marker_claiming_files_edited_by_hand_is_refused(toy, world):
    inputs, work, prepared = toy
    clone, _ = world
    apply.integrate(RECIPE, clone)
    (clone / "train.py").write_text("print('not what integration wrote')\n")
    assert "is not cleanly integrated for toy: integrated, but edited since: train.py" in refused(inputs(True), work)
    assert prepared == []


def test_a_marker_that_is_a_link_is_refused(toy, world):
    inputs, work, prepared = toy
    clone, outside = world
    apply.integrate(RECIPE, clone)
    (outside / MARKER).write_bytes((clone / MARKER).read_bytes())
    (clone / MARKER).unlink()
    (clone / MARKER).symlink_to(outside / MARKER)
    message = refused(inputs(True), work)
    assert ".dmlp-integration.json" in message and "symbolic link" in message, message
    assert prepared == []


def test_a_broken_copy_in_the_work_folder_says_to_delete_it(toy, world, monkeypatch):
    inputs, work, prepared = toy
    clone, _ = world
    copy = work / clone.name
    shutil.copytree(clone, copy)
    interrupt(copy, monkeypatch)
    message = refused(inputs(False), work)
    assert f"{copy} is not cleanly integrated for toy: interrupted" in message
    assert message.endswith(f"delete {copy} and rerun to copy and integrate it again")
    assert prepared == []
