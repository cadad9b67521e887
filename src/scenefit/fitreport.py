"""The fit-quality report of a ``scenefit fit``: can the engine explain these targets?

Written into the dataset folder before the dataset is used to train anything:

    fit_report.md               the summary below, with the figures linked
    fit_report_loss.png         histogram of the per-target content loss (the fit's own loss, lower is better)
    fit_report_worst.png        the targets the engine explains worst, each above the synthetic image fitted to it
    fit_report_attributes.png   every fitted attribute's histogram beside the initial distribution (the prior)

The markdown gives the loss quantiles, the worst targets by name, and per attribute the fitted and initial mean
and spread and the share of fitted rows at a bound of the attribute's range (categorical ones: the most common category). A
pile-up at a bound, one category taking most rows, a long loss tail or a worst-target sheet whose pairs do not
match say that the engine cannot render what the targets show
(another look, a missing attribute, a range too narrow): a synthetic set from such a fit teaches the wrong scenes.
Everything is computed from the fitted rows and a few images, so memory does not grow with the targets' count
beyond the fitted table itself.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from scenefit.attributes import AttributeSpace  # noqa: E402
from scenefit.evaluate import save_figure  # noqa: E402
from scenefit.imagefolder import fit_to, read_image  # noqa: E402

FILES = ("fit_report.md", "fit_report_loss.png", "fit_report_worst.png", "fit_report_attributes.png")
QUANTILES = (0.1, 0.5, 0.9, 0.99)
AT_BOUND_WARN = 0.05  # share of fitted rows at one bound that the report flags
COLLAPSE_SHARE = 0.5  # share of fitted rows in one category (and twice its initial share) that the report flags


def loss_summary(loss: np.ndarray) -> dict[str, float]:
    """Count, mean, quantiles (``q10`` … ``q99``) and maximum of per-target losses (N,)."""
    out = {"count": float(loss.size), "mean": float(loss.mean()), "max": float(loss.max())}
    out.update({f"q{round(q * 100)}": float(np.quantile(loss, q)) for q in QUANTILES})
    return out


def at_bounds(values: np.ndarray, low: float, high: float, tol: float = 1e-3) -> tuple[float, float]:
    """Shares of ``values`` (N,) within ``tol`` × (high − low) of ``low`` and of ``high``."""
    eps = tol * (high - low)
    return float((values <= low + eps).mean()), float((values >= high - eps).mean())


def category_shares(values: np.ndarray, k: int) -> np.ndarray:
    """Share of ``values`` (N,) category indices in each of ``k`` categories, (k,)."""
    return np.bincount(values.astype(int), minlength=k)[:k] / max(values.size, 1)


def attribute_rows(space: AttributeSpace, fitted: dict[str, np.ndarray], initial: np.ndarray) -> list[dict]:
    """Per attribute: fitted and initial mean and std (in its unit; category index for categorical ones); for bounded
    continuous attributes the shares of fitted rows at each bound; for categorical ones the most common fitted
    category with its fitted and initial share. ``initial``: (M, D) draws of the prior."""
    rows = []
    for j, a in enumerate(space):
        v = fitted[a.name].astype(np.float64)
        row = {"name": a.name, "unit": a.unit, "fit_mean": float(v.mean()), "fit_std": float(v.std()),
               "init_mean": float(initial[:, j].mean()), "init_std": float(initial[:, j].std()), "low": None, "high": None,
               "mode": None}
        if a.categorical:
            f, p = category_shares(v, a.num_categories), category_shares(initial[:, j], a.num_categories)
            m = int(f.argmax())
            row["mode"] = {"category": str(a.categories[m]), "share": float(f[m]), "initial_share": float(p[m])}
        elif not a.periodic:
            row["low"], row["high"] = at_bounds(v, a.low, a.high)
        rows.append(row)
    return rows


def _image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> what imshow takes."""
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def worst_sheet(path: Path, pairs: list[tuple[str, float, torch.Tensor, torch.Tensor]], columns: int = 6) -> None:
    """A contact sheet of (name, loss, target (C, H, W), fit (C, H, W)): each target above its fitted render."""
    if not pairs:
        return
    _, h, w = pairs[0][2].shape
    cols = min(columns, len(pairs))
    blocks = -(-len(pairs) // cols)
    fig_w = cols * max(1.6, 1.6 * w / h)
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(fig_w, 2 * blocks * 1.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (name, loss, target, fit) in enumerate(pairs):
        r, c = 2 * (i // cols), i % cols
        axes[r, c].imshow(_image(target), cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_title(f"{name[:18]}\nloss {loss:.3f}", fontsize=7)
        axes[r + 1, c].imshow(_image(fit), cmap="gray", vmin=0, vmax=1)
        axes[r + 1, c].set_title("fit", fontsize=7)
    fig.suptitle("worst-explained targets (top) and their fits (below)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def loss_figure(path: Path, loss: np.ndarray) -> None:
    """Histogram of the per-target content loss (N,), with its median and 90th percentile marked."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(loss, bins=min(60, max(10, loss.size // 20)), color="tab:blue")
    for q, style in ((0.5, "-"), (0.9, "--")):
        ax.axvline(float(np.quantile(loss, q)), color="k", ls=style, lw=1, label=f"q{round(q * 100)}")
    ax.set_xlabel("content loss of the fit (1 − cos)")
    ax.set_ylabel("targets")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def attributes_figure(path: Path, space: AttributeSpace, fitted: dict[str, np.ndarray], initial: np.ndarray) -> None:
    """One panel per attribute: density of the fitted values against that of the initial draws (M, D)."""
    n = len(space)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for j, (a, ax) in enumerate(zip(space, axes.flat)):
        v = fitted[a.name].astype(np.float64)
        if a.categorical:
            k = np.arange(a.num_categories)
            f, p = category_shares(v, a.num_categories), category_shares(initial[:, j], a.num_categories)
            ax.bar(k - 0.2, p, 0.4, color="tab:gray", label="initial")
            ax.bar(k + 0.2, f, 0.4, color="tab:blue", label="fitted")
            ax.set_xticks(k, [str(c)[:6] for c in a.categories], fontsize=6)
        else:
            bins = np.linspace(a.low, a.high, 41)
            ax.hist(initial[:, j], bins=bins, density=True, color="tab:gray", alpha=0.6, label="initial")
            ax.hist(v, bins=bins, density=True, histtype="step", color="tab:blue", lw=1.5, label="fitted")
        ax.set_title(f"{a.name}" + (f" ({a.unit})" if a.unit else ""), fontsize=8)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)


def report_flags(rows: list[dict]) -> list[str]:
    """One sentence per warning sign in :func:`attribute_rows`'s rows: a pile-up at a bound, a categorical collapse."""
    flags = []
    for r in rows:
        md = r["mode"]
        if md is not None and md["share"] > COLLAPSE_SHARE and md["share"] > 2 * md["initial_share"]:
            flags.append(f"**{r['name']}**: {100 * md['share']:.1f}% of the fitted rows are '{md['category']}' (the "
                         f"initial distribution: {100 * md['initial_share']:.1f}%); the fit may have collapsed onto one "
                         "category because the targets look unlike the engine's renders (with the amortized fit, an "
                         "encoder trained with encoder.augment nuisance reads other looks better).")
        for side in ("low", "high"):
            if r[side] is not None and r[side] > AT_BOUND_WARN:
                flags.append(f"**{r['name']}**: {100 * r[side]:.1f}% of the fitted rows sit at the {side} bound; the "
                             "targets may lie outside the engine's range for it.")
    return flags


def _markdown(stats: dict, worst: list[tuple[str, float]], rows: list[dict], n_initial: int) -> str:
    q = " | ".join(f"{stats[f'q{round(x * 100)}']:.4f}" for x in QUANTILES)
    lines = ["# Fit report", "",
             f"{int(stats['count'])} targets fitted. The loss is the fit's content loss (1 − cosine of the task network's "
             "features of target and fit; 0 is a perfect match). Look at the worst targets before training on this set: "
             "if their fits do not show the same scene, the engine cannot explain them.", "",
             "| mean | q10 | q50 | q90 | q99 | max |", "| ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| {stats['mean']:.4f} | {q} | {stats['max']:.4f} |", "", "![loss](fit_report_loss.png)", "",
             f"## The {len(worst)} targets explained worst", "", "![worst](fit_report_worst.png)", "",
             "| target | loss |", "| --- | ---: |"]
    lines += [f"| {name} | {loss:.4f} |" for name, loss in worst]
    lines += ["", f"## Fitted attributes against the initial distribution ({n_initial} draws)", "",
              "![attributes](fit_report_attributes.png)", "",
              "| attribute | fitted mean ± std | initial mean ± std | at low bound | at high bound |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        unit = f" {r['unit']}" if r["unit"] else ""
        lo = "–" if r["low"] is None else f"{100 * r['low']:.1f}%"
        hi = "–" if r["high"] is None else f"{100 * r['high']:.1f}%"
        if r["mode"] is not None:
            md = r["mode"]
            lines.append(f"| {r['name']} | most common {md['category']}: {100 * md['share']:.1f}% | "
                         f"{md['category']}: {100 * md['initial_share']:.1f}% | {lo} | {hi} |")
        else:
            lines.append(f"| {r['name']} | {r['fit_mean']:.3g} ± {r['fit_std']:.3g}{unit} | "
                         f"{r['init_mean']:.3g} ± {r['init_std']:.3g}{unit} | {lo} | {hi} |")
    flags = [f"- {f}" for f in report_flags(rows)]
    lines += ["", "## Flags", ""] + (flags or ["- none: no attribute piles up at a bound of its range, no category takes "
                                               "most rows."])
    return "\n".join(lines) + "\n"


def write_fit_report(folder: str | Path, fit: dict[str, list], meta: dict[str, list], targets: str | Path,
                     space: AttributeSpace, initial: torch.Tensor, channels: int, height: int, width: int,
                     worst: int = 12) -> dict:
    """Write the report (module doc) into dataset folder ``folder`` and return its numbers.

    Args:
        fit: the fitted rows (``target``, ``fit_loss`` and one column per attribute of ``space``), N rows.
        meta: the dataset's metadata columns (``file_name`` under ``folder/train``, ``target``).
        targets: the folder the targets were read from (only the ``worst`` ones are read again).
        initial: (M, D) draws of the initial distribution, in attribute units.
        channels, height, width: the dataset images' shape; targets are shown as the fit read them.
    Returns:
        ``{"loss": loss_summary, "worst": [(name, loss)], "attributes": attribute_rows, "flags": report_flags}``.
    """
    folder, targets = Path(folder), Path(targets)
    loss = np.asarray(fit["fit_loss"], dtype=np.float64)
    stats = loss_summary(loss)
    order = np.argsort(-loss, kind="stable")[:worst]
    first: dict[str, str] = {}
    for name, file in zip(meta["target"], meta["file_name"]):
        first.setdefault(name, file)
    pairs = []
    for i in order:
        name = fit["target"][i]
        target, _ = fit_to(read_image(targets / name, channels), height, width)
        synth, _ = fit_to(read_image(folder / "train" / first[name], channels), height, width)
        pairs.append((name, float(loss[i]), target, synth))
    fitted = {a.name: np.asarray(fit[a.name], dtype=np.float64) for a in space}
    init = initial.double().numpy()
    rows = attribute_rows(space, fitted, init)
    loss_figure(folder / FILES[1], loss)
    worst_sheet(folder / FILES[2], pairs)
    attributes_figure(folder / FILES[3], space, fitted, init)
    (folder / FILES[0]).write_text(_markdown(stats, [(p[0], p[1]) for p in pairs], rows, len(init)))
    return {"loss": stats, "worst": [(p[0], p[1]) for p in pairs], "attributes": rows, "flags": report_flags(rows)}


__all__ = ["FILES", "at_bounds", "attribute_rows", "loss_summary", "report_flags", "write_fit_report"]
