"""How much ours' score moves with the render draws alone: the same fitted attributes, other per-row seeds.

For a finished run folder it renders the fitted rows again with K other seed streams (texture, background and
noise of every row), trains the task network on each with the run's recipe and seed, and scores it on the run's
T. The fitted attributes, T and the task seed are fixed; only the draws change. The spread bounds how closely two
codes whose renders differ can agree on ours::

    python benchmarks/bench_render_spread.py runs/rot-g2 --draws 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scenefit.configio import load_config
from scenefit.data import ImageSet, render_rows
from scenefit.fitjob import RENDER_SEED
from scenefit.pipeline import Pipeline
from scenefit.runs import key_of
from scenefit.seeding import index_seeds


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished `scenefit run` folder (copied without its images; the copy's stages are reused)")
    p.add_argument("--draws", type=int, default=4, help="seed streams besides the run's own")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "run"
        shutil.copytree(args.run, work, ignore=shutil.ignore_patterns("dataset", "*.png"))
        spread(work, args.draws, str(args.run))


def spread(work: Path, draws: int, name: str) -> None:
    """Score ours with the run's draws and ``draws`` other streams, in run folder copy ``work``; prints the scores."""
    cfg = load_config(str(work / "config.yaml"))
    pipe = Pipeline(cfg, work, progress=False, log=lambda m: None, allowed={"score-ours"} | {f"score-ours-draw{k}" for k in range(1, draws + 1)})
    attrs, _ = pipe.fit()
    own = pipe.score("ours")["score"]
    print(f"ours with the run's draws: {100 * own:.2f}%")
    scores = [own]
    for k in range(1, draws + 1):
        def make(k: int = k) -> ImageSet:
            reps = cfg.export.per_target
            rows = attrs.repeat_interleave(reps, 0)
            seeds = index_seeds(cfg.seed + RENDER_SEED + 7919 * k, torch.arange(rows.shape[0]))
            out = render_rows(pipe.res.engine, rows, seeds)
            return ImageSet(out["image"], out["label"], rows, seeds=seeds)
        name = f"ours-draw{k}"
        pipe.register_set(name, lambda k=k: key_of("draw", pipe.ours_key(), k), make)
        t0 = time.time()
        acc = pipe.score(name)["score"]
        scores.append(acc)
        print(f"ours with draw stream {k}: {100 * acc:.2f}% ({time.time() - t0:.0f} s)", flush=True)
    print(json.dumps({"run": name, "scores": scores, "mean": statistics.mean(scores), "std": statistics.stdev(scores),
                      "range": max(scores) - min(scores)}))
    pipe.res.close()


if __name__ == "__main__":
    main()
