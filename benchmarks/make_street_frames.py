"""Write street frames to a folder as JPEG files of another size, a stand-in for a real dashcam folder.

The frames are drawn from the ``street`` preset's target distribution, rendered by the street engine at the
requested size (KITTI's 375x1242 by default) and given the preset's ``street-grade`` look, so that
``scenefit fit street --targets DIR`` sees images whose size, aspect ratio and look are not the engine's::

    python benchmarks/make_street_frames.py /tmp/kitti-like --n 50
    scenefit fit street --targets /tmp/kitti-like --out /tmp/kitti-like-dataset
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scenefit.configio import preset
from scenefit.data import synthesize
from scenefit.engines.registry import make_engine


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to create (must not exist)")
    p.add_argument("--n", type=int, default=50, help="number of frames")
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--width", type=int, default=1242)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    cfg = preset("street")
    engine = make_engine("street", {**cfg.engine.args, "height": args.height, "width": args.width})
    with engine:
        frames = synthesize(engine, cfg.setting.target, args.n, args.seed, (cfg.setting.look.name, dict(cfg.setting.look.args)))
    args.out.mkdir(parents=True)
    pixels = (frames.image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, arr in enumerate(pixels):
        Image.fromarray(np.ascontiguousarray(arr)).save(args.out / f"frame_{i:04d}.jpg", quality=args.quality)
    print(f"wrote {args.n} JPEG frames of {args.width}x{args.height} to {args.out}")


if __name__ == "__main__":
    main()
