"""``restarts``: ``fit.restarts.count`` starts per target spread over the free attributes by a scrambled Sobol
sequence (the same points for every target), all refined through G, the lowest content loss kept."""

from __future__ import annotations

import time

import torch

from scenefit.attributes import AttributeSpace
from scenefit.fitting.base import FitInputs, FitResult, fit_candidates
from scenefit.fitting.config import FitConfig


def sobol_starts(space: AttributeSpace, base: torch.Tensor, free: list[int], m: int, seed: int) -> torch.Tensor:
    """``m`` starts per target spread over the free continuous columns.

    Args:
        base: (N, D) values for the columns that are not spread.
        free: continuous columns to spread (unit cube via a scrambled Sobol sequence,
            the same ``m`` points for every target).
    Returns:
        (N, m, D) natural units.
    """
    n = base.shape[0]
    starts = base[:, None, :].repeat(1, m, 1)
    if free:
        sob = torch.quasirandom.SobolEngine(len(free), scramble=True, seed=seed).draw(m)  # (m, F)
        unit = space.normalize(starts.reshape(-1, space.dim)).reshape(n, m, space.dim)
        unit[:, :, free] = sob[None].to(unit)
        starts = space.clamp(space.denormalize(unit.reshape(-1, space.dim))).reshape(n, m, space.dim)
    return starts


def fit_restarts(inputs: FitInputs, cfg: FitConfig) -> FitResult:
    """Refine ``cfg.restarts.count`` Sobol starts per target through G (categorical attributes relaxed)."""
    t0 = time.time()
    G = inputs.need("surrogate", "restarts")
    starts = sobol_starts(inputs.space, inputs.base(), inputs.free, cfg.restarts.count, inputs.seed)
    res = fit_candidates(G, inputs.features, inputs.space, inputs.target_features, starts, inputs.free, cfg.steps, cfg.lr,
                         cfg.optimizer, cfg.chunk, list(inputs.space.categorical), inputs.progress, "fit (restarts)",
                         inputs.look)
    res.seconds = time.time() - t0
    return res
