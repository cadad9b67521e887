"""Throughput of the street engine: images/s at a given size, batch and attribute distribution.

    python benchmarks/bench_street.py --images 1024 --batch 64

Prints the settings, the OpenGL renderer, and images/s for the full ``render`` call and
for its stages (layout in numpy, triangle soup in numpy, GL draw + readback).
``--distribution initial`` draws the engine's initial scenes (``sample_initial``) instead of
uniform attributes.
"""

from __future__ import annotations

import argparse
import time

import torch

from scenefit.engines.street import StreetEngine
from scenefit.engines.street_mesh import scene_triangles


def gl_renderer() -> str:
    """The OpenGL renderer and version of a standalone EGL context, the kind the engine creates."""
    import moderngl

    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        return f"{ctx.info['GL_RENDERER']} ({ctx.info['GL_VERSION']})"
    finally:
        ctx.release()


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1024, help="frames to render in the timed run")
    p.add_argument("--batch", type=int, default=64, help="rows per render() call")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--frames-per-pass", type=int, default=32)
    p.add_argument("--distribution", choices=["uniform", "initial"], default="uniform")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    engine = StreetEngine(height=args.height, width=args.width, frames_per_pass=args.frames_per_pass)
    g = torch.Generator().manual_seed(args.seed)
    sample = engine.space.sample_uniform if args.distribution == "uniform" else engine.sample_initial
    batches = [sample(args.batch, g) for _ in range(max(1, args.images // args.batch))]
    engine.render(batches[0][:2], generator=g)  # context + shader compile, not timed

    t0 = time.perf_counter()
    for attrs in batches:
        engine.render(attrs, generator=g)
    total = time.perf_counter() - t0
    n = sum(len(b) for b in batches)

    # Stage split on the same batches.
    t_layout = t_tri = t_gl = 0.0
    for attrs in batches:
        seeds = torch.randint(0, 2**62, (len(attrs),), generator=g)
        t = time.perf_counter()
        scenes = engine.scenes(attrs, seeds)
        t_layout += time.perf_counter() - t
        t = time.perf_counter()
        for i in range(0, len(scenes), engine.config.frames_per_pass):
            scene_triangles(scenes.frames(i, min(i + engine.config.frames_per_pass, len(scenes))), engine.config.layout)
        t_tri += time.perf_counter() - t
        t = time.perf_counter()
        engine.render_scenes(scenes)
        t_gl += time.perf_counter() - t
    t_gl -= t_tri  # render_scenes rebuilds the triangles; the rest is GL draw, readback and tensor conversion
    engine.close()

    print(f"renderer: {gl_renderer()}")
    print(f"settings: {args.height}x{args.width}, batch {args.batch}, frames/pass {args.frames_per_pass}, "
          f"{args.distribution} attributes, torch threads {args.threads}, {n} images")
    print(f"render(): {n / total:.0f} images/s ({1e3 * total / n:.2f} ms/image)")
    print(f"stages ms/image: layout {1e3 * t_layout / n:.2f}, triangles {1e3 * t_tri / n:.2f}, "
          f"GL draw + readback + tensors {1e3 * t_gl / n:.2f}")


if __name__ == "__main__":
    main()
