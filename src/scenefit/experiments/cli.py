"""Command line of ``scenefit experiment``: parsers and thin handlers (the runners load on first use)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scenefit.configio import overrides_from_strings
from scenefit.experiments import DRIVING_STAGES, MNIST_METHODS, SCALE_NAMES
from scenefit.shifts import LEVELS, SHIFTS


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def cmd_experiment_mnist(args: argparse.Namespace) -> int:
    """``scenefit experiment mnist``: run (or resume), print Table 2 and where the outputs are."""
    from scenefit.experiments.mnist import run_mnist_experiment

    t0 = time.time()
    run_mnist_experiment(args.out, args.scale, _split(args.settings), _split(args.methods), args.seed, args.device,
                         not args.no_progress, overrides=overrides_from_strings(args.set))
    out = Path(args.out)
    print((out / "table2.md").read_text())
    if (out / "breakdown.md").is_file():
        print((out / "breakdown.md").read_text())
    print(f"done in {time.time() - t0:.0f}s; tables: {out / 'table2.md'}, {out / 'table3.md'}; "
          f"results: {out / 'results.json'}; figures: {out / 'figures'}")
    return 0


def cmd_experiment_driving(args: argparse.Namespace) -> int:
    """``scenefit experiment driving``: run (or resume), then print Table 4."""
    from scenefit.experiments.driving import run_driving_experiment

    t0 = time.time()
    out = Path(args.out)
    res = run_driving_experiment(out, args.scale, args.seed, args.device, not args.no_progress, args.kitti, args.cityscapes,
                                 stages=_split(args.stages), merge_from=args.merge_from, overrides=overrides_from_strings(args.set))
    if res.get("missing"):
        print(f"done in {time.time() - t0:.0f}s; {out} still lacks {', '.join(res['missing'])}: run them (or rerun without --stages) "
              f"to get table4.md")
        return 0
    print((out / "table4.md").read_text())
    print(f"done in {time.time() - t0:.0f}s; table: {out / 'table4.md'}; results: {out / 'results.json'}; figures: {out / 'figures'}")
    return 0


def cmd_experiment_shift(args: argparse.Namespace) -> int:
    """``scenefit experiment shift``: run (or resume) clean + the chosen look shifts, then print the table."""
    from scenefit.experiments.shift import run_shift_experiment

    t0 = time.time()
    out = Path(args.out)
    run_shift_experiment(out, args.setting, _split(args.shifts), _split(args.levels), args.scale, args.seed, args.device,
                         not args.no_progress, overrides=overrides_from_strings(args.set))
    print((out / "shift.md").read_text())
    print(f"done in {time.time() - t0:.0f}s; table: {out / 'shift.md'}; results: {out / 'results.json'}; figures: {out / 'figures'}")
    return 0


def _common(p: argparse.ArgumentParser, scales_help: str) -> None:
    p.add_argument("--scale", choices=list(SCALE_NAMES), default="quick", help=scales_help)
    p.add_argument("--out", required=True, help="experiment folder (resumed if it exists with the same scale, seed and --set)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device (default cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every run, e.g. --set task.epochs=3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_experiment_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``experiment mnist``, ``driving`` and ``shift`` to the ``scenefit`` command's subparsers."""
    exp = subparsers.add_parser("experiment", help="reproduce the paper's experiments (tables and figures)")
    sub = exp.add_subparsers(dest="experiment", required=True)
    p = sub.add_parser("mnist", help="§4.1: Table 2, Table 3, Figures 3-9 (ten settings x all methods)")
    _common(p, "tiny (seconds, for tests), quick (under 45 min on 2 CPU cores), paper (4,000 targets, 2,000 test); "
               "overlays in scenefit/presets/scales/")
    p.add_argument("--settings", default=None, help="comma-separated subset of the ten settings (rot-g1 ... rottrans-g4)")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of: {','.join(MNIST_METHODS)}")
    p.set_defaults(func=cmd_experiment_mnist)
    d = sub.add_parser("driving", help="§4.2: Table 4 (mIoU of initial / Meta-Sim / ours / oracle), Figures 10-11")
    _common(d, "the presets street-tiny (seconds, for tests), street-quick (~10 min on 2 CPU cores), street-paper "
               "(200 targets x 10 renders, 200 test; hours on a CPU)")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--kitti", type=Path, default=None, help="KITTI semantics folder holding image_2/ and semantic/ (split into X_t and test)")
    src.add_argument("--cityscapes", type=Path, default=None, help="Cityscapes root holding leftImg8bit/ and gtFine/ (X_t: train, test: val)")
    d.add_argument("--stages", default=None,
                   help=f"comma-separated stages to run now ({', '.join(DRIVING_STAGES)}); the ones they need must be done; "
                        "default: every missing stage")
    d.add_argument("--merge-from", type=Path, action="append", default=[], metavar="DIR",
                   help="first copy the finished stages and models of DIR, a run folder of the same targets (repeatable)")
    d.set_defaults(func=cmd_experiment_driving)
    sh = sub.add_parser("shift", help="look shifts: initial / ours / ceiling / oracle on targets and test images whose look "
                                      "is shifted (blur, JPEG, thick strokes, ...)")
    _common(sh, "the MNIST scales: tiny (seconds, for tests), quick, paper (presets/scales/mnist-<scale>.yaml)")
    sh.add_argument("--setting", default="rot-g2", help="one of the ten digit settings (default rot-g2)")
    sh.add_argument("--shifts", default=None, help=f"comma-separated subset of: {','.join(SHIFTS)} (default: all)")
    sh.add_argument("--levels", default=None, help=f"comma-separated subset of: {','.join(LEVELS)} (default: both)")
    sh.set_defaults(func=cmd_experiment_shift)
    return sub
