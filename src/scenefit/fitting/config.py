"""The ``fit`` config section: which strategy, the shared gradient refinement, and each strategy's own settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

METHODS = ("plain", "restarts", "codebook", "codebook-verify", "amortized")


@dataclass(frozen=True)
class PlainConfig:
    """``plain``: where each target's one start lies, and an optional label-free choice of ``fit.lr`` and ``fit.steps``.

    start: ``centre`` (the initial distribution's centre) or ``initial`` (one draw of the initial distribution per
        target, seeded by the fit's seed and the target's global index, so shards draw what one fit draws). The draw
        gives the start of the fitted continuous attributes; the others stay at the centre. Categorical attributes
        are searched as a softmax that starts uniform either way (the draw's class is recorded in the start only).
    select_lrs, select_steps, select_targets: when both tuples are given, the first ``select_targets`` targets are
        fitted with every learning rate for ``max(select_steps)`` steps, the rows after each step count in
        ``select_steps`` are rendered by the engine R (one fixed seed per target), and the pair with the lowest mean
        content loss of R's renders replaces ``fit.lr`` and ``fit.steps`` for the fit of every target.
    """

    start: str = "centre"
    select_lrs: tuple[float, ...] = ()
    select_steps: tuple[int, ...] = ()
    select_targets: int = 200

    def __post_init__(self) -> None:
        if self.start not in ("centre", "initial"):
            raise ValueError(f"fit.plain.start must be 'centre' or 'initial', got '{self.start}'")
        if not all(math.isfinite(lr) and lr > 0 for lr in self.select_lrs):
            raise ValueError(f"fit.plain.select_lrs must hold finite numbers > 0, got {list(self.select_lrs)}")
        if not all(s >= 0 for s in self.select_steps):
            raise ValueError(f"fit.plain.select_steps must hold step counts >= 0, got {list(self.select_steps)}")
        if bool(self.select_lrs) != bool(self.select_steps):
            raise ValueError(f"fit.plain.select_lrs and fit.plain.select_steps must both be given (to choose fit.lr and "
                             f"fit.steps) or both be empty, got {list(self.select_lrs)} and {list(self.select_steps)}")
        if self.select_targets <= 0:
            raise ValueError(f"fit.plain.select_targets must be > 0, got {self.select_targets}")

    @property
    def selects(self) -> bool:
        """Whether ``fit.lr`` and ``fit.steps`` are chosen before the fit."""
        return bool(self.select_lrs and self.select_steps)


@dataclass(frozen=True)
class RestartsConfig:
    """``restarts``: ``count`` starts per target spread over the free attributes by a scrambled Sobol sequence."""

    count: int = 8

    def __post_init__(self) -> None:
        if self.count <= 0:
            raise ValueError(f"fit.restarts.count must be > 0, got {self.count}")


@dataclass(frozen=True)
class CodebookConfig:
    """``codebook`` and ``codebook-verify``: the whole space searched once on a grid of codes.

    grid_periodic, grid_bounded: grid values per periodic / bounded free attribute (categorical ones: every
    category); a grid larger than ``max_codes`` becomes ``max_codes`` scrambled Sobol points. keep: best
    distinct codes kept per target as starts (codes within ``radius``, unit-cube max-norm, of a kept one of
    the same categories are skipped, so a pose and its 180° flip both survive). look_codes: where the engine has
    look attributes and they are fitted, the codes hold them at the centre, and each kept code then tries this
    many looks (the centre's, then a Sobol set over the look box) and keeps the best by the look term.
    look_steps, look_lr: then, when ``look_steps`` > 0, each start's look is refined by that many Adam steps of
    step size ``look_lr`` (unit-cube units) through the engine's own look stage (its ``render_look_parts``; an
    engine without it is refused), by the look term, and kept fixed in the later refinement through G
    (:mod:`scenefit.fitting.look_refine`). 0: no such refinement.
    """

    grid_periodic: int = 72
    grid_bounded: int = 9
    max_codes: int = 30000
    keep: int = 2
    radius: float = 0.08
    look_codes: int = 32
    look_steps: int = 0
    look_lr: float = 0.02

    def __post_init__(self) -> None:
        for name in ("grid_periodic", "max_codes", "keep", "look_codes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"fit.codebook.{name} must be > 0, got {getattr(self, name)}")
        if self.look_steps < 0:
            raise ValueError(f"fit.codebook.look_steps must be >= 0, got {self.look_steps}")
        if not (math.isfinite(self.look_lr) and self.look_lr > 0):
            raise ValueError(f"fit.codebook.look_lr must be a finite number > 0, got {self.look_lr}")
        if self.grid_bounded < 2:
            raise ValueError(f"fit.codebook.grid_bounded must be >= 2, got {self.grid_bounded}")
        if not (math.isfinite(self.radius) and 0 <= self.radius < 1):
            raise ValueError(f"fit.codebook.radius must be in [0, 1), got {self.radius}")


@dataclass(frozen=True)
class VerifyConfig:
    """``codebook-verify``: the final choice among the codebook starts and the refined point is made by the
    content loss of the engine's renders, averaged over ``seeds`` renders per candidate (seeds shared by the
    candidates of one target)."""

    seeds: int = 2

    def __post_init__(self) -> None:
        if self.seeds <= 0:
            raise ValueError(f"fit.verify.seeds must be > 0, got {self.seeds}")


@dataclass(frozen=True)
class AmortizedConfig:
    """``amortized``: starts from the encoder E's top ``top_classes`` (categorical) × ``top_angles`` (periodic) modes.

    prior_iters: with > 0, E's categorical and periodic readings are weighted by the population prior
    (:mod:`scenefit.fitting.prior`), estimated from all targets by that many EM iterations; 0 (default) reads each
    target alone. prior_given: bounded continuous attributes the prior is conditioned on (E's readings of them,
    Gaussian kernel of ``prior_bandwidth`` in unit-cube units); empty: one prior for all targets. Like
    ``top_classes``, these are read by ``fit.method amortized`` only (a preset may set them for its default method).
    """

    top_classes: int = 1
    top_angles: int = 1
    prior_iters: int = 0
    prior_given: tuple[str, ...] = ()
    prior_bandwidth: float = 0.1

    def __post_init__(self) -> None:
        for name in ("top_classes", "top_angles"):
            if getattr(self, name) <= 0:
                raise ValueError(f"fit.amortized.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.prior_iters <= 1000:
            raise ValueError(f"fit.amortized.prior_iters must be in [0, 1000], got {self.prior_iters}")
        if not (math.isfinite(self.prior_bandwidth) and self.prior_bandwidth > 0):
            raise ValueError(f"fit.amortized.prior_bandwidth must be a finite number > 0, got {self.prior_bandwidth}")


@dataclass(frozen=True)
class CalibrateConfig:
    """Optional set-level shift after the per-target fit (:mod:`scenefit.calibration`; off when ``attributes`` is
    empty): one unit-cube offset of the named continuous attributes shared by every fitted row, chosen on a grid of
    ``points`` per attribute in [-1, 1], then ``rounds`` finer grids."""

    attributes: tuple[str, ...] = ()
    points: int = 9
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.points < 2 or self.rounds < 0:
            raise ValueError(f"fit.calibrate.points must be >= 2 and fit.calibrate.rounds >= 0, got {self.points}, {self.rounds}")


@dataclass(frozen=True)
class FitConfig:
    """How targets are fitted (config section ``fit``).

    method: the strategy (:data:`METHODS`): ``plain`` (the paper's Algorithm 1: one start per target, at the initial
        distribution's centre or drawn from it, gradient steps through G; ``fit.plain``), ``restarts``, ``codebook`` (codes through G),
        ``codebook-verify`` (codes through the engine R, refinement through G, the final choice verified with R),
        ``amortized`` (starts from the encoder E).
    steps, lr, optimizer, chunk: the gradient refinement every strategy shares (steps per candidate, step in
        unit-cube units, ``adam`` or ``sgd``, candidates optimized at once).
    layer: the task network's layer of the content loss ("" = the task network's default).
    attributes: continuous attributes to fit (default: all); the others stay at the initial centre.
    look_weight: weight of the look term that matches the engine's look attributes (:mod:`scenefit.fitting.look`;
        unused when the engine has none).

    Defaults (measured on rot-g2, docs/RESULTS.md): ``amortized`` with E's top mode and no gradient steps.
    """

    method: str = "amortized"
    steps: int = 0
    lr: float = 0.01
    optimizer: str = "adam"
    chunk: int = 2048
    layer: str = ""
    attributes: tuple[str, ...] = ()
    look_weight: float = 10.0
    plain: PlainConfig = field(default_factory=PlainConfig)
    restarts: RestartsConfig = field(default_factory=RestartsConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    amortized: AmortizedConfig = field(default_factory=AmortizedConfig)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"fit.method must be one of {list(METHODS)}, got '{self.method}'")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"fit.optimizer must be 'adam' or 'sgd', got '{self.optimizer}'")
        if self.chunk <= 0:
            raise ValueError(f"fit.chunk must be > 0, got {self.chunk}")
        if self.steps < 0:
            raise ValueError(f"fit.steps must be >= 0, got {self.steps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"fit.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.look_weight) and self.look_weight >= 0):
            raise ValueError(f"fit.look_weight must be a finite number >= 0, got {self.look_weight}")
        if self.method != "plain":
            if self.plain.selects:
                raise ValueError(f"fit.plain.select_lrs and fit.plain.select_steps choose the learning rate of fit.method "
                                 f"'plain', got fit.method '{self.method}': leave them empty or use fit.method plain")
            if self.plain.start != "centre":
                raise ValueError(f"fit.plain.start '{self.plain.start}' is for fit.method 'plain', got fit.method "
                                 f"'{self.method}': leave it 'centre' or use fit.method plain")
