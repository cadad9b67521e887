"""How E's training budget buys attribute accuracy: E's top-1 guess against the targets' true attributes.

    python benchmarks/bench_encoder.py rot-g2 --steps 8000 --every 1000 --targets 1000 [--bins 36] [--width 16] [--threads 1]

Trains E on fresh uniform engine renders (the pipeline's ``train_encoder``, seed ``seed + 3`` as in a run)
and, every ``--every`` steps, prints one markdown row: step, median / mean rotation error (deg), fraction
within 5° and 15°, median position error (px, translation settings), class accuracy, seconds so far.
The targets are the first ``--targets`` images of the setting's X_t (held-out textures).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from scenefit.attributes import wrap_angle
from scenefit.config import load_config, overrides_from_strings
from scenefit.encoder import AttributeEncoder, encoder_starts, train_encoder
from scenefit.evaluate import attribute_errors
from scenefit.pipeline import build_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setting")
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
    data = build_data(cfg)
    space = data.engine.space
    images = data.targets["image"][: args.targets]
    truth = data.targets["attrs"][: args.targets]
    rot = space.index("rotation")
    print(f"setting {args.setting}, {images.shape[0]} targets, E width {ecfg.width}, bins {ecfg.bins}, "
          f"batch {ecfg.batch_size}, lr {ecfg.lr}, torch threads {args.threads}")
    print("| step | rot median (deg) | rot mean (deg) | within 5° | within 15° | pos median (px) | class acc | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    t0 = time.time()

    def report(step: int, enc: AttributeEncoder) -> None:
        starts, _ = encoder_starts(enc, images, {})
        guess = starts[:, 0]
        e = attribute_errors(space, guess, truth)
        within5 = (wrap_angle(guess[:, rot] - truth[:, rot]).abs() <= 5).float().mean()
        pos = f"{e['position_median_px']:.2f}" if "position_median_px" in e else "–"
        print(f"| {step} | {e['rotation_median_deg']:.2f} | {e['rotation_mean_deg']:.2f} | {within5:.2f} | "
              f"{e['rotation_within_15deg']:.2f} | {pos} | {e['digit_accuracy']:.2f} | {time.time() - t0:.0f} |", flush=True)

    train_encoder(data.engine, ecfg, cfg.seed + 3, progress=False, callback=report, callback_every=args.every)


if __name__ == "__main__":
    main()
