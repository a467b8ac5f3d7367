"""Run the official ``DMLP.py`` (github.com/yuanpengtu/DMLP) on given features and labels.

Not part of the package, and none of the official code is kept in this repository: the
script is read at run time from a clone the user names (``--official PATH``: the
``DMLP.py`` file, a clone, or a bare git directory), adapted by the text substitutions
listed in :data:`SUBSTITUTIONS` and :func:`adapt`, written to a temporary folder with its
inputs laid out where it reads them (``./labels_cifar10/symmetric20/*.npy``), and run in a
subprocess there. Each substitution must match the number of times it is declared to, or
nothing runs.

What is changed, and why:

- ``.cuda()`` removed everywhere: it runs on the CPU.
- ``idx_shuffle = torch.randperm(...)`` reads the split from ``split.npy``: the trusted
  rows and the order of the training rows (hence its 7,000-row batches) are ours, so the
  script and paper mode see the same trusted set and the same batches.
- ``epoch=100`` can be set lower (for the step-by-step comparison of the first epochs).
- the per-sample Python loops that measure accuracy or build the head's targets
  (``[torch.argmax(x[idx]) ... for idx in range(n)]``) are vectorised to the same values
  (row-wise ``argmax`` returns the first maximum, as the 1-D one does): on a CPU they cost
  more than the method.
- ``torch.inverse(FᵀF)`` and the product with ``Fᵀ``, constant for a batch, are computed
  once per view and batch and kept (``_dmlp_solver``), not at every step: the same
  operations on the same tensors, so the same values, without 700 inversions of a
  ``d × d`` matrix per run.
- ``vectorise=False`` and ``cache_solve=False`` keep the script's own loops and
  inversions; ``paper_regime.py check`` runs two epochs both ways and checks that the
  labels are identical.
- with ``fix_guard`` (the script's *evident intent*, not the script as it is) the EAC
  feedback guard ``i%epoch_T==0 and i!=0 and i==epoch-1``, which is never true with
  ``epoch=100, epoch_T=20``, becomes ``i%epoch_T==0 and i!=0``: mixing at the 0-based
  epochs 20, 40, 60 and 80.
- a prologue seeds torch and numpy and sets the thread count; a line appended to the
  epoch loop records, after each epoch, the label accuracy of both views and of their
  mean on the 49,000 training rows, each head's accuracy on them, and the test
  accuracies the script computes; an epilogue saves the record (``record.npz``).

Used by ``benchmarks/paper_regime.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OfficialRun", "OfficialSourceError", "adapt", "read_official_source", "run_official"]


class OfficialSourceError(RuntimeError):
    """The official script could not be found or no longer matches the substitutions."""


# (pattern, replacement, expected count or None for "at least one"): regular expressions.
VECTORISE = [
    # [torch.argmax(x[idx])==y[idx] for idx in range(n)] -> the same list of 0/1 values
    (r"\[torch\.argmax\((\w+)\[idx\]\)==(\w+)\[idx\] for idx in range\(([^()]+)\)\]",
     r"(\1[:(\3)].argmax(1)==\2[:(\3)]).float().tolist()", 8),
    # torch.Tensor([torch.argmax(x[idx]) for idx in range(n)]) -> the same float tensor
    (r"torch\.Tensor\(\[torch\.argmax\((\w+)\[idx\]\) for idx in range\(([^()]+)\)\]\)",
     r"\1[:(\2)].argmax(1).float()", 2),
    # [x[idx]==y[idx] for idx in range(n)]
    (r"\[(\w+)\[idx\]==(\w+)\[idx\] for idx in range\((\w+)\)\]",
     r"(\1[:\3]==\2[:\3]).float().tolist()", 2),
]
SUBSTITUTIONS = [
    (r"\.cuda\(\)", "", None),
    (r"idx_shuffle = torch\.randperm\(train_num\+val_num\)",
     "idx_shuffle = torch.from_numpy(np.load(path+'split.npy'))", 1),
]
# The constant (FᵀF)⁻¹Fᵀ of each batch, computed once per view and batch instead of at every
# step: the same operations on the same tensors, so the same values (checked by the benchmark).
CACHE_SOLVE = [
    ((r"W1_v(\d)=torch\.mm\(torch\.mm\(torch\.inverse\(torch\.mm\(batchfeat_v\1\.transpose\(1,0\), "
      r"batchfeat_v\1\)\),batchfeat_v\1\.transpose\(1,0\)\), "),
     r"W1_v\1=torch.mm(_dmlp_solver(\1, j, batchfeat_v\1), ", 2),
]
GUARD = (r"if i%epoch_T==0 and i!=0 and i==epoch-1:", "if i%epoch_T==0 and i!=0:", 1)
EPOCHS = r"epoch=100#Training epochs"

PROLOGUE = '''\
# --- added by dmlp-plugin's benchmark harness (benchmarks/official_dmlp.py) ---
import numpy as _np, torch as _torch
_torch.manual_seed({seed}); _np.random.seed({seed}); _torch.set_num_threads({threads})
_LOG = {{k: [] for k in ("acc_v1", "acc_v2", "acc_mean", "head_v1", "head_v2", "test_ensemble",
                        "test_ls_v1", "test_head_v1", "seconds")}}
_DUMP, _DUMP_EPOCHS, _T0 = {{}}, {dump_epochs!r}, __import__("time").perf_counter()
def _dmlp_record(i):
    g = globals()
    with _torch.no_grad():
        correct = g["labels_correct"][g["idx_to_train"]]
        y1, y2 = g["train_labels_v1"].detach(), g["train_labels_v2"].detach()
        acc = lambda y: float((y.argmax(1) == correct).float().mean())
        _LOG["acc_v1"].append(acc(y1)); _LOG["acc_v2"].append(acc(y2)); _LOG["acc_mean"].append(acc(y1 + y2))
        _LOG["head_v1"].append(acc(g["model_fcv1"](g["train_features_v1"])))
        _LOG["head_v2"].append(acc(g["model_fcv2"](g["train_features_v2"])))
        for key, name in (("test_ensemble", "ensemacc"), ("test_ls_v1", "acc_testv1"),
                          ("test_head_v1", "acc_test_fcv1")):
            _LOG[key].append(float(g[name]) / 100)
        _LOG["seconds"].append(__import__("time").perf_counter() - _T0)
        if i + 1 in _DUMP_EPOCHS:
            _DUMP["labels_v1_epoch%d" % (i + 1)] = y1.numpy().copy()
            _DUMP["labels_v2_epoch%d" % (i + 1)] = y2.numpy().copy()
_SOLVERS = {{}}
def _dmlp_solver(view, j, f):
    if (view, j) not in _SOLVERS:
        _SOLVERS[(view, j)] = _torch.mm(_torch.inverse(_torch.mm(f.transpose(1,0), f)),f.transpose(1,0))
    return _SOLVERS[(view, j)]
# --- end of the harness's prologue ---
'''
RECORD_LINE = "    _dmlp_record(i)  # added by the harness: per-epoch record\n"
EPILOGUE = '''
# --- added by the harness: save the record ---
_np.savez("record.npz", idx_to_train=idx_to_train.numpy(),
          final_v1=train_labels_v1.detach().argmax(1).numpy(), final_v2=train_labels_v2.detach().argmax(1).numpy(),
          final_mean=(train_labels_v1 + train_labels_v2).detach().argmax(1).numpy(),
          **{k: _np.asarray(v) for k, v in _LOG.items()}, **_DUMP)
'''


def read_official_source(path: Path) -> str:
    """The text of ``DMLP.py`` from a file, a clone (work tree) or a bare git directory."""
    path = Path(path)
    if path.is_file():
        return path.read_text()
    if (path / "DMLP.py").is_file():
        return (path / "DMLP.py").read_text()
    if (path / "HEAD").is_file() or (path / ".git").exists():
        done = subprocess.run(["git", f"--git-dir={path / '.git' if (path / '.git').exists() else path}",
                               "show", "HEAD:DMLP.py"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return done.stdout
    raise OfficialSourceError(f"no DMLP.py at {path}: clone https://github.com/yuanpengtu/DMLP and pass "
                              "--official PATH (the file, the clone, or its git directory)")


def _sub(text: str, pattern: str, repl: str, expected: int | None) -> str:
    out, count = re.subn(pattern, repl, text)
    if (expected is None and count == 0) or (expected is not None and count != expected):
        raise OfficialSourceError(f"the official script no longer matches the harness: {pattern!r} "
                                  f"matched {count} times, expected {expected or 'at least 1'}")
    return out


def adapt(source: str, *, seed: int, threads: int = 1, epochs: int | None = None, fix_guard: bool = False,
          vectorise: bool = True, cache_solve: bool = True, dump_epochs: tuple[int, ...] = ()) -> str:
    """The official script with the harness's substitutions (module docstring)."""
    text = source
    for pattern, repl, expected in (SUBSTITUTIONS + (VECTORISE if vectorise else [])
                                    + (CACHE_SOLVE if cache_solve else [])):
        text = _sub(text, pattern, repl, expected)
    if fix_guard:
        text = _sub(text, *GUARD)
    if epochs is not None:
        text = _sub(text, re.escape(EPOCHS), f"epoch={int(epochs)}#Training epochs (set by the harness)", 1)
    lines = text.rstrip("\n").split("\n")
    if not lines[-1].startswith("         "):  # the file must end inside the epoch loop's body
        raise OfficialSourceError("the official script no longer ends inside its epoch loop")
    prologue = PROLOGUE.format(seed=int(seed), threads=int(threads), dump_epochs=tuple(dump_epochs))
    return prologue + "\n".join(lines) + "\n" + RECORD_LINE + EPILOGUE


