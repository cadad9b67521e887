"""Command line of ``scenefit experiment driving``, kept apart from the runner so the CLI starts fast."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SCALE_NAMES = ("tiny", "quick", "paper")


def cmd_experiment_driving(args: argparse.Namespace) -> int:
    """``scenefit experiment driving``: run, then print Table 4."""
    from scenefit.experiments.driving import merge_stages, run_driving_experiment

    t0 = time.time()
    out = Path(args.out)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    set_level = None if args.set_level is None else tuple(n.strip() for n in args.set_level.split(",") if n.strip() and n.strip() != "none")
    common = dict(stages=stages, set_level=set_level, fit_features=args.fit_features)
    if args.merge_from and not (out / "stages" / "targets.json").is_file():  # a new folder: its own targets first, to compare
        run_driving_experiment(out, args.scale, args.seed, args.device, not args.no_progress, args.kitti, args.cityscapes,
                               **{**common, "stages": ["targets"]})
    for src in args.merge_from:
        merge_stages(src, out)
    res = run_driving_experiment(out, args.scale, args.seed, args.device, not args.no_progress, args.kitti, args.cityscapes, **common)
    if res.get("missing"):
        print(f"done in {time.time() - t0:.0f}s; {out} still lacks stages {', '.join(res['missing'])}: run them (or rerun without "
              f"--stages) to get table4.md")
        return 0
    print((out / "table4.md").read_text())
    print(f"done in {time.time() - t0:.0f}s; table: {out / 'table4.md'}; results: {out / 'results.json'}; figures: {out / 'figures'}")
    return 0


def add_driving_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``driving`` to the ``scenefit experiment`` subparsers."""
    p = subparsers.add_parser("driving", help="§4.2: Table 4 (segmentation mIoU of initial / Meta-Sim / ours / oracle), Figures 10-11")
    p.add_argument("--scale", choices=list(SCALE_NAMES), default="quick",
                   help="tiny (seconds, for tests), quick (~10 min on 2 CPU cores), paper (200 targets x 10 renders, 200 test; hours on a CPU)")
    p.add_argument("--out", required=True, help="experiment folder (resumed if it exists with the same scale, seed and targets)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--kitti", type=Path, default=None, help="KITTI semantics folder holding image_2/ and semantic/ (split into X_t and test)")
    src.add_argument("--cityscapes", type=Path, default=None, help="Cityscapes root holding leftImg8bit/ and gtFine/ (X_t: train, test: val)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--stages", default=None,
                   help="comma-separated stages to run now (targets, task, surrogate, features, fit, calibrate, ours, ours_per_target, "
                        "metasim, oracle); the ones they read must be done; default: every missing stage")
    p.add_argument("--set-level", default=None, metavar="NAMES",
                   help="comma-separated continuous attributes to calibrate once for the whole target set (e.g. "
                        "sun_brightness,sky_color; adds the ours_per_target ablation row), or 'none'; default: the scale's "
                        "(off for quick and paper)")
    p.add_argument("--fit-features", choices=["fn", "task"], default=None,
                   help="the fit's features: fn (a segmenter trained on augmented renders of the whole attribute box; "
                        "the default) or task (F, the initial-scenes segmenter, as the paper)")
    p.add_argument("--merge-from", type=Path, action="append", default=[], metavar="DIR",
                   help="first copy the stages finished in DIR (a folder of the same targets that ran other --stages, or another "
                        "config: only stages whose config fields match are copied); repeatable")
    p.set_defaults(func=cmd_experiment_driving)
    return p
