"""Set-level calibration: one shared shift of a few attributes, chosen by a set distance to the targets.

Per-target fitting (Algorithm 1) matches each target's *content*; some attributes
are properties of the whole target set rather than of one image (lighting and
sky colour of a camera rig, a sensor's grading), and a per-target content loss
pins them poorly. :func:`set_level_shift` adds the same unit-cube offset
``delta`` to those columns of every fitted row (clamped to the bounds) and picks
``delta`` by the squared MMD (Gaussian kernel, :func:`scenefit.metrics.mmd2`)
between features of the engine's renders of the shifted rows and the targets'
features: an exhaustive grid, then ``rounds`` finer grids centred on the best
point. Every candidate is rendered with the same per-row seeds (common random
numbers), and the kernel bandwidth is fixed once (median heuristic on the
unshifted renders and the targets), so candidates differ only by ``delta``.
Target labels are never used.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.metrics import median_bandwidth, mmd2

RenderSeeded = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ShiftResult:
    """``delta``: chosen unit-cube shift per calibrated attribute (name -> value in [-1, 1]);
    ``attrs``: the shifted rows (N, D) in natural units; ``mmd2_start``/``mmd2_best``: MMD² at delta = 0 and at
    the chosen delta; ``bandwidth``: the kernel's sigma (feature units); ``evaluated``: (delta tuple, MMD²) per
    candidate in evaluation order; ``seconds``: wall time."""

    delta: dict[str, float]
    attrs: torch.Tensor
    mmd2_start: float
    mmd2_best: float
    bandwidth: float
    evaluated: list[tuple[tuple[float, ...], float]]
    seconds: float


def apply_shift(space: AttributeSpace, attrs: torch.Tensor, delta: dict[str, float]) -> torch.Tensor:
    """Add unit-cube offsets ``delta`` (name -> value) to the named columns of ``attrs`` (N, D, natural units);
    returns new rows clamped to the bounds. Unknown names raise ``KeyError`` listing the known ones;
    categorical columns raise ``ValueError``."""
    unit = space.normalize(attrs).clone()
    for name, d in delta.items():
        j = space.index(name)
        if space.attributes[j].categorical:
            raise ValueError(f"attribute '{name}' is categorical; a set-level shift needs a continuous attribute")
        unit[:, j] += float(d)
    return space.clamp(space.denormalize(unit))


def set_level_shift(
    render: RenderSeeded, features: FeatureFn, space: AttributeSpace, attrs: torch.Tensor, target_features: torch.Tensor,
    names: tuple[str, ...] | list[str], points: int = 9, rounds: int = 1, seed: int = 0, batch: int = 256,
    progress: bool = False,
) -> ShiftResult:
    """Choose one shared unit-cube shift of the columns ``names`` of ``attrs`` (N, D) by MMD² to the targets.

    Args:
        render: ``render(rows (B, D) natural units, seeds=(B,) int64) -> images (B, C, H, W)`` in [0, 1], e.g. an
            engine's ``images``.
        features: images -> (B, F) features (same extractor as ``target_features``).
        target_features: (M, F) features of the target images.
        names: continuous attributes to shift; each gets ``points`` values evenly spaced in [-1, 1] in the first
            grid (``points`` >= 2), and each later round a grid of ``points`` values over +- one previous step
            around the best value.
        seed: the per-row render seeds, shared by every candidate.
        progress: a tqdm bar over the grid points.
    """
    if not names:
        raise ValueError("set_level_shift needs at least one attribute name")
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    t0 = time.time()
    n = attrs.shape[0]
    seeds = torch.randint(0, 2**62, (n,), generator=torch.Generator().manual_seed(seed), dtype=torch.int64)
    f_t = target_features.detach().double().cpu()

    def feats_of(delta: tuple[float, ...]) -> torch.Tensor:
        rows = apply_shift(space, attrs, dict(zip(names, delta)))
        out = []
        with torch.no_grad():
            for lo in range(0, n, batch):
                out.append(features(render(rows[lo : lo + batch], seeds=seeds[lo : lo + batch])).detach().double().cpu())
        return torch.cat(out)

    f0 = feats_of(tuple(0.0 for _ in names))  # apply_shift checks the names before anything is rendered
    sigma = median_bandwidth(f0, f_t)
    start = mmd2(f0, f_t, bandwidth=sigma)
    evaluated: list[tuple[tuple[float, ...], float]] = [(tuple(0.0 for _ in names), start)]
    seen = {evaluated[0][0]}
    centre, step = tuple(0.0 for _ in names), 1.0
    grids = []
    for _ in range(rounds + 1):
        axis = torch.linspace(-step, step, points).tolist()
        grids.append(axis)
        step = 2 * step / (points - 1)  # the next round spans +- one step of this one
    bar = tqdm(total=sum(len(g) ** len(names) for g in grids), desc=f"set-level shift ({', '.join(names)})",
               disable=not progress, leave=False)
    for axis in grids:
        for offs in itertools.product(axis, repeat=len(names)):
            delta = tuple(round(max(-1.0, min(1.0, c + o)), 6) for c, o in zip(centre, offs))
            if delta not in seen:
                seen.add(delta)
                evaluated.append((delta, mmd2(feats_of(delta), f_t, bandwidth=sigma)))
            bar.update(1)
        centre = min(evaluated, key=lambda e: e[1])[0]
    bar.close()
    best, best_mmd = min(evaluated, key=lambda e: e[1])
    chosen = dict(zip(names, best))
    return ShiftResult(chosen, apply_shift(space, attrs, chosen), start, best_mmd, sigma, evaluated, time.time() - t0)
