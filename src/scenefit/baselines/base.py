"""The interface of the dataset-level baselines, and the two that learn nothing.

A baseline learns an attribute *distribution* from the initial scenes toward a
set of unlabeled target images, then samples attribute vectors from it. The
caller renders every method's samples with the same engine, in the same number,
and trains the task network with the same recipe::

    method = make_baseline("attribute-descent", scale="quick")
    report = method.fit(engine, initial, target_images, feature_fn, generator=g)
    attrs = method.sample(4000, g)            # (4000, D) natural units
    out = engine.render(attrs, generator=g)   # images + labels for the task net

Inputs every method shares:

- ``engine``: any :class:`~scenefit.engines.base.Engine` (digits, street...);
  nothing here assumes digits: labels are passed through untouched.
- ``initial``: a :data:`Sampler` ``(n, generator) -> (n, D)`` of the initial
  scenes. Columns a method does not learn (categorical ones such as the digit
  class, and continuous ones left out of ``config.attributes``) are always
  drawn from it.
- ``feature_fn``: ``images (N, C, H, W) -> (N, F)``; called under ``no_grad``
  on CPU tensors (it moves them to its own device), it need not be differentiable.
- ``validation`` and ``score_fn``: a labeled split of the targets and a
  callback that trains a task network on synthetic images and scores it there
  (see :data:`ScoreFn`). Only methods with ``uses_target_labels`` read them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Engine
from scenefit.scenarios import Mixture

Sampler = Callable[[int, torch.Generator], torch.Tensor]
"""``(n, generator) -> (n, D)`` attribute rows in natural units."""

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
"""``images (N, C, H, W) in [0, 1] -> (N, F)`` features."""

ScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], float]
"""``(train_images, train_labels, val_images, val_labels) -> score``: train a task
network on the synthetic pair, return its score (accuracy, mIoU; higher is better)
on the labeled validation pair."""

SCALES = ("tiny", "quick", "paper")


def mixture_sampler(mixture: Mixture, space: AttributeSpace) -> Sampler:
    """The :data:`Sampler` of a scenario mixture, e.g. ``initial_scenes(translate)``."""
    mixture.check(space)
    return lambda n, generator: mixture.sample(space, n, generator)[0]


def check_scale(scale: str) -> None:
    """Raise with the known names unless ``scale`` is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise ValueError(f"unknown baseline scale '{scale}'; choose one of {list(SCALES)}")


