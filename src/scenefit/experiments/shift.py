"""The look-shift experiment: does fitting survive a gap between the engine's look and the targets' look?

One digit setting (``--setting rot-g2``) at a scale (``presets/scales/mnist-<scale>.yaml``, ``--set`` on
top), run once per row: ``clean`` and every chosen shift x level of :mod:`scenefit.shifts`, with
``setting.shift`` set. The shift changes X_t and T (a user's test images come from their targets' camera);
the engine's own renders — F's initial scenes, G, E, ours, the ceiling — are never shifted. Each row is a
pipeline run folder (``out/clean``, ``out/blur-strong``, ...) and all share the model store ``out/models``:
F, G and E are keyed by the engine, the initial scenes and their config sections, not by ``setting.shift``,
so they are trained once. Per row, the task network is scored on the row's T for

    initial   F itself (trained on the initial scenes)
    ours      trained on R at the attributes fitted to the row's X_t
    ceiling   trained on R at X_t's true attributes: a perfect fit, in the engine's own look
    oracle    trained on the row's labeled X_t

with ours' fitted-attribute errors against the true attributes, and the share of the gap ours closes,
(ours - initial) / (ceiling - initial), where the ceiling is at least 3 points above initial.
Writes ``shift.md`` (the rows of this call), ``results.json`` and ``figures/`` (:mod:`.shift_figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from scenefit.config import ConfigError
from scenefit.configio import merge
from scenefit.experiments import shift_figures
from scenefit.experiments.mnist import select, setting_config
from scenefit.io import atomic_write_text, read_json, write_json
from scenefit.methods import score_method
from scenefit.pipeline import Pipeline
from scenefit.resolve import resolve
from scenefit.runs import ModelStore, claim, clean_partials, locked
from scenefit.scenarios import PAPER_SETTINGS
from scenefit.shifts import LEVELS, PARAMS, SHIFTS

ROW_METHODS = ("initial", "ours", "ceiling", "oracle")
"""The table's accuracy columns, in order."""
MIN_GAP = 0.03
"""The ceiling must beat initial by this much (accuracy) for 'gap closed' to be reported."""


def shift_rows(shifts: list[str] | None = None, levels: list[str] | None = None) -> list[str]:
    """The experiment's rows: ``clean``, then ``NAME:LEVEL`` for the chosen shifts x levels (all when None), in the
    order of :data:`SHIFTS` and :data:`LEVELS`."""
    names = select(shifts, SHIFTS, "shift")
    return ["clean"] + [f"{n}:{lv}" for n in names for lv in select(levels, LEVELS, "level")]


def row_folder(row: str) -> str:
    """The run folder name of a row: ``clean`` or ``NAME-LEVEL``."""
    return row.replace(":", "-")


def gap_closed(initial: float, ours: float, ceiling: float, min_gap: float = MIN_GAP) -> float | None:
    """(ours - initial) / (ceiling - initial) for accuracies in [0, 1]; None when the ceiling is under ``min_gap`` above
    initial (the ratio would be noise)."""
    gap = ceiling - initial
    return None if gap < min_gap else (ours - initial) / gap


def _check_record(out: Path, record: dict) -> None:
    path = out / "experiment.json"
    if not path.is_file():
        write_json(path, record)
        return
    old = read_json(path)
    if old != record:
        raise ConfigError(f"{path} holds a shift experiment of setting '{old.get('setting')}', scale '{old.get('scale')}', seed "
                          f"{old.get('seed')} and --set {old.get('overrides')} (this call: '{record['setting']}', '{record['scale']}', "
                          f"{record['seed']}, {record['overrides']}); use another --out")


def _row_result(pipe: Pipeline, row: str) -> dict:
    acc = {m: score_method(pipe, m)["score"] for m in ROW_METHODS}
    fit = pipe.run.info("fit")
    return {"row": row, "shift": pipe.cfg.setting.shift, "accuracy": acc,
            "gap_closed": gap_closed(acc["initial"], acc["ours"], acc["ceiling"]),
            "attribute_error": fit.get("attribute_error", {}), "fit_method": fit["method"],
            "n_targets": len(pipe.problem.targets), "n_test": len(pipe.problem.test)}


