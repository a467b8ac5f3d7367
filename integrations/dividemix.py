"""DivideMix (Li et al., ICLR 2020): ``Train_cifar.py`` with ``--dmlp``.

DivideMix reads its noisy labels from the JSON list at ``<data_path>/<r>_<noise_mode>.json``
(writing a fresh draw there when the file is missing) and rebuilds its datasets from it
every epoch, in all three modes. The purified labels replace that list right after it is
read, before the mode split, so warm-up, co-divide, the labeled and unlabeled sets, and
DivideMix's own AUC logging against the clean labels all see them. Because DivideMix reads
the very file that was purified, its labels must equal the purified run's input.
"""

from __future__ import annotations

from .recipe import RUNTIME_IMPORT as RUNTIME, Insert, Recipe, Replace

__all__ = ["RECIPE"]

RECIPE = Recipe(
    method="dividemix",
    upstream="https://github.com/LiJunnan1992/DivideMix",
    commits=("d9d3058fa69a952463b896f84730378cdee6ec39",),
    entry="Train_cifar.py",
    file_hashes={
        "Train_cifar.py": "cf4963f528396652517cf5aa9b9a3cb8a923145d04d6d437666e43140226afd7",
        "dataloader_cifar.py": "5f2c0c4cfb666c1caa809f1738cc75fb16fce99849267556b132079f985717f3",
    },
    edits=(
        Insert("Train_cifar.py", "args = parser.parse_args()", where="before",
               lines=(RUNTIME, 'dmlp_runtime.setup(parser, "dividemix")'),
               why="adds --dmlp to the parser; parsing activates it"),
        Replace("Train_cifar.py", "unlabeled_train_iter.next()", "next(unlabeled_train_iter)", count=2,
                why="DataLoader iterators have no .next() on Python 3 / PyTorch >= 1.13"),
        Insert("Train_cifar.py", "stats_log=open(", where="before",
               lines=("os.makedirs('./checkpoint', exist_ok=True)",),
               why="DivideMix logs into ./checkpoint/ but never creates it"),
        Insert("dataloader_cifar.py", "from torchnet.meter import AUCMeter", where="before",
               lines=(RUNTIME, 'from dmlp_integrations.shims import provide as dmlp_provide',
                      'dmlp_provide("torchnet")'),
               why="torchnet does not install on modern setuptools; a stand-in AUCMeter if it is missing"),
        Insert("dataloader_cifar.py", "if self.mode == 'all':", where="before",
               lines=('noise_label = dmlp_runtime.inject("dividemix", noise_label, clean=train_label, owner=self)',),
               why="purified labels replace the noisy list before the mode split"),
    ),
)
