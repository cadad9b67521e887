"""Compare fitting methods on one setting: attribute error and wall time per method.

    python benchmarks/bench_fitting.py rot-g2 --targets 300 --models runs/bench-rot-g2 [--threads 2]
    python benchmarks/bench_fitting.py rot-g2 --targets 300 --models runs/rot-g2 --set encoder.steps=1500 --only "plain (paper)"

F, G and E are trained once into the model store of ``--models`` (a run folder: its ``models/``, shared with
``scenefit run SETTING --out DIR`` of the same config, so that run's networks are reused), then the same first
``--targets`` target images are fitted by each method (:data:`VARIANTS`, each the config's ``fit`` section with
a few fields changed), every fit in a fresh temporary run folder through the fit stage of
:class:`scenefit.pipeline.Pipeline`. Prints one markdown row per method: median / mean rotation error (deg),
fraction within 15°, median position error (px, translation settings), class accuracy, candidates per target,
seconds of the fit stage (target features included, model training not). ``--loop-reference N`` also times the
literal per-image Algorithm 1 (:func:`scenefit.fitting.fit_one_reference`) on N targets against the batched
optimiser.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from scenefit.attributes import wrap_angle
from scenefit.configio import load_config, merge, overrides_from_strings
from scenefit.data import ImageSet, Problem
from scenefit.evaluate import attribute_errors
from scenefit.fitting import fit_candidates, fit_one_reference
from scenefit.models import Models
from scenefit.pipeline import Pipeline, synthesize_problem
from scenefit.resolve import Resolved, resolve
from scenefit.runs import ModelStore, claim

VARIANTS = {
    "plain (paper)": {"method": "plain", "steps": 40},
    "restarts x8": {"method": "restarts", "restarts": {"count": 8}, "steps": 40},
    "codebook, no refinement": {"method": "codebook", "steps": 0},
    "codebook + 20 steps": {"method": "codebook", "steps": 20},
    "codebook-verify + 20 steps": {"method": "codebook-verify", "steps": 20},
    "encoder, no refinement": {"method": "amortized", "steps": 0, "amortized": {"top_classes": 1, "top_angles": 1}},
    "encoder top-2x2 + 20 steps": {"method": "amortized", "steps": 20, "amortized": {"top_classes": 2, "top_angles": 2}},
}


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting", help="a preset (e.g. rot-g2) or a YAML config file")
    p.add_argument("--targets", type=int, default=300)
    p.add_argument("--models", required=True, help="run folder whose models/ store holds (or receives) F, G and E")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set encoder.steps=1500 (repeatable)")
    p.add_argument("--layer", default=None, help="content-loss layer (default: the config's)")
    p.add_argument("--only", action="append", default=None, metavar="NAMES",
                   help="variants to run: a variant name or comma-separated names (repeatable; default all)")
    p.add_argument("--loop-reference", type=int, default=0, metavar="N",
                   help="also time the literal per-image loop (fit_one_reference) on N targets against the batched plain method")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.setting, overrides_from_strings(args.set))
    if args.layer:
        cfg = merge(cfg, {"fit": {"layer": args.layer}})
    names = select(args.only) if args.only else list(VARIANTS)
    res = resolve(cfg)
    try:
        full = synthesize_problem(res)
        t = full.targets
        k = min(args.targets, len(t))
        problem = Problem(ImageSet(t.image[:k], t.label[:k], t.attrs[:k], t.names[:k]), full.test, full.source)
        claim(args.models, "run")
        store = ModelStore(f"{args.models}/models")
        layer = res.content_layer
        print(f"setting {cfg.setting.name}, {k} targets, layer {layer}, torch threads {args.threads}, models in {store.root}")
        print("| method | rot median (deg) | rot mean (deg) | within 15 deg | pos median (px) | class acc | candidates | seconds |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in names:
            vres = resolve(merge(cfg, {"fit": VARIANTS[name]}))
            try:
                with tempfile.TemporaryDirectory(prefix="bench-fitting-") as work:
                    pipe = Pipeline(vres, work, problem, store, progress=False, log=lambda m: None)
                    for stage in pipe.models.needed():
                        pipe.models.get(stage)  # trained once into the store, not timed
                    attrs, _ = pipe.fit()
                    info = pipe.run.info("fit")
                print(row(name, vres, attrs, problem.targets.attrs, info), flush=True)
            finally:
                vres.close()
        if args.loop_reference:
            loop_vs_batched(res, Models(res, store, progress=False, log=lambda m: None), problem.targets, min(args.loop_reference, k))
    finally:
        res.close()


def select(values: list[str]) -> list[str]:
    """Variant names from ``--only`` values: comma-separated, longest match first (names may hold commas)."""
    out = []
    for v in values:
        parts, i = [x.strip() for x in v.split(",")], 0
        while i < len(parts):
            j = next((j for j in range(len(parts), i, -1) if ", ".join(parts[i:j]) in VARIANTS), None)
            if j is None:
                raise SystemExit(f"unknown variant '{parts[i]}' in --only '{v}'; choose from: {'; '.join(VARIANTS)}")
            out.append(", ".join(parts[i:j]))
            i = j
    return out


def row(name: str, res: Resolved, attrs: torch.Tensor, truth: torch.Tensor, info: dict) -> str:
    """One markdown row of the table (module doc)."""
    space = res.engine.space
    e = attribute_errors(space, attrs, truth)
    cell = lambda key, fmt: format(e[key], fmt) if key in e else "–"
    rot = "–"
    if "rotation" in space.names:
        j = space.index("rotation")
        rot = f"{wrap_angle(attrs[:, j] - truth[:, j]).abs().mean():.1f}"
    return (f"| {name} | {cell('rotation_median_abs', '.1f')} | {rot} | {cell('rotation_within_15deg', '.2f')} | "
            f"{cell('position_median_px', '.2f')} | {cell('digit_accuracy', '.2f')} | {info['candidates_per_target']} | "
            f"{info['seconds']:.1f} |")


def loop_vs_batched(res: Resolved, models: Models, targets: ImageSet, n: int) -> None:
    """Seconds per target: literal per-image Algorithm 1 (categories fixed to the truth) vs the batched optimiser."""
    space, free = res.engine.space, res.free
    images, truth = targets.image[:n], targets.attrs[:n]
    start = res.initial_centre()[None].repeat(n, 1)
    start[:, space.categorical] = truth[:, space.categorical]
    steps, lr = 40, 0.01
    G, feats = models.surrogate(), models.fit_features()
    G.requires_grad_(False)
    feats.net.requires_grad_(False)
    render = lambda a, soft: G(a, soft)
    t0 = time.time()
    for i in range(n):
        fit_one_reference(render, feats, space, images[i], start[i], free, steps, lr)
    loop = (time.time() - t0) / n
    t0 = time.time()
    fit_candidates(render, feats, space, feats.batched(images), start[:, None], free, steps, lr, optimizer="sgd", progress=False)
    batched = (time.time() - t0) / n
    print(f"\nper-image loop: {1000 * loop:.1f} ms/target; batched: {1000 * batched:.1f} ms/target ({n} targets, {steps} SGD steps)")


if __name__ == "__main__":
    main()
