"""CDR (Xia et al., ICLR 2021): ``main.py`` with ``--dmlp``.

CDR draws noise over all 50,000 training labels with a seeded ``noisify`` in
``tools.dataset_split`` and then splits them 45k/5k with ``np.random.seed(seed)`` and
``np.random.choice``. The purified labels replace the noisy array right after the draw
and before the split, so both halves (training and CDR's noisy validation set) carry
them. The datasets are then watched: their loaders' first batches are checked against
the purified labels through the same seeded split. ``--noise_rate`` is also CDR's
pruning schedule (it keeps ``1 - noise_rate`` of the gradients); it follows the
*residual* noise of the purified labels.
"""

from __future__ import annotations

from .recipe import RUNTIME_IMPORT as RUNTIME, Insert, Recipe

__all__ = ["RECIPE"]

RECIPE = Recipe(
    method="cdr",
    upstream="https://github.com/xiaoboxia/CDR",
    commits=("6665a8ba265f0f60291ed7775042575db05bed61",),
    entry="main.py",
    file_hashes={
        "main.py": "e0db46bd2804e6b65aa1b64c6799d9882add04758ea919241230ecd8b4774f9d",
        "tools.py": "05217880904c0c5fc5b986b2121b53e80521b844870982f11da7d5e0e978e4e1",
        "data_load.py": "de1dc8c1e5575dfc05e9104b7474c08a517f27b19ff3752efaef7f1efae71586",
    },
    edits=(
        Insert("main.py", "args = parser.parse_args()", where="before",
               lines=(RUNTIME, 'dmlp_runtime.setup(parser, "cdr")'),
               why="adds --dmlp to the parser; parsing activates it and sets --noise_rate"),
        Insert("tools.py", "import utils", where="after", lines=(RUNTIME,),
               why="the runtime, for the injection below"),
        Insert("tools.py", "noisy_labels = noisy_labels.squeeze()", where="after",
               lines=('noisy_labels = dmlp_runtime.inject("cdr", noisy_labels, part="all", clean=train_labels)',),
               why="purified labels replace the noisy draw before the train/validation split"),
        Insert("data_load.py", "import tools", where="after", lines=(RUNTIME,),
               why="the runtime, for the watch below"),
        Insert("data_load.py", "self.val_data = self.val_data.transpose((0, 2, 3, 1))",
               within="class cifar10_dataset(", indent=" " * 8,
               lines=('dmlp_runtime.watch("cdr", self, part="train" if train else "val", seed=random_seed, '
                      'split_per=split_per)',),
               why="checks the labels CIFAR-10 loaders yield, through CDR's seeded split"),
    ),
)
