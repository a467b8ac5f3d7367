"""The two pipelines' settings: :class:`PurifyConfig` (the default pipeline) and
:class:`PaperConfig` (the paper's loop, ``PurifyConfig.paper()``).

Each class holds only the fields its pipeline reads, grouped by the stage they drive, so
a reader sees at once which setting acts where. ``docs/engine.md`` maps each group to
its module.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .config_compat import upgrade
from .errors import ConfigError
from .sizes import parse_memory

__all__ = ["PurifyConfig", "PaperConfig", "AnyConfig", "check_fields", "config_from_dict"]


class _Fields:
    """What both configs share: ``replace``, JSON round trips, and checks of their fields."""

    mode: ClassVar[str]
    max_memory: int | str | None

    def replace(self, **changes: Any) -> "AnyConfig":
        """A copy with some fields changed (validated again).

        Raises :class:`~dmlp_plugin.errors.ConfigError` naming any unknown field, with the
        closest known name (or, for a field of the other pipeline, which pipeline reads it).
        """
        check_fields(changes, type(self))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``"mode"``; :func:`config_from_dict` reads it back."""
        d = {"mode": self.mode, **dataclasses.asdict(self)}
        if d["max_memory"] is None:
            del d["max_memory"]  # a resource, not a hyperparameter: ids hashed from configs ignore it
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnyConfig":
        """Either config from :meth:`to_dict`'s output, or from a file of an older version
        (:mod:`dmlp_plugin.config_compat`)."""
        return config_from_dict(data)

    def _check(self, positive: tuple[str, ...] = (), non_negative_ints: tuple[str, ...] = (),
               non_negative: tuple[str, ...] = (), choices: dict[str, tuple] | None = None) -> None:
        for field in dataclasses.fields(self):  # a switch given as "no" would be truthy: on
            value = getattr(self, field.name)
            if field.type == "bool" and not isinstance(value, bool):
                raise ConfigError(f"{field.name} must be True or False, got {value!r}")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in non_negative_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        for name, allowed in (choices or {}).items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        parse_memory(self.max_memory)  # a bad size fails here, naming the field


