"""``codebook`` and ``codebook-verify``: a global search over the whole attribute space, then refinement.

``codebook``: G renders a grid of codes (:class:`~scenefit.fitting.config.CodebookConfig`) and all N×K content
losses are one matrix product of normalised features; the ``keep`` best distinct codes per target are refined
by gradient steps through G, the lowest loss wins.

``codebook-verify`` (the street strategy): the codes are rendered by the engine R itself (cheap forward and
sharper than G), the ``keep`` best are refined through G, and the final choice among {codebook starts, refined
point} is made by the content loss of R's renders, ``fit.verify.seeds`` renders per candidate with seeds shared
by one target's candidates (common random numbers), so a refinement that only fooled G is not kept.

Where the engine has look attributes (:mod:`scenefit.fitting.look`) and they are fitted, the codes hold them at the
centre and are chosen by the content loss alone (so a random look cannot win a code for the wrong scene); each kept
code then tries ``fit.codebook.look_codes`` looks, rendered with one seed, and keeps the best by the look term
(``codebook`` renders them through G, ``codebook-verify`` through R: where R has a look stage, ``render_look_parts``,
each kept code is rendered once and its looks are developed from its frames, the same images for far less work).

With ``fit.codebook.look_steps`` > 0 each kept code's look is then refined by gradient steps on the look term
through the engine R's own look stage (:mod:`scenefit.fitting.look_refine`, the engine's ``render_look_parts``:
exact and differentiable where G only imitates it), with the code's render seed. Both strategies do this through R,
``codebook`` too (its codes and refinement otherwise go through G alone), so both need the engine and refuse one
without that method. The refined look columns are then held fixed in the refinement through G, which would drift
them back toward G's idea of the camera; ``info`` records the mean look term before and after
(``mean_look_term_searched``, ``mean_look_term_refined``).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Callable

import torch
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import LOOK_PARTS, Develop, Engine, EngineRenderer
from scenefit.fitting.base import FeatureFn, FitInputs, FitResult, Renderer, fit_candidates
from scenefit.fitting.config import FitConfig
from scenefit.fitting.look import LookTerm, look_codes, look_search, look_search_parts, look_statistics
from scenefit.fitting.look_refine import engine_look_parts, look_refine
from scenefit.seeding import index_seeds
from scenefit.tasks.base import content_loss


def code_grid(space: AttributeSpace, base: torch.Tensor, free: list[int], cats: list[int], per_axis: dict[int, int], max_codes: int, seed: int) -> torch.Tensor:
    """Attribute vectors covering the search space: a full grid, or a Sobol set if the grid is too large.

    Args:
        base: (D,) values of the columns that are not searched.
        free: continuous columns searched; ``per_axis[col]`` grid values each
            (periodic: equally spaced over the period; bounded: over [low, high]).
        cats: categorical columns searched over all their categories.
    Returns:
        (K, D) natural units.
    """
    axes = []
    for c in free:
        a, k = space.attributes[c], per_axis[c]
        axes.append(torch.arange(k) / k if a.periodic else torch.linspace(0.0, 1.0, k))
    for c in cats:
        n = space.attributes[c].num_categories
        axes.append(torch.arange(n) / (n - 1))
    size = 1
    for ax in axes:
        size *= len(ax)
    if size <= max_codes:
        pts = torch.cartesian_prod(*axes).reshape(-1, len(axes)) if axes else torch.zeros(1, 0)
    else:
        pts = torch.quasirandom.SobolEngine(len(axes), scramble=True, seed=seed).draw(max_codes)
    unit = space.normalize(base[None]).repeat(pts.shape[0], 1)
    unit[:, free + cats] = pts
    return space.clamp(space.denormalize(unit))


def _unit_distance(space: AttributeSpace, a: torch.Tensor, b: torch.Tensor, cols: list[int]) -> torch.Tensor:
    """Max-norm distance in unit-cube coordinates (periodic columns wrap): (P, D), (K, D) -> (P, K)."""
    ua, ub = space.normalize(a)[:, cols], space.normalize(b)[:, cols]
    d = (ua[:, None, :] - ub[None, :, :]).abs()
    per = torch.tensor([space.attributes[c].periodic for c in cols])
    d = torch.where(per, torch.minimum(d, 1.0 - d), d)
    return d.amax(dim=2) if cols else d.new_zeros(a.shape[0], b.shape[0])


@torch.no_grad()
def codebook_starts(
    render: Renderer, feature_fn: FeatureFn, space: AttributeSpace, target_features: torch.Tensor, codes: torch.Tensor,
    free: list[int], top: int, radius: float = 0.08, batch: int = 1024, progress: bool = True, look: LookTerm | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global starts by exhaustive search over a codebook of renders.

    Every code (K, D) is rendered once and its features are compared with
    every target at once (the content loss is ``1 - cos``, so all N×K losses
    are one matrix product). Per target, the ``top`` best codes are kept,
    greedily skipping codes within ``radius`` (unit-cube max-norm over ``free``)
    of an already kept code of the same categories, so the starts cover
    distinct basins (e.g. both a pose and its 180° flip). With ``look`` the look
    term is added to every loss (:mod:`scenefit.fitting.look`).

    Returns:
        starts (N, top, D) natural units and their content loss (N, top).
    """
    dev = target_features.device
    feats, stats = [], []
    for lo in tqdm(range(0, codes.shape[0], batch), desc="codebook", disable=not progress, leave=False):
        x = render(codes[lo : lo + batch].to(dev), None)
        feats.append(torch.nn.functional.normalize(feature_fn(x), dim=1))
        if look is not None:
            stats.append(look_statistics(x))
    code_f = torch.cat(feats)  # (K, F)
    code_s = torch.cat(stats) if look is not None else None  # (K, S)
    cats = list(space.categorical)
    t_f = torch.nn.functional.normalize(target_features, dim=1)
    starts, losses = [], []
    for lo in range(0, t_f.shape[0], 256):
        sim = t_f[lo : lo + 256] @ code_f.T  # (c, K); 1 - sim is the loss
        if look is not None:
            sim = sim - look.loss_matrix(code_s, torch.arange(lo, min(lo + 256, t_f.shape[0])))
        picks, vals = [], []
        for _ in range(top):
            best = sim.argmax(1)
            vals.append(1.0 - sim.gather(1, best[:, None])[:, 0])
            picks.append(best)
            chosen = codes[best.cpu()]  # (c, D)
            near = _unit_distance(space, chosen, codes, free) < radius
            if cats:
                near &= (chosen[:, None, cats] == codes[None, :, cats]).all(2)
            sim = sim.masked_fill(near.to(dev), -float("inf"))
        starts.append(codes[torch.stack(picks, 1).cpu()])
        losses.append(torch.stack(vals, 1).cpu())
    return torch.cat(starts), torch.cat(losses)


