"""Faults while `dmlp integrate` writes: a kill at every step, EACCES and ENOSPC mid-run.

A kill is real: the run happens in a forked child that ``os._exit``\\ s at the chosen step
of the applier's fault hook, so no ``except`` or ``finally`` of ours runs, as with SIGKILL.
Whatever the step, the clone must end up recoverable by ``--revert`` to its exact bytes,
modes and owners, with no temporary file left and nothing written outside it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from clone_fixtures import DATA, RECIPE, TRAIN, fail_rename, snapshot, world  # noqa: F401

from dmlp_integrations import apply
from dmlp_integrations.recipe import IntegrationError

KILLED = 137

# Every step the applier reports, in order; "temp" and "renamed" come once per file, and
# "marker-temp" once per marker write (in progress, then done).
INTEGRATE_STEPS = [("planned", 1), ("marker-temp", 1), ("marker", 1), ("temp", 1), ("temp", 2), ("renamed", 1),
                   ("renamed", 2), ("marker-temp", 2), ("done", 1)]
REVERT_STEPS = [("planned", 1), ("temp", 1), ("temp", 2), ("renamed", 1), ("renamed", 2), ("done", 1)]


def killed_at(step: str, nth: int, action) -> int:
    """Run ``action`` in a forked child killed at the ``nth`` time the hook reports ``step``."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            seen = {"n": 0}

            def hook(at: str, rel: str = "") -> None:
                if at == step:
                    seen["n"] += 1
                    if seen["n"] == nth:
                        os._exit(KILLED)

            apply.fault_hook = hook
            action()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def temp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*dmlp-tmp*"))


@pytest.mark.parametrize("step,nth", INTEGRATE_STEPS)
def test_a_killed_integration_is_reported_and_reverts_exactly(world, step, nth):
    clone, outside = world
    before, elsewhere = snapshot(clone), snapshot(outside)
    assert killed_at(step, nth, lambda: apply.integrate(RECIPE, clone)) == KILLED
    st = apply.status(RECIPE, clone)
    marker_written = (step, nth) not in (("planned", 1), ("marker-temp", 1))
    if not marker_written:
        # killed before the marker existed: nothing was changed, and a later run cleans up
        assert st.state is apply.State.PRISTINE
        assert {k: v for k, v in snapshot(clone).items() if "dmlp-tmp" not in k} == before
        apply.integrate(RECIPE, clone)
        assert temp_files(clone) == []
    elif step == "done":
        assert st.state is apply.State.INTEGRATED
    else:
        # never "edited since" (false) nor "integrated" (half of it is not)
        assert st.state is apply.State.INTERRUPTED and "run `dmlp integrate toy" in st.message, st.message
        with pytest.raises(IntegrationError, match="interrupted: .* --revert"):
            apply.integrate(RECIPE, clone)
    apply.revert(RECIPE, clone)
    assert snapshot(clone) == before  # bytes, modes and owners; no marker, no temporary file
    assert snapshot(outside) == elsewhere


@pytest.mark.parametrize("step,nth", REVERT_STEPS)
def test_a_killed_revert_is_finished_by_the_next_one(world, step, nth):
    clone, outside = world
    before, elsewhere = snapshot(clone), snapshot(outside)
    apply.integrate(RECIPE, clone)
    assert killed_at(step, nth, lambda: apply.revert(RECIPE, clone)) == KILLED
    st = apply.status(RECIPE, clone)
    assert st.state is not apply.State.MODIFIED, st.message
    if (clone / apply.MARKER).exists():
        apply.revert(RECIPE, clone)
    else:  # killed after the marker went: the next revert has nothing left to do
        with pytest.raises(IntegrationError, match="is not integrated"):
            apply.revert(RECIPE, clone)
    # a killed revert once changed a mode from 664 to 644: every mode is the original's
    assert snapshot(clone) == before
    assert snapshot(outside) == elsewhere


def refuse_temp_in(folder: str, error: int, monkeypatch) -> None:
    """``os.open`` fails with ``error`` for temporary files created in ``folder``."""
    real_open = os.open

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        if str(path).endswith(".dmlp-tmp") and dir_fd is not None and \
                os.path.basename(os.readlink(f"/proc/self/fd/{dir_fd}")) == folder:
            raise OSError(error, os.strerror(error), path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc to tell folders apart")
def test_a_folder_that_cannot_be_written_changes_nothing(world, monkeypatch):
    # As root, a mode-555 folder would still be writable, so EACCES is injected.
    clone, _ = world
    before = snapshot(clone)
    refuse_temp_in("pkg", errno.EACCES, monkeypatch)
    with pytest.raises(IntegrationError, match="cannot write pkg/data.py: permission denied; nothing was changed"):
        apply.integrate(RECIPE, clone)
    assert snapshot(clone) == before  # train.py's temporary file and the marker are gone too
    monkeypatch.undo()
    assert apply.status(RECIPE, clone).state is apply.State.PRISTINE


def test_a_full_disk_while_writing_changes_nothing(world, monkeypatch):
    clone, _ = world
    before = snapshot(clone)
    real_write = os.write
    calls = {"n": 0}

    def fake_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the marker is written; the first edited file is not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fake_write)
    with pytest.raises(IntegrationError, match="cannot write train.py: no space left on device; nothing was changed"):
        apply.integrate(RECIPE, clone)
    assert snapshot(clone) == before


def test_a_rename_that_fails_leaves_a_clone_revert_restores(world, monkeypatch):
    clone, _ = world
    before = snapshot(clone)
    fail_rename(monkeypatch, "data.py", errno.EACCES)
    with pytest.raises(IntegrationError, match="cannot put pkg/data.py in place: permission denied; .* --revert"):
        apply.integrate(RECIPE, clone)
    monkeypatch.undo()
    assert apply.status(RECIPE, clone).state is apply.State.INTERRUPTED
    apply.revert(RECIPE, clone)
    assert snapshot(clone) == before


def test_the_test_clone_is_what_the_recipe_expects(world):
    clone, _ = world  # guards the tests above against passing on a clone the recipe refuses
    assert (clone / "train.py").read_text() == TRAIN and (clone / "pkg" / "data.py").read_text() == DATA
    assert apply.status(RECIPE, clone).state is apply.State.PRISTINE