@dataclass(frozen=True)
class PurifyConfig(_Fields):
    """The default pipeline: candidates → calibrate through ``T`` → select.

    Each candidate is a classifier of the true label from the features, fitted on the
    given labels and the trusted rows. One calibrator turns each into a posterior through
    the noise transition ``T`` counted (and shrunk) on the trusted set, and the candidate whose
    cross-fitted trusted-set log-loss is lowest gives the labels (``docs/engine.md``).
    :meth:`paper` returns the paper's method instead.

    Least-squares rounds (DMLP's EAC with a closed-form head; ``engine/rounds.py``)
    ---------------------------------------------------------------------------------
    rounds : int
        Mixing rounds ``Y ← (1 - η)·Y + η·posterior``; each round's posterior is a candidate.
    round_eta : float
        ``η`` of each round.
    trusted_weight : float
        Weight of a trusted row relative to a training row in the least-squares fit.
    ridge : float
        Ridge added to ``XᵀX``, relative to its mean diagonal.

    Given labels (``engine/candidates.py``)
    ---------------------------------------
    given_candidate : bool
        The given labels as a candidate (``p(y | ỹ)`` through ``T``, no features): the labels
        stay as given where no classifier beats them on held-out trusted log-loss. Off by
        default: on the suite's tuning draw it was never chosen (0 of 54 cells), so it paid
        nothing for 6% of the run's time.

    Logistic candidate (``engine/logistic_head.py``)
    ------------------------------------------------
    logistic_candidate : bool
        Fit a logistic head on the *given* labels through ``T`` (forward correction).
    logistic_weight_decay : float or tuple of float
        Its L2 penalty on standardised features; a tuple is a regularisation path, each
        value a candidate of its own. The default (0.1, 0.02, 0.004) was chosen on the
        suite's tuning draw across feature sets and trusted-set sizes: the earlier (0.02,
        0.005, 0.001), tuned on the k-means features alone, was too weak for 1,280-dim
        features with few trusted rows (docs/engine.md, "What the suite showed").
    logistic_trusted_weight : float
        Weight of a trusted row in its fit.
    logistic_max_iter : int
        L-BFGS iterations of each fit (the full one and one per trusted fold).

    Network candidate (``engine/mlp_head.py``; off by default)
    ---------------------------------------------------------
    mlp_candidate : bool
        A forward-corrected network (``mlp_layers`` hidden ReLU layers of ``mlp_hidden``
        units), cross-fitted over ``mlp_folds`` parts of the training rows; it competes as
        ``mlp``, and mixed half and half with the best logistic candidate as ``mlp +
        logistic``. It needs the features held whole: with ``max_memory`` streaming or
        under ``torchrun`` it is refused.
    mlp_hidden, mlp_layers, mlp_epochs, mlp_folds, mlp_repeats : int
        Width, depth, epochs (mini-batches of 256, AdamW), parts of the cross-fitting,
        and how many times it is dealt afresh (the held-out predictions averaged).
    mlp_precision : {"auto", "float32", "bfloat16"}
        The dtype of its training products; ``"auto"``: bfloat16 where the device
        multiplies it natively.

    Calibration (``engine/calibrate.py``, shared by every candidate)
    ---------------------------------------------------------------
    trusted_folds : int
        Folds of the trusted set: every held-out score comes from a fit without its fold.
    transition_shrinkage : bool
        Shrink each class's counted row of ``T`` toward one pooled keep rate, by as much
        as the counts agree with it (empirical Bayes): with 10 trusted rows a class, a
        row counted alone is mostly sampling noise. False: counted with add-one smoothing.
    transition_em_steps : int
        EM steps refining ``T`` with the training rows' expected counts (0: counted only).
    fit_transition_weight : bool
        Weigh ``T`` by ``b`` in ``softmax(a·s + b·log T[:, ỹ])``, fitted on the trusted rows.
    fit_posterior_offsets : bool
        Also fit a keep-the-given-label offset and one per class, when every class has
        ``offsets_min_rows_per_class`` trusted rows.
    offsets_min_rows_per_class : int
        Below this many trusted rows in some class the offsets are not identified.

    Resources
    ---------
    max_memory : int, str or None
        A memory budget (bytes or ``"8GB"``): features that do not fit it whole are read a
        chunk of rows at a time (``docs/scale.md``). ``None``: in memory.
    """

    mode: ClassVar[str] = "default"
    # Least-squares rounds
    rounds: int = 5
    round_eta: float = 0.5
    trusted_weight: float = 7.0
    ridge: float = 1e-3
    # Given labels
    given_candidate: bool = False
    # Logistic candidate
    logistic_candidate: bool = True
    logistic_weight_decay: float | tuple[float, ...] = (0.1, 0.02, 0.004)
    logistic_trusted_weight: float = 2.0
    logistic_max_iter: int = 20
    # Network candidate
    mlp_candidate: bool = False
    mlp_hidden: int = 1024
    mlp_layers: int = 2
    mlp_epochs: int = 12
    mlp_folds: int = 4
    mlp_repeats: int = 2
    mlp_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # Calibration
    trusted_folds: int = 5
    transition_shrinkage: bool = True
    transition_em_steps: int = 20
    fit_transition_weight: bool = True
    fit_posterior_offsets: bool = True
    offsets_min_rows_per_class: int = 10
    # Resources
    max_memory: int | str | None = None

    @property
    def logistic_weight_decays(self) -> tuple[float, ...]:
        """The logistic candidate's weight decays: one, or a regularisation path."""
        value = self.logistic_weight_decay
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)

    def __post_init__(self) -> None:
        if isinstance(self.logistic_weight_decay, list):
            object.__setattr__(self, "logistic_weight_decay", tuple(self.logistic_weight_decay))
        self._check(positive=("rounds", "logistic_max_iter", "mlp_hidden", "mlp_layers", "mlp_epochs",
                              "mlp_repeats", "offsets_min_rows_per_class"),
                    non_negative_ints=("transition_em_steps",),
                    non_negative=("trusted_weight", "ridge", "logistic_trusted_weight"),
                    choices={"mlp_precision": ("auto", "float32", "bfloat16")})
        for name, least in (("mlp_folds", 2), ("trusted_folds", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least} (each part is scored by a fit "
                                  f"without it), got {value!r}")
        decays = self.logistic_weight_decays
        if not decays or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                 for v in decays):
            raise ConfigError("logistic_weight_decay must be a number >= 0 or a non-empty list of them, "
                              f"got {self.logistic_weight_decay!r}")
        if not 0.0 <= self.round_eta <= 1.0:
            raise ConfigError(f"round_eta must lie in [0, 1], got {self.round_eta!r}")

    @staticmethod
    def paper(**overrides: Any) -> "PaperConfig":
        """The paper's method with the official hyperparameters (:class:`PaperConfig`)."""
        check_fields(overrides, PaperConfig)
        return PaperConfig(**overrides)