@dataclass
class OfficialRun:
    """What one run of the adapted script recorded (``record``: arrays, see PROLOGUE)."""

    record: dict[str, np.ndarray]
    seconds: float
    source_sha256: str
    log_tail: str


def run_official(source: str, train: np.ndarray, test: np.ndarray, given: np.ndarray, clean: np.ndarray,
                 test_labels: np.ndarray, split: np.ndarray, *, seed: int, threads: int = 1,
                 epochs: int | None = None, fix_guard: bool = False, vectorise: bool = True,
                 cache_solve: bool = True, dump_epochs: tuple[int, ...] = (), nice: int = 5) -> OfficialRun:
    """Run the adapted script on 50,000 training rows (``split``: a permutation of them, the
    49,000 training rows in batch order first, the 1,000 trusted rows last)."""
    if len(train) != 50000 or len(test) != 10000 or sorted(split.tolist()) != list(range(50000)):
        raise ValueError("the official script hard-codes 49,000 + 1,000 training and 10,000 test rows")
    script = adapt(source, seed=seed, threads=threads, epochs=epochs, fix_guard=fix_guard,
                   vectorise=vectorise, cache_solve=cache_solve, dump_epochs=dump_epochs)
    with tempfile.TemporaryDirectory(prefix="dmlp-official-") as tmp:
        data = Path(tmp) / "labels_cifar10" / "symmetric20"
        data.mkdir(parents=True)
        for name, array in (("trainfeatures", np.asarray(train, np.float32)),
                            ("testfeatures", np.asarray(test, np.float32)),
                            ("trainlabels", given.astype(np.int64)), ("correctlabels", clean.astype(np.int64)),
                            ("testlabels", test_labels.astype(np.int64)), ("split", split.astype(np.int64))):
            np.save(data / f"{name}.npy", array)
        (Path(tmp) / "DMLP_adapted.py").write_text(script)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONWARNINGS="ignore")
        start = time.perf_counter()
        with open(Path(tmp) / "log.txt", "w") as log:
            done = subprocess.run(["nice", "-n", str(nice), sys.executable, "DMLP_adapted.py"], cwd=tmp, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, check=False)
        seconds = time.perf_counter() - start
        tail = (Path(tmp) / "log.txt").read_text()[-3000:]
        if done.returncode != 0:
            raise RuntimeError(f"the adapted official script failed (status {done.returncode}):\n{tail}")
        with np.load(Path(tmp) / "record.npz") as z:
            record = {k: z[k] for k in z.files}
    return OfficialRun(record, seconds, hashlib.sha256(source.encode()).hexdigest(), tail)
