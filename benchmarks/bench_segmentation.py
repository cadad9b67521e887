"""Training and inference throughput of the segmentation task network on street frames.

    python benchmarks/bench_segmentation.py --images 128 --batch 16 --threads 1

Renders ``--images`` street frames (not timed), then times one training epoch of
:meth:`scenefit.tasks.SegNet.train_net` (forward, loss, backward, optimiser step) with the driving presets'
recipe (preset ``street``'s ``task`` section, one epoch, ``--batch`` images per step) and one pass of
:meth:`~scenefit.tasks.SegNet.predict`, and prints images/s.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from scenefit.configio import preset
from scenefit.engines.street import StreetEngine
from scenefit.tasks import SegNet


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=128, help="frames in the timed epoch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    with StreetEngine(height=args.height, width=args.width) as engine:
        g = torch.Generator().manual_seed(args.seed)
        out = engine.render(engine.space.sample_uniform(args.images, g), generator=g)
        table = engine.labels
    images, labels = out["image"], out["label"]
    recipe = replace(preset("street").task, epochs=1, batch_size=args.batch)
    params = sum(t.numel() for t in SegNet.build(3, args.height, args.width, table, dict(recipe.args)).parameters())
    # Warm-up (allocator, oneDNN kernel selection), not timed.
    SegNet.train_net(images[: 2 * args.batch], labels[: 2 * args.batch], table, recipe, args.seed, args.device, progress=False)

    t0 = time.perf_counter()
    net = SegNet.train_net(images, labels, table, recipe, args.seed, args.device, progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    net.predict(images, batch=args.batch)
    t_pred = time.perf_counter() - t0

    print(f"settings: {args.height}x{args.width}, {args.images} images, batch {args.batch}, device {args.device}, "
          f"torch threads {args.threads}, SegNet {params / 1e3:.0f}k parameters, recipe {recipe.optimizer} lr {recipe.lr:g}"
          f"{', hflip' if recipe.hflip else ''}")
    print(f"train: {args.images / t_train:.1f} images/s ({t_train:.1f} s per epoch of {args.images})")
    print(f"predict: {args.images / t_pred:.1f} images/s")


if __name__ == "__main__":
    main()
