"""Outputs of the driving experiment: Table 4 (markdown + CSV) and Figures 10, 11 and the per-class IoU chart.

    table4.md, table4.csv            mIoU (%) of initial / Meta-Sim / ours / oracle beside the paper's; with more
                                     than one task seed (``evaluate.task_seeds``) mean ± sample std over the seeds,
                                     the paired difference to initial and the share of the initial → oracle gap
    figures/fig10_samples.png        targets / initial scenes / Meta-Sim / ours, each with its label overlay (paper
                                     Fig. 10); with look attributes also ours' scenes at the initial camera
    figures/camera_vs_look.png       with the street camera: the targets' look and the fitted cameras measured on
                                     test charts (:mod:`scenefit.experiments.driving_camera`)
    figures/fig11_surrogate.png      engine R vs surrogate G on the same attributes (paper Fig. 11)
    figures/per_class_iou.png        per-class IoU of the four training sets
    figures/attributes.png           per attribute: mean ± std (unit cube) of the initial scenes, Meta-Sim's
                                     rows, ours' rows and (built-in targets) the targets' true attributes
    figures/metasim_curve.png        Meta-Sim's MMD² per iteration and the share of its outputs past a bound
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.attributes import AttributeSpace  # noqa: E402
from scenefit.engines.base import LabelTable  # noqa: E402
from scenefit.evaluate import save_figure  # noqa: E402
from scenefit.experiments.driving_camera import camera_figure  # noqa: E402
from scenefit.io import atomic_write_text  # noqa: E402

PAPER_TABLE4 = {"oracle": ("VKITTI", 46.9), "initial": ("Initial scenes", 33.9), "metasim": ("Learnt scenes by Meta-Sim", 35.3),
                "ours": ("Learnt scenes by Ours", 39.1)}
"""Table 4 of the paper (KITTI): method -> (its row name, mIoU %)."""
ROW_NAMES = {"initial": "Initial scenes", "metasim": "Learnt scenes by Meta-Sim", "ours": "Learnt scenes by Ours",
             "oracle": "Oracle: labeled target images"}
ORDER = ("oracle", "initial", "metasim", "ours")  # the paper's row order


def _order(results: dict) -> list[str]:
    """The rows of ``results`` in table order."""
    return [m for m in ORDER if m in results["miou"]]


def task_seeds(results: dict) -> int:
    """How many task seeds trained on each row's set (1 for results written before task seeds existed)."""
    return results.get("task_seeds", 1)


