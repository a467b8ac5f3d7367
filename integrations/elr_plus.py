"""ELR+ (Liu et al., NeurIPS 2020): ``ELR_plus/train.py`` with ``--dmlp``.

ELR+ trains two networks (CIFAR-10 and CIFAR-100 alike), each with its own data loader; each loader builds its own
class-stratified 45k/5k train/validation split of CIFAR-10 with an *unseeded*
``np.random.shuffle`` and draws its own noise, so the split differs per run and per
network. The purified labels replace both halves of each split right after the noise is
drawn, through the indices the split produced (the training dataset keeps them in
``indexs``); every split is saved beside the alignment record, so it can be checked
after the run. ``train_labels_gt`` keeps the clean labels ELR+ evaluates against.
"""

from __future__ import annotations

from .recipe import RUNTIME_IMPORT as RUNTIME, Insert, Recipe, Replace

__all__ = ["RECIPE"]

INJECT = ('dmlp_runtime.inject("elr_plus", train_dataset, part="train")',
          'dmlp_runtime.inject("elr_plus", val_dataset, part="val", indices=val_idxs)')

RECIPE = Recipe(
    method="elr_plus",
    upstream="https://github.com/shengliu66/ELR",
    commits=("934af53434a336b6db80d05d7649d23216e8ca6d",),
    entry="train.py",
    workdir="ELR_plus",
    file_hashes={
        "ELR_plus/train.py": "1ffbfc8e420f4ddd4b06746eb979b052e1e077d302dec198800e59c5fd46d45d",
        "ELR_plus/data_loader/cifar10.py": "86c049b84fadf76c82d363a4a06b80fbd8ca329538f6236689761df5c0ff3dc5",
        "ELR_plus/data_loader/cifar100.py": "b4bf7f03033150e0af34da9c111b0f5378fa152c6e77576d7fad7318b0de0f90",
        "ELR_plus/trainer/trainer.py": "2a4771cc9138152cb0130dc7545bf364681f654e084af0ae59f2ad9e45e9cc42",
    },
    edits=(
        Insert("ELR_plus/train.py", "config = ConfigParser.get_instance(args, options)", where="before",
               lines=(RUNTIME, 'dmlp_runtime.setup(args, "elr_plus")'),
               why="adds --dmlp to the parser ConfigParser parses; parsing activates it"),
        Insert("ELR_plus/train.py", "import mlflow", where="before",
               lines=("from dmlp_integrations.shims import provide as dmlp_provide", 'dmlp_provide("mlflow")'),
               why="mlflow is imported unconditionally; a no-op stand-in when it is not installed"),
        Replace("ELR_plus/trainer/trainer.py", "add_(1 - alpha, param.data)", "add_(param.data, alpha=1 - alpha)",
                why="the add_(Number, Tensor) overload is deprecated and warns every EMA step"),
        Insert("ELR_plus/data_loader/cifar10.py", "import torchvision", where="after", lines=(RUNTIME,),
               why="the runtime, for the injection below"),
        Insert("ELR_plus/data_loader/cifar10.py", 'print(f"Train: {len(train_idxs)} Val: {len(val_idxs)}")',
               where="before", lines=INJECT,
               why="purified labels replace both halves of the split, through its indices"),
        Insert("ELR_plus/data_loader/cifar100.py", "import torchvision", where="after", lines=(RUNTIME,),
               why="the runtime, for the injection below"),
        Insert("ELR_plus/data_loader/cifar100.py", 'print(f"Train: {len(train_dataset)} Val:', where="before",
               lines=INJECT, why="as for CIFAR-10"),
    ),
)
