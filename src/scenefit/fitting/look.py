"""The look rule: look attributes are matched by a look-sensitive term, every other attribute by the features.

An engine marks the attributes it renders as look (camera and sensor settings) with
:attr:`scenefit.attributes.Attribute.look`. The fit's features are chosen to be look-invariant (FN is trained on
photometrically augmented renders, E on nuisance-augmented ones), so they cannot tell a look attribute's values
apart. Where the space has look attributes, the fit's loss of a render ``x_s`` against a target ``x_t`` is

    L = [1 - cos(F(x_s), F(x_t))]  +  look_weight * mean((S(x_s) - S(x_t))^2)

with ``S`` the look statistics of :func:`look_statistics` (per channel: the mean of a 4 x 4 grid of cells, the
standard deviation, the mean gradient magnitude). In gradient steps each term moves only its own attributes:
the content term's gradient reaches the content attributes, the look term's the look attributes (two renders per
step, one with each group detached). Choices among candidates (codebooks, verification by R) use the sum. Without
look attributes the loss is the content term alone, as before. The codebook strategies search the content with the
look at the centre, then the look per kept code by the look term alone (:func:`look_search`; through an engine's
look stage, each start rendered once and its looks developed from its frames, :func:`look_search_parts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Develop

GRID = 4
"""Cells per side of the look statistics' mean grid."""
LookParts = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Develop]]
"""``parts(rows (B, D), start_index (B,)) -> (frames, develop)``: an engine's ``render_look_parts`` with each start's
render seed."""


def look_statistics(images: torch.Tensor) -> torch.Tensor:
    """Look statistics of images (B, C, H, W) in [0, 1], H and W >= 2: per channel the means of a 4 x 4 grid of
    cells (area pooling), the standard deviation and the mean absolute finite difference (sharpness and noise);
    returns (B, C * (16 + 2)), differentiable."""
    if images.dim() != 4 or min(images.shape[-2:]) < 2:
        raise ValueError(f"look statistics need images (B, C, H, W) with H, W >= 2, got shape {tuple(images.shape)}")
    b = images.shape[0]
    cells = F.adaptive_avg_pool2d(images, GRID).flatten(2)  # (B, C, 16)
    std = images.flatten(2).std(2, unbiased=False)[..., None]  # (B, C, 1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean((2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean((2, 3))
    sharp = (0.5 * (dx + dy))[..., None]  # (B, C, 1)
    return torch.cat([cells, std, sharp], 2).reshape(b, -1)


