"""Wall time per stage of the driving experiment (Table 4) at one scale, and its mIoU row.

    python benchmarks/bench_street_pipeline.py --scale quick --out /tmp/driving-quick --threads 1
    python benchmarks/bench_street_pipeline.py --scale tiny --out /tmp/driving-tiny --set fit.method=codebook

Runs (or resumes: finished stages are not re-timed) :func:`scenefit.experiments.driving.run_driving_experiment`
on the preset ``street-<scale>`` with ``--set`` overrides, and prints the seconds each stage took when it ran:
every row's score stage (which includes what it needed first: F inside ``initial``, G, FN and the fit inside
``ours``), the fit on its own, and the training time of each model the run uses (from the model store's
reports); then the surrogate's held-out L1 and Table 4's mIoU.
"""

from __future__ import annotations

import argparse
import time

import torch

from scenefit.configio import overrides_from_strings
from scenefit.experiments.driving import driving_config, run_driving_experiment
from scenefit.models import Models
from scenefit.resolve import resolve
from scenefit.runs import ModelStore


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=["tiny", "quick", "paper"], default="quick")
    p.add_argument("--out", required=True, help="experiment folder (resumed if it exists)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = overrides_from_strings(args.set)
    t0 = time.time()
    res = run_driving_experiment(args.out, args.scale, args.seed, args.device, progress=False,
                                 log=lambda s: print(f"{time.time() - t0:8.1f}s {s}", flush=True), overrides=overrides)
    if res.get("missing"):
        raise SystemExit(f"{args.out} still lacks the rows {res['missing']}")
    s = res["surrogate"]
    print(f"settings: scale {args.scale}, torch threads {args.threads}, device {args.device}, fit resolution {res['fit_resolution']}"
          f"{', --set ' + ' '.join(args.set) if args.set else ''}")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in res["seconds"].items()) + " (a row includes what it trained and fitted first)")
    print("model training seconds (inside the rows above): " + ", ".join(f"{k} {v:.0f}" for k, v in model_seconds(args, overrides).items()))
    print(f"surrogate: held-out L1 {s['heldout_l1']:.4f}, mean image {s['mean_image_l1']:.4f}, noise floor {s['noise_floor']:.4f}")
    print("mIoU %: " + ", ".join(f"{m} {100 * v:.1f}" for m, v in res["miou"].items()))


def model_seconds(args: argparse.Namespace, overrides: dict) -> dict[str, float]:
    """Training seconds of the models the run's config uses, from their reports in ``out/models``."""
    r = resolve(driving_config(args.scale, args.seed, args.device, overrides))
    try:
        models = Models(r, ModelStore(f"{args.out}/models", read_only=True), progress=False, log=lambda m: None, allowed=set())
        stages = dict.fromkeys(["task", *models.needed()])  # F always (the initial row, Meta-Sim), then what the fit reads
        return {stage: models.store.report(stage, models.key(stage)).get("seconds", float("nan")) for stage in stages}
    finally:
        r.close()


if __name__ == "__main__":
    main()
