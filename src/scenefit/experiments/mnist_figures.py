"""Figures 3-9 of the paper's §4.1, drawn from a finished (or partly finished) MNIST experiment folder.

    fig3_engine_vs_surrogate_rot.png    R(ξ) above G(ξ), rotation family (paper Fig. 3)
    fig4_engine_vs_surrogate_trans.png  same, rotation + translation family (Fig. 4)
    fig5_samples_<rot setting>.png      initial / Meta-Sim / ours / target rows (Fig. 5)
    fig6_samples_<trans setting>.png    same for Trans. and Rot.&Trans. settings (Fig. 6)
    fig7_rotation_hist.png              rotation histograms, one row per Rot. setting (Fig. 7)
    fig8_positions.png                  (tx, ty) scatter, one row per translating setting (Fig. 8)
    fig9_sensitivity.png                content loss vs rotation / translation offset (Fig. 9)

Only finished jobs are drawn; nothing is trained here (F and G are read from
``out/models/<family>`` when present, and figures needing them are skipped otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.config import RunConfig  # noqa: E402
from scenefit.evaluate import sample_grid, save_figure  # noqa: E402
from scenefit.features import content_loss  # noqa: E402
from scenefit.pipeline import DigitData, build_data  # noqa: E402

COLUMNS = {"initial": "initial", "metasim": "Meta-Sim", "ours": "ours", "target": "target"}
PREFERRED = {"rot": ("rot-g5", "rot-g3", "rot-g2", "rot-g1"),
             "trans": ("rottrans-g4", "trans-g4", "rottrans-g2", "trans-g2", "rottrans-g1", "trans-g1")}
SENSITIVITY = {"rot": ("rot-g5", "rot-g3", "rot-g2", "rot-g1"),
               "trans": ("trans-g4", "trans-g2", "trans-g1", "rottrans-g4", "rottrans-g2", "rottrans-g1")}
ROTATION_OFFSETS = torch.arange(-180.0, 180.0 + 1e-6, 5.0)
SHIFT_OFFSETS = torch.arange(-12.0, 12.0 + 1e-6, 1.0)


@torch.no_grad()
def content_loss_sensitivity(render, feats, space, attrs: torch.Tensor, images: torch.Tensor, column: str, offsets: torch.Tensor) -> torch.Tensor:
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


def make_figures(out: Path, results: dict, cfg_of: Callable[[str], RunConfig], scale, progress: bool = False, log=print) -> list[Path]:
    """Draw every figure the finished jobs in ``out`` allow; returns the written paths."""
    from scenefit.experiments.mnist import Family, family_name, load_attrs

    figs = out / "figures"
    written: list[Path] = []
    data: dict[str, DigitData] = {}
    cfgs = {s: cfg_of(s) for s in results}

    def get(s: str) -> DigitData:
        if s not in data:
            data[s] = build_data(cfgs[s])
        return data[s]

    def synthetic(s: str, m: str) -> dict | None:
        """Attributes and re-rendered images of a finished job (identical to the scored set)."""
        d = get(s)
        if m == "initial":
            return d.initial
        if m == "oracle":
            return d.targets
        attrs = load_attrs(out, s, m)
        if attrs is None or m not in results[s]:
            return None
        with torch.no_grad():
            img = d.engine.images(attrs, torch.Generator().manual_seed(results[s][m]["render_seed"]))
        return {"attrs": attrs, "image": img}

    def column(s: str, key: str, names: list[str]) -> torch.Tensor | None:
        if key == "target":
            sets = get(s).targets
        elif key in results[s]:
            sets = synthetic(s, key)
        else:
            return None
        space = get(s).engine.space
        return sets["attrs"][:, [space.index(n) for n in names]].squeeze(1) if sets is not None else None

    # Fig. 5 / 6: sample grids, ours aligned with the targets it fitted
    for s in results:
        rows = {}
        for key in ("initial", "metasim", "ours"):
            if key in results[s]:
                rows[COLUMNS[key]] = synthetic(s, key)["image"]
        rows["target"] = get(s).targets["image"]
        fig_no = 6 if cfgs[s].setting.translate else 5
        written.append(sample_grid(rows, figs / f"fig{fig_no}_samples_{s}.png"))

    # Fig. 7 / 8: attribute distributions
    rot_rows = {s: {k: v for k in COLUMNS if (v := column(s, k, ["rotation"])) is not None}
                for s in results if not cfgs[s].setting.translate}
    if rot_rows:
        written.append(plot_rotation_hist(rot_rows, figs / "fig7_rotation_hist.png"))
    pos_rows = {s: {k: v for k in COLUMNS if (v := column(s, k, ["tx", "ty"])) is not None}
                for s in results if cfgs[s].setting.translate}
    if pos_rows:
        shift = next(cfgs[s].setting.max_shift for s in pos_rows)
        written.append(plot_positions(pos_rows, figs / "fig8_positions.png", shift))

    # Fig. 3 / 4 and 9: need F and G of a family
    panels = {}
    for fam_key, fig_no in (("rot", 3), ("trans", 4)):
        present = [s for s in PREFERRED[fam_key] if s in results]
        if not present:
            continue
        fam = Family(out, cfgs[present[0]], progress=False)
        if not (fam.has_surrogate and fam.run.done("task-initial")):
            log(f"[mnist] figures {fig_no}/9 ({fam_key}): no trained F and G in {fam.run.root} yet (run 'ours'); skipped")
            continue
        d = get(present[0])
        G, _ = fam.surrogate(d)
        dev = next(G.parameters()).device
        attrs = d.targets["attrs"][:10]
        with torch.no_grad():
            r_img = d.engine.images(attrs, torch.Generator().manual_seed(0))
            written.append(plot_engine_vs_surrogate(r_img, G(attrs.to(dev)).cpu(), figs / f"fig{fig_no}_engine_vs_surrogate_{family_name(cfgs[present[0]])}.png"))
        s = next(x for x in SENSITIVITY[fam_key] if x in results)
        d, cfg = get(s), cfgs[s]
        net = fam.net(d)
        k = min(scale.sensitivity_targets, cfg.setting.n_targets)
        attrs, images = d.targets["attrs"][:k], d.targets["image"][:k]
        feats = lambda x: net.features(x.to(dev), cfg.fit.layer)  # noqa: E731
        by_G = lambda a: G(a.to(dev))  # noqa: E731
        by_R = lambda a: d.engine.images(a, torch.Generator().manual_seed(1))  # noqa: E731
        space = d.engine.space
        if fam_key == "rot":
            panels[f"rotation offset\n({s}, {k} targets, F layer {cfg.fit.layer})"] = (ROTATION_OFFSETS, {
                "G (surrogate)": content_loss_sensitivity(by_G, feats, space, attrs, images, "rotation", ROTATION_OFFSETS),
                "R (engine)": content_loss_sensitivity(by_R, feats, space, attrs, images, "rotation", ROTATION_OFFSETS),
            }, "deg")
        else:
            curves = {}
            for axis in ("tx", "ty"):
                curves[f"G {axis}"] = content_loss_sensitivity(by_G, feats, space, attrs, images, axis, SHIFT_OFFSETS)
                curves[f"R {axis}"] = content_loss_sensitivity(by_R, feats, space, attrs, images, axis, SHIFT_OFFSETS)
            panels[f"translation offset\n({s}, {k} targets, F layer {cfg.fit.layer}; clamped to ±{cfg.setting.max_shift:g} px)"] = (
                SHIFT_OFFSETS, curves, "px")
    if panels:
        written.append(plot_sensitivity(panels, figs / "fig9_sensitivity.png"))
    return written
