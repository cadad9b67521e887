"""The fitted street camera beside the targets' look, measured on test charts (issue 18).

The targets' look (``setting.look``, e.g. ``street-grade``) and the engine's camera
(:mod:`scenefit.engines.street_camera`) are parametrized differently, so their attributes cannot be compared
one to one. Both are applied instead to the same two test charts at the engine's resolution, and what comes out
is measured in the same units:

    level          mean of the centre of a flat 0.5 grey frame (exposure, gamma, haze)
    red_blue       R / B at its centre (white balance; 1 = neutral)
    green_mag      G / mean(R, B) at its centre (tint; 1 = neutral)
    corner         mean of the corners / mean of the centre (vignetting; 1 = none)
    noise          std of the centre pixels around their mean (sensor noise; 8-bit quantisation adds ~0.001)
    tone_step      (right - left) / 0.5 of a frame half 0.25, half 0.75, on plateaus w/32 to w/16 beside the
                   edge (contrast, gamma, haze)
    edge_10_90     10-90% rise of that edge, averaged over rows, in thousandths of the frame width (blur; a
                   sharp edge reads 0.8 px, interpolated between the two pixels beside it)

Each target gives one value per measure (its look drawn with its own look seeds), each fitted row of ours one
(its camera attributes), the initial scenes' neutral camera one. Where the targets' look has a part the camera
cannot render (a channel-mixing matrix, say), the measures show by how much the fit misses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.data import LOOK_STREAM  # noqa: E402
from scenefit.engines.street_camera import CAMERA_NAMES, apply_camera  # noqa: E402
from scenefit.evaluate import save_figure  # noqa: E402
from scenefit.looks import apply_look  # noqa: E402
from scenefit.methods import baseline_rows  # noqa: E402
from scenefit.seeding import derive_seeds  # noqa: E402

if TYPE_CHECKING:
    from scenefit.pipeline import Pipeline

MEASURES = ("level", "red_blue", "green_mag", "corner", "noise", "tone_step", "edge_10_90")
ChainFn = Callable[[torch.Tensor, slice], torch.Tensor]
"""``(charts (B, 3, H, W), rows) -> developed charts``: a look or a camera applied to rows ``rows`` of a set."""


def charts(n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` copies of the two test charts (n, 3, H, W): flat 0.5 grey, and 0.25 | 0.75 split at the centre column."""
    flat = torch.full((n, 3, height, width), 0.5)
    step = torch.full((n, 3, height, width), 0.25)
    step[..., width // 2:] = 0.75
    return flat, step


def _crossing(f: torch.Tensor, t: float) -> torch.Tensor:
    """Sub-pixel position (B,) where rising profiles f (B, L) first reach ``t`` (linear between samples)."""
    i = (f >= t).float().argmax(1).clamp(min=1)
    a, b = f.gather(1, (i - 1)[:, None])[:, 0], f.gather(1, i[:, None])[:, 0]
    return (i - 1).float() + ((t - a) / (b - a).clamp(min=1e-6)).clamp(0, 1)


def measure(flat: torch.Tensor, step: torch.Tensor) -> dict[str, torch.Tensor]:
    """The measures of the module doc from developed charts (B, 3, H, W); each (B,)."""
    h, w = flat.shape[-2:]
    ch, cw = max(h // 6, 1), max(w // 12, 1)
    centre = flat[..., h // 2 - ch:h // 2 + ch, w // 2 - cw:w // 2 + cw]  # (B, 3, 2ch, 2cw)
    c = centre.mean((2, 3))  # (B, 3)
    k = max(min(h, w) // 10, 1)
    corners = torch.stack([flat[..., :k, :k], flat[..., :k, -k:], flat[..., -k:, :k], flat[..., -k:, -k:]]).mean((0, 2, 3, 4))
    rows = step[..., h // 2 - ch:h // 2 + ch, :].mean((1, 2))  # (B, W) averaged over channels and rows
    inner, outer = max(w // 32, 2), max(w // 16, 4)  # plateaus beside the edge: past any blur, before vignetting bends them
    left, right = rows[:, w // 2 - outer:w // 2 - inner].mean(1), rows[:, w // 2 + inner:w // 2 + outer].mean(1)
    near = rows[:, w // 2 - outer:w // 2 + outer]
    fnear = (near - left[:, None]) / (right - left).clamp(min=1e-6)[:, None]
    rise = _crossing(fnear, 0.9) - _crossing(fnear, 0.1)
    return {
        "level": c.mean(1), "red_blue": c[:, 0] / c[:, 2].clamp(min=1e-6), "green_mag": c[:, 1] / c[:, [0, 2]].mean(1).clamp(min=1e-6),
        "corner": corners / c.mean(1).clamp(min=1e-6), "noise": (centre - centre.mean((2, 3), keepdim=True)).flatten(1).std(1),
        "tone_step": (right - left) / 0.5, "edge_10_90": 1000.0 * rise / w,
    }


def chain_measures(chain: ChainFn, n: int, height: int, width: int, batch: int = 64) -> dict[str, torch.Tensor]:
    """:func:`measure` of ``chain`` applied to the charts for rows ``0 .. n - 1``; each (n,)."""
    parts: list[dict[str, torch.Tensor]] = []
    for lo in range(0, n, batch):
        rows = slice(lo, min(lo + batch, n))
        flat, step = charts(rows.stop - lo, height, width)
        parts.append(measure(chain(flat, rows), chain(step, rows)))
    return {m: torch.cat([p[m] for p in parts]) for m in MEASURES}


def summarize(values: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per measure: mean, 10th and 90th percentile."""
    return {m: {"mean": v.mean().item(), "p10": v.quantile(0.1).item(), "p90": v.quantile(0.9).item()} for m, v in values.items()}


def camera_figure(sets: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    """Histograms per measure of each named set of measures (targets' look, ours' camera, initial camera)."""
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(2.3 * len(MEASURES), 2.4))
    for ax, m in zip(axes, MEASURES):
        vals = torch.cat([s[m] for s in sets.values()])
        lo, hi = vals.min().item(), vals.max().item()
        span = max(hi - lo, 1e-3)
        bins = torch.linspace(lo - 0.05 * span, hi + 0.05 * span, 21).tolist()
        for name, s in sets.items():
            if s[m].numel() == 1 or s[m].std() == 0:
                ax.axvline(s[m][0].item(), color="k", ls="--", lw=1, label=name)
            else:
                ax.hist(s[m].numpy(), bins=bins, alpha=0.5, label=name, density=True)
        ax.set_title(m, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    axes[0].legend(fontsize=6)
    fig.suptitle("Targets' look vs fitted camera, measured on test charts (scenefit.experiments.driving_camera)", fontsize=8, y=1.04)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    return path


def camera_comparison(pipe: Pipeline) -> tuple[dict, dict[str, dict[str, torch.Tensor]]] | None:
    """For a run whose engine has the street camera and whose built-in targets got a look: the summaries
    (``results.json``'s ``camera``) and the per-row measures of the targets' look, ours', Meta-Sim's and the
    initial camera (for :func:`camera_figure`); None otherwise."""
    engine, targets, look = pipe.res.engine, pipe.problem.targets, pipe.res.look
    names = engine.space.names
    if look is None or targets.seeds is None or not set(CAMERA_NAMES) <= set(names):
        return None
    cols = [names.index(n) for n in CAMERA_NAMES]
    h, w = engine.height, engine.width
    look_seeds = derive_seeds(targets.seeds, LOOK_STREAM)

    def camera_of(rows: torch.Tensor) -> ChainFn:
        cam = rows[:, cols].float()
        return lambda x, r: apply_camera(x, cam[r], torch.arange(r.start, r.stop))

    sets = {"targets' look": chain_measures(lambda x, r: apply_look(look[0], x, look_seeds[r], look[1]), len(targets), h, w),
            "ours": chain_measures(camera_of(pipe.fit()[0]), len(targets), h, w),
            "Meta-Sim": chain_measures(camera_of(baseline_rows(pipe, "metasim")[0][: len(targets)]), len(targets), h, w),
            "initial (neutral camera)": chain_measures(camera_of(torch.zeros(1, len(names))), 1, h, w)}
    summary = {name: summarize(v) if name != "initial (neutral camera)" else {m: v[m][0].item() for m in MEASURES}
               for name, v in sets.items()}
    return {"measures": list(MEASURES), "look": look[0], "sets": summary}, sets


__all__ = ["MEASURES", "camera_comparison", "camera_figure", "chain_measures", "charts", "measure", "summarize"]
