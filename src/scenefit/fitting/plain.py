"""``plain``: the paper's Algorithm 1 — one start per target, gradient steps on the content loss through G,
categorical attributes relaxed to a softmax.

The start (``fit.plain.start``) is the initial distribution's centre, or one draw of the initial distribution per
target ("randomly", as the paper starts). The paper gives no learning rate or step count; ``fit.plain.select_lrs``
and ``fit.plain.select_steps`` choose them without labels (:func:`select_lr_steps`): on the first targets, the pair
whose fitted rows the engine R renders closest to the targets in content loss.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from scenefit.fitting.base import FitInputs, FitResult, Renderer, fit_candidates
from scenefit.fitting.codebook import verify_with_engine
from scenefit.fitting.config import FitConfig
from scenefit.seeding import index_seeds

START_SEED = 17  # offsets from the fit's seed: the start draws and the selection's render seeds
SELECT_SEED = 19


def plain_starts(inputs: FitInputs, start: str) -> torch.Tensor:
    """(N, 1, D) natural units: every target at the centre (``start="centre"``), or (``"initial"``) at one draw of the
    initial distribution seeded by ``inputs.seed`` and the target's global index alone (so shards draw what one fit
    draws). A draw sets the fitted continuous columns (``inputs.free``) and the categorical ones; the other columns stay
    at the centre, as they stay for every fit."""
    base = inputs.base()
    if start == "centre":
        return base[:, None, :]
    sample = inputs.need("sample_initial", "plain with fit.plain.start initial")
    seeds = index_seeds(inputs.seed + START_SEED, inputs.target_index())
    draws = torch.stack([sample(1, torch.Generator().manual_seed(int(s)))[0] for s in seeds]) if len(seeds) else base  # (N, D)
    cols = [*inputs.free, *inputs.space.categorical]
    base[:, cols] = draws[:, cols].to(base)
    return base[:, None, :]


def _fit(inputs: FitInputs, cfg: FitConfig, G: Renderer, starts: torch.Tensor, steps: int, lr: float, progress: bool,
         snapshots: tuple[int, ...] = ()) -> FitResult:
    """Algorithm 1 from ``starts`` (n, 1, D) for the first n targets, categorical attributes relaxed (the look term's
    rows are indexed by target, so the first n rows of ``inputs.look`` are the ones read)."""
    n = starts.shape[0]
    return fit_candidates(G, inputs.features, inputs.space, inputs.target_features[:n], starts, inputs.free, steps, lr, cfg.optimizer,
                          cfg.chunk, list(inputs.space.categorical), progress, "fit (plain)", inputs.look, snapshots)


def select_lr_steps(inputs: FitInputs, cfg: FitConfig, G: Renderer, starts: torch.Tensor) -> dict:
    """Choose ``fit.lr`` and ``fit.steps`` on the first ``fit.plain.select_targets`` targets without labels.

    Every learning rate of ``select_lrs`` fits them from ``starts`` (N, 1, D) for ``max(select_steps)`` steps; the rows
    after each count in ``select_steps`` are rendered by the engine R at the fitting resolution (one seed per target,
    shared by the whole grid) and scored by the mean content loss ``1 - cos`` of R's renders against the targets'
    features. Returns the record ``{"criterion", "targets", "grid": [[lr, steps, loss], ...], "lr", "steps"}`` with
    the lowest-loss pair (ties: the earlier lr, then the earlier step count, in the config's order).
    """
    p = cfg.plain
    engine = inputs.need("engine", "plain with fit.plain.select_lrs")
    k = min(p.select_targets, inputs.n)
    grid: list[list] = []
    for lr in tqdm(p.select_lrs, desc=f"fit (plain): choosing lr and steps on {k} targets", disable=not inputs.progress, leave=False):
        res = _fit(inputs, cfg, G, starts[:k], max(p.select_steps), lr, False, p.select_steps)
        rows = res.snapshots[:, :, 0].transpose(0, 1)  # (k, S, D): target i's row after each step count
        loss = verify_with_engine(engine, inputs.features, inputs.target_features[:k], rows, 1, inputs.seed + SELECT_SEED,
                                  inputs.target_index()[:k])  # (k, S)
        grid += [[float(lr), int(s), loss[:, j].mean().item()] for j, s in enumerate(p.select_steps)]
    best = min(range(len(grid)), key=lambda i: grid[i][2])
    return {"criterion": "engine content loss", "targets": k, "grid": grid, "lr": grid[best][0], "steps": grid[best][1]}


def fit_plain(inputs: FitInputs, cfg: FitConfig) -> FitResult:
    """Fit every target from its start (N, 1, D; :func:`plain_starts`) with ``fit.steps`` gradient steps of ``fit.lr``
    through G, or with the pair :func:`select_lr_steps` chooses (recorded as ``info["plain_select"]``)."""
    t0 = time.time()
    G = inputs.need("surrogate", "plain")
    starts = plain_starts(inputs, cfg.plain.start)
    steps, lr, info = cfg.steps, cfg.lr, {}
    if cfg.plain.selects:
        info["plain_select"] = select_lr_steps(inputs, cfg, G, starts)
        steps, lr = info["plain_select"]["steps"], info["plain_select"]["lr"]
    res = _fit(inputs, cfg, G, starts, steps, lr, inputs.progress)
    res.info.update(info)
    res.seconds = time.time() - t0
    return res
