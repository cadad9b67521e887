"""What remains between ours and the oracle in finished run folders: the error breakdown of scenefit.breakdown.

    python benchmarks/breakdown_folder.py runs/rot-g2 runs/shift-trans-g4/clean

Each argument is a run folder of ``scenefit run`` (models in ``FOLDER/models``) or a setting folder of ``scenefit
experiment mnist`` / ``shift`` (models in ``FOLDER/../models``) on a built-in target domain, whose fit has finished.
Its ``config.yaml`` regenerates the targets (checked against ``stages/problem.json``). The breakdown trains one task
network per swap group plus the ceiling (stages ``score-swap-<group>``, ``score-ceiling``, written into the folder,
resumed on a rerun); nothing else is trained. Prints the markdown table of :func:`scenefit.breakdown.breakdown_table`
and ours' attribute errors, and writes ``breakdown.json`` into each folder.

``--stale-fit``: a folder whose fit was made by an older scenefit (its ``fit`` stage key differs from today's only
because config fields were added since) is read as it is: its fitted rows are used, the stored key is kept and the
difference is printed. Without it such a folder is refused.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from scenefit.breakdown import breakdown_table, error_breakdown
from scenefit.configio import load_saved_config
from scenefit.io import write_json
from scenefit.pipeline import Pipeline
from scenefit.runs import ModelStore


def breakdown(folder: Path, progress: bool, stale_fit: bool = False, task_seeds: int | None = None) -> dict:
    """The breakdown of one finished run folder (allowed to train only the scores it adds); ``task_seeds`` replaces the
    config's ``evaluate.task_seeds``."""
    cfg = replace(load_saved_config(folder / "config.yaml"), device="cpu")
    if task_seeds is not None:
        cfg = replace(cfg, evaluate=replace(cfg.evaluate, task_seeds=task_seeds))
    models = folder / "models" if (folder / "models").is_dir() else folder.parent / "models"
    pipe = Pipeline(cfg, folder, store=ModelStore(models), progress=progress, log=lambda m: None)
    stored = pipe.run.info("fit").get("key") if (folder / "stages" / "fit.json").is_file() else None
    if stale_fit and stored and stored != pipe.fit_key() and (folder / "fitted.parquet").is_file():
        print(f"{folder}: fit stage key {stored} (today's code: {pipe.fit_key()}); its fitted rows are used as they are", flush=True)
        pipe.fit_key = lambda: stored
    if pipe.run.info("problem").get("key") != pipe.problem_key() or not pipe.run.done("fit", pipe.fit_key()):
        raise SystemExit(f"{folder} does not hold a finished fit of the targets its config synthesises")
    pipe.models.allowed = set()  # every model must be there already: the breakdown trains task networks only
    b = error_breakdown(pipe)
    write_json(folder / "breakdown.json", b)
    pipe.res.close()
    return b


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="finished run folders")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--task-seeds", type=int, default=None, help="task networks per set, scores averaged (default: the config's)")
    ap.add_argument("--stale-fit", action="store_true", help="use a fit made by an older scenefit as it is (see above)")
    args = ap.parse_args()
    rows = {}
    for folder in args.folders:
        rows[str(folder)] = b = breakdown(folder, not args.no_progress, args.stale_fit, args.task_seeds)
        print(f"{folder}: " + ", ".join(f"{k} {v:.3f}" for k, v in b["attribute_error"].items()), flush=True)
    print(breakdown_table(rows))


if __name__ == "__main__":
    main()
