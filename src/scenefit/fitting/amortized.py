"""``amortized``: the encoder E (trained on engine renders; :mod:`scenefit.encoder`) proposes each target's
attributes in one forward pass; its top ``fit.amortized.top_classes`` × ``top_angles`` modes are the starts.

With ``fit.steps`` > 0 the starts are refined by gradient steps through G and chosen by G's content loss. With no
steps (the default) nothing goes through G: every start is rendered by the engine R itself (one fixed seed per
target, shared by its starts) and the start with the lowest content loss of R's render is kept, so G need not be
trained at all. E proposes look attributes (:mod:`scenefit.fitting.look`) like any other, from the engine's own
look variation; with them the loss adds the look term.

With ``fit.amortized.prior_iters`` > 0 E's readings of categorical and periodic attributes are weighted by the
targets' population prior (:mod:`scenefit.fitting.prior`) before the modes are taken: it needs all targets at once.
A streamed fit estimates it over all targets before its shards and hands each shard its rows (``FitInputs.log_prior``).
"""

from __future__ import annotations

import time

import torch

from scenefit.attributes import AttributeSpace
from scenefit.encoder import encoder_outputs, starts_from_outputs
from scenefit.fitting.base import FitInputs, FitResult, fit_candidates
from scenefit.fitting.codebook import verify_with_engine
from scenefit.fitting.config import AmortizedConfig, FitConfig
from scenefit.fitting.prior import population_log_prior


def population_priors(space: AttributeSpace, outs: list[torch.Tensor], cfg: AmortizedConfig) -> dict[str, torch.Tensor] | None:
    """Per categorical or periodic attribute name, each target's log prior (N, n) from E's outputs ``outs`` of all N
    targets (:func:`scenefit.fitting.prior.population_log_prior`); None when ``cfg.prior_iters`` is 0."""
    if not cfg.prior_iters:
        return None
    given = torch.stack([outs[space.index(name)] for name in cfg.prior_given], 1) if cfg.prior_given else None
    return {a.name: population_log_prior(torch.log_softmax(o, 1), cfg.prior_iters, given, cfg.prior_bandwidth)
            for a, o in zip(space, outs) if o.ndim == 2}


def prior_moved(space: AttributeSpace, bins: int, outs: list[torch.Tensor], priors: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) bool: whether the ``priors`` change a target's first start (E's top mode of every attribute, as
    :func:`scenefit.encoder.starts_from_outputs` takes it) from E's outputs ``outs`` alone."""
    alone = starts_from_outputs(space, bins, outs, {})[0][:, 0]
    return (alone != starts_from_outputs(space, bins, outs, {}, priors)[0][:, 0]).any(1)


def checked_priors(space: AttributeSpace, outs: list[torch.Tensor], log_prior: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``log_prior`` (per attribute name, (N, n)) after checking that it holds exactly E's categorical and periodic
    heads, each with the shape of E's logits ``outs`` (N, n); ``ValueError`` otherwise."""
    heads = {a.name: tuple(o.shape) for a, o in zip(space, outs) if o.ndim == 2}
    got = {name: tuple(p.shape) for name, p in log_prior.items()}
    if got != heads:
        raise ValueError(f"the given population prior has shapes {got}; E's categorical and periodic heads here have {heads}")
    return log_prior


def fit_amortized(inputs: FitInputs, cfg: FitConfig, batch: int = 1024) -> FitResult:
    """Starts from E's top modes (N, M, D), refined through G (``fit.steps`` > 0) or chosen by R's content loss (no
    steps); the fitted columns are ``inputs.free``, every other continuous column is set to the centre.

    With ``fit.amortized.prior_iters`` > 0, E's readings are weighed by ``inputs.log_prior`` when given (each (N, n),
    one per categorical or periodic attribute), else by the population prior of these N targets."""
    t0 = time.time()
    enc = inputs.need("encoder", "amortized")
    images = inputs.need("target_images", "amortized")
    top = {a.name: (cfg.amortized.top_classes if a.categorical else cfg.amortized.top_angles) for a in inputs.space}
    outs = encoder_outputs(enc, images, batch, inputs.device)
    if cfg.amortized.prior_iters and inputs.log_prior is not None:
        priors = checked_priors(inputs.space, outs, inputs.log_prior)
    else:
        priors = population_priors(inputs.space, outs, cfg.amortized)
    starts = starts_from_outputs(inputs.space, enc.cfg.bins, outs, top, priors)[0]
    info: dict = {}
    if priors is not None:  # the share of targets whose first start the prior moved
        info["prior_changed"] = prior_moved(inputs.space, enc.cfg.bins, outs, priors).float().mean().item()
    fixed = [i for i in inputs.space.continuous if i not in inputs.free]
    if fixed:
        starts[:, :, fixed] = inputs.centre[fixed]
    if cfg.steps > 0:
        G = inputs.need("surrogate", "amortized with fit.steps > 0")
        res = fit_candidates(G, inputs.features, inputs.space, inputs.target_features, starts, inputs.free, cfg.steps, cfg.lr,
                             cfg.optimizer, cfg.chunk, None, inputs.progress, "fit (amortized)", inputs.look)
        res.seconds = time.time() - t0
        res.info.update(info)
        return res
    engine = inputs.need("engine", "amortized")
    losses = verify_with_engine(engine, inputs.features, inputs.target_features, starts, 1, inputs.seed, inputs.target_index(),
                                look=inputs.look)
    n = starts.shape[0]
    best = losses.argmin(1)
    return FitResult(starts[torch.arange(n), best], losses[torch.arange(n), best], best, losses, starts, time.time() - t0,
                     {"loss": "engine", **info})
