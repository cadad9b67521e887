"""Evaluation helpers: fitted-attribute errors, sample grids, figure writing and the run summary."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.attributes import AttributeSpace, wrap_angle  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FLIP_DEG = 135.0
"""A periodic error (degrees) at least this large counts as a flip: the pose read upside down (within 45° of 180°)."""


def attribute_errors(space: AttributeSpace, fitted: torch.Tensor, true: torch.Tensor, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """Errors of fitted attributes (N, D) against the targets' true ones (N, D), per attribute and overall; the
    attributes named in ``skip`` (no truth, e.g. a camera the targets' look replaced) are left out of both.

    Returns, for every continuous attribute ``a``: ``a_median_abs`` (median |error| in its unit; circular for
    periodic ones); for every categorical one: ``a_accuracy`` (fraction right); ``unit_mae``: the mean |error|
    over continuous attributes in unit-cube coordinates (periodic ones wrap). Engines with a periodic attribute in
    degrees add ``<a>_within_15deg`` and ``<a>_flip_fraction`` (error >= :data:`FLIP_DEG`); engines with image-plane offsets named ``tx`` and ``ty`` add
    ``position_median_px`` (Euclidean).
    """
    out: dict[str, float] = {}
    unit_err = []
    for i, a in enumerate(space):
        if a.name in skip:
            continue
        if a.categorical:
            out[f"{a.name}_accuracy"] = (fitted[:, i].round() == true[:, i].round()).float().mean().item()
            continue
        d = fitted[:, i] - true[:, i]
        d = wrap_angle(d, -a.span / 2, a.span / 2).abs() if a.periodic else d.abs()
        out[f"{a.name}_median_abs"] = d.median().item()
        if a.periodic and a.unit == "deg":
            out[f"{a.name}_within_15deg"] = (d <= 15).float().mean().item()
            out[f"{a.name}_flip_fraction"] = (d >= FLIP_DEG).float().mean().item()
        unit_err.append(d / a.span)
    if "tx" in space.names and "ty" in space.names:
        cols = [space.index("tx"), space.index("ty")]
        d = (fitted[:, cols] - true[:, cols]).norm(dim=1)
        out["position_median_px"] = d.median().item()
        out["position_within_3px"] = (d <= 3).float().mean().item()
    if unit_err:
        out["unit_mae"] = torch.stack(unit_err, 1).mean().item()
    return out


def _show(ax, img: torch.Tensor) -> None:
    im = img.detach().cpu().clamp(0, 1).numpy()
    if im.shape[0] == 1:
        ax.imshow(im[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(im.transpose(1, 2, 0))


def sample_grid(rows: dict[str, torch.Tensor], path: str | Path, columns: int | None = None) -> Path:
    """Save a PNG grid: one row per named image batch (N, C, H, W), the first ``columns`` images (default: 10, or
    fewer for wide images)."""
    path = Path(path)
    names = list(rows)
    h, w = next(iter(rows.values())).shape[-2:]
    aspect = w / h
    columns = columns or max(3, min(10, int(10 / aspect) + 1))
    fig, axes = plt.subplots(len(names), columns, figsize=(columns * 0.9 * aspect, len(names) * 1.0 + 0.2), squeeze=False)
    for r, name in enumerate(names):
        imgs = rows[name]
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < imgs.shape[0]:
                _show(ax, imgs[c])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.3)
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100, **savefig_kwargs: Any) -> Path:
    """Write a matplotlib figure to ``path`` (PNG) atomically and close it; no partial file is left on failure."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=dpi, **savefig_kwargs)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _mean_sd(values: list[float]) -> str:
    """``mean ± sample sd`` of scores in [0, 1], in percent."""
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}%"


def summary_markdown(results: dict) -> str:
    """Short markdown summary of a run's ``results.json``."""
    metric = results.get("metric", "accuracy")
    sc, t = results.get("scores", {}), results["seconds"]
    seeds = results.get("scores_seeds") or {}
    n = len(next(iter(seeds.values()), [0]))
    col = f" | mean ± sd over {n} task seeds" if n > 1 else ""

    def row(label: str, m: str) -> str:
        extra = f" | {_mean_sd(seeds[m])}" if n > 1 and m in seeds else ""
        return f"| {label} | {_pct(sc.get(m))}{extra} |"

    lines = [
        f"# scenefit run: {results['setting']}",
        "",
        f"Engine `{results['engine']}`, {results['n_targets']} target images, {results['n_test']} test images, seed {results['seed']}, "
        f"fit method `{results['fit_method']}`.",
        "",
        f"| training set | {metric} on T{' (task seed 0)' if n > 1 else ''}{col} |",
        "| --- | --- |" + (" --- |" if n > 1 else ""),
        row("initial scenes", "initial"),
        row("ours (fitted)", "ours"),
        row("oracle (labeled targets)", "oracle"),
        "",
    ]
    err = results.get("attribute_error") or {}
    if err:
        lines += ["| fitted-attribute error | value |", "| --- | --- |"] + [f"| {k} | {v:.3f} |" for k, v in err.items()] + [""]
    per = results.get("per_class") or {}
    if per:
        classes = sorted({c for m in per.values() for c in m})
        lines += ["| class | " + " | ".join(per) + " |", "| --- |" + " --- |" * len(per)]
        lines += [f"| {c} | " + " | ".join(_pct(per[m].get(c)) for m in per) + " |" for c in classes] + [""]
    s = results.get("surrogate")
    lines += [f"Surrogate held-out L1: {s['heldout_l1']:.4f} (mean image {s['mean_image_l1']:.4f}, engine noise floor {s['noise_floor']:.4f})."
              if s else f"No surrogate: fit method `{results['fit_method']}` without gradient steps reads E and scores its guesses with the engine.", ""]
    lines += ["| stage | seconds |", "| --- | --- |"] + [f"| {k} | {v:.1f} |" for k, v in t.items()]
    lines += ["", "![samples](samples.png)", "", "Rows: targets, initial scenes, ours (R at the fitted attributes, same targets).", ""]
    return "\n".join(lines)