@dataclass
class LookTerm:
    """The look rule's second term for N targets.

    cols: the look attributes' columns (non-empty). weight: ``fit.look_weight``. target_stats: (N, K)
    :func:`look_statistics` of the targets at the fitting resolution.
    """

    cols: tuple[int, ...]
    weight: float
    target_stats: torch.Tensor

    def loss(self, renders: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """``weight * mean((S(render) - S(target))^2)`` (B,) of renders (B, C, H, W) against the targets ``owner`` (B,)."""
        s = look_statistics(renders)
        return self.weight * (s - self.target_stats[owner].to(s)).pow(2).mean(1)

    def loss_matrix(self, stats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The look term (T, K) of every target in ``targets`` (T,) indices against every render whose
        :func:`look_statistics` are ``stats`` (K, S)."""
        t = self.target_stats[targets].to(stats)
        return self.weight * torch.cdist(t, stats).pow(2) / stats.shape[1]


def split_look(attrs: torch.Tensor, look: LookTerm | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two copies of attrs (B, D) for the routed gradient: the content copy with the look columns detached, the look
    copy with every other column detached. Without a look term both are ``attrs``."""
    if look is None:
        return attrs, attrs
    mask = torch.zeros(attrs.shape[1], dtype=torch.bool, device=attrs.device)
    mask[list(look.cols)] = True
    content = torch.where(mask, attrs.detach(), attrs)
    return content, torch.where(mask, attrs, attrs.detach())


def make_look_term(space: AttributeSpace, images: torch.Tensor, weight: float, batch: int = 1024) -> LookTerm | None:
    """The look term of targets ``images`` (N, C, H, W) at the fitting resolution, or None when ``space`` has no look
    attribute."""
    if not space.look:
        return None
    stats = torch.cat([look_statistics(images[i : i + batch].float()) for i in range(0, images.shape[0], batch)])
    return LookTerm(tuple(space.look), float(weight), stats)


def look_codes(space: AttributeSpace, cols: list[int], count: int, centre: torch.Tensor, seed: int) -> torch.Tensor:
    """``count`` values (count, len(cols)) of the look columns ``cols`` in natural units: the centre's values first,
    then a scrambled Sobol set over their box."""
    if count <= 1:
        return centre[None, cols].clone()
    unit = torch.quasirandom.SobolEngine(len(cols), scramble=True, seed=seed).draw(count - 1)
    full = space.normalize(centre[None]).repeat(unit.shape[0], 1)
    full[:, cols] = unit
    return torch.cat([centre[None, cols], space.denormalize(full)[:, cols]])


@torch.no_grad()
def look_search(render: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], look: LookTerm, starts: torch.Tensor,
                cols: list[int], codes: torch.Tensor, batch: int = 256, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per start, the best of the look ``codes`` (J, L) for the look columns ``cols``, by the look term alone.

    starts (N, K, D): target ``i``'s K starts. ``render(rows (B, D), start_index (B,))`` gives images (B, C, h, w);
    a start's J variants should share their render seed (``start_index`` = i * K + k), so that only the look differs.
    Returns the starts with the best code's look columns (N, K, D) and its look term (N, K).
    """
    n, k, d = starts.shape
    j = codes.shape[0]
    flat = starts.reshape(-1, d)
    total = n * k * j
    losses = torch.empty(total)
    for lo in tqdm(range(0, total, batch), desc="look search", disable=not progress, leave=False):
        idx = torch.arange(lo, min(lo + batch, total))
        start, code = idx // j, idx % j
        rows = flat[start].clone()
        rows[:, cols] = codes[code].to(rows)
        losses[idx] = look.loss(render(rows, start), start // k).float().cpu()
    return _best_codes(starts, cols, codes, losses.view(n * k, j))


@torch.no_grad()
def look_search_parts(parts: LookParts, look: LookTerm, starts: torch.Tensor, cols: list[int], codes: torch.Tensor,
                      space: AttributeSpace, device: str | torch.device = "cpu", batch: int = 256,
                      progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`look_search` through an engine's look stage: each start is rendered once and its J looks are developed
    from its frames, instead of J full renders.

    ``parts(rows (B, D), start_index (B,))`` gives the frames and ``develop`` of those rows, with start
    ``start_index`` = i * K + k's render seed (``render_look_parts``, :mod:`scenefit.engines.base`); ``develop`` is
    given the look columns of ``space.look``, in that order, and runs where ``parts`` put the frames. The look term is
    taken on ``device``. ``batch`` starts are rendered at once (bounds memory: their frames, and one look each per
    ``develop``). Where ``develop`` equals the engine's render (the street camera: the same 8-bit values), this is
    :func:`look_search` with that render, result for result. Returns the starts with the best code's look columns
    (N, K, D) and its look term (N, K).
    """
    n, k, d = starts.shape
    j = codes.shape[0]
    flat = starts.reshape(-1, d)
    losses = torch.empty(n * k, j)
    bar = tqdm(total=n * k * j, desc="look search", disable=not progress, leave=False)
    for lo in range(0, n * k, batch):
        start = torch.arange(lo, min(lo + batch, n * k))
        frames, develop = parts(flat[start], start)  # (B, C, H, W): the starts rendered once
        rows = flat[start].clone()
        for code in range(j):  # each develop call gets the rows parts rendered, one look for all of them
            rows[:, cols] = codes[code].to(rows)
            images = develop(rows[:, list(space.look)].to(frames.device), frames)
            losses[start, code] = look.loss(images.to(device), start // k).float().cpu()
            bar.update(len(start))
    bar.close()
    return _best_codes(starts, cols, codes, losses)


def _best_codes(starts: torch.Tensor, cols: list[int], codes: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The starts (N, K, D) with the look columns ``cols`` set to each start's lowest-loss code, and that loss (N, K),
    from the look term ``losses`` (N * K, J) of every start and code (J, L)."""
    n, k, d = starts.shape
    best, pick = losses.min(1)
    out = starts.reshape(-1, d).clone()
    out[:, cols] = codes[pick].to(out)
    return out.reshape(n, k, d), best.reshape(n, k)


__all__ = ["GRID", "LookParts", "LookTerm", "look_codes", "look_search", "look_search_parts", "look_statistics",
           "make_look_term", "split_look"]
