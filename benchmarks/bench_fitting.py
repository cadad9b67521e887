"""Compare fitting methods on one setting: attribute error and wall time per method.

    python benchmarks/bench_fitting.py rot-g2 --targets 300 --models runs/bench-rot-g2 [--threads 2]

F, G and E are trained once into ``--models`` (a scenefit run folder, cached), then the
same ``--targets`` target images are fitted by each method. Prints one markdown row per
method: median / mean rotation error (deg), fraction within 15°, median position error
(px, translation settings), class accuracy, candidates per target, seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from scenefit.config import load_config, overrides_from_strings
from scenefit.encoder import encoder_starts
from scenefit.evaluate import attribute_errors
from scenefit.features import extract
from scenefit.fitting import fit_candidates, fit_one_reference
from scenefit.pipeline import RunDir, build_data, fit_images, stage_encoder, stage_surrogate, stage_task_initial

VARIANTS = {
    "plain (paper)": {"method": "plain", "steps": 40},
    "restarts x8": {"method": "restarts", "restarts": 8, "steps": 40},
    "codebook, no refinement": {"method": "codebook", "steps": 0},
    "codebook + 20 steps": {"method": "codebook", "steps": 20},
    "encoder, no refinement": {"method": "amortized", "steps": 0, "top_classes": 1, "top_angles": 1},
    "encoder top-2x2 + 20 steps": {"method": "amortized", "steps": 20},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting")
    p.add_argument("--targets", type=int, default=300)
    p.add_argument("--models", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set encoder.steps=1500 (repeatable)")
    p.add_argument("--layer", default=None, help="content-loss layer (default: the config's)")
    p.add_argument("--only", default=None, help="comma-separated variant names")
    p.add_argument("--loop-reference", type=int, default=0, metavar="N",
                   help="also time the literal per-image loop (fit_one_reference) on N targets against the batched plain method")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.setting, overrides_from_strings(args.set))
    if args.layer:
        cfg = replace(cfg, fit=replace(cfg.fit, layer=args.layer))
    data = build_data(cfg)
    run = RunDir(args.models, cfg)
    net = stage_task_initial(run, data, True)
    G = stage_surrogate(run, data.engine, True)
    enc = stage_encoder(run, data.engine, True)
    images = data.targets["image"][: args.targets]
    truth = data.targets["attrs"][: args.targets]
    print(f"setting {args.setting}, {args.targets} targets, layer {cfg.fit.layer}, torch threads {args.threads}")
    print("| method | rot median (deg) | rot mean (deg) | within 15 deg | pos median (px) | class acc | candidates | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    names = args.only.split(",") if args.only else list(VARIANTS)
    for name in names:
        fcfg = replace(cfg.fit, **VARIANTS[name])
        c = replace(cfg, fit=fcfg)
        t0 = time.time()
        if fcfg.method == "amortized" and fcfg.steps == 0:
            starts, _ = encoder_starts(enc, images, {"rotation": 1, "digit": 1})
            attrs, m = starts[:, 0], 1
        else:
            res = fit_images(c, data.engine, net, G, enc, images, progress=False)
            attrs, m = res.attrs, res.losses.shape[1]
        sec = time.time() - t0
        e = attribute_errors(data.engine.space, attrs, truth)
        pos = f"{e['position_median_px']:.2f}" if "position_median_px" in e else "-"
        print(f"| {name} | {e['rotation_median_deg']:.1f} | {e['rotation_mean_deg']:.1f} | {e['rotation_within_15deg']:.2f} | {pos} "
              f"| {e['digit_accuracy']:.2f} | {m} | {sec:.1f} |", flush=True)
    if args.loop_reference:
        loop_vs_batched(cfg, data, net, G, images[: args.loop_reference])


def loop_vs_batched(cfg, data, net, G, images: torch.Tensor) -> None:
    """Seconds per target: literal per-image Algorithm 1 (class fixed to the truth) vs the batched optimiser."""
    space = data.engine.space
    free = list(space.continuous)
    n = images.shape[0]
    start = torch.zeros(n, space.dim)
    start[:, space.categorical] = data.targets["attrs"][:n, space.categorical]
    layer, steps = cfg.fit.layer, 40
    G.requires_grad_(False)
    net.requires_grad_(False)
    render, feat = (lambda a, soft: G(a, soft)), (lambda x: net.features(x, layer))
    t0 = time.time()
    for i in range(n):
        fit_one_reference(render, feat, space, images[i], start[i], free, steps, 0.01)
    loop = (time.time() - t0) / n
    fcfg = replace(cfg.fit, method="plain", steps=steps, lr=0.01, optimizer="sgd")
    t0 = time.time()
    fit_candidates(render, feat, space, extract(net, images, layer), start[:, None], free, fcfg, progress=False)
    batched = (time.time() - t0) / n
    print(f"\nper-image loop: {1000 * loop:.1f} ms/target; batched: {1000 * batched:.1f} ms/target ({n} targets, {steps} SGD steps)")


if __name__ == "__main__":
    main()