@dataclass(frozen=True)
class PaperConfig(_Fields):
    """The paper's loop, faithful for reproduction (``PurifyConfig.paper()``, ``--mode paper``).

    Every epoch IPC moves the labels by the gradient of the trusted-set loss through the
    closed-form least squares ``W*(Y)``; a linear head trains on the current labels; every
    ``eac_period`` epochs its predictions are mixed into the labels. The defaults are the
    official script's. Differences that remain, on purpose (``docs/engine.md``): mixing
    runs every ``T`` epochs as the paper's Eq. 11 says (the script's guard never fires);
    ``FᵀF`` is factored once per batch in float64 with a tiny ridge; weight decay touches
    only the rows being updated; the tail batch is kept; everything is seeded.

    IPC (``engine/ipc.py``, ``engine/label_update.py``)
    ---------------------------------------------------
    ipc : bool
        Run IPC's label updates (``False``: EAC alone, the paper's ablation).
    epochs : int
        Passes over the training set; each updates every label once.
    batch_size : int
        Rows ``b`` of each least-squares batch; the remainder is kept (balanced batches).
    ridge : float
        Ridge added to ``FᵀF``, relative to its mean diagonal.
    label_optimizer : {"adam", "sgd"}
        Adam as the official code; SGD is the paper's plain gradient step.
    label_lr : float
    label_betas : tuple of float
    label_weight_decay : float
        L2 decay of the label rows being updated.
    ce_weight, mse_weight, prior_weight : float
        Weights of the trusted-set cross-entropy, squared error and class-prior KL terms.
    prior : {"uniform", "trusted"}
        The prior terms' class prior.
    project_simplex : bool
        Project label rows onto the simplex after each step (not in the paper).
    reshuffle_every : int
        Re-draw the batches every this many epochs; 0 never.
    precision : {"float32", "bfloat16"}
        Storage and products of the IPC batches and the head's rows; factoring stays
        float64, labels and gradients float32.

    EAC (``engine/eac.py``)
    -----------------------
    eac : bool
        Train the linear head and mix its predictions in (``False``: IPC alone).
    eac_period : int
        ``T``: mix every this many epochs (Eq. 11).
    eac_eta : float
        ``η_E`` in ``Y ← (1-η_E)·Y + η_E·C(F)``.
    eac_lr, eac_weight_decay : float
        The head's Adam settings.
    eac_lr_decay_epoch : int
        After this epoch the head's learning rate drops tenfold (0: constant).
    eac_batch_size, eac_steps : int
        Rows per head step and steps per epoch, taken as consecutive slices of each IPC
        batch as the official script does.
    eac_conf_weight, eac_balance_weight : float
        The confidence penalty and class-balance term.

    Resources
    ---------
    max_memory : int, str or None
        As :class:`PurifyConfig`'s; IPC then factors and steps a group of batches at a time.
    """

    mode: ClassVar[str] = "paper"
    # IPC
    ipc: bool = True
    epochs: int = 100
    batch_size: int = 7000
    ridge: float = 1e-6
    label_optimizer: Literal["adam", "sgd"] = "adam"
    label_lr: float = 0.01
    label_betas: tuple[float, float] = (0.5, 0.999)
    label_weight_decay: float = 3e-4
    ce_weight: float = 1.0
    mse_weight: float = 1.0
    prior_weight: float = 1.0
    prior: Literal["uniform", "trusted"] = "uniform"
    project_simplex: bool = False
    reshuffle_every: int = 0
    precision: Literal["float32", "bfloat16"] = "float32"
    # EAC
    eac: bool = True
    eac_period: int = 20
    eac_eta: float = 1.0
    eac_lr: float = 0.006
    eac_weight_decay: float = 3e-4
    eac_lr_decay_epoch: int = 3
    eac_batch_size: int = 500
    eac_steps: int = 98
    eac_conf_weight: float = 0.4
    eac_balance_weight: float = 1.0
    # Resources
    max_memory: int | str | None = None

    def __post_init__(self) -> None:
        self._check(positive=("epochs", "batch_size", "eac_period", "eac_batch_size", "eac_steps"),
                    non_negative_ints=("reshuffle_every", "eac_lr_decay_epoch"),
                    non_negative=("ridge", "label_lr", "label_weight_decay", "ce_weight", "mse_weight",
                                  "prior_weight", "eac_lr", "eac_weight_decay", "eac_conf_weight",
                                  "eac_balance_weight"),
                    choices={"label_optimizer": ("adam", "sgd"), "prior": ("uniform", "trusted"),
                             "precision": ("float32", "bfloat16")})
        if not 0.0 <= self.eac_eta <= 1.0:
            raise ConfigError(f"eac_eta must lie in [0, 1], got {self.eac_eta!r}")
        betas = tuple(self.label_betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"label_betas must be two numbers in [0, 1), got {self.label_betas!r}")
        object.__setattr__(self, "label_betas", (float(betas[0]), float(betas[1])))
        if not (self.ipc or self.eac):
            raise ConfigError("ipc and eac are both off: paper mode would change no label")


