"""Fitting: every strategy in one place, selected by ``fit.method`` for any engine.

    result = fit_targets(inputs, cfg)      # FitInputs, FitConfig -> FitResult

=================  ===================================================================================
``plain``          the paper's Algorithm 1: one start (the initial centre or a draw), gradient steps through G
``restarts``       Sobol-spread starts, all refined through G
``codebook``       a grid of codes through G, the best distinct ones refined
``codebook-verify``codes through the engine R, refinement through G, the final choice verified with R
``amortized``      the encoder E's top modes (default), optionally refined through G
=================  ===================================================================================
"""

from __future__ import annotations

from typing import Callable

from scenefit.fitting.amortized import fit_amortized
from scenefit.fitting.base import FeatureFn, FitInputs, FitResult, Renderer, fit_candidates, fit_one_reference
from scenefit.fitting.codebook import code_grid, codebook_starts, fit_codebook, fit_codebook_verify
from scenefit.fitting.config import (
    METHODS,
    AmortizedConfig,
    CalibrateConfig,
    CodebookConfig,
    FitConfig,
    PlainConfig,
    RestartsConfig,
    VerifyConfig,
)
from scenefit.fitting.plain import fit_plain
from scenefit.fitting.restarts import fit_restarts, sobol_starts

STRATEGIES: dict[str, Callable[[FitInputs, FitConfig], FitResult]] = {
    "plain": fit_plain,
    "restarts": fit_restarts,
    "codebook": fit_codebook,
    "codebook-verify": fit_codebook_verify,
    "amortized": fit_amortized,
}
assert set(STRATEGIES) == set(METHODS)

NEEDS: dict[str, tuple[str, ...]] = {
    "plain": ("surrogate",), "restarts": ("surrogate",), "codebook": ("surrogate",),
    "codebook-verify": ("surrogate", "engine"), "amortized": ("encoder", "engine"),
}
"""The trained models and inputs each strategy reads (besides the features); ``amortized`` with ``fit.steps`` > 0
also refines through the surrogate."""


def uses_surrogate(cfg: FitConfig) -> bool:
    """Whether the configured fit goes through the surrogate G (every strategy but ``amortized`` without steps)."""
    return "surrogate" in NEEDS[cfg.method] or cfg.steps > 0


def fit_targets(inputs: FitInputs, cfg: FitConfig) -> FitResult:
    """Fit every target with the strategy ``cfg.method``."""
    return STRATEGIES[cfg.method](inputs, cfg)


__all__ = [
    "METHODS", "NEEDS", "STRATEGIES", "AmortizedConfig", "CalibrateConfig", "CodebookConfig", "FeatureFn", "FitConfig", "FitInputs",
    "FitResult", "PlainConfig", "Renderer", "RestartsConfig", "VerifyConfig", "code_grid", "codebook_starts", "fit_candidates", "fit_one_reference",
    "fit_targets", "sobol_starts", "uses_surrogate",
]
