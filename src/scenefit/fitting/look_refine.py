"""Look refinement through the engine's own look stage: gradient steps on a start's look attributes against the
look term, through the engine's exact post-processing instead of the surrogate.

An engine whose look is a stage applied after the rest of its render may split a render there
(``render_look_parts``, :mod:`scenefit.engines.base`): the frames before the look, and ``develop(look, frames)``,
differentiable in the look and equal to the engine's render up to 8-bit quantization. Per start, with its scene and
render seed fixed, :func:`look_refine` renders the frames once, then takes ``steps`` Adam steps on the look
columns in unit-cube coordinates (clamped to the box after every step), minimising the look term
(:mod:`scenefit.fitting.look`) of the developed image against the start's target. The look is measured before
every step and once after the last, and each start keeps the best look it saw, its own look included: the
refinement never raises the look term measured this way (one engine, one seed per start).

Where the look term is flat nothing moves: a lens blur or sensor noise at exactly 0 has no gradient (a Gaussian's
width and a noise amplitude are flat there), and saturated pixels pass none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import LOOK_PARTS, Develop
from scenefit.fitting.look import LookParts, LookTerm


class RefinedLooks(NamedTuple):
    """:func:`look_refine`'s result: ``starts`` (N, K, D) with refined look columns, natural units; their look term
    ``loss`` (N, K); and ``loss_before`` (N, K), the look term of the starts as given."""

    starts: torch.Tensor
    loss: torch.Tensor
    loss_before: torch.Tensor


def engine_look_parts(engine: object | None, steps: int, method: str) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Develop]]:
    """The engine's ``render_look_parts(attrs (B, D), seeds (B,))``, which ``fit.codebook.look_steps`` ``steps`` > 0
    needs; ``ValueError`` naming the engine and the field when the engine is missing or has no such method."""
    if engine is None:
        raise ValueError(f"fit.codebook.look_steps {steps} refines looks through the engine R, which this fit (fit.method "
                         f"'{method}') was not given; give it the engine or set fit.codebook.look_steps 0")
    parts = getattr(engine, LOOK_PARTS, None)
    if parts is None:
        raise ValueError(f"fit.codebook.look_steps {steps}: engine '{getattr(engine, 'name', type(engine).__name__)}' has no "
                         f"{LOOK_PARTS} (the optional look stage of scenefit.engines.base), so its looks cannot be refined "
                         f"through it; set fit.codebook.look_steps 0")
    return parts


def look_refine(parts: LookParts, look: LookTerm, starts: torch.Tensor, cols: list[int], space: AttributeSpace, steps: int,
                lr: float, batch: int = 64, progress: bool = False) -> RefinedLooks:
    """Refine the look columns ``cols`` of every start (N, K, D) (natural units) by ``steps`` Adam steps of step size
    ``lr`` (unit-cube units) on the look term of ``parts``' developed renders against start ``(i, k)``'s target ``i``
    (module doc); other columns are returned untouched, bit for bit.

    ``parts(rows (B, D), start_index (B,))`` gives the frames and ``develop`` of those rows (``start_index`` =
    i * K + k, so a start keeps its render seed); ``develop`` is given the look columns of ``space.look``, in that
    order. ``batch`` starts are refined at once (bounds memory). Returns :class:`RefinedLooks`.
    """
    n, k, d = starts.shape
    if any(c not in space.look for c in cols):
        raise ValueError(f"look_refine refines look columns {list(space.look)} only, got {list(cols)}")
    flat = starts.reshape(n * k, d).clone()
    before, after = torch.empty(n * k), torch.empty(n * k)
    bar = tqdm(total=math.ceil(n * k / batch) * steps, desc=f"look refine ({n} targets x {k} starts)", disable=not progress, leave=False)
    for lo in range(0, n * k, batch):
        idx = torch.arange(lo, min(lo + batch, n * k))
        with torch.no_grad():
            frames, develop = parts(flat[idx], idx)
        unit = space.normalize(flat[idx].to(frames.device))  # (B, D)
        loss_of = partial(_look_loss, look=look, space=space, develop=develop, frames=frames, unit=unit, cols=cols, owner=idx // k)
        best, best_u, moved, first = _descend(loss_of, unit[:, cols], steps, lr, bar)
        with torch.no_grad():
            full = unit.clone()
            full[:, cols] = best_u
            vals = space.denormalize(full)[:, cols].to(flat)
            moved = moved.cpu()
            flat[idx[moved][:, None], torch.tensor(cols)] = vals[moved]  # unmoved starts keep their exact values
        before[idx], after[idx] = first.float().cpu(), best.float().cpu()
    bar.close()
    return RefinedLooks(flat.view(n, k, d), after.view(n, k), before.view(n, k))


def _look_loss(u: torch.Tensor, look: LookTerm, space: AttributeSpace, develop: Develop, frames: torch.Tensor, unit: torch.Tensor,
               cols: list[int], owner: torch.Tensor) -> torch.Tensor:
    """The look term (B,) of the frames developed with the unit-cube look columns ``cols`` set to ``u`` (B, len(cols))."""
    full = unit.clone()
    full[:, cols] = u
    return look.loss(develop(space.denormalize(full)[:, list(space.look)], frames), owner)


def _descend(loss_of: Callable[[torch.Tensor], torch.Tensor], u0: torch.Tensor, steps: int, lr: float,
             bar: tqdm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam from ``u0`` (B, L) in the unit cube, clamped after every step; the loss is measured before every step and
    after the last. Returns the lowest loss per row (B,), its point (B, L), whether that is not ``u0`` (B,) bool,
    and the loss at ``u0`` (B,)."""
    u = u0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    for step in range(steps + 1):
        with torch.set_grad_enabled(step < steps):
            loss = loss_of(u)
        with torch.no_grad():
            if step == 0:
                first = best = loss.detach()
                best_u, moved = u.detach().clone(), torch.zeros_like(best, dtype=torch.bool)
            else:
                better = loss < best
                best, best_u, moved = torch.where(better, loss, best), torch.where(better[:, None], u, best_u), moved | better
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            u.clamp_(0.0, 1.0)  # look attributes are bounded, never periodic
        bar.update(1)
    return best, best_u, moved, first


__all__ = ["LookParts", "RefinedLooks", "engine_look_parts", "look_refine"]
