"""What mIoU do training sets built from *known* attributes reach? The ceiling of per-target fitting on the driving task.

    PYTHONPATH=src python benchmarks/bench_driving_ceiling.py RUN_DIR --attrs truth --seeds 3
    PYTHONPATH=src python benchmarks/bench_driving_ceiling.py RUN_DIR --attrs truth --set sky_color=0

``RUN_DIR`` is a finished (or at least fitted) ``scenefit experiment driving`` folder on the built-in target
domain. ``--attrs`` picks the attribute rows the training set is rendered from:

    truth     the targets' true attributes: the set a perfect per-target fit would give
    ours      ours' final rows: ``fitted.parquet`` with the set-level shift of ``stages/calibrate.json``
    ours-per-target  the per-target fit alone (``fitted.parquet``)
    metasim   the first ``n_targets`` rows of Meta-Sim's sampled attributes
    centre    every row at the initial scene's centre
    initial   the initial scenes of the run's ``task`` stage (``n_targets * renders_per_target`` draws of the
              engine's initial distribution, each rendered once): with ``--seeds`` > 1, the spread of Table 4's
              "initial" row over segmenter and render seeds (the rows of the task stage, render seeds 404 + k)

``--set NAME=U`` overrides one attribute in every row with the unit-cube value ``U`` in [0, 1] (repeatable),
to see which attributes move the score. Each row is rendered ``renders_per_target`` times at the engine's
resolution and a segmenter is trained with the run's fixed recipe, once per ``--seeds`` (segmenter seed and
render seed both change; ``--seeds 0`` trains none); prints the mIoU on the run's test split per seed, their mean,
and the mean unit-cube |error| of the rows against the true attributes, and their spread (mean per-attribute
standard deviation, share of values at a bound); ``--per-attribute`` adds each attribute's error beside the initial
centre's. It also prints the rows' distance to
X_t as the fitting sees it: unbiased MMD² between F's features (the run's ``task_initial`` segmenter, layers
"aspp" and "probs") of the rows rendered once at the fitting resolution and of the targets, the Gaussian
bandwidth fixed per layer by the median pairwise distance among the targets' features (so it is the same for
every ``--attrs``). Beside it, the mean content loss ``1 - cos`` of row i's render against target i: the
quantity per-target fitting minimises, so a fit that beats the true rows on it shows the loss preferring other
attributes than the true ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from scenefit.engines.street import StreetEngine
from scenefit.experiments.driving import SCALES, FitFeatures, attribute_mae, load_fit, ours_attributes, train_and_score
from scenefit.features import content_loss
from scenefit.metrics import median_bandwidth, mmd2
from scenefit.segmentation import load_segmenter

ATTRS = ("truth", "ours", "ours-per-target", "metasim", "centre", "initial")


def rows(kind: str, run: Path, engine: StreetEngine, true: torch.Tensor) -> torch.Tensor:
    """(N, D) natural-unit attribute rows of ``kind`` for the run's N targets."""
    n, space = true.shape[0], engine.space
    if kind == "truth":
        return true.clone()
    if kind == "ours":
        return ours_attributes(run, space)
    if kind == "ours-per-target":
        return load_fit(run / "fitted.parquet", space)[0]
    if kind == "metasim":
        return load_file(str(run / "metasim_attrs.safetensors"))["attrs"][:n].clone()
    if kind == "initial":
        record = json.loads((run / "config.json").read_text())
        reps = SCALES[record["scale"]].renders_per_target
        return engine.initial_distribution(n * reps, torch.Generator().manual_seed(record["seed"] + 303))
    return engine.initial_centre()[None].repeat(n, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a driving experiment folder on the built-in target domain")
    p.add_argument("--attrs", choices=ATTRS, default="truth")
    p.add_argument("--set", action="append", default=[], metavar="NAME=U", help="unit-cube value for one attribute")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1 (default 0)")
    p.add_argument("--per-attribute", action="store_true", help="also print each attribute's error against the truth")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the segmenters train (default cpu)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    record = json.loads((args.run / "config.json").read_text())
    sc = SCALES[record["scale"]]
    data = load_file(str(args.run / "targets.safetensors"))
    if "target_attrs" not in data:
        raise SystemExit(f"{args.run / 'targets.safetensors'} holds no true attributes: the ceiling needs the built-in target domain")
    with StreetEngine(height=sc.height, width=sc.width) as engine:
        space, true = engine.space, data["target_attrs"]
        attrs = rows(args.attrs, args.run, engine, true)
        unit = space.normalize(attrs)
        for item in args.set:
            name, _, value = item.partition("=")
            u = float(value)
            if name not in space.names or not 0.0 <= u <= 1.0:
                raise SystemExit(f"--set expects NAME=U with NAME one of {list(space.names)} and U in [0, 1], got '{item}'")
            unit[:, space.index(name)] = u
        attrs = space.clamp(space.denormalize(unit))
        reps = 1 if args.attrs == "initial" else sc.renders_per_target  # the initial set holds distinct draws
        mae = attribute_mae(space, attrs, true) if attrs.shape[0] == true.shape[0] else float("nan")
        print(f"run {args.run} (scale {sc.name}), rows '{args.attrs}' {args.set or ''}, {attrs.shape[0]} x "
              f"{reps} images, unit-cube MAE vs truth {mae:.4f}, "
              f"torch threads {args.threads}, segmenters on {args.device}")
        cont = list(space.continuous)
        u = space.normalize(attrs)[:, cont]
        print(f"spread of the rows over the continuous attributes (unit cube): mean per-attribute std {u.std(0).mean():.3f} "
              f"(targets' true rows {space.normalize(true)[:, cont].std(0).mean():.3f}); values at a bound (<1e-4 from 0 or 1): "
              f"{100 * ((u < 1e-4) | (u > 1 - 1e-4)).float().mean():.0f}%")
        if args.per_attribute:
            paired = attrs.shape[0] == true.shape[0]
            err = (space.normalize(attrs) - space.normalize(true)).abs().mean(0) if paired else torch.full((space.dim,), float("nan"))
            centre = (space.normalize(engine.initial_centre()[None]) - space.normalize(true)).abs().mean(0)
            m_rows, m_true = space.normalize(attrs).mean(0), space.normalize(true).mean(0)
            print("attribute                 |error|: rows  centre   mean: rows  truth   (unit cube; error of row i against target i)")
            for j, name in enumerate(space.names):
                print(f"{name:26s} {err[j]:12.3f} {centre[j]:7.3f} {m_rows[j]:11.3f} {m_true[j]:6.3f}")
        net = load_segmenter(args.run / "task_initial.safetensors", "cpu")
        size = (sc.height // sc.fit_factor, sc.width // sc.fit_factor)
        with StreetEngine(height=size[0], width=size[1]) as fit_engine, torch.no_grad():
            low = fit_engine.render_seeded(attrs, torch.arange(attrs.shape[0]) + 777)["image"]
        n = data["target_image"].shape[0]
        for layer in ("aspp", "probs"):
            feats = FitFeatures(net, size, layer)
            f_t, f_r = feats.batched(data["target_image"]).double(), feats.batched(low).double()
            sigma = median_bandwidth(f_t[: n // 2], f_t[n // 2 :])
            pair = content_loss(f_r, f_t).mean().item() if attrs.shape[0] == n else float("nan")
            print(f"MMD² to X_t on F's '{layer}' features (sigma {sigma:.3f}): {mmd2(f_r, f_t, bandwidth=sigma):.5f}; "
                  f"mean content loss of row i against target i: {pair:.4f}", flush=True)
        scores = []
        for k in range(args.first_seed, args.first_seed + args.seeds):
            t0 = time.time()
            with torch.no_grad():
                syn = engine.render(attrs.repeat_interleave(reps, 0), torch.Generator().manual_seed(404 + k))
            with tempfile.TemporaryDirectory() as tmp:
                info = train_and_score(syn["image"], syn["label"], data, sc, 7 + k, args.device, False, Path(tmp) / "seg.safetensors", args.attrs)
            scores.append(100 * info["miou"])
            print(f"seed {k}: mIoU {scores[-1]:.1f}%  ({time.time() - t0:.0f} s)", flush=True)
        if scores:
            print(f"mean mIoU {sum(scores) / len(scores):.1f}% over {len(scores)} seed(s)")


if __name__ == "__main__":
    main()
