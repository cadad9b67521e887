"""Histograms of ours' periodic attribute error (fitted − true, wrapped) in finished folders: where 180° flips show.

    python benchmarks/flip_figure.py --attribute rotation --out docs/figures/prior/flips.png \
        --labels "E alone,population prior" runs/mnist-paper/trans-g4 runs/prior/trans-g4

Each FOLDER is a finished setting or run folder on a built-in target domain (its ``config.yaml`` regenerates the
targets and their true attributes, as ``benchmarks/breakdown_folder.py`` does; models are not needed). One panel
per folder, titled by its name (and its ``--labels`` entry) and the share of rows flipped (error of 135° or more).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scenefit.attributes import wrap_angle  # noqa: E402
from scenefit.breakdown import FLIP_DEG  # noqa: E402
from scenefit.configio import load_saved_config  # noqa: E402
from scenefit.evaluate import save_figure  # noqa: E402
from scenefit.fitfile import load_fit  # noqa: E402
from scenefit.pipeline import synthesize_problem  # noqa: E402
from scenefit.resolve import resolve  # noqa: E402


def wrapped_error(folder: Path, attribute: str) -> torch.Tensor:
    """(N,) fitted − true value of periodic ``attribute`` in ``folder``, wrapped into half a period either side
    (degrees for rotation)."""
    res = resolve(replace(load_saved_config(folder / "config.yaml"), device="cpu"))
    try:
        space = res.engine.space
        a = space[attribute]
        if not a.periodic:
            raise SystemExit(f"{folder}: '{attribute}' is not periodic; periodic attributes: "
                             f"{[x.name for x in space if x.periodic]}")
        true = synthesize_problem(res).targets.attrs
        fitted = load_fit(folder / "fitted.parquet", space)[0]
        i = space.index(attribute)
        return wrap_angle(fitted[:, i] - true[:, i], -a.span / 2, a.span / 2)
    finally:
        res.close()


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--attribute", default="rotation")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--labels", default=None, help="comma-separated panel labels, one per folder")
    args = ap.parse_args()
    labels = args.labels.split(",") if args.labels else [""] * len(args.folders)
    if len(labels) != len(args.folders):
        raise SystemExit(f"--labels has {len(labels)} entries for {len(args.folders)} folders: {args.labels!r}")
    fig, axes = plt.subplots(1, len(args.folders), figsize=(3.6 * len(args.folders), 2.8), squeeze=False, sharey=True)
    for ax, folder, label in zip(axes[0], args.folders, labels):
        err = wrapped_error(folder, args.attribute)
        flips = (err.abs() >= FLIP_DEG).float().mean().item()
        ax.hist(err.numpy(), bins=72, range=(-180, 180), color="tab:blue")
        ax.set_yscale("log")
        ax.set_xlabel(f"fitted − true {args.attribute}")
        ax.set_title(f"{folder.name}{', ' + label if label else ''}\n{flips:.1%} flipped (≥ {FLIP_DEG:.0f}°)", fontsize=8)
        print(f"{folder}: {flips:.2%} of {err.numel()} rows flipped; median |error| {err.abs().median():.2f}")
    axes[0][0].set_ylabel("targets")
    save_figure(fig, args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
