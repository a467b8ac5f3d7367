"""Co-teaching (Han et al., NeurIPS 2018): ``main.py`` with ``--dmlp``.

Co-teaching draws its noisy labels with a seeded ``noisify`` inside its ``CIFAR10``
dataset and keeps them in ``train_noisy_labels``, beside ``noise_or_not`` (which
labels are right), from which it logs the "pure ratio" of the samples each network keeps.
The purified labels replace ``train_noisy_labels`` right after that draw and
``noise_or_not`` is recomputed, so the pure ratio logged is that of the purified labels.
``--forget_rate`` defaults to the *residual* noise of the purified labels (Co-teaching's
own default is the noise rate the labels were drawn with).

The code is Python 2; the compatibility edits make it run on Python 3.11, PyTorch 2.x
and NumPy 2.x: print statements, ``.data[0]`` on 0-d losses, and sorting and indexing
with tensors that may live on the GPU.
"""

from __future__ import annotations

from .recipe import RUNTIME_IMPORT as RUNTIME, Insert, Py2Prints, Recipe, Replace

__all__ = ["RECIPE"]

RECIPE = Recipe(
    method="coteaching",
    upstream="https://github.com/bhanML/Co-teaching",
    commits=("7c7fbe23e15e517db76a0882b6d108e4508e09d6",),
    entry="main.py",
    file_hashes={
        "main.py": "4651f451f07f94df1b8fc3750403f168edd63612c89056b8240e2747c9a2c3b2",
        "loss.py": "e294e264ffb6243cd5e2a8b5847edb9f439d3077ad33df34e684891c6750687d",
        "data/cifar.py": "9929603a94be8cf45bc1dbef0c3c6e4f0a7200d8a0f04c1150d86cd009ca545c",
        "data/utils.py": "fa7ef10f16474f3ce8c4049f3edc7e14bd129162a4c799ab865bbb00f8796df8",
    },
    edits=(
        Insert("main.py", "args = parser.parse_args()", where="before",
               lines=(RUNTIME, 'dmlp_runtime.setup(parser, "coteaching")'),
               why="adds --dmlp to the parser; parsing activates it and sets --forget_rate"),
        Py2Prints("main.py", count=6),
        Replace("main.py", ".data[0]", ".item()", count=2,
                why="indexing a 0-d loss fails on PyTorch >= 0.5"),
        Replace("main.py", "correct[:k].view(-1)", "correct[:k].reshape(-1)",
                why="the transposed comparison is not contiguous; view() fails on PyTorch >= 1.x"),
        Replace("loss.py", "reduce = False", "reduction='none'", count=2,
                why="`reduce=` is deprecated in favour of `reduction=` and warns every batch"),
        Replace("loss.py", "np.argsort(loss_1.data).cuda()", "torch.argsort(loss_1.data)",
                why="np.argsort of a tensor returns an ndarray, which has no .cuda(); sort on the loss's device"),
        Replace("loss.py", "np.argsort(loss_2.data).cuda()", "torch.argsort(loss_2.data)",
                why="as for loss_1"),
        Replace("loss.py", "ind[ind_1_sorted[:num_remember]]", "ind[ind_1_sorted[:num_remember].cpu().numpy()]",
                why="a numpy array cannot be indexed by a CUDA tensor"),
        Replace("loss.py", "ind[ind_2_sorted[:num_remember]]", "ind[ind_2_sorted[:num_remember].cpu().numpy()]",
                why="as for network 1"),
        Py2Prints("data/utils.py", count=4),
        Insert("data/cifar.py", "from .utils import", where="after", lines=(RUNTIME,),
               why="the runtime, for the injection below"),
        Insert("data/cifar.py", "self.noise_or_not = np.transpose(", within="class CIFAR10(",
               lines=('dmlp_runtime.inject("coteaching", self)',),
               why="purified labels replace train_noisy_labels; noise_or_not is recomputed from them"),
        Insert("data/cifar.py", "self.noise_or_not = np.transpose(", within="class CIFAR100(",
               lines=('dmlp_runtime.inject("coteaching", self)',), why="as for CIFAR-10"),
    ),
)