def _pct(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(100 * v, digits)


def table4_rows(results: dict) -> list[dict]:
    """One row per method: name, measured mIoU (%) of task seed 0, the paper's row and its mIoU (%), training images;
    with several task seeds also the mean and sample std over them (%), the paired difference to initial (mean and
    sample std, percentage points) and the share of the initial → oracle gap (mean over seeds, ratio of means)."""
    rows = []
    for m in _order(results):
        paper_name, paper_miou = PAPER_TABLE4.get(m, ("–", None))
        row = {"method": m, "data": ROW_NAMES[m], "miou_percent": round(100 * results["miou"][m], 2),
               "images": results["images"][m], "paper_data": paper_name, "paper_miou_percent": paper_miou}
        if task_seeds(results) > 1:
            d, g = results["paired_vs_initial"].get(m, {}), results["gap_closed"].get(m, {})
            row.update({"task_seeds": task_seeds(results), "miou_mean_percent": _pct(results["miou_mean"][m]),
                        "miou_std_percent": _pct(results["miou_std"][m]), "delta_vs_initial_percent": _pct(d.get("mean")),
                        "delta_std_percent": _pct(d.get("std")), "gap_closed_mean_percent": _pct(g.get("mean"), 4),
                        "gap_closed_ratio_of_means_percent": _pct(g.get("ratio_of_means"), 4)})
        rows.append(row)
    return rows


def _pm(mean: float | None, std: float | None, sign: bool = False) -> str:
    """``mean ± std`` in % from fractions ("–" for None)."""
    if mean is None:
        return "–"
    return f"{100 * mean:{'+' if sign else ''}.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def _share(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _seed_lines(results: dict) -> list[str]:
    """Table 4 over several task seeds: the table and what its columns mean."""
    n = task_seeds(results)
    head = (f"| data | mIoU (%), mean ± std over {n} task seeds | paired Δ vs initial (pp) | initial → oracle gap closed "
            "| training images | paper: data | paper: mIoU (%) |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in table4_rows(results):
        m = r["method"]
        d, g = results["paired_vs_initial"].get(m), results["gap_closed"].get(m)
        gap = "–" if g is None else f"{_share(g['mean'])} ({_share(g['ratio_of_means'])})"
        paper = "–" if r["paper_miou_percent"] is None else f"{r['paper_miou_percent']:.1f}"
        lines.append(f"| {r['data']} | {_pm(results['miou_mean'][m], results['miou_std'][m])} | "
                     f"{'–' if d is None else _pm(d['mean'], d['std'], sign=True)} | {gap} | {r['images']} | {r['paper_data']} | {paper} |")
    per_seed = "; ".join(f"{m} " + " / ".join(f"{100 * v:.1f}" for v in results["miou_seeds"][m]) for m in _order(results))
    seeds = ", ".join(str(s) for s in results.get("task_net_seeds", range(n)))
    note = (f"Every row's training set trains {n} segmenters, with seeds {seeds} (the same for every row), each scored on the "
            f"same test split. mIoU (%) per seed: {per_seed}. ± is the sample standard deviation over the seeds (n − 1); paired Δ "
            "is row − initial seed by seed (mean ± sample std of the differences); gap closed is the mean over seeds of "
            "(row − initial) / (oracle − initial), with (mean row − mean initial) / (mean oracle − mean initial) in brackets. "
            "The per-class chart and the Meta-Sim curve show seed 0; a row's wall time sums its seeds.")
    return [*lines, "", note]


def table4_markdown(results: dict) -> str:
    """Table 4 as markdown, with the run's settings underneath (mean ± std columns with several task seeds)."""
    if task_seeds(results) > 1:
        lines = _seed_lines(results)
    else:
        lines = ["| data | mIoU (%) | training images | paper: data | paper: mIoU (%) |", "| --- | ---: | ---: | --- | ---: |"]
        for r in table4_rows(results):
            paper = "–" if r["paper_miou_percent"] is None else f"{r['paper_miou_percent']:.1f}"
            exact = 100 * results["miou"][r["method"]]  # from the unrounded value: no double rounding (65.85 -> 65.8)
            lines.append(f"| {r['data']} | {exact:.1f} | {r['images']} | {r['paper_data']} | {paper} |")
    s, src = results["surrogate"], results["targets"]
    where = "built-in target domain" if src["kind"] == "builtin" else f"{src['kind']} folder {src['path']}"
    lines += [
        "",
        f"Scale `{results['scale']}`, seed {results['seed']}; targets: {where}; mIoU over the {len(results['classes'])} classes "
        f"present in the test labels ({', '.join(results['classes'])}). The paper's numbers are on KITTI with a Unity engine.",
        f"Features: ours fits on the {'fit-feature network FN' if results['fit_features'] else 'task network F'} "
        f"(layer `{results['feature_layer']}`)"
        + (f" plus the look term on its {len(results['look_attributes'])} look attributes (look statistics, weight "
           f"{results['config']['fit']['look_weight']:g})" if results.get("look_attributes") else "")
        + (f"; Meta-Sim's MMD compares F's layer `{results['metasim_layer']}`" if results["metasim_layer"] != "probe"
           else "; Meta-Sim's MMD compares the probe network P's features") + " over the same engine's attributes."
        + (f" FN reads the test split at {100 * results['fit_features']['test_score']['score']:.1f}% mIoU at the fitting resolution."
           if (results.get("fit_features") or {}).get("test_score") else ""),
        f"Surrogate G at {s['resolution'][0]}x{s['resolution'][1]}: held-out L1 {s['heldout_l1']:.4f} (mean image {s['mean_image_l1']:.4f}, "
        f"engine noise floor {s['noise_floor']:.4f}) after {s['steps']} steps.",
        "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items()) + ".",
        "",
    ]
    return "\n".join(lines + _camera_lines(results.get("camera")))


def _camera_lines(cam: dict | None) -> list[str]:
    """The targets' look beside the fitted cameras, measured on test charts: mean [10th, 90th percentile]."""
    if not cam:
        return []
    sets = cam["sets"]
    names = list(sets)
    lines = [f"Camera (`figures/camera_vs_look.png`): the targets' look `{cam['look']}` and each set's camera measured on "
             "test charts (scenefit.experiments.driving_camera); mean [10th, 90th percentile].", "",
             "| measure | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for m in cam["measures"]:
        cells = [f"{v:.3f}" if isinstance(v, float) else f"{v['mean']:.3f} [{v['p10']:.3f}, {v['p90']:.3f}]"
                 for v in (sets[n][m] for n in names)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines + [""]


def table4_csv(results: dict) -> str:
    """Table 4 as CSV, one line per :func:`table4_rows` row."""
    buf = io.StringIO()
    rows = table4_rows(results)
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def label_overlay(images: torch.Tensor, labels: torch.Tensor, table: LabelTable, alpha: float = 0.5) -> torch.Tensor:
    """Blend the label table's colours over images: (B, 3, H, W), (B, H, W) -> (B, 3, H, W); pixels of the ignore
    index (or any id without a colour) stay as they are."""
    pal = torch.zeros(256, 3)
    pal[: table.num_classes] = torch.tensor(table.colors, dtype=torch.float32) / 255.0 if table.colors else torch.rand(
        table.num_classes, 3, generator=torch.Generator().manual_seed(0))
    colour = pal[labels.long().clamp(0, 255)].permute(0, 3, 1, 2)
    keep = (labels >= table.num_classes)[:, None] | (labels < 0)[:, None]
    return torch.where(keep, images, (1 - alpha) * images + alpha * colour)


def image_grid(rows: dict[str, torch.Tensor], path: Path, title: str = "") -> Path:
    """One row per named batch (N, 3, H, W) in [0, 1], all with the same N."""
    names = list(rows)
    k = rows[names[0]].shape[0]
    h, w = rows[names[0]].shape[-2:]
    fig, axes = plt.subplots(len(names), k, figsize=(k * 2.2, len(names) * 2.2 * h / w + 0.4), squeeze=False)
    for r, name in enumerate(names):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(rows[name][c].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.03, hspace=0.05)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    return path


def per_class_chart(results: dict, path: Path) -> Path:
    """Grouped bars: IoU per class present in the test labels, one bar per training set."""
    classes = results["classes"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(classes) + 1.5), 3.2))
    order = _order(results)
    width = 0.8 / len(order)
    for j, m in enumerate(order):
        vals = [results["per_class"][m].get(c) or 0.0 for c in classes]
        ax.bar([i + (j - (len(order) - 1) / 2) * width for i in range(len(classes))], [100 * v for v in vals], width,
               label=f"{ROW_NAMES[m]} ({100 * results['miou'][m]:.1f})")
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper right")
    seed0 = ", task seed 0" if task_seeds(results) > 1 else ""
    ax.set_title(f"Per-class IoU on the test split (legend: mIoU %{seed0})", fontsize=9)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    return path


def attribute_chart(space: AttributeSpace, rows: dict[str, torch.Tensor], path: Path) -> Path:
    """Mean ± std of each continuous attribute (unit cube) for each named set of rows (N_k, D) in natural units."""
    cols = list(space.continuous)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.45 * len(cols) + 2), 3.4))
    width = 0.8 / max(len(rows), 1)
    for j, (name, attrs) in enumerate(rows.items()):
        u = space.normalize(attrs)[:, cols]
        x = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(cols))]
        ax.errorbar(x, u.mean(0).tolist(), yerr=u.std(0).tolist() if u.shape[0] > 1 else None, fmt="o", ms=3, capsize=2,
                    label=f"{name} ({u.shape[0]})")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([space.names[c] for c in cols], rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("unit cube")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, loc="upper right", ncol=len(rows))
    ax.set_title("Attribute rows: mean ± std per attribute (legend: number of rows)", fontsize=9)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    return path


