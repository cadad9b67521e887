"""Do the set-distance features see what the attributes change? Feature distance against an attribute offset.

The dataset-level baselines compare sets of images in a feature space; a feature that does not move when a digit
moves cannot lead them to a target's position. For K rows (the initial scenes: centred, upright) this measures,
per offset δ of one attribute, the mean feature distance between each row's render at ``a + δ e_column`` and at
``a``, divided by the mean distance between the renders of two *different* rows at ``a`` (so 1 means: the shift
moves an image as far in feature space as swapping it for another digit). Both renders of a row share its render
seed, so only the attribute differs.

    fig_set_features_<setting>.png   one panel per attribute (rotation, tx, ty), one line per feature network
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from scenefit.attributes import AttributeSpace
from scenefit.evaluate import save_figure

Render = Callable[[torch.Tensor], torch.Tensor]
"""``attrs (N, D) -> images (N, C, H, W)``, one fixed render seed per row."""

OFFSETS = {"rotation": torch.arange(-180.0, 180.0 + 1e-6, 10.0), "tx": torch.arange(-20.0, 20.0 + 1e-6, 2.0),
           "ty": torch.arange(-20.0, 20.0 + 1e-6, 2.0)}
"""Offsets per attribute drawn in the figure (degrees, pixels)."""


@torch.no_grad()
def feature_shift_distance(render: Render, feats: Callable[[torch.Tensor], torch.Tensor], space: AttributeSpace,
                           attrs: torch.Tensor, column: str, offsets: torch.Tensor) -> torch.Tensor:
    """Relative feature distance per offset (see the module doc).

    Args:
        render: attrs -> images with a fixed seed per row; feats: images -> (N, F).
        attrs: (N, D) rows, N >= 2; column: the attribute moved; offsets: (K,) in its unit (bounded ones clamp).
    Returns:
        (K,) mean ||f(a + δ) - f(a)|| / mean ||f(a_i) - f(a_j)||, j a fixed derangement of i.
    """
    if attrs.shape[0] < 2:
        raise ValueError(f"feature_shift_distance needs at least 2 rows, got {attrs.shape[0]}")
    c = space.index(column)
    f0 = feats(render(attrs)).double()
    other = torch.roll(torch.arange(attrs.shape[0]), 1)
    scale = (f0 - f0[other]).norm(dim=1).mean().clamp_min(1e-12)
    out = []
    for d in offsets:
        moved = attrs.clone()
        moved[:, c] += d
        out.append((feats(render(space.clamp(moved))).double() - f0).norm(dim=1).mean() / scale)
    return torch.stack(out).float()


def shift_curves(render: Render, feats: dict[str, Callable[[torch.Tensor], torch.Tensor]], space: AttributeSpace,
                 attrs: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """{attribute: {feature name: (K,) curve}} for every attribute of :data:`OFFSETS` the space has."""
    return {col: {name: feature_shift_distance(render, f, space, attrs, col, OFFSETS[col]) for name, f in feats.items()}
            for col in OFFSETS if col in space.names}


def plot_shift_curves(curves: dict[str, dict[str, torch.Tensor]], title: str, path: Path) -> Path:
    """One panel per attribute: relative feature distance against the offset, one line per feature network."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.3), squeeze=False)
    for ax, (col, lines) in zip(axes[0], curves.items()):
        for name, y in lines.items():
            ax.plot(OFFSETS[col].numpy(), y.numpy(), marker=".", label=name)
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"{col} offset ({'deg' if col == 'rotation' else 'px'})")
        ax.set_ylabel("feature distance (1 = another digit)", fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, path)


__all__ = ["OFFSETS", "feature_shift_distance", "plot_shift_curves", "shift_curves"]
