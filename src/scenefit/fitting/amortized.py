"""``amortized``: the encoder E (trained on engine renders; :mod:`scenefit.encoder`) proposes each target's
attributes in one forward pass; its top ``fit.amortized.top_classes`` × ``top_angles`` modes are the starts,
refined by ``fit.steps`` gradient steps through G (default 0: E's top mode as it is, scored through G)."""

from __future__ import annotations

import time

import torch

from scenefit.encoder import encoder_starts
from scenefit.fitting.base import FitInputs, FitResult, fit_candidates
from scenefit.fitting.config import FitConfig


def fit_amortized(inputs: FitInputs, cfg: FitConfig, batch: int = 1024) -> FitResult:
    """Starts from E's top modes (N, M, D), refined and chosen through G; the fitted columns are ``inputs.free``,
    every other continuous column is set to the centre."""
    t0 = time.time()
    G = inputs.need("surrogate", "amortized")
    enc = inputs.need("encoder", "amortized")
    images = inputs.need("target_images", "amortized")
    top = {a.name: (cfg.amortized.top_classes if a.categorical else cfg.amortized.top_angles) for a in inputs.space}
    starts = torch.cat([encoder_starts(enc, images[i : i + batch].to(inputs.device), top)[0].cpu()
                        for i in range(0, images.shape[0], batch)])
    fixed = [i for i in inputs.space.continuous if i not in inputs.free]
    if fixed:
        starts[:, :, fixed] = inputs.centre[fixed]
    res = fit_candidates(G, inputs.features, inputs.space, inputs.target_features, starts, inputs.free, cfg.steps, cfg.lr,
                         cfg.optimizer, cfg.chunk, None, inputs.progress, "fit (amortized)")
    res.seconds = time.time() - t0
    return res
