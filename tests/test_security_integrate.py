"""`dmlp integrate` against a hostile clone: swapped links, forged markers, foreign owners.

Nothing may be written (or, for --check, read) outside the clone, the marker may not choose
what --revert writes or which mode bits it sets, and a bad marker gives one line naming
its field. Runs as root here and in CI, where file modes do not stop a write: refusals of
read-only files are by policy (mode bits), and owner tests chown files to another uid.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import json
import os
import stat
import threading
import zlib
from pathlib import Path

import pytest
from clone_fixtures import RECIPE, TRAIN, fail_rename, make_clone, snapshot, world  # noqa: F401

from dmlp_integrations import apply
from dmlp_integrations.marker import MARKER
from dmlp_integrations.recipe import IntegrationError
from dmlp_plugin.cli import integrate as integrate_cli
from dmlp_plugin.cli import main

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def cli(monkeypatch, capsys):
    """``dmlp integrate toy ...`` with the test recipe; returns (exit status, stderr as one line)."""
    monkeypatch.setattr(integrate_cli, "recipe_for", lambda method: RECIPE)

    def run(*args: str) -> tuple[int, str]:
        code = main(["integrate", "toy", *args])
        captured = capsys.readouterr()
        return code, " ".join((captured.err + captured.out).split())
    return run


def swap_for_link(folder: Path, target: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".real"))
    folder.symlink_to(target, target_is_directory=True)


# -- links swapped in between the plan and the writes ------------------------------------------


def test_a_folder_swapped_for_a_link_after_planning_is_refused(world):
    clone, outside = world
    elsewhere = snapshot(outside)
    apply.fault_hook = lambda step, rel="": swap_for_link(clone / "pkg", outside) if step == "planned" else None
    try:
        with pytest.raises(IntegrationError, match="pkg is a symbolic link or not a folder"):
            apply.integrate(RECIPE, clone)
    finally:
        apply.fault_hook = None
    assert snapshot(outside) == elsewhere  # no data.py out there
    assert not (clone / MARKER).exists() and (clone / "train.py").read_text() == TRAIN  # all or nothing
    assert not list(clone.rglob("*dmlp-tmp*"))


def test_a_link_swapped_in_after_the_folder_was_opened_is_never_followed(world):
    clone, outside = world
    elsewhere = snapshot(outside)
    swapped = {"done": False}

    def hook(step: str, rel: str = "") -> None:
        if step == "temp" and rel == "pkg/data.py" and not swapped["done"]:
            swapped["done"] = True  # the temporary file is written; the rename is to come
            swap_for_link(clone / "pkg", outside)

    apply.fault_hook = hook
    try:
        apply.integrate(RECIPE, clone)
    finally:
        apply.fault_hook = None
    assert swapped["done"] and snapshot(outside) == elsewhere
    # the edit landed in the folder that was opened inside the clone
    assert "ours.fix" in (clone / "pkg.real" / "data.py").read_text()


def _renameat2():
    libc = ctypes.CDLL(None, use_errno=True)
    return getattr(libc, "renameat2", None)


@pytest.mark.skipif(_renameat2() is None, reason="libc has no renameat2 (RENAME_EXCHANGE) to race with")
def test_a_racing_rename_exchange_never_redirects_a_write(tmp_path):
    """The attack that won 3 of 40 tries: swap a folder and a link to outside in a tight loop."""
    renameat2, at_fdcwd, exchange = _renameat2(), -100, 2
    outside = tmp_path / "outside"
    outside.mkdir()
    for attempt in range(40):
        clone = make_clone(tmp_path / f"clone{attempt}")
        (clone / "swap").symlink_to(outside, target_is_directory=True)
        a, b = str(clone / "pkg").encode(), str(clone / "swap").encode()
        stop = threading.Event()

        def flip() -> None:
            while not stop.is_set():
                renameat2(at_fdcwd, a, at_fdcwd, b, exchange)

        flipper = threading.Thread(target=flip)
        flipper.start()
        try:
            apply.integrate(RECIPE, clone)  # succeeds or refuses, as the race falls
        except IntegrationError:
            pass
        finally:
            stop.set()
            flipper.join()
        assert sorted(p.name for p in outside.iterdir()) == [], f"attempt {attempt} wrote outside the clone"


# -- the marker is data ------------------------------------------------------------------------


def forge(clone: Path, change) -> None:
    marker = json.loads((clone / MARKER).read_text())
    change(marker)
    (clone / MARKER).write_text(json.dumps(marker))


def test_revert_writes_only_files_the_recipe_edits(world, cli):
    clone, _ = world
    (clone / "README.md").write_text("readme\n")
    apply.integrate(RECIPE, clone)
    evil = base64.b64encode(zlib.compress(b"attacker bytes")).decode()
    forge(clone, lambda m: m["files"].update({"README.md": {
        "original_sha256": apply.sha256(b"attacker bytes"), "integrated_sha256": apply.sha256(b"readme\n"),
        "original": evil}}))
    code, err = cli(str(clone), "--revert")
    assert code == 2 and "lists 'README.md', which the toy recipe does not edit" in err
    assert (clone / "README.md").read_text() == "readme\n"


def test_modes_in_a_forged_marker_are_never_applied(world):
    clone, _ = world
    before = snapshot(clone)
    apply.integrate(RECIPE, clone)
    forge(clone, lambda m: [entry.update(mode=mode) for entry, mode in zip(m["files"].values(), (0o6777, 0o4777))])
    apply.revert(RECIPE, clone)
    assert snapshot(clone) == before  # 755 and 664, as the files had before integration
    assert all(not stat.S_IMODE(p.stat().st_mode) & 0o7000 for p in clone.rglob("*") if p.is_file())


def _entry(marker: dict) -> dict:
    return marker["files"]["train.py"]


FORGERIES = {
    "not JSON": (lambda m: None, "content is not JSON"),
    "original is not base64": (lambda m: _entry(m).update(original="@@@"), "files['train.py'].original is not zlib"),
    "original is not zlib": (lambda m: _entry(m).update(original=base64.b64encode(b"plain").decode()),
                             "files['train.py'].original is not zlib"),
    "original is a number": (lambda m: _entry(m).update(original=7), "files['train.py'].original is int, not text"),
    "original hash is missing": (lambda m: _entry(m).pop("original_sha256"),
                                 "files['train.py'].original_sha256 is 'None', not a sha256"),
    "original does not match its hash": (
        lambda m: _entry(m).update(original=base64.b64encode(zlib.compress(b"x")).decode()),
        "files['train.py'].original does not match its original_sha256"),
    "a path with a null byte": (lambda m: m["files"].update({"tr\x00ain.py": {}}),
                                "lists 'tr\\x00ain.py', which the toy recipe does not edit"),
    "a path outside the clone": (lambda m: m["files"].update({"../outside/keep.txt": {}}),
                                 "lists '../outside/keep.txt', which the toy recipe does not edit"),
    "files is a list": (lambda m: m.update(files=["train.py"]), "field 'files' is not a table"),
    "method is a number": (lambda m: m.update(method=3), "field 'method' is 3, not an adapter name"),
    "state is unknown": (lambda m: m.update(state="finished"), "field 'state' is 'finished'"),
    "a zip bomb": (lambda m: _entry(m).update(original=base64.b64encode(zlib.compress(bytes(65 << 20))).decode()),
                   "files['train.py'].original inflates past 64 MiB"),
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_malformed_marker_gives_one_line_naming_its_field(world, cli, case):
    clone, _ = world
    apply.integrate(RECIPE, clone)
    integrated = snapshot(clone)
    change, message = FORGERIES[case]
    if case == "not JSON":
        (clone / MARKER).write_text("{not json")
    else:
        forge(clone, change)
    integrated[MARKER] = snapshot(clone)[MARKER]
    for args in (("--revert",), ("--check",), ()):
        code, err = cli(str(clone), *args)
        assert code == 2 and err.startswith("error: .dmlp-integration.json:") and message in err, (args, err)
        assert "Traceback" not in err
    assert snapshot(clone) == integrated  # nothing was written


def test_check_never_reads_outside_the_clone(world, cli, monkeypatch):
    clone, outside = world
    apply.integrate(RECIPE, clone)
    (clone / "pkg" / "data.py").unlink()
    (clone / "pkg" / "data.py").symlink_to(outside / "keep.txt")  # a recipe file made a link out
    opened = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        opened.append(os.readlink(f"/proc/self/fd/{fd}"))
        return fd

    monkeypatch.setattr(os, "open", recording_open)
    code, out = cli(str(clone), "--check")
    monkeypatch.undo()
    assert code == 1 and "integrated, but edited since: pkg/data.py" in out
    assert opened and all(Path(p).is_relative_to(clone) for p in opened), opened


# -- owners and permissions --------------------------------------------------------------------


@pytest.mark.skipif(not AS_ROOT, reason="only root can give files to another uid")
def test_owner_and_group_are_kept_through_integrate_and_revert(world):
    clone, _ = world
    for path in (clone, *clone.rglob("*")):
        os.lchown(path, 1234, 4321)
    before = snapshot(clone)
    apply.integrate(RECIPE, clone)
    for path in (clone / "train.py", clone / "pkg" / "data.py", clone / MARKER):
        assert (path.stat().st_uid, path.stat().st_gid) == (1234, 4321), path
    apply.revert(RECIPE, clone)
    assert snapshot(clone) == before


REFUSALS = {
    "a file of another owner": (lambda clone: os.chown(clone / "pkg" / "data.py", 1234, 1234),
                                "pkg/data.py is owned by uid 1234, the clone by uid 0"),
    "a read-only file": (lambda clone: os.chmod(clone / "train.py", 0o444), "train.py is read-only (mode 444)"),
    "a read-only folder": (lambda clone: os.chmod(clone / "pkg", 0o555), "the folder of pkg/data.py is read-only"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_files_the_owner_could_not_edit_are_refused_unless_asked(world, cli, case):
    # By policy, from the mode bits and owners: as root, a write would succeed regardless.
    clone, _ = world
    if case == "a file of another owner" and not AS_ROOT:
        pytest.skip("only root can give files to another uid")
    make, message = REFUSALS[case]
    make(clone)
    before = snapshot(clone)
    code, err = cli(str(clone))
    assert code == 2 and message in err and "--ignore-permissions" in err, err
    assert snapshot(clone) == before  # nothing written, no marker
    assert cli(str(clone), "--ignore-permissions")[0] == 0
    after = snapshot(clone)
    assert "ours" in (clone / "train.py").read_text()
    assert all(after[path][1:] == before[path][1:] for path in before)  # modes and owners kept


def test_setuid_and_sticky_bits_are_never_written(world):
    clone, _ = world
    os.chmod(clone / "train.py", 0o4775)
    apply.integrate(RECIPE, clone)
    assert stat.S_IMODE((clone / "train.py").stat().st_mode) == 0o775


def test_a_fifo_in_place_of_a_recipe_file_does_not_hang(world):
    clone, _ = world
    (clone / "pkg" / "data.py").unlink()
    os.mkfifo(clone / "pkg" / "data.py")
    with pytest.raises(IntegrationError, match="pkg/data.py is not a regular file"):
        apply.plan(RECIPE, clone)


def test_a_write_error_in_the_cli_is_one_line_saying_what_to_do(world, cli, monkeypatch):
    clone, _ = world
    fail_rename(monkeypatch, "train.py", errno.EROFS)
    code, err = cli(str(clone))
    assert code == 2 and err == ("error: cannot put train.py in place: read-only file system; the clone is partly "
                                 "changed: --check reports it as interrupted, and --revert restores it")