AnyConfig = PurifyConfig | PaperConfig


def config_from_dict(data: dict[str, Any]) -> AnyConfig:
    """The config a dict describes: :meth:`~_Fields.to_dict`'s output, or a flat config of a
    version before the engine split (upgraded by :func:`.config_compat.upgrade`).

    Raises
    ------
    ConfigError
        Not a dict, an unknown mode or field (with the closest name), a bad value, or an
        old hybrid that no longer exists.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a dict of fields, got {type(data).__name__}")
    data = upgrade(data)
    mode = data.pop("mode")
    classes = {"default": PurifyConfig, "paper": PaperConfig}
    if mode not in classes:
        raise ConfigError(f"config mode must be 'default' or 'paper', got {mode!r}")
    check_fields(data, classes[mode])
    return classes[mode](**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def check_fields(names: Any, cls: type = PurifyConfig) -> None:
    """Raise :class:`~dmlp_plugin.errors.ConfigError` for names that are not fields of ``cls``.

    A field of the other pipeline is named as such; otherwise the message suggests the
    closest field, so a typo (``round_etaa``) or a paper symbol (``eta``) points at the
    setting that was meant.
    """
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(names) - set(known))
    if not unknown:
        return
    other = PaperConfig if cls is PurifyConfig else PurifyConfig
    other_fields = {f.name for f in dataclasses.fields(other)}
    parts = []
    for name in unknown:
        if name in other_fields:
            parts.append(f"{name!r} (a setting of the {other.mode} pipeline, "
                         f"{'--mode paper / PurifyConfig.paper()' if other is PaperConfig else '--mode default'})")
            continue
        # A paper symbol (eta, T) names the field that ends with it before any look-alike.
        close = [k for k in known if k.endswith("_" + name)][:1] or difflib.get_close_matches(
            name, known, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(parts)}")
