"""Evaluation: task accuracy on T, fitted-attribute error, sample grids, summaries."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.attributes import AttributeSpace, wrap_angle  # noqa: E402
from scenefit.features import TrainRecipe, predict, train_classifier  # noqa: E402
from scenefit.metrics import accuracy  # noqa: E402


def attribute_errors(space: AttributeSpace, fitted: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """Errors of fitted attributes (N, D) against the targets' true ones (N, D).

    Returns ``rotation_median_deg`` (circular, degrees), ``rotation_within_15deg``
    (fraction), ``position_median_px`` (Euclidean over tx, ty) and
    ``<categorical>_accuracy`` (fraction), for the attributes the space has.
    """
    out: dict[str, float] = {}
    if "rotation" in space.names:
        i = space.index("rotation")
        d = wrap_angle(fitted[:, i] - true[:, i]).abs()
        out["rotation_median_deg"] = d.median().item()
        out["rotation_mean_deg"] = d.mean().item()
        out["rotation_within_15deg"] = (d <= 15).float().mean().item()
    if "tx" in space.names and "ty" in space.names:
        cols = [space.index("tx"), space.index("ty")]
        d = (fitted[:, cols] - true[:, cols]).norm(dim=1)
        out["position_median_px"] = d.median().item()
        out["position_within_3px"] = (d <= 3).float().mean().item()
    for i in space.categorical:
        out[f"{space.attributes[i].name}_accuracy"] = (fitted[:, i].round() == true[:, i].round()).float().mean().item()
    return out


def train_and_score(
    images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
    recipe: TrainRecipe, seed: int, device: str = "cpu", progress: bool = True, desc: str = "task net",
) -> float:
    """Train the task network on (images, labels) with ``recipe``; return accuracy on the test set in [0, 1]."""
    net = train_classifier(images, labels, recipe, seed, device, progress, desc)
    return accuracy(predict(net, test_images), test_labels)


def sample_grid(rows: dict[str, torch.Tensor], path: str | Path, columns: int = 10) -> Path:
    """Save a PNG grid: one row per named image batch (N, C, H, W), first ``columns`` images."""
    path = Path(path)
    names = list(rows)
    fig, axes = plt.subplots(len(names), columns, figsize=(columns * 0.9, len(names) * 1.0 + 0.2), squeeze=False)
    for r, name in enumerate(names):
        imgs = rows[name]
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < imgs.shape[0]:
                im = imgs[c].detach().cpu().clamp(0, 1).numpy()
                if im.shape[0] == 1:
                    ax.imshow(im[0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(im.transpose(1, 2, 0))
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.3)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 100, **savefig_kwargs) -> Path:
    """Write a matplotlib figure to ``path`` (PNG) atomically and close it; no partial file is left on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=dpi, **savefig_kwargs)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def summary_markdown(results: dict) -> str:
    """Short markdown summary of a run's ``results.json``."""
    acc, err, t = results["accuracy"], results["attribute_error"], results["seconds"]
    lines = [
        f"# scenefit run: {results['setting']}",
        "",
        f"{results['n_targets']} target images, {results['n_test']} test images, seed {results['seed']}, fit method `{results['fit_method']}`.",
        "",
        "| training set | accuracy on T |",
        "| --- | --- |",
        f"| initial scenes | {100 * acc['initial']:.1f}% |",
        f"| ours (fitted) | {100 * acc['ours']:.1f}% |",
        f"| oracle (labeled targets) | {100 * acc['oracle']:.1f}% |",
        "",
        "| fitted-attribute error | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in err.items()]
    lines += ["", f"Surrogate held-out L1: {results['surrogate']['heldout_l1']:.4f} (engine noise floor {results['surrogate']['noise_floor']:.4f}).", ""]
    lines += ["| stage | seconds |", "| --- | --- |"] + [f"| {k} | {v:.1f} |" for k, v in t.items()]
    lines += ["", "![samples](samples.png)", "", "Rows: targets, initial scenes, ours (R at the fitted attributes, same targets).", ""]
    return "\n".join(lines)
