"""How E's training budget buys attribute accuracy: E's top-1 guess against the targets' true attributes.

    python benchmarks/bench_encoder.py rot-g2 --steps 8000 --every 1000 --targets 1000 [--bins 36] [--width 16] [--threads 1]
    python benchmarks/bench_encoder.py rottrans-g2 --set setting.n_targets=1000 --steps 2000 --every 500

Trains E on fresh uniform renders of the fitting engine (:func:`scenefit.encoder.train_encoder`, seed ``seed + 3``
as the pipeline's ``encoder`` model) and, every ``--every`` steps, prints one markdown row: step, median / mean
rotation error (deg), fraction within 5° and 15°, median position error (px, translation settings), class
accuracy, seconds so far. The targets are the first ``--targets`` images of the setting's X_t (synthesised as a
run would, with held-out textures). ``SETTING`` is a preset or a YAML config; ``--set`` overrides any field.
Nothing is written.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from scenefit.attributes import wrap_angle
from scenefit.configio import load_config, overrides_from_strings
from scenefit.encoder import AttributeEncoder, encoder_starts, train_encoder
from scenefit.evaluate import attribute_errors
from scenefit.models import SEED
from scenefit.pipeline import synthesize_problem
from scenefit.resolve import resolve


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting", help="a preset (e.g. rot-g2) or a YAML config file")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--every", type=int, default=1000)
    p.add_argument("--targets", type=int, default=1000)
    p.add_argument("--bins", type=int, default=None, help="angle bins (default: the config's)")
    p.add_argument("--width", type=int, default=None, help="E's base width (default: the config's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.setting, overrides_from_strings(args.set))
    ecfg = replace(cfg.encoder, steps=args.steps, **{k: v for k, v in (("bins", args.bins), ("width", args.width)) if v})
    res = resolve(cfg)
    try:
        space, fe = res.engine.space, res.fit_engine
        if "rotation" not in space.names:
            raise SystemExit(f"{args.setting}: the engine has no 'rotation' attribute; this benchmark reports rotation errors")
        targets = synthesize_problem(res).targets
        images, truth = targets.image[: args.targets], targets.attrs[: args.targets]
        if tuple(images.shape[-2:]) != (fe.height, fe.width):
            images = torch.nn.functional.interpolate(images, size=(fe.height, fe.width), mode="area")
        rot = space.index("rotation")
        print(f"setting {cfg.setting.name}, {images.shape[0]} targets, E width {ecfg.width}, bins {ecfg.bins}, "
              f"batch {ecfg.batch_size}, lr {ecfg.lr}, torch threads {args.threads}")
        print("| step | rot median (deg) | rot mean (deg) | within 5° | within 15° | pos median (px) | class acc | seconds |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        t0 = time.time()

        def report(step: int, enc: AttributeEncoder) -> None:
            dev = next(enc.parameters()).device
            guess = encoder_starts(enc, images.to(dev), {})[0][:, 0].cpu()
            e = attribute_errors(space, guess, truth)
            d = wrap_angle(guess[:, rot] - truth[:, rot]).abs()
            pos = f"{e['position_median_px']:.2f}" if "position_median_px" in e else "–"
            acc = " / ".join(f"{v:.2f}" for k, v in e.items() if k.endswith("_accuracy")) or "–"
            print(f"| {step} | {d.median():.2f} | {d.mean():.2f} | {(d <= 5).float().mean():.2f} | {(d <= 15).float().mean():.2f} | "
                  f"{pos} | {acc} | {time.time() - t0:.0f} |", flush=True)

        train_encoder(fe, ecfg, cfg.seed + SEED["encoder"], cfg.device, progress=False, callback=report, callback_every=args.every)
    finally:
        res.close()


if __name__ == "__main__":
    main()
