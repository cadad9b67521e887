"""Calibrate the task-training recipe: what score do *perfectly fitted* training sets reach?

    python benchmarks/bench_recipe.py rot-g2 --recipe 15,0.001,64 --recipe 30,0.001,64 [--threads 1]
    python benchmarks/bench_recipe.py rot-g2 --set engine.args.split=[0.7,0.15,0.15]   # more engine textures
    python benchmarks/bench_recipe.py rot-g2 --set engine.args.background=plain        # any config field

For each ``--recipe EPOCHS,LR,BATCH`` (the config's ``task`` section with those three fields) it trains the
task network twice, on sets of ``n_targets`` images drawn from the setting's *target* distribution with true
labels:

    oracle        X_t itself (rendered by ``setting.target_engine``: held-out target textures), as the pipeline's oracle
    engine-true   the engine R's own renders at freshly drawn target-distribution attributes (no look): the set a
                  perfect fit would give, so the ceiling of "ours"

and scores each on T (``setting.test_engine``: test textures, disjoint from both) and on T' (a fresh
target-distribution draw rendered like X_t, reusing its textures). Prints one markdown row per (recipe,
training set); the score is the task network's metric (accuracy for the classifier). ``SETTING`` is a preset or
a YAML config; ``--set`` overrides any field (the digit engine's texture split and background are
``engine.args``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from scenefit.configio import load_config, overrides_from_strings
from scenefit.data import synthesize
from scenefit.engines.base import Engine
from scenefit.models import SEED
from scenefit.pipeline import synthesize_problem
from scenefit.resolve import resolve


def parse_recipe(spec: str) -> tuple[int, float, int]:
    """``"EPOCHS,LR,BATCH"`` -> (epochs, learning rate, batch size); exits naming the spec when malformed."""
    try:
        epochs, lr, batch = spec.split(",")
        return int(epochs), float(lr), int(batch)
    except ValueError:
        raise SystemExit(f"--recipe expects EPOCHS,LR,BATCH (e.g. 15,0.001,64), got '{spec}'") from None


def textures(engine: Engine) -> str:
    """Size of a digit engine's texture bank (from ``describe()``; "-" for engines without one)."""
    return str(engine.describe().get("textures", {}).get("count", "-"))


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting", help="a preset (e.g. rot-g2) or a YAML config file")
    p.add_argument("--recipe", action="append", default=None, metavar="EPOCHS,LR,BATCH", help="default 15,0.001,64 (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. engine.args.split=[0.7,0.15,0.15] (repeatable)")
    args = p.parse_args()
    recipes = [parse_recipe(s) for s in args.recipe or ["15,0.001,64"]]
    torch.set_num_threads(args.threads)
    cfg = load_config(args.setting, overrides_from_strings(args.set))
    res = resolve(cfg)
    try:
        s = cfg.setting
        problem = synthesize_problem(res)
        engine_true = synthesize(res.engine, s.target, s.n_targets, cfg.seed + 999)
        shared_test = synthesize(res.target_engine, s.target, s.n_test, cfg.seed + 998, res.look)
        sets = {"oracle": problem.targets, "engine-true": engine_true}
        print(f"setting {s.name}, engine {res.engine.name} {dict(cfg.engine.args)}, X_t engine {dict(s.target_engine)}, "
              f"T engine {dict(s.test_engine)}, look '{s.look.name or 'none'}', {s.n_targets} training images, {s.n_test} test "
              f"images, textures {textures(res.engine)} R / {textures(res.target_engine)} X_t / {textures(res.test_engine)} T, "
              f"torch threads {args.threads}")
        metric = res.task_cls.metric
        print(f"| recipe (epochs, lr, batch) | training set | {metric} on T (disjoint textures) | {metric} on T' (X_t's textures) | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for epochs, lr, batch in recipes:
            recipe = replace(cfg.task, epochs=epochs, lr=lr, batch_size=batch)
            for name, train in sets.items():
                t0 = time.time()
                net = res.task_cls.train_net(train.image, train.label, res.engine.labels, recipe, cfg.seed + SEED["task"], cfg.device,
                                             progress=False)
                a = net.score(problem.test.image, problem.test.label)["score"]
                b = net.score(shared_test.image, shared_test.label)["score"]
                print(f"| {epochs}, {lr:g}, {batch} | {name} | {100 * a:.1f}% | {100 * b:.1f}% | {time.time() - t0:.0f} |", flush=True)
    finally:
        res.close()


if __name__ == "__main__":
    main()
