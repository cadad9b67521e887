"""Run configuration: one frozen dataclass per section, nested in :class:`RunConfig`.

A run is fully described by a :class:`RunConfig`; it is saved, resolved, beside its
outputs. Sections and who reads them:

=============  ==================================================================================
``engine``     the renderer R: ``name`` (built-in, plug-in or ``module:Class``) and its ``args``
``setting``    the problem: initial and target distributions, target/test engine variants, look, shift, sizes
``task``       the task network F and the fixed training recipe every compared set is trained with
``surrogate``  G;  ``encoder``: E (``fit.method: amortized``);  ``features``: the fit's feature network
``fit``        the fitting strategy (:mod:`scenefit.fitting.config`)
``export``     the synthetic dataset;  ``baselines``: the dataset-level methods of the experiments
``probe``      P, the set-distance feature network of the baselines and set metrics (``baselines.features``)
``evaluate``   set distances and figures of the experiments
=============  ==================================================================================

Files, presets and ``--set`` overrides are read by :mod:`scenefit.configio`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scenefit.augment import PhotometricAugment
from scenefit.baselines.attribute_descent import AttributeDescentConfig
from scenefit.baselines.metasim import MetaSimConfig
from scenefit.baselines.sdr import SDRConfig
from scenefit.encoder import EncoderConfig
from scenefit.probe import ProbeConfig
from scenefit.fitting.config import FitConfig
from scenefit.scenarios import Mixture
from scenefit.shifts import parse_shift
from scenefit.surrogate import SurrogateConfig
from scenefit.tasks.base import TaskConfig


class ConfigError(ValueError):
    """A preset name, config file or value is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class EngineConfig:
    """The engine R: ``name`` (``digits``, ``street``, an installed plug-in, or ``package.module:Class``) and the
    keyword ``args`` it is built with."""

    name: str = "digits"
    args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("engine.name must be a non-empty string")


@dataclass(frozen=True)
class LookConfig:
    """An appearance change (:mod:`scenefit.looks`) applied to the synthesised target and test images; ``name``
    empty: none."""

    name: str = ""
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SettingConfig:
    """The problem.

    name: a label. initial: the initial scene distribution (a mixture; null: the engine's ``sample_initial``).
    target: the distribution ``scenefit run`` synthesises X_t and T from (null: the initial one).
    target_engine, test_engine: ``engine.args`` overrides for the engines that render X_t and T (held-out
    textures, say). look: applied to X_t and T. n_targets, n_test: |X_t| and |T|.
    """

    name: str = "custom"
    initial: Mixture | None = None
    target: Mixture | None = None
    target_engine: dict = field(default_factory=dict)
    test_engine: dict = field(default_factory=dict)
    look: LookConfig = field(default_factory=LookConfig)
    shift: str = ""
    n_targets: int = 4000
    n_test: int = 2000

    def __post_init__(self) -> None:
        if self.shift:
            try:
                parse_shift(self.shift)
            except ValueError as e:
                raise ValueError(f"setting.shift: {e}") from None
        if self.n_targets < 2 or self.n_test < 1:
            raise ValueError(f"setting.n_targets must be >= 2 and setting.n_test >= 1, got {self.n_targets}, {self.n_test}")


@dataclass(frozen=True)
class FeaturesConfig:
    """The fit's feature network.

    source: ``task`` (F itself, as the paper) or ``fit_net`` (FN: the task network trained with the task recipe,
    ``epochs`` replaced, on ``images`` renders at the fitting resolution drawn from ``sample`` — ``uniform`` over
    the attribute box or the ``initial`` distribution — each given one :func:`scenefit.augment.photometric_augment`
    draw, or none with ``augment: null``; no target image or label is used).
    """

    source: str = "task"
    images: int = 2000
    epochs: int = 10
    sample: str = "uniform"
    augment: PhotometricAugment | None = field(default_factory=PhotometricAugment)

    def __post_init__(self) -> None:
        if self.source not in ("task", "fit_net"):
            raise ValueError(f"features.source must be 'task' or 'fit_net', got {self.source!r}")
        if self.sample not in ("uniform", "initial"):
            raise ValueError(f"features.sample must be 'uniform' or 'initial', got {self.sample!r}")
        if self.images < 2 or self.epochs < 1:
            raise ValueError(f"features.images must be >= 2 and features.epochs >= 1, got {self.images}, {self.epochs}")


