"""Fitting a batch of target images and rendering the fitted rows: the work a run's fit stage and every shard of
a streamed ``scenefit fit`` share.

A target's fitted row depends on its image and the trained networks only, and a rendered row's seed on its
global index only (:func:`scenefit.seeding.index_seeds`), so splitting the targets into shards of a fixed size
gives the same fitted rows and the same images whichever backend or worker runs the shards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scenefit.fitting import FitInputs, FitResult, fit_targets
from scenefit.fitting.look import make_look_term
from scenefit.guards import check_values
from scenefit.models import Models
from scenefit.resolve import Resolved
from scenefit.seeding import index_seeds

FIT_SEED = 3
RENDER_SEED = 404


def fit_resolution(res: Resolved, images: torch.Tensor) -> torch.Tensor:
    """Targets ``images`` (N, C, H, W) at the engine's resolution, as the fit reads them: (N, C, h, w) at the fitting
    engine's resolution (area-resized when it differs; the same tensor otherwise). The encoder E reads these."""
    fe = res.fit_engine
    if tuple(images.shape[-2:]) == (fe.height, fe.width):
        return images
    return F.interpolate(images, size=(fe.height, fe.width), mode="area")


def fit_images(res: Resolved, models: Models, images: torch.Tensor, progress: bool = False,
               first_target: int = 0, log_prior: dict[str, torch.Tensor] | None = None) -> tuple[FitResult, torch.Tensor]:
    """Fit targets ``images`` (N, C, H, W) in [0, 1] at the engine's resolution with ``fit.method``; ``first_target`` is
    the global index of the first (a shard's offset).

    ``log_prior``: per categorical or periodic attribute name, these targets' rows (N, n) of a population prior
    estimated over a larger set of targets (a streamed fit's pre-pass, :mod:`scenefit.shardprior`); None (default):
    with ``fit.amortized.prior_iters`` > 0 the prior is estimated from ``images`` alone.

    Returns the result (rows checked to be finite: a diverged fit raises :class:`scenefit.guards.Diverged`) and
    the targets' features (N, F) on the fit's device (the calibration compares them).
    """
    cfg, fe = res.cfg, res.fit_engine
    feats = models.fit_features()
    G = models.surrogate() if models.uses("surrogate") else None
    enc = models.encoder() if cfg.fit.method == "amortized" else None
    for net in (G, feats.net, enc):
        if net is not None:
            net.requires_grad_(False)
    small = fit_resolution(res, images)
    f_t = feats.batched(images)
    inputs = FitInputs(res.engine.space, feats, f_t, res.initial_centre(), res.free, cfg.seed + FIT_SEED, torch.device(cfg.device),
                       small, G, fe, enc, progress, first_target, make_look_term(res.engine.space, small, cfg.fit.look_weight),
                       res.sample_initial, log_prior)
    result = fit_targets(inputs, cfg.fit)
    check_values(result.attrs, f"fit ({cfg.fit.method})", "fit.lr", "fitted rows")
    check_values(result.loss, f"fit ({cfg.fit.method})", "fit.lr", "fit losses")
    return result, f_t


def rendered_rows(attrs: torch.Tensor, per_target: int, seed: int, first_target: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows R renders for fitted ``attrs`` (N, D) — each repeated ``per_target`` times — and their seeds, derived
    from each row's global index (targets numbered from ``first_target``). Returns rows (N·per_target, D), seeds."""
    rows = attrs.repeat_interleave(per_target, 0)
    index = torch.arange(first_target * per_target, (first_target + attrs.shape[0]) * per_target)
    return rows, index_seeds(seed + RENDER_SEED, index)
