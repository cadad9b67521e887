"""Ours re-fitted under config overrides in a copy of a finished setting folder, scored beside the oracle.

    python benchmarks/refit_folder.py runs/mnist-paper/trans-g4 runs/prior --task-seeds 3 \
        --set fit.amortized.prior_iters=20 --set 'fit.amortized.prior_given=[tx,ty]'

SRC is a setting folder of ``scenefit experiment mnist`` (models in ``SRC/../models``) or a run folder of
``scenefit run`` (models in ``SRC/models``) whose fit has finished. It is copied to ``DST/<name of SRC>`` (once; a
rerun resumes there), its saved config gets the ``--set`` overrides and ``evaluate.task_seeds``, and the pipeline runs
in the copy with SRC's models, training none of G, E, F or P: the fit stage runs again when the overrides change its
key, and ours is scored with task networks of seeds 0 .. task_seeds - 1. The oracle's scores are reused from the copied
stages where they exist (same keys), else trained. Prints ours' attribute errors, and ours and the oracle per task
seed with their paired differences; writes ``DST/<name>/refit.json``. SRC itself is never written.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

from scenefit.configio import load_saved_config, merge, overrides_from_strings
from scenefit.io import write_json
from scenefit.pipeline import Pipeline
from scenefit.runs import ModelStore


def refit(src: Path, dst_parent: Path, overrides: dict, task_seeds: int, progress: bool) -> dict:
    """Re-fit and score ours in ``dst_parent / src.name`` (module doc). Returns ``{"ours", "oracle"}`` (per task seed,
    fractions), ``"fit"`` (the fit stage's record) and ``"overrides"``."""
    models = src / "models" if (src / "models").is_dir() else src.parent / "models"
    dst = dst_parent / src.name
    if dst.resolve() == src.resolve():
        raise SystemExit(f"{dst} is the source folder itself; choose another DST")
    if not dst.exists():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("paper-alg1", "models"))
    cfg = merge(load_saved_config(dst / "config.yaml"), overrides)
    cfg = replace(cfg, device="cpu", evaluate=replace(cfg.evaluate, task_seeds=task_seeds))
    pipe = Pipeline(cfg, dst, store=ModelStore(models), progress=progress, log=lambda m: None)
    try:
        pipe.models.allowed = set()  # every network comes from SRC's store: only the fit and the task networks run
        t0 = time.time()
        pipe.fit()
        fit = pipe.run.info("fit")
        scores = {m: [r["score"] for r in pipe.score_seeds(m)] for m in ("ours", "oracle")}
        out = {**scores, "fit": fit, "overrides": overrides, "seconds": time.time() - t0}
        write_json(dst / "refit.json", out)
        return out
    finally:
        pipe.res.close()


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="finished setting or run folder")
    ap.add_argument("dst", type=Path, help="parent folder of the copy")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--task-seeds", type=int, default=3)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    r = refit(args.src, args.dst, overrides_from_strings(args.set), args.task_seeds, args.progress)
    err = r["fit"].get("attribute_error", {})
    print(f"{args.src.name}: fit {r['fit'].get('fit_seconds', 0):.1f} s, prior moved {r['fit'].get('prior_changed', 0):.1%} of rows; "
          + ", ".join(f"{k} {v:.3f}" for k, v in err.items()))
    diffs = [100 * (a - b) for a, b in zip(r["ours"], r["oracle"])]
    print(f"ours   {' / '.join(f'{100 * s:.1f}' for s in r['ours'])}  (mean {100 * sum(r['ours']) / len(r['ours']):.2f})")
    print(f"oracle {' / '.join(f'{100 * s:.1f}' for s in r['oracle'])}  (mean {100 * sum(r['oracle']) / len(r['oracle']):.2f})")
    print(f"ours - oracle {' / '.join(f'{d:+.1f}' for d in diffs)}  (mean {sum(diffs) / len(diffs):+.2f})")


if __name__ == "__main__":
    main()
