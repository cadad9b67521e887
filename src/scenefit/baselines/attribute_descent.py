"""Attribute Descent (Yao et al., ECCV 2020): coordinate search of distribution means under FID."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from scenefit.attributes import wrap_angle
from scenefit.baselines.base import (
    Baseline,
    FeatureFn,
    ScoreFn,
    check_scale,
    circular_unit_mean,
    compose,
    extract_features,
    learned_columns,
    positive_float,
    positive_int,
    seed_from,
)
from scenefit.metrics import fid_from_features


@dataclass(frozen=True)
class AttributeDescentConfig:
    """Attribute Descent settings.

    components: Gaussians per attribute (equal weights, independent across attributes).
    std: their fixed standard deviation in unit-cube coordinates (0.03 = 10.8°
        of rotation, 1.2 px of a ±20 px shift).
    grid: candidate means per coordinate, evenly spaced over the attribute's
        range (periodic: ``k / grid`` for k < grid, so 24 gives 15° steps of
        rotation; bounded: ``linspace(0, 1, grid)``).
    passes: sweeps over all (attribute, component) coordinates.
    batch: images rendered per FID evaluation.
    attributes: continuous attributes to learn (empty: all).
    """

    components: int = 1
    std: float = 0.03
    grid: int = 36
    passes: int = 2
    batch: int = 400
    attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("components", "passes"):
            positive_int(getattr(self, name), f"attribute-descent.{name}")
        positive_int(self.grid, "attribute-descent.grid", minimum=2)
        positive_int(self.batch, "attribute-descent.batch", minimum=2)
        positive_float(self.std, "attribute-descent.std", upper=1.0)

    @classmethod
    def at_scale(cls, scale: str, **overrides: Any) -> "AttributeDescentConfig":
        """``tiny`` (tests), ``quick`` (minutes on a CPU) or ``paper``."""
        check_scale(scale)
        sizes = {"tiny": dict(grid=12, batch=48), "quick": dict(grid=24, batch=200), "paper": {}}[scale]
        return replace(cls(), **{**sizes, **overrides})


class AttributeDescent(Baseline):
    """Attribute Descent: per-attribute Gaussian mixtures whose means are searched by coordinate descent.

    Follows Yao et al. (ECCV 2020): every continuous attribute has a parametric
    distribution (here a mixture of ``components`` Gaussians with fixed std and
    equal weights); one coordinate (the mean of one component of one attribute)
    at a time is set to each value of a discrete grid, a batch is rendered, and
    the value with the lowest FID to the targets (``metrics.fid_from_features``
    on ``feature_fn`` features) is kept; ``passes`` sweeps (2) over the
    coordinates. Starting means are the initial scenes' means.

    Departs from it: the grid is one even grid over each attribute's range
    (Yao et al. hand-pick ranges per attribute); every candidate of a
    coordinate, including the current value, is rendered with the same random
    numbers, so the search compares attributes, not noise; categorical
    attributes (the digit class) are not searched, they keep the initial
    scenes' distribution.
    """

    name = "attribute-descent"

    def __init__(self, config: AttributeDescentConfig | None = None) -> None:
        super().__init__(config or AttributeDescentConfig())
        self.cols: list[int] = []
        self.means: torch.Tensor | None = None  # (C, K) unit cube

    def _draw(self, means: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, D) rows: learned columns from the mixtures ``means`` (C, K), the rest from the initial scenes."""
        base = self.initial(n, generator)
        c, k = means.shape
        comp = torch.randint(k, (n, c), generator=generator)  # (n, C)
        unit = means[torch.arange(c), comp] + self.config.std * torch.randn(n, c, generator=generator)
        return compose(self.space, base, self.cols, unit)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._draw(self.means, n, generator)

    def _fit(self, target_images, feature_fn: FeatureFn, generator, progress, validation, score_fn: ScoreFn | None) -> dict:
        cfg, space = self.config, self.space
        self.cols = learned_columns(space, cfg.attributes, self.name)
        f_t = extract_features(feature_fn, target_images)  # (N, F)
        start = space.normalize(self.initial(1000, generator))
        means = torch.empty(len(self.cols), cfg.components)
        for j, col in enumerate(self.cols):
            periodic = space.attributes[col].periodic
            means[j] = circular_unit_mean(start[:, col]) if periodic else start[:, col].mean()

        def fid_of(m: torch.Tensor, seed: int) -> float:
            g = torch.Generator().manual_seed(seed)
            images = self.engine.images(self._draw(m, cfg.batch, g), g)
            return fid_from_features(extract_features(feature_fn, images), f_t)

        curve, history = [], []
        coords = [(j, k) for _ in range(cfg.passes) for j in range(len(self.cols)) for k in range(cfg.components)]
        for j, k in tqdm(coords, desc="attribute descent", disable=not progress, leave=False):
            col = self.cols[j]
            periodic = space.attributes[col].periodic
            grid = torch.arange(cfg.grid) / cfg.grid if periodic else torch.linspace(0, 1, cfg.grid)
            candidates = torch.cat([means[j, k : k + 1], grid])  # the current value competes too
            seed = seed_from(generator)
            scores = []
            for v in candidates:
                trial = means.clone()
                trial[j, k] = v
                scores.append(fid_of(trial, seed))
            best = int(torch.tensor(scores).argmin())
            means[j, k] = candidates[best]
            curve.append(scores[best])
            history.append({"attribute": space.names[col], "component": k, "mean": self._natural(j, means[j, k]), "fid": scores[best]})
        self.means = means
        return {
            "curve": curve,
            "curve_metric": "fid",
            "attributes": [space.names[c] for c in self.cols],
            "means": {space.names[c]: [self._natural(j, v) for v in means[j]] for j, c in enumerate(self.cols)},
            "std_unit": cfg.std,
            "history": history,
            "evaluations": len(coords) * (cfg.grid + 1),
        }

    def _natural(self, j: int, unit_value: torch.Tensor) -> float:
        """A unit-cube mean of learned column j in the attribute's own unit (wrapped for periodic ones)."""
        a = self.space.attributes[self.cols[j]]
        value = a.low + float(unit_value) * a.span
        return float(wrap_angle(torch.tensor(value), a.low, a.high)) if a.periodic else value
