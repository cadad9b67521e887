"""``plain``: the paper's Algorithm 1 — one start per target at the initial distribution's centre, gradient
steps on the content loss through G, categorical attributes relaxed to a softmax."""

from __future__ import annotations

import time

from scenefit.fitting.base import FitInputs, FitResult, fit_candidates
from scenefit.fitting.config import FitConfig


def fit_plain(inputs: FitInputs, cfg: FitConfig) -> FitResult:
    """Fit every target from the centre (N, 1, D start) with ``cfg.steps`` gradient steps through G."""
    t0 = time.time()
    G = inputs.need("surrogate", "plain")
    res = fit_candidates(G, inputs.features, inputs.space, inputs.target_features, inputs.base()[:, None, :], inputs.free,
                         cfg.steps, cfg.lr, cfg.optimizer, cfg.chunk, list(inputs.space.categorical), inputs.progress, "fit (plain)",
                         inputs.look)
    res.seconds = time.time() - t0
    return res