def _codes(inputs: FitInputs, cfg: FitConfig, free: list[int]) -> torch.Tensor:
    space, c = inputs.space, cfg.codebook
    per_axis = {i: c.grid_periodic if space.attributes[i].periodic else c.grid_bounded for i in free}
    return code_grid(space, inputs.centre, free, list(space.categorical), per_axis, c.max_codes, inputs.seed)


def _start_seeds(inputs: FitInputs, keep: int, start: torch.Tensor) -> torch.Tensor:
    """Render seeds (B,) int64 of starts ``start`` (B,) (= i * keep + k): one per start, from its target's global
    index (so shards agree), shared by all the looks a start tries."""
    return index_seeds(inputs.seed + 3, inputs.target_index()[start // keep] * keep + start % keep)


LookSearch = Callable[[LookTerm, torch.Tensor, list[int], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``search(look, starts (N, K, D), cols, codes (J, L)) -> (starts, look term (N, K))``: :func:`look_search` or
:func:`look_search_parts` with its renders bound."""


def _starts(inputs: FitInputs, cfg: FitConfig, render: Renderer, search: LookSearch, batch: int,
            method: str) -> tuple[torch.Tensor, list[int], dict]:
    """The ``keep`` best distinct codes per target (N, keep, D). Where look attributes are fitted, the codes hold them
    at the centre and are chosen by the content loss alone; then each start gets the best of ``look_codes`` looks by
    the look term (``search``), refined through the engine's look stage when ``look_steps`` > 0 (module doc).

    Returns the starts, the columns the refinement through G may move (the look columns are fixed once refined
    through the engine) and the ``info`` figures of the look refinement ({} without one).
    """
    look, c = inputs.look, cfg.codebook
    look_cols = [col for col in inputs.free if look is not None and col in look.cols]
    content = [col for col in inputs.free if col not in look_cols]
    starts, _ = codebook_starts(render, inputs.features, inputs.space, inputs.target_features, _codes(inputs, cfg, content), content,
                                c.keep, c.radius, batch=batch, progress=inputs.progress, look=None if look_cols else look)
    if not look_cols:
        return starts, list(inputs.free), {}
    codes = look_codes(inputs.space, look_cols, c.look_codes, inputs.centre, inputs.seed + 5)
    starts, _ = search(look, starts, look_cols, codes)
    if c.look_steps == 0:
        return starts, list(inputs.free), {}
    parts, keep = engine_look_parts(inputs.engine, c.look_steps, method), starts.shape[1]

    def start_parts(rows: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, Develop]:
        frames, develop = parts(rows, _start_seeds(inputs, keep, start))
        return frames.to(inputs.device), develop

    refined = look_refine(start_parts, look, starts, look_cols, inputs.space, c.look_steps, c.look_lr, progress=inputs.progress)
    info = {"mean_look_term_searched": refined.loss_before.mean().item(), "mean_look_term_refined": refined.loss.mean().item()}
    return refined.starts, content, info


def fit_codebook(inputs: FitInputs, cfg: FitConfig) -> FitResult:
    """Codes through G, the ``keep`` best distinct per target refined through G, lowest loss kept (looks refined
    through R's look stage first with ``fit.codebook.look_steps``, module doc)."""
    t0 = time.time()
    G = inputs.need("surrogate", "codebook")
    search = partial(look_search, lambda rows, _: G(rows.to(inputs.device)), progress=inputs.progress)  # looks through G too
    starts, free, info = _starts(inputs, cfg, G, search, 1024, "codebook")
    res = fit_candidates(G, inputs.features, inputs.space, inputs.target_features, starts, free, cfg.steps, cfg.lr,
                         cfg.optimizer, cfg.chunk, None, inputs.progress, "fit (codebook)", inputs.look)
    res.seconds, res.info = time.time() - t0, info
    return res


def _engine_look_search(inputs: FitInputs, engine, keep: int) -> LookSearch:
    """The look search through R, a start's looks sharing its render seed (:func:`_start_seeds`): each start rendered
    once and its looks developed where R has a look stage (the same images: develop is R's render), else every look
    rendered in full."""
    parts = getattr(engine, LOOK_PARTS, None)
    if parts is not None:
        def start_parts(rows: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, Develop]:
            return parts(rows, _start_seeds(inputs, keep, start))  # kept on the rows' device: develop where R's camera runs

        return partial(look_search_parts, start_parts, space=inputs.space, device=inputs.device, progress=inputs.progress)

    def look_render(rows: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        return engine.render_seeded(rows, _start_seeds(inputs, keep, start))["image"].to(inputs.device)

    return partial(look_search, look_render, progress=inputs.progress)


@torch.no_grad()
def verify_with_engine(engine: Engine, features: FeatureFn, target_features: torch.Tensor, candidates: torch.Tensor, seeds: int,
                       seed: int, target_index: torch.Tensor, batch: int = 256, look: LookTerm | None = None) -> torch.Tensor:
    """Mean content loss (N, M) of R's renders of ``candidates`` (N, M, D) over ``seeds`` renders each (plus the look
    term, with ``look``). Target ``i``'s candidates share their seeds, derived from ``seed`` and its global
    ``target_index[i]`` alone (so any split of the targets into shards verifies the same)."""
    n, m, d = candidates.shape
    loss = torch.zeros(n, m)
    flat = candidates.reshape(-1, d)
    for k in range(seeds):
        row_seeds = index_seeds(seed + 7919 * k, target_index)[:, None].expand(n, m).reshape(-1)  # shared per target
        for lo in range(0, n * m, batch):
            img = engine.render_seeded(flat[lo : lo + batch], row_seeds[lo : lo + batch])["image"]
            owner = torch.arange(lo, min(lo + batch, n * m)) // m
            row = content_loss(features(img), target_features[owner])
            if look is not None:
                row = row + look.loss(img, owner)
            loss.view(-1)[lo : lo + batch] += row.cpu() / seeds
    return loss


def fit_codebook_verify(inputs: FitInputs, cfg: FitConfig) -> FitResult:
    """Codes through R, refinement through G, choice by R's content loss (module doc).

    ``info``: ``chosen_codebook`` / ``chosen_refined`` (targets whose final row is a code / the refined point),
    ``mean_loss_best_code`` (R's loss of the best code) and ``loss_g_refined`` (G's loss after refinement, mean);
    with ``fit.codebook.look_steps``, the look refinement's figures (module doc).
    """
    t0 = time.time()
    G = inputs.need("surrogate", "codebook-verify")
    engine = inputs.need("engine", "codebook-verify")
    render_r = EngineRenderer(engine, torch.Generator().manual_seed(inputs.seed + 1), inputs.device)
    keep = cfg.codebook.keep

    starts, free, look_info = _starts(inputs, cfg, render_r, _engine_look_search(inputs, engine, keep), 256, "codebook-verify")
    res = fit_candidates(G, inputs.features, inputs.space, inputs.target_features, starts, free, cfg.steps, cfg.lr,
                         cfg.optimizer, cfg.chunk, None, inputs.progress, "fit (codebook-verify)", inputs.look)
    cand = torch.cat([starts, res.attrs[:, None]], 1)  # (N, keep + 1, D)
    loss_r = verify_with_engine(engine, inputs.features, inputs.target_features, cand, cfg.verify.seeds, inputs.seed + 2,
                                inputs.target_index(), look=inputs.look)
    n = cand.shape[0]
    chosen = loss_r.argmin(1)
    keep = starts.shape[1]
    info = {"chosen_codebook": int((chosen < keep).sum()), "chosen_refined": int((chosen == keep).sum()),
            "mean_loss_best_code": loss_r[:, 0].mean().item(), "loss_g_refined": res.loss.mean().item(), **look_info}
    return FitResult(cand[torch.arange(n), chosen], loss_r[torch.arange(n), chosen], chosen, loss_r, cand, time.time() - t0, info)
