"""Calibrate the task-training recipe: what accuracy do *perfectly fitted* training sets reach?

    python benchmarks/bench_recipe.py rot-g2 --recipe 15,0.001,64 --recipe 30,0.001,64 [--threads 1]
    python benchmarks/bench_recipe.py rot-g2 --set data.split=[0.7,0.15,0.15]   # more engine textures
    python benchmarks/bench_recipe.py rot-g2 --set setting.background=plain     # any config field

For each ``--recipe EPOCHS,LR,BATCH`` it trains the task network twice, on sets of ``n_targets`` images
drawn from the setting's *target* distribution with true labels:

    oracle        X_t itself (held-out target textures), as the pipeline's oracle
    engine-true   the engine's own textures at freshly drawn target-distribution attributes: the set a
                  perfect fit would give, so the ceiling of "ours"

and scores each on T (test textures, disjoint from both) and on T' (a fresh target-distribution draw that
reuses X_t's textures, the issue's two-way split). Prints one markdown row per (recipe, training set).
"""

from __future__ import annotations

import argparse
import time

import torch

from scenefit.config import load_config, overrides_from_strings
from scenefit.evaluate import accuracy
from scenefit.features import TrainRecipe, predict, train_classifier
from scenefit.pipeline import build_data, draw_set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting")
    p.add_argument("--recipe", action="append", default=None, metavar="EPOCHS,LR,BATCH")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. data.split=[0.7,0.15,0.15]")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.setting, overrides_from_strings(args.set))
    data = build_data(cfg)
    s = cfg.setting
    with torch.no_grad():
        engine_true = draw_set(data.engine, s.target, s.n_targets, cfg.seed + 999)
        shared_test = draw_set(data.target_engine, s.target, s.n_test, cfg.seed + 998)
    sets = {"oracle": data.targets, "engine-true": engine_true}
    print(f"setting {args.setting}, background {s.background}, {s.n_targets} training images, "
          f"{s.n_test} test images, texture split {list(cfg.data.split)}: "
          f"{len(data.engine.bank)} engine / {len(data.target_engine.bank)} X_t / {len(data.test_engine.bank)} T digits, torch threads {args.threads}")
    print("| recipe (epochs, lr, batch) | training set | acc. on T (disjoint textures) | acc. on T' (X_t's textures) | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for spec in args.recipe or ["15,0.001,64"]:
        epochs, lr, batch = spec.split(",")
        recipe = TrainRecipe(int(epochs), float(lr), int(batch))
        for name, train in sets.items():
            t0 = time.time()
            net = train_classifier(train["image"], train["label"], recipe, cfg.seed + 5, progress=False)
            a = accuracy(predict(net, data.test["image"]), data.test["label"])
            b = accuracy(predict(net, shared_test["image"]), shared_test["label"])
            print(f"| {recipe.epochs}, {recipe.lr:g}, {recipe.batch_size} | {name} | {100 * a:.1f}% | {100 * b:.1f}% | "
                  f"{time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
