"""Wall time per stage of the driving experiment (Table 4) at one scale, and its mIoU row.

    PYTHONPATH=src python benchmarks/bench_street_pipeline.py --scale quick --out /tmp/driving-quick --threads 1

Runs (or resumes: finished stages are not re-timed) :func:`scenefit.experiments.driving.run_driving_experiment`
and prints the seconds each stage took when it ran, the surrogate's held-out L1 and Table 4's mIoU.
"""

from __future__ import annotations

import argparse
import time

import torch

from scenefit.experiments.driving import SCALES, run_driving_experiment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=list(SCALES), default="quick")
    p.add_argument("--out", required=True, help="experiment folder (resumed if it exists)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    res = run_driving_experiment(args.out, args.scale, args.seed, args.device, progress=False,
                                 log=lambda s: print(f"{time.time() - t0:8.1f}s {s}", flush=True))
    s = res["surrogate"]
    print(f"settings: scale {args.scale}, torch threads {args.threads}, device {args.device}, fit resolution {res['fit_resolution']}")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in res["seconds"].items()) + f" (sum {sum(res['seconds'].values()):.0f})")
    print(f"surrogate: held-out L1 {s['heldout_l1']:.4f}, mean image {s['mean_image_l1']:.4f}, noise floor {s['noise_floor']:.4f}")
    print("mIoU %: " + ", ".join(f"{m} {100 * v:.1f}" for m, v in res["miou"].items()))


if __name__ == "__main__":
    main()
