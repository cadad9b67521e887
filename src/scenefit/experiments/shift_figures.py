"""Figures of the look-shift experiment, drawn from data the runner gathers (nothing is trained here).

    shift_examples.png   the first targets X_t of every row (clean, then each shift), one row each
    shift_accuracy.png   accuracy on T per row: initial, ours, ceiling and oracle side by side
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from scenefit.evaluate import sample_grid, save_figure  # noqa: E402


def plot_accuracy(accuracy: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: per row (x axis), one bar per method of ``accuracy`` {row: {method: fraction}}, in %."""
    rows = list(accuracy)
    methods = list(next(iter(accuracy.values())))
    width = 0.8 / len(methods)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(rows) + 1.5), 3.4))
    for i, m in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, [100 * accuracy[r][m] for r in rows], width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(rows, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("accuracy on T (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=len(methods), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def write_figures(folder: Path, data: dict) -> list[Path]:
    """Write the module doc's figures into ``folder`` from ``data``: ``examples`` {row: images (N, C, H, W) in [0, 1]}
    and ``accuracy`` {row: {method: fraction}}; returns the paths written."""
    folder = Path(folder)
    written = []
    examples: dict[str, torch.Tensor] = data.get("examples") or {}
    if examples:
        written.append(sample_grid(examples, folder / "shift_examples.png", columns=min(8, min(len(v) for v in examples.values()))))
    if data.get("accuracy"):
        written.append(plot_accuracy(data["accuracy"], folder / "shift_accuracy.png"))
    return written


__all__ = ["plot_accuracy", "write_figures"]