@dataclass(frozen=True)
class ExportConfig:
    """The synthetic dataset: ``per_target`` renders of every fitted row (each with its own seed), so every
    compared training set has ``n_targets * per_target`` images (the oracle: X_t tiled). ``sample``: ``scenefit fit``
    adds that many rows drawn from a density fitted to the fitted rows (:mod:`scenefit.amplify`), each rendered
    once, after the fitted ones (empty ``target``, no ``fit_loss``)."""

    per_target: int = 1
    sample: int = 0

    def __post_init__(self) -> None:
        if self.per_target < 1:
            raise ValueError(f"export.per_target must be >= 1, got {self.per_target}")
        if self.sample < 0:
            raise ValueError(f"export.sample must be >= 0, got {self.sample}")


@dataclass(frozen=True)
class BaselinesConfig:
    """The dataset-level methods of the experiments.

    features: the feature space of Meta-Sim's and Attribute Descent's set distances and of the experiments' MMD,
    FID and KID: ``probe`` (default) is P, a network trained on uniform renders of the whole attribute box to
    regress the attributes (:mod:`scenefit.probe`, ``probe`` config), which sees position and pose; ``task`` is
    the task network F's ``layer`` (F is trained on the initial scenes; kept for the ablation). layer: F's layer
    with ``features: task`` ("" = its default set layer: the classifier's ``fc2``, the segmenter's ``aspp``).
    validation: labeled targets SDR's reward is measured on; reward_epochs: epochs of every task net trained for
    a reward.
    """

    features: str = "probe"
    layer: str = ""
    validation: int = 500
    reward_epochs: int = 5
    metasim: MetaSimConfig = field(default_factory=MetaSimConfig)
    attribute_descent: AttributeDescentConfig = field(default_factory=AttributeDescentConfig)
    sdr: SDRConfig = field(default_factory=SDRConfig)

    def __post_init__(self) -> None:
        if self.features not in ("probe", "task"):
            raise ValueError(f"baselines.features must be 'probe' or 'task', got {self.features!r}")
        if self.validation < 2 or self.reward_epochs < 1:
            raise ValueError(f"baselines.validation must be >= 2 and baselines.reward_epochs >= 1, got {self.validation}, {self.reward_epochs}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Experiment outputs: KID subset size (capped by the set sizes), targets averaged in the content-loss
    sensitivity figure, and ``task_seeds``: how many segmenter seeds train on each of Table 4's training sets
    (:meth:`scenefit.pipeline.Pipeline.score_seeds`; seed 0 is the one score every other command reports)."""

    kid_subset: int = 1000
    sensitivity_targets: int = 200
    task_seeds: int = 1

    def __post_init__(self) -> None:
        if self.kid_subset < 2 or self.sensitivity_targets < 1:
            raise ValueError(f"evaluate.kid_subset must be >= 2 and evaluate.sensitivity_targets >= 1, got {self.kid_subset}, {self.sensitivity_targets}")
        if self.task_seeds < 1:
            raise ValueError(f"evaluate.task_seeds must be >= 1 (task networks trained per training set), got {self.task_seeds}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; saved resolved beside its outputs.

    fit_divisor: G, E, FN and the fit work at ``1 / fit_divisor`` of the engine's resolution (the dataset is
    rendered at full resolution). plugin_path: folders searched for ``module:Class`` plug-ins (a config file's
    own folder is added when it is loaded).
    """

    engine: EngineConfig = field(default_factory=EngineConfig)
    setting: SettingConfig = field(default_factory=SettingConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    fit_divisor: int = 1
    seed: int = 0
    device: str = "cpu"
    plugin_path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got '{self.device}'")
        if self.fit_divisor < 1:
            raise ValueError(f"fit_divisor must be >= 1, got {self.fit_divisor}")
        if not 0 <= self.seed < 2**40:
            raise ValueError(f"seed must be an integer in [0, 2**40), got {self.seed}")

    def to_dict(self) -> dict:
        """Plain-data form (YAML/JSON ready); inverse of :func:`scenefit.configio.config_from_dict`."""
        d = asdict(self)
        for key in ("initial", "target"):
            m = getattr(self.setting, key)
            d["setting"][key] = m.to_dict() if m is not None else None
        return d
