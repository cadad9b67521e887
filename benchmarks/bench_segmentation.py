"""Training and inference throughput of the segmentation task network on street frames.

    PYTHONPATH=src python benchmarks/bench_segmentation.py --images 128 --batch 16 --threads 1

Renders ``--images`` street frames (not timed), then times one training epoch of
:func:`~scenefit.segmentation.train_segmenter` (forward, loss, backward, Adam step)
and one pass of :func:`~scenefit.segmentation.predict`, and prints images/s.
"""

from __future__ import annotations

import argparse
import time

import torch

from scenefit.engines.street import StreetEngine
from scenefit.segmentation import SegNet, SegRecipe, predict, train_segmenter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    images, labels = out["image"], out["label"]
    params = sum(t.numel() for t in SegNet().parameters())
    # Warm-up (allocator, oneDNN kernel selection), not timed.
    train_segmenter(images[: 2 * args.batch], labels[: 2 * args.batch], SegRecipe(epochs=1, batch_size=args.batch),
                    args.seed, args.device, progress=False)

    t0 = time.perf_counter()
    net = train_segmenter(images, labels, SegRecipe(epochs=1, batch_size=args.batch), args.seed, args.device, progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(net, images, batch=args.batch)
    t_pred = time.perf_counter() - t0

    print(f"settings: {args.height}x{args.width}, {args.images} images, batch {args.batch}, device {args.device}, "
          f"torch threads {args.threads}, SegNet {params / 1e3:.0f}k parameters")
    print(f"train: {args.images / t_train:.1f} images/s ({t_train:.1f} s per epoch of {args.images})")
    print(f"predict: {args.images / t_pred:.1f} images/s")


if __name__ == "__main__":
    main()