def run_shift_experiment(
    out: str | Path, setting: str = "rot-g2", shifts: list[str] | None = None, levels: list[str] | None = None,
    scale: str = "quick", seed: int = 0, device: str = "cpu", progress: bool = True, log: Callable[[str], None] = print,
    overrides: dict | None = None,
) -> dict:
    """Run ``clean`` and the chosen shifts x levels of ``setting`` into ``out`` (resuming finished stages), then write
    ``shift.md``, ``results.json`` and the figures.

    Returns ``results.json``'s content: ``{"setting", "scale", "seed", "rows": [row, ...], ...}``, each row with its
    ``accuracy`` per method (fractions), ``gap_closed`` (None: n/a) and ours' ``attribute_error``.
    """
    out = Path(out)
    select([setting], tuple(PAPER_SETTINGS), "setting")
    if "shift" in ((overrides or {}).get("setting") or {}):
        raise ConfigError("--set setting.shift: the shift experiment sets setting.shift per row; choose rows with --shifts and --levels")
    rows = shift_rows(shifts, levels)
    base = setting_config(setting, scale, seed, device, overrides)
    resolved = {}
    try:
        for r in rows:  # every row's config is checked before anything is written
            resolved[r] = resolve(merge(base, {"setting": {"shift": "" if r == "clean" else r}}))
        claim(out, "experiment")
        with locked(out):
            clean_partials(out)
            _check_record(out, {"experiment": "shift", "setting": setting, "scale": scale, "seed": seed, "overrides": overrides or {}})
            store = ModelStore(out / "models")
            results, examples = [], {}
            bar = tqdm(rows, desc=f"shift ({setting}, {scale})", disable=not progress)
            for row in bar:
                bar.set_postfix_str(row)
                folder = claim(out / row_folder(row), "run")
                pipe = Pipeline(resolved[row], folder, store=store, progress=progress, log=lambda msg: None)
                pipe.start()
                results.append(_row_result(pipe, row))
                examples[row] = pipe.problem.targets.image[:8]
                a = results[-1]["accuracy"]
                msg = f"[shift] {row:16s} " + "  ".join(f"{m} {100 * a[m]:5.1f}%" for m in ROW_METHODS)
                bar.write(msg) if progress else log(msg)
            space = resolved["clean"].engine.space
            summary = {"experiment": "shift", "setting": setting, "scale": scale, "seed": seed, "overrides": overrides or {},
                       "config": base.to_dict(), "shifts": {n: PARAMS[n] for n in SHIFTS}, "rows": results}
            write_json(out / "results.json", summary)
            atomic_write_text(out / "shift.md", shift_markdown(summary, "tx" in space.names))
            written = shift_figures.write_figures(out / "figures", {"examples": examples,
                                                                    "accuracy": {r["row"]: r["accuracy"] for r in results}})
            log(f"[shift] wrote {out / 'shift.md'}, {out / 'results.json'} and {len(written)} figures in {out / 'figures'}")
    finally:
        for r in resolved.values():
            r.close()
    return summary


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def shift_markdown(summary: dict, translates: bool) -> str:
    """The experiment's table (rows ``clean`` and ``NAME:LEVEL``) with its notes, as markdown."""
    cfg = summary["config"]
    header = ["shift", *[f"{m} (%)" for m in ROW_METHODS], "gap closed", "rotation error (deg)"]
    header += ["position error (px)"] * translates + ["class right"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for r in summary["rows"]:
        a, e, g = r["accuracy"], r["attribute_error"], r["gap_closed"]
        cells = [r["row"], *[_pct(a[m]) for m in ROW_METHODS], "n/a (ceiling within 3 pts)" if g is None else f"{g:.2f}",
                 f"{e.get('rotation_median_abs', float('nan')):.1f}"]
        cells += [f"{e.get('position_median_px', float('nan')):.1f}"] * translates + [f"{e.get('digit_accuracy', float('nan')):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    task, s = cfg["task"], cfg["setting"]
    notes = [
        f"Setting `{summary['setting']}`, scale `{summary['scale']}`, seed {summary['seed']}: {s['n_targets']} targets X_t, "
        f"{s['n_test']} test images T; fit `{cfg['fit']['method']}`.",
        "Each row shifts X_t and T (`setting.shift`, parameters in `scenefit.shifts`); the engine's renders are never shifted.",
        f"Accuracy on the row's T of the task network trained with one recipe ({task['optimizer']} lr {task['lr']:g}, batch "
        f"{task['batch_size']}, {task['epochs']} epochs) on: initial scenes (F itself), ours (R at the fitted attributes), "
        "ceiling (R, training textures, at X_t's true attributes), oracle (the row's labeled X_t).",
        "gap closed = (ours - initial) / (ceiling - initial); errors are medians of ours' fitted attributes against X_t's "
        "true ones; class right is the fraction of fitted digit classes that are right.",
    ]
    title = f"# Look shifts: {summary['setting']} ({summary['scale']})"
    return "\n".join([title, "", *lines, "", *[f"{n}  " for n in notes], ""])


__all__ = ["ROW_METHODS", "gap_closed", "row_folder", "run_shift_experiment", "shift_markdown", "shift_rows"]
