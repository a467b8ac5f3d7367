"""`PurifyConfig`: every hyperparameter of the purifier, typed and documented, in one place."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError
from .sizes import parse_memory

__all__ = ["PurifyConfig"]


@dataclass(frozen=True)
class PurifyConfig:
    """Hyperparameters of DMLP purification.

    The defaults are the settings that gave the most accurate labels on the benchmark
    (``benchmarks/purify_cifar10.py``); :meth:`paper` returns the settings of the paper
    and the official code, for reproduction. ``docs/engine.md`` explains each choice.

    IPC (intrinsic primary correction)
    ----------------------------------
    ipc : bool
        Run IPC's label updates at all (``False`` leaves only EAC, an ablation).
    epochs : int
        Passes over the training set. Each pass updates every label once.
    batch_size : int
        Size ``b`` of the mini-batches over which the least-squares fit ``W*(Y)`` is
        solved. The remainder is kept: batches are balanced to equal sizes.
    ridge : float
        Ridge added to ``FᵀF``, relative to its mean diagonal, so the factorisation is
        well posed even when ``b < d`` or features are collinear.
    label_optimizer : {"adam", "sgd"}
        ``"adam"`` as the official code; ``"sgd"`` is the plain gradient step of the paper.
    label_lr : float
    label_betas : tuple of float
        Adam's betas for the label variables (official: ``(0.5, 0.999)``).
    label_weight_decay : float
        L2 decay applied to the label rows being updated (never to other rows).
    ce_weight, mse_weight, prior_weight : float
        Weights of the trusted-set cross-entropy, squared error, and class-prior KL terms
        of the IPC loss.
    prior : {"uniform", "trusted"}
        Class prior of the prior terms: uniform, or the class frequencies of the trusted set.
    project_simplex : bool
        Project label rows onto the probability simplex after each step.
    reshuffle_every : int
        Re-draw the batch partition (and re-factor) every this many epochs; 0 never.
    precision : {"float32", "bfloat16"}
        Storage of the IPC batches (their features and the factored solver ``K``) and of
        the rows the linear head trains on, and the dtype of the matrix products that
        read them. ``"bfloat16"`` halves their memory and the bytes each epoch reads;
        on CPUs with AMX or AVX512-BF16 and on recent GPUs it makes paper mode faster
        (1.6× on the CPU benchmark; elsewhere it can be slower). Factoring stays in float64, and
        labels, losses and gradients stay float32 (see docs/engine.md for the measured
        effect on the labels).

    EAC (extrinsic auxiliary correction)
    ------------------------------------
    eac : bool
        Fit an auxiliary head on the current labels and mix its predictions into them.
    eac_head : {"least-squares", "linear"}
        ``"least-squares"``: closed-form ridge regression on the current labels plus the
        trusted set (weight ``trusted_weight``), refitted at every mixing step; exact and
        low-variance under noise. ``"linear"``: the paper's softmax head trained by Adam
        every epoch with cross-entropy, a confidence penalty and a class-balance term.
    eac_target : {"posterior", "head"}
        What is mixed into the labels. ``"head"``: the head's predictions ``C(F)``, as in
        the paper. ``"posterior"``: the head's calibrated probabilities combined with the
        noise transition measured on the trusted set, ``p(y | x, ỹ) ∝ p(y | x)·T[y, ỹ]``;
        a given label is then kept unless the evidence against it outweighs how noisy
        that class was measured to be (not in the paper; see docs/engine.md).
    eac_period : int
        ``T``: mix every this many epochs (the paper's Eq. 11).
    eac_eta : float
        ``η_E`` in ``Y ← (1-η_E)·Y + η_E·target``.
    eac_final : bool
        Also mix after the last epoch when it is not a multiple of ``T``.
    select_round : bool
        With ``eac_target="posterior"``, return the posterior of the mixing round whose
        cross-fitted trusted-set log-loss was lowest rather than the last one (guards
        against self-training drift at low noise).
    trusted_weight : float
        Weight of a trusted sample relative to a training sample in the least-squares head.
    logistic_candidate : bool
        With ``select_round``, also fit once, after the last epoch, a logistic head on the
        *given* labels corrected for noise through the measured transition (forward
        correction), and return its posterior instead when its cross-fitted trusted-set
        log-loss beats every mixing round's. It is the better classifier at low and
        moderate noise (not in the paper; see docs/engine.md).
    logistic_weight_decay : float or tuple of float
        The logistic head's L2 penalty (on standardised features). A tuple is a
        regularisation path: each value is fitted (with its own cross-fitted scores) and
        competes as a candidate of its own. The default path (2e-2, 5e-3, 1e-3) was
        chosen on tuning draws kept apart from the benchmark's (``benchmarks/tuning.py``):
        against 5e-3 alone, +0.8 points at asymmetric 40% and +0.2 at symmetric 20%,
        within ±0.1 elsewhere, for about twice the logistic candidate's time
        (docs/engine.md).
    logistic_trusted_weight : float
        Weight of a trusted row in the logistic head.
    logistic_max_iter : int
        L-BFGS iterations of its fit, and of each cross-fitting fit (one per fold of the
        trusted set, from scratch, so that its held-out scores are as honest as the
        least-squares rounds').
    mlp_candidate : bool
        With ``select_round``, also fit a forward-corrected network (``mlp_layers``
        hidden ReLU layers with dropout), cross-fitted over ``mlp_folds`` parts of the training rows
        so that no row is predicted by a network that trained on it; it competes as
        ``mlp``, and mixed half and half with the best logistic candidate as ``mlp +
        logistic``. A nonlinear ``p(y | x)``: on the benchmark it is what puts the default
        ahead of a tuned forward-corrected logistic regression at low noise and on human
        noise (not in the paper; see docs/engine.md). It is left out when the features are
        read in chunks or split between processes. It is the slowest candidate on CPU
        (about 2.5 minutes on 49,000 × 512 on two threads with bfloat16 products, for two
        deals of four networks); ``mlp_candidate=False`` leaves it out.
    mlp_hidden, mlp_epochs, mlp_folds : int
        The network's hidden width, its epochs (mini-batches of 256, AdamW at 1e-3, weight
        decay 5e-4; predictions averaged over the last two thirds of the epochs), and the
        number of parts of the training rows it is cross-fitted over (>= 2).
    mlp_layers : int
        The network's hidden layers, each of ``mlp_hidden`` units (default 2). Two made
        better labels than one on the tuning draws (CIFAR-10N aggregate +0.06 to +0.18
        points); one is quicker on CPUs (docs/engine.md, "Two hidden layers").
    mlp_precision : {"auto", "float32", "bfloat16"}
        The dtype of the network's training products (autocast; weights, optimiser state,
        loss and predictions stay float32). ``"auto"`` is bfloat16 where the device
        multiplies it natively (CPUs with AVX512-BF16 or AMX, CUDA compute capability
        8.0+) and float32 elsewhere, where bfloat16 would be emulated and slower. On the
        tuning draws bfloat16 labelled within 0.02 points of float32, and halved the
        network's time on CPU.
    mlp_repeats : int
        How many times the cross-fitting is dealt and fitted afresh; each row's ``p(y | x)``
        is the mean of its held-out networks' (an ensemble), for ``mlp_repeats`` times the
        network's time. Two deals add 0.1-0.3 points over one on the tuning draws, three
        no more than two (docs/engine.md).
    transition_em_steps : int
        With ``eac_target="posterior"``: EM steps that refine the noise transition behind
        each posterior (every mixing round's and the logistic head's), adding the
        training rows' expected label counts to the trusted pairs (0: the trusted counts
        alone). At 20% noise each off-diagonal entry of ``T`` rests on about two trusted
        counts (not in the paper; see docs/engine.md).
    fit_transition_weight : bool
        Each candidate's posterior weighs the transition by ``b``,
        ``softmax(a·s + b·log T[:, ỹ])``, ``b`` fitted with the temperature ``a`` on the
        trusted rows (``b = 1``: the plain posterior). Human labellers err where an image
        is ambiguous, which makes a given label less reliable there than the class
        average ``T`` says: on CIFAR-10N's worst labels ``b`` is about 0.7 and adds about
        0.9 points; on synthetic noise it stays near 1 (not in the paper; see docs/engine.md).
    fit_posterior_offsets : bool
        With ``fit_transition_weight``: each candidate's posterior also gets an offset for
        keeping the given label and one per class, ``softmax(a·s + b·log T[:, ỹ] +
        c·[y = ỹ] + β_y)``, all fitted on the trusted rows' held-out log-loss; used when
        every class has at least 10 trusted rows (not in the paper; see docs/engine.md).
    eac_lr, eac_weight_decay, eac_batch_size, eac_steps, eac_lr_decay_epoch
        Linear head only: Adam settings, mini-batch size, steps per epoch, and the epoch
        after which its learning rate drops tenfold (official: 3; 0 keeps it constant).
        As in the official script, the steps take consecutive slices of each IPC batch
        (of the training set in its order without IPC), continuing where the previous
        epoch stopped: 98 steps of 500 rows cover 49,000 rows once per epoch.
    eac_conf_weight, eac_balance_weight : float
        Linear head only: weights of the confidence penalty and the class-balance term.
    Resources
    ---------
    max_memory : int, str or None
        A memory budget (bytes, or a size such as ``"8GB"``) for the features and the
        working state. When holding the training features whole, in float32 on the device,
        would exceed it, the engine reads them a chunk of rows at a time from where they are
        (a memory-mapped ``.npy`` stays on disk) and keeps only per-row state of size
        ``O(N·C)`` whole; IPC (paper mode) factors and steps a group of batches at a time,
        keeping the batches' solvers in RAM or, when they do not fit, in a temporary file. Sums over chunks change the float32 rounding, which the
        logistic fits' early-stopped L-BFGS amplifies a little: soft labels stay within 5e-3 of
        the in-memory run's and hard labels differ only at near ties, on at most 0.1% of rows
        (``tests/test_streaming.py``); paper mode's labels are the in-memory ones. A budget
        below the per-row state and one chunk (with IPC, one batch) fails before any work.
        ``None`` (default): always in memory.
        The pages of a memory-mapped feature file are the OS's page cache and not counted.

    extra : dict
        Free-form settings for plugins; ignored by the engine.
    """

    # IPC
    ipc: bool = False
    epochs: int = 100
    batch_size: int = 7000
    ridge: float = 1e-3
    label_optimizer: Literal["adam", "sgd"] = "adam"
    label_lr: float = 0.01
    label_betas: tuple[float, float] = (0.5, 0.999)
    label_weight_decay: float = 3e-4
    ce_weight: float = 1.0
    mse_weight: float = 1.0
    prior_weight: float = 1.0
    prior: Literal["uniform", "trusted"] = "trusted"
    project_simplex: bool = True
    reshuffle_every: int = 0
    precision: Literal["float32", "bfloat16"] = "float32"
    # EAC
    eac: bool = True
    eac_head: Literal["least-squares", "linear"] = "least-squares"
    eac_target: Literal["posterior", "head"] = "posterior"
    eac_period: int = 20
    eac_eta: float = 0.5
    eac_final: bool = True
    select_round: bool = True
    trusted_weight: float = 7.0
    logistic_candidate: bool = True
    logistic_weight_decay: float | tuple[float, ...] = (2e-2, 5e-3, 1e-3)
    logistic_trusted_weight: float = 2.0
    logistic_max_iter: int = 20
    mlp_candidate: bool = True
    mlp_hidden: int = 1024
    mlp_epochs: int = 12
    mlp_folds: int = 4
    mlp_layers: int = 2
    mlp_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    mlp_repeats: int = 2
    transition_em_steps: int = 20
    fit_transition_weight: bool = True
    fit_posterior_offsets: bool = True
    eac_lr: float = 0.03
    eac_weight_decay: float = 3e-4
    eac_batch_size: int = 500
    eac_steps: int = 98
    eac_lr_decay_epoch: int = 0
    eac_conf_weight: float = 0.4
    eac_balance_weight: float = 1.0
    # Resources
    max_memory: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def logistic_weight_decays(self) -> tuple[float, ...]:
        """The logistic candidate's weight decays: one, or a regularisation path."""
        value = self.logistic_weight_decay
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)

    def __post_init__(self) -> None:
        positive_ints = ("epochs", "batch_size", "eac_period", "eac_batch_size", "eac_steps",
                         "logistic_max_iter", "mlp_hidden", "mlp_epochs", "mlp_layers", "mlp_repeats")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("reshuffle_every", "eac_lr_decay_epoch", "transition_em_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        non_negative = ("ridge", "label_lr", "label_weight_decay", "ce_weight", "mse_weight",
                        "prior_weight", "eac_lr", "eac_weight_decay", "eac_conf_weight",
                        "eac_balance_weight", "trusted_weight", "logistic_trusted_weight")
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.mlp_folds, int) or isinstance(self.mlp_folds, bool) or self.mlp_folds < 2:
            raise ConfigError(f"mlp_folds must be an integer >= 2 (each part is predicted by the network "
                              f"trained on the others), got {self.mlp_folds!r}")
        decays = self.logistic_weight_decays
        if not decays or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                 for v in decays):
            raise ConfigError("logistic_weight_decay must be a number >= 0 or a non-empty list of them, "
                              f"got {self.logistic_weight_decay!r}")
        if not 0.0 <= self.eac_eta <= 1.0:
            raise ConfigError(f"eac_eta must lie in [0, 1], got {self.eac_eta!r}")
        choices = {"label_optimizer": ("adam", "sgd"), "prior": ("uniform", "trusted"),
                   "eac_head": ("least-squares", "linear"), "eac_target": ("posterior", "head"),
                   "precision": ("float32", "bfloat16"), "mlp_precision": ("auto", "float32", "bfloat16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        parse_memory(self.max_memory)  # a bad size fails here, naming the field
        betas = tuple(self.label_betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"label_betas must be two numbers in [0, 1), got {self.label_betas!r}")
        object.__setattr__(self, "label_betas", (float(betas[0]), float(betas[1])))

    @classmethod
    def paper(cls, **overrides: Any) -> "PurifyConfig":
        """The paper's method with the official hyperparameters (faithful mode).

        Differences from the official script that remain, on purpose: the EAC feedback
        runs every ``T`` epochs as the paper's Eq. 11 says (the script's guard never fires);
        the least-squares fit is factored once per batch in float64 with a tiny ridge
        instead of re-inverting ``FᵀF`` in float32 each step; weight decay touches only the
        rows being updated; the tail batch is kept; everything is seeded.
        """
        base = dict(
            ipc=True, ridge=1e-6, label_optimizer="adam", label_lr=0.01, label_betas=(0.5, 0.999),
            label_weight_decay=3e-4, ce_weight=1.0, mse_weight=1.0, prior_weight=1.0,
            prior="uniform", project_simplex=False, reshuffle_every=0, eac=True, eac_period=20,
            eac_head="linear", eac_target="head", eac_eta=1.0, eac_lr=0.006, eac_lr_decay_epoch=3,
            eac_weight_decay=3e-4, eac_batch_size=500, eac_steps=98, eac_conf_weight=0.4,
            eac_balance_weight=1.0, eac_final=False, select_round=False,
            logistic_candidate=False, mlp_candidate=False)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> "PurifyConfig":
        """A copy with some fields changed (validated again).

        Raises :class:`~dmlp_plugin.errors.ConfigError` naming any unknown field, with the
        closest known name.
        """
        check_fields(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["max_memory"] is None:
            # A resource, not a hyperparameter: left out at its default, so configs (and the
            # ids of stored results hashed from them) read as they did before it existed.
            del d["max_memory"]
        d["label_betas"] = list(self.label_betas)
        if isinstance(self.logistic_weight_decay, tuple):  # JSON-ready: lists, as from_dict reads them
            d["logistic_weight_decay"] = list(self.logistic_weight_decay)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PurifyConfig":
        data = {k: v for k, v in data.items() if k not in _RETIRED}  # results saved by older versions
        check_fields(data)
        for name in ("label_betas", "logistic_weight_decay"):  # JSON turns tuples into lists
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        return cls(**data)


#: Fields older versions saved that no longer exist (their behaviour was made fair/fixed).
_RETIRED = frozenset({"logistic_refit_iter"})


def check_fields(names: Any) -> None:
    """Raise :class:`~dmlp_plugin.errors.ConfigError` for names that are not PurifyConfig fields.

    The message suggests the closest field for each, so a typo (``eac_etaa``) or a name
    from the paper (``eta``) points at the setting that was meant.
    """
    known = [f.name for f in dataclasses.fields(PurifyConfig)]
    unknown = sorted(set(names) - set(known))
    if not unknown:
        return
    parts = []
    for name in unknown:
        # A paper symbol (eta, T) names the field that ends with it before any look-alike.
        close = [k for k in known if k.endswith("_" + name)][:1] or difflib.get_close_matches(
            name, known, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(f"unknown PurifyConfig field(s): {', '.join(parts)}")
