"""Figures 3-9 of the paper's MNIST experiments, drawn from data the runner gathers (nothing is trained here).

    fig3_engine_vs_surrogate_rot.png    R(ξ) above G(ξ), rotation family (paper Fig. 3)
    fig4_engine_vs_surrogate_trans.png  same, rotation + translation family (Fig. 4)
    fig5_samples_<rot setting>.png      initial / Meta-Sim / ours / target rows (Fig. 5)
    fig6_samples_<trans setting>.png    same for Trans. and Rot.&Trans. settings (Fig. 6)
    fig7_rotation_hist.png              rotation histograms, one row per Rot. setting (Fig. 7)
    fig8_positions.png                  (tx, ty) scatter, one row per translating setting (Fig. 8)
    fig9_sensitivity.png                content loss vs rotation / translation offset (Fig. 9)
    fig_set_features_<setting>.png      set-distance feature distance vs offset, F's layer and the probe P
    fig_baseline_curves.png             each baseline's fit curve (MMD², FID, reward), one row per setting
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.attributes import AttributeSpace  # noqa: E402
from scenefit.evaluate import sample_grid, save_figure  # noqa: E402
from scenefit.experiments.set_features import OFFSETS, plot_shift_curves  # noqa: E402
from scenefit.io import write_json  # noqa: E402
from scenefit.tasks import content_loss  # noqa: E402

COLUMNS = {"initial": "initial", "metasim": "Meta-Sim", "ours": "ours", "target": "target"}
ROTATION_OFFSETS = torch.arange(-180.0, 180.0 + 1e-6, 5.0)
SHIFT_OFFSETS = torch.arange(-12.0, 12.0 + 1e-6, 1.0)


@torch.no_grad()
def content_loss_sensitivity(render: Callable[[torch.Tensor], torch.Tensor], feats: Callable[[torch.Tensor], torch.Tensor],
                             space: AttributeSpace, attrs: torch.Tensor, images: torch.Tensor, column: str,
                             offsets: torch.Tensor) -> torch.Tensor:
    """Mean content loss ``1 - cos(F(render(ξ + δ e_column)), F(x_t))`` over targets, per offset δ.

    Args:
        render: attrs (N, D) -> images (N, C, H, W); feats: images -> (N, F).
        attrs: (N, D) the targets' true attributes; images: (N, C, H, W) the targets.
        offsets: (K,) in the attribute's unit; bounded attributes are clamped, periodic ones wrap.
    Returns:
        (K,) mean loss.
    """
    f_t = feats(images)
    c = space.index(column)
    out = []
    for d in offsets:
        a = attrs.clone()
        a[:, c] += d
        out.append(content_loss(feats(render(space.clamp(a))), f_t).mean())
    return torch.stack(out).cpu()


def plot_engine_vs_surrogate(engine_images: torch.Tensor, surrogate_images: torch.Tensor, path: Path) -> Path:
    """Two rows: engine R(ξ) and surrogate G(ξ) of the same attributes (N, 1, S, S)."""
    return sample_grid({"engine R": engine_images, "surrogate G": surrogate_images}, path)


def plot_rotation_hist(rows: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    """Rotation histograms (degrees): one row per setting, one column per set (initial / Meta-Sim / ours / target)."""
    cols = list(COLUMNS)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3 * len(cols), 1.9 * len(rows) + 0.4), squeeze=False, sharex=True)
    for r, (setting, sets) in enumerate(rows.items()):
        for c, key in enumerate(cols):
            ax = axes[r][c]
            if key in sets:
                ax.hist(sets[key].numpy(), bins=36, range=(-180, 180), color="C0" if key != "target" else "C3")
            else:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
            if r == 0:
                ax.set_title(COLUMNS[key])
            if c == 0:
                ax.set_ylabel(setting)
            if r == len(rows) - 1:
                ax.set_xlabel("rotation (deg)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_positions(rows: dict[str, dict[str, torch.Tensor]], path: Path, max_shift: float) -> Path:
    """(tx, ty) scatter (px, y down as on screen): one row per setting, one column per set."""
    cols = list(COLUMNS)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols), 2.6 * len(rows)), squeeze=False)
    for r, (setting, sets) in enumerate(rows.items()):
        for c, key in enumerate(cols):
            ax = axes[r][c]
            if key in sets:
                xy = sets[key][:2000]
                ax.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=2, alpha=0.4, color="C0" if key != "target" else "C3")
            else:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlim(-max_shift, max_shift)
            ax.set_ylim(max_shift, -max_shift)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(COLUMNS[key])
            if c == 0:
                ax.set_ylabel(f"{setting}\nty (px)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_sensitivity(panels: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor], str]], path: Path) -> Path:
    """One panel per attribute: mean content loss vs offset, one line per renderer/axis."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (title, (offsets, curves, unit)) in zip(axes[0], panels.items()):
        for label, y in curves.items():
            ax.plot(offsets.numpy(), y.numpy(), label=label, ls="--" if "R" in label.split()[0] else "-")
        ax.set_xlabel(f"offset ({unit})")
        ax.set_ylabel("mean content loss 1 - cos")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def sensitivity_curves(family: str, by_G: Callable[[torch.Tensor], torch.Tensor], by_R: Callable[[torch.Tensor], torch.Tensor],
                       feats: Callable[[torch.Tensor], torch.Tensor], space: AttributeSpace, attrs: torch.Tensor,
                       images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fig. 9's curves: mean content loss against a rotation offset (``rot`` family) or tx / ty offsets (``trans``),
    through the surrogate (``by_G``) and the engine (``by_R``); each (K,) over the offsets."""
    if family == "rot":
        return {"G (surrogate)": content_loss_sensitivity(by_G, feats, space, attrs, images, "rotation", ROTATION_OFFSETS),
                "R (engine)": content_loss_sensitivity(by_R, feats, space, attrs, images, "rotation", ROTATION_OFFSETS)}
    curves = {}
    for axis in ("tx", "ty"):
        curves[f"G {axis}"] = content_loss_sensitivity(by_G, feats, space, attrs, images, axis, SHIFT_OFFSETS)
        curves[f"R {axis}"] = content_loss_sensitivity(by_R, feats, space, attrs, images, axis, SHIFT_OFFSETS)
    return curves


CURVE_LABELS = {"mmd2": "MMD² (per update)", "fid": "FID (best per coordinate)", "reward": "reward: validation accuracy"}


def plot_baseline_curves(curves: dict[str, dict[str, dict]], path: Path) -> Path:
    """One row per setting, one column per baseline: its fit curve (Meta-Sim's MMD², Attribute Descent's FID, SDR's
    reward) against its iterations; long noisy curves get a running mean over a twentieth of their length beside
    the raw values (clipped to their 1-99% range)."""
    methods = [m for m in ("metasim", "attribute-descent", "sdr") if any(m in reps for reps in curves.values())]
    fig, axes = plt.subplots(len(curves), len(methods), figsize=(4.2 * len(methods), 2.6 * len(curves) + 0.3), squeeze=False)
    for r, (setting, reps) in enumerate(curves.items()):
        for c, m in enumerate(methods):
            ax = axes[r][c]
            rep = reps.get(m)
            if rep is None or not rep.get("curve"):
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            else:
                y = torch.tensor(rep["curve"], dtype=torch.float64)
                x = torch.arange(1, len(y) + 1)
                ax.plot(x.numpy(), y.numpy(), lw=0.6, alpha=0.35 if len(y) > 50 else 1.0, marker="" if len(y) > 50 else ".")
                if len(y) > 50:
                    w = max(10, len(y) // 20)
                    smooth = torch.nn.functional.avg_pool1d(y[None, None], w, 1)[0, 0]
                    ax.plot(x[w // 2 : w // 2 + len(smooth)].numpy(), smooth.numpy(), lw=1.5, color="C3", label=f"running mean {w}")
                    ax.set_ylim(*torch.quantile(y, torch.tensor([0.01, 0.99], dtype=y.dtype)).tolist())
                    ax.legend(fontsize=7)
                if rep.get("curve_metric") == "fid":
                    ax.set_yscale("log")
                ax.set_ylabel(CURVE_LABELS.get(rep.get("curve_metric"), str(rep.get("curve_metric"))), fontsize=8)
            if r == 0:
                ax.set_title(COLUMNS.get(m, m) if m in COLUMNS else {"attribute-descent": "Attr. Des.", "sdr": "SDR"}[m])
            if c == 0:
                ax.text(-0.32, 0.5, setting, rotation=90, va="center", ha="center", transform=ax.transAxes)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write_figures(folder: Path, data: dict) -> list[Path]:
    """Draw every figure ``data`` allows (see :func:`scenefit.experiments.mnist.figure_inputs`); returns the paths."""
    written: list[Path] = []
    settings = data["settings"]

    def translate(s: str) -> bool:
        return "tx" in settings[s]["space"].names

    def column(s: str, key: str, names: list[str]) -> torch.Tensor | None:
        sets = settings[s]["sets"]
        if key not in sets or sets[key]["attrs"] is None:
            return None
        space = settings[s]["space"]
        return sets[key]["attrs"][:, [space.index(n) for n in names]].squeeze(1)

    for s, d in settings.items():  # Fig. 5 / 6: sample grids, ours aligned with the targets it fitted
        rows = {COLUMNS[k]: d["sets"][k]["image"] for k in ("initial", "metasim", "ours", "target") if k in d["sets"]}
        written.append(sample_grid(rows, folder / f"fig{6 if translate(s) else 5}_samples_{s}.png"))
    rot_rows = {s: {k: v for k in COLUMNS if (v := column(s, k, ["rotation"])) is not None} for s in settings if not translate(s)}
    if rot_rows:
        written.append(plot_rotation_hist(rot_rows, folder / "fig7_rotation_hist.png"))
    pos_rows = {s: {k: v for k in COLUMNS if (v := column(s, k, ["tx", "ty"])) is not None} for s in settings if translate(s)}
    if pos_rows:
        written.append(plot_positions(pos_rows, folder / "fig8_positions.png", next(settings[s]["max_shift"] for s in pos_rows)))
    panels = {}
    for fam, fig_no in (("rot", 3), ("trans", 4)):
        p = data["families"].get(fam)
        if p is None:
            continue
        written.append(plot_engine_vs_surrogate(p["engine"], p["surrogate"], folder / f"fig{fig_no}_engine_vs_surrogate_{fam}.png"))
        if fam == "rot":
            panels[f"rotation offset\n({p['sensitivity_setting']}, {p['targets']} targets, F layer {p['layer']})"] = (
                ROTATION_OFFSETS, p["curves"], "deg")
        else:
            panels[f"translation offset\n({p['sensitivity_setting']}, {p['targets']} targets, F layer {p['layer']}; "
                   f"clamped to ±{p['max_shift']:g} px)"] = (SHIFT_OFFSETS, p["curves"], "px")
    if panels:
        written.append(plot_sensitivity(panels, folder / "fig9_sensitivity.png"))
    curves = {s: reps for s, reps in data.get("curves", {}).items() if reps}
    if curves:
        written.append(plot_baseline_curves(curves, folder / "fig_baseline_curves.png"))
    for setting, d in data.get("set_features", {}).items():
        title = (f"{setting}: what the set-distance features see ({d['rows']} initial scenes moved by an offset; "
                 "1 = as far as another digit)")
        written.append(plot_shift_curves(d["curves"], title, folder / f"fig_set_features_{setting}.png"))
        write_json(folder / f"fig_set_features_{setting}.json",
                   {"rows": d["rows"], "offsets": {c: OFFSETS[c].tolist() for c in d["curves"]},
                    "curves": {c: {n: y.tolist() for n, y in lines.items()} for c, lines in d["curves"].items()}})
    return written
