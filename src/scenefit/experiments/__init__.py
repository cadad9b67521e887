"""The paper's experiments, each reproducible from one command.

    scenefit experiment mnist --scale quick --out DIR     Table 2, Table 3, Figures 3-9 (§4.1)

This module stays light (the CLI imports it for its parser); the runner and its
heavy dependencies load on first use of :func:`run_mnist_experiment`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scenefit.scenarios import PAPER_SETTINGS

METHODS = ("initial", "metasim", "attribute-descent", "sdr", "ours", "oracle")
"""Table 2's rows, in order."""
SCALE_NAMES = ("tiny", "quick", "paper")

__all__ = ["METHODS", "SCALE_NAMES", "SCALES", "MnistScale", "add_experiment_parser", "run_mnist_experiment"]


def __getattr__(name: str):
    if name in ("run_mnist_experiment", "SCALES", "MnistScale"):
        from scenefit.experiments import mnist

        return getattr(mnist, name)
    raise AttributeError(f"module 'scenefit.experiments' has no attribute '{name}'")


def cmd_experiment_mnist(args: argparse.Namespace) -> int:
    """``scenefit experiment mnist``: run (or resume), print Table 2 and where the outputs are."""
    import torch

    from scenefit.config import ConfigError
    from scenefit.experiments.mnist import run_mnist_experiment

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    t0 = time.time()
    settings = args.settings.split(",") if args.settings is not None else None
    methods = args.methods.split(",") if args.methods is not None else None
    run_mnist_experiment(args.out, args.scale, settings, methods, args.seed, args.device, not args.no_progress)
    out = Path(args.out)
    print((out / "table2.md").read_text())
    print(f"done in {time.time() - t0:.0f}s; tables: {out / 'table2.md'}, {out / 'table3.md'}; "
          f"results: {out / 'results.json'}; figures: {out / 'figures'}")
    return 0


def add_experiment_parser(subparsers):
    """Add ``experiment mnist`` to the ``scenefit`` command's subparsers.

    Returns the subparsers of ``experiment`` itself, so that other experiments add
    their own kind beside ``mnist`` (e.g. ``add_driving_parser(add_experiment_parser(sub))``).
    """
    exp = subparsers.add_parser("experiment", help="reproduce the paper's experiments (tables and figures)")
    sub = exp.add_subparsers(dest="experiment", required=True)
    p = sub.add_parser("mnist", help="paper §4.1: Table 2, Table 3, Figures 3-9 (ten settings x all methods)")
    p.add_argument("--scale", choices=list(SCALE_NAMES), default="quick",
                   help="tiny (seconds, for tests), quick (under 45 min on 2 CPU cores), paper (4,000 targets, 2,000 test)")
    p.add_argument("--out", required=True, help="experiment folder (resumed if it exists with the same scale and seed)")
    p.add_argument("--settings", default=None, help=f"comma-separated subset of: {','.join(PAPER_SETTINGS)}")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of: {','.join(METHODS)}")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_experiment_mnist)
    return sub