def seed_from(generator: torch.Generator) -> int:
    """A fresh integer seed drawn from ``generator`` (for sub-generators and common random numbers)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def learned_columns(space: AttributeSpace, names: tuple[str, ...], method: str) -> list[int]:
    """Columns a method learns: the named continuous attributes, or all continuous ones if ``names`` is empty."""
    if not names:
        cols = list(space.continuous)
    else:
        cols = []
        for name in names:
            if name not in space.names:
                raise ValueError(f"{method}.attributes names unknown attribute '{name}'; known: {list(space.names)}")
            if space[name].categorical:
                raise ValueError(f"{method}.attributes: '{name}' is categorical; only continuous attributes are learned")
            cols.append(space.index(name))
    if not cols:
        raise ValueError(f"{method}: the engine has no continuous attribute to learn ({list(space.names)})")
    return cols


def compose(space: AttributeSpace, base: torch.Tensor, cols: list[int], unit: torch.Tensor) -> torch.Tensor:
    """Replace columns ``cols`` of ``base`` (B, D) by unit-cube values ``unit`` (B, len(cols)); wrap/clamp into bounds."""
    full = space.normalize(base).clone()
    full[:, cols] = unit.to(full)
    return space.clamp(space.denormalize(full))


def circular_unit_mean(u: torch.Tensor) -> torch.Tensor:
    """Mean of periodic unit-cube values (B,) on the circle, in [0, 1)."""
    phase = 2 * math.pi * u.double()
    return torch.remainder(torch.atan2(phase.sin().mean(), phase.cos().mean()) / (2 * math.pi), 1.0).float()


@torch.no_grad()
def extract_features(feature_fn: FeatureFn, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """``feature_fn`` over ``images`` (N, C, H, W) in chunks: (N, F) float64 on the CPU."""
    feats = [feature_fn(images[i : i + batch]).detach().double().cpu() for i in range(0, images.shape[0], batch)]
    out = torch.cat(feats)
    if out.dim() != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"feature_fn must return (N, F) features, got shape {tuple(out.shape)} for {images.shape[0]} images")
    return out


def positive_int(value: Any, where: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` with ``where`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an int >= {minimum}, got {value!r}")


def positive_float(value: Any, where: str, upper: float | None = None, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` with ``where`` unless ``value`` is a finite number > 0 (or >= 0), and <= ``upper``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0) and (upper is None or value <= upper)
    if not ok:
        rng = f"{'>= 0' if allow_zero else '> 0'}" + (f" and <= {upper}" if upper is not None else "")
        raise ValueError(f"{where} must be a finite number {rng}, got {value!r}")


class Baseline(ABC):
    """A dataset-level method: :meth:`fit` once, then :meth:`sample` attribute rows.

    :meth:`fit` checks the inputs, times the run and stores what :meth:`sample`
    needs; subclasses implement :meth:`_fit` and :meth:`_sample` only.
    """

    name: ClassVar[str] = "baseline"
    uses_target_labels: ClassVar[bool] = False
    uses_features: ClassVar[bool] = True
    """Whether :meth:`fit` reads ``feature_fn`` (SDR, rewarded by accuracy, does not)."""

    def __init__(self, config: Any = None) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.initial: Sampler | None = None
        self.report: dict | None = None

    @property
    def space(self) -> AttributeSpace:
        """The fitted engine's attribute space (D attributes); ``RuntimeError`` before :meth:`fit`."""
        if self.engine is None:
            raise RuntimeError(f"{self.name}: call fit() before sample()")
        return self.engine.space

    def fit(
        self,
        engine: Engine,
        initial: Sampler,
        target_images: torch.Tensor,
        feature_fn: FeatureFn,
        generator: torch.Generator,
        progress: bool = False,
        validation: tuple[torch.Tensor, torch.Tensor] | None = None,
        score_fn: ScoreFn | None = None,
    ) -> dict:
        """Learn the attribute distribution.

        Args:
            engine: renders ``(B, D)`` attribute rows.
            initial: sampler of the initial scenes.
            target_images: (N, C, H, W) unlabeled target images in [0, 1].
            feature_fn: images -> (N, F) features (distribution metrics compare these).
            generator: all randomness of the fit.
            validation: (images, labels) labeled target split, for methods that use labels.
            score_fn: trains a task net on synthetic data and scores it on ``validation``.
        Returns:
            JSON-ready report: ``method``, ``config``, ``seconds``, ``curve`` (one
            value per iteration), ``curve_metric`` and method-specific entries.
        """
        if target_images.dim() != 4 or target_images.shape[0] < 2:
            raise ValueError(f"{self.name}: target_images must be (N, C, H, W) with N >= 2, got shape {tuple(target_images.shape)}")
        if self.uses_target_labels and (validation is None or score_fn is None):
            raise ValueError(f"{self.name} is trained on task accuracy with target labels: pass validation=(images, labels) and score_fn")
        self.report = None
        probe = initial(2, torch.Generator().manual_seed(0))
        engine.space.check(probe)
        self.engine, self.initial = engine, initial
        t0 = time.time()
        report = self._fit(target_images, feature_fn, generator, progress, validation, score_fn)
        report = {
            "method": self.name,
            "uses_target_labels": self.uses_target_labels,
            "config": dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else None,
            **report,
            "seconds": time.time() - t0,
        }
        self.report = report
        return report

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` attribute rows (n, D) in natural units from the learned distribution."""
        positive_int(n, f"{self.name}.sample n")
        if self.report is None:
            raise RuntimeError(f"{self.name}: call fit() before sample()")
        attrs = self.space.clamp(self._sample(n, generator))
        self.space.check(attrs)
        return attrs

    @abstractmethod
    def _fit(
        self,
        target_images: torch.Tensor,
        feature_fn: FeatureFn,
        generator: torch.Generator,
        progress: bool,
        validation: tuple[torch.Tensor, torch.Tensor] | None,
        score_fn: ScoreFn | None,
    ) -> dict:
        """Method-specific fit; returns the report entries (at least ``curve`` and ``curve_metric``)."""

    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Method-specific draw of (n, D) rows (clamped and checked by :meth:`sample`)."""


@dataclasses.dataclass(frozen=True)
class InitialConfig:
    """The initial scenes need no settings (kept for a uniform registry)."""

    @classmethod
    def at_scale(cls, scale: str, **overrides: Any) -> "InitialConfig":
        """The (empty) config at any valid ``scale`` (tiny/quick/paper), plus field ``overrides``."""
        check_scale(scale)
        return dataclasses.replace(cls(), **overrides)


class InitialScenes(Baseline):
    """No learning: samples the initial scenes (the lower bound of Table 2)."""

    name = "initial"

    def __init__(self, config: InitialConfig | None = None) -> None:
        super().__init__(config or InitialConfig())

    def _fit(self, target_images, feature_fn, generator, progress, validation, score_fn) -> dict:
        return {"curve": [], "curve_metric": None}

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.initial(n, generator)


class Oracle(Baseline):
    """Upper-bound marker: the targets' own attributes.

    The caller trains on the labeled target images themselves; :meth:`sample`
    returns the true attribute rows ``true_attrs`` (N, D) when they are known (a
    random subset of ``n`` rows, or rows drawn with replacement if ``n > N``),
    e.g. to render them with the engine's own textures.
    """

    name = "oracle"
    uses_target_labels = True

    def __init__(self, true_attrs: torch.Tensor | None = None) -> None:
        super().__init__(None)
        self.true_attrs = true_attrs

    def fit(self, engine: Engine, initial: Sampler, target_images: torch.Tensor, feature_fn: FeatureFn,
            generator: torch.Generator, progress: bool = False, validation: tuple[torch.Tensor, torch.Tensor] | None = None,
            score_fn: ScoreFn | None = None) -> dict:
        """Nothing to learn; only records the engine. Labels are used by the caller, not here."""
        self.engine, self.initial = engine, initial
        self.report = {"method": self.name, "uses_target_labels": True, "config": None, "curve": [], "curve_metric": None, "seconds": 0.0}
        return self.report

    def _fit(self, *args) -> dict:  # pragma: no cover - fit is overridden
        raise NotImplementedError

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.true_attrs is None:
            raise ValueError("oracle: the targets' true attributes are unknown; pass Oracle(true_attrs) or train on the labeled targets")
        m = self.true_attrs.shape[0]
        idx = torch.randperm(m, generator=generator)[:n] if n <= m else torch.randint(m, (n,), generator=generator)
        return self.true_attrs[idx].clone()