def metasim_curve(stage: dict, miou: float, path: Path) -> Path:
    """Meta-Sim's per-iteration MMD² (one batch each) and share of outputs past a bound, from its stage report."""
    rep = stage["report"]
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    ax.plot(rep["curve"], lw=0.8, label="MMD² (one batch)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("MMD² to X_t")
    ax2 = ax.twinx()
    ax2.plot([100 * v for v in rep.get("outside_box", [])], color="tab:red", lw=0.8, label="outputs past a bound (%)")
    ax2.set_ylabel("past a bound (%)")
    ax2.set_ylim(0, 100)
    ax.set_title(f"Meta-Sim (box_weight {rep['config'].get('box_weight', 0.0)}): {100 * miou:.1f}% mIoU", fontsize=9)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="center right")
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    return path


def write_outputs(out: Path, results: dict, data: dict) -> None:
    """Write table4.md/.csv and the figures into ``out`` (all atomically) from ``results`` and the figure ``data``
    gathered by :func:`scenefit.experiments.driving.figure_inputs`."""
    atomic_write_text(out / "table4.md", table4_markdown(results))
    atomic_write_text(out / "table4.csv", table4_csv(results))
    labels = data["labels"]
    rows = {}
    for key, name in (("targets", "targets"), ("initial", "initial scenes"), ("metasim", "Meta-Sim"), ("ours", "ours R(ξ*)")):
        if data.get(key) is None:
            continue
        img, lab = data[key]
        rows[name] = img
        if lab is not None:
            rows[f"{name}: labels"] = label_overlay(img, lab, labels)
    if data.get("ours_neutral_look") is not None:
        rows["ours, initial camera"] = data["ours_neutral_look"]
    image_grid(rows, out / "figures" / "fig10_samples.png",
               "Fig. 10: target i, then the scene fitted to it (ours); initial scenes and Meta-Sim's are samples of their sets")
    if data.get("camera") is not None:
        camera_figure(data["camera"], out / "figures" / "camera_vs_look.png")
    h, w = data["fit_resolution"]
    sur = data["surrogate"]
    image_grid({"engine R(ξ)": sur["R uniform"], "surrogate G(ξ)": sur["G uniform"], "engine R(ξ*)": sur["R fitted"],
                "surrogate G(ξ*)": sur["G fitted"]}, out / "figures" / "fig11_surrogate.png",
               f"Fig. 11: R vs G at {h}x{w} (top: uniform ξ; bottom: fitted ξ*), held-out L1 {results['surrogate']['heldout_l1']:.3f}")
    per_class_chart(results, out / "figures" / "per_class_iou.png")
    attribute_chart(data["space"], data["attribute_rows"], out / "figures" / "attributes.png")
    metasim_curve(results["metasim"], results["miou"]["metasim"], out / "figures" / "metasim_curve.png")
