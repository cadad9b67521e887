"""Does this machine run two shard workers' render and PNG-write steps twice as fast as one? No Ray involved.

Times the two steps of a shard that follow the fit, for N digit rows, in one process and split over two processes
started together (one torch thread each): the engine's render (``render_rows``) and writing the rows as PNGs
(``save_png``), the latter into one shared folder (what the workers do) and into two folders. A speed-up well under
2 here is a limit of the machine, not of the scheduler::

    python benchmarks/bench_parallel_io.py --n 20000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path


def _render(lo: int, hi: int, bar, q) -> None:
    import torch

    from scenefit.configio import load_config
    from scenefit.data import render_rows
    from scenefit.resolve import resolve
    from scenefit.seeding import index_seeds

    torch.set_num_threads(1)
    res = resolve(load_config("rot-g2"), labeled_targets=False)
    g = torch.Generator().manual_seed(lo)
    attrs = res.engine.space.sample_uniform(hi - lo, g)
    seeds = index_seeds(0, torch.arange(lo, hi))
    bar.wait()
    t0 = time.time()
    render_rows(res.engine, attrs, seeds)
    q.put(time.time() - t0)


def _write(lo: int, hi: int, folder: str, bar, q) -> None:
    import numpy as np

    from scenefit.datasets import save_png

    rng = np.random.default_rng(lo)
    base = (rng.random((64, 48, 48)) ** 4 * 255).astype(np.uint8)  # sparse bright strokes, as digits compress
    bar.wait()
    t0 = time.time()
    for i in range(lo, hi):
        save_png(base[i % 64], Path(folder) / f"{i:07d}.png")
    q.put(time.time() - t0)


def timed(jobs: list[tuple]) -> float:
    """Run every (target, args) job in its own process; after their set-up they start the timed step together (a
    barrier). Returns the slowest process's seconds for the step."""
    ctx = mp.get_context("spawn")
    q, bar = ctx.Queue(), ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=f, args=(*a, bar, q)) for f, a in jobs]
    for p in procs:
        p.start()
    secs = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return max(secs)


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    args = p.parse_args()
    n, h = args.n, args.n // 2
    tmp = Path(tempfile.mkdtemp(prefix="scenefit-io-"))
    try:
        rows = []
        for name, one, two in (
            ("render", [(_render, (0, n))], [(_render, (0, h)), (_render, (h, n))]),
            ("write, one folder", [(_write, (0, n, str(tmp / "a")))], [(_write, (0, h, str(tmp / "b"))), (_write, (h, n, str(tmp / "b")))]),
            ("write, two folders", [(_write, (0, n, str(tmp / "c")))], [(_write, (0, h, str(tmp / "d"))), (_write, (h, n, str(tmp / "e")))]),
        ):
            for d in "abcde":
                (tmp / d).mkdir(exist_ok=True)
            t1, t2 = timed(one), timed(two)
            rows.append(f"| {name} | {n} | {t1:.1f} | {t2:.1f} | {t1 / t2:.2f}x |")
            for d in "abcde":
                shutil.rmtree(tmp / d)
        print("| step | rows | one process s | two processes s | speed-up |\n| --- | ---: | ---: | ---: | ---: |")
        print("\n".join(rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
