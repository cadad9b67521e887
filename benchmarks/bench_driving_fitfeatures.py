"""Does a feature network that sees through camera effects make the per-target driving fit find the true attributes?

    python benchmarks/bench_driving_fitfeatures.py RUN_DIR --out DIR [--sources task,fit_net] [--sample uniform|initial]
        [--augment | --no-augment] [--images N] [--epochs E] [--set KEY=VALUE] [--score] [--threads T] [--device cpu|cuda]

The driving fit matches R's renders to each target on a network's content layer (``probs`` for the segmenter). Which
network is the config's ``features.source``: ``task`` is F, the task network trained on the initial scenes (the
paper's choice); ``fit_net`` is FN, the same network trained label-supervised on augmented engine renders at the
fitting resolution (no target image or label is used; pipeline stage ``features`` in the model store). This
benchmark runs the fit of a run twice, as two pipeline runs that differ only in ``--set features.source=task|fit_net``
(plus any ``--set`` given here), and compares them.

``RUN_DIR`` is a run folder of ``scenefit experiment driving`` or ``scenefit run street-...`` on the built-in
target domain (targets synthesised from its config, so their true attributes are known). It is only read. Each
source gets a run folder ``DIR/features-<source>`` with the run's config and that source; the run's trained models
and finished stages are copied in first (:func:`scenefit.runs.merge_runs`), so only what the source changes is
computed (FN or F if missing, the fit). Each is a complete run folder: ``bench_driving_ceiling.py
DIR/features-fit_net --attrs ours`` trains the Table 4 segmenter on its rows. Prints:

    - each feature network's score (mIoU) on the run's target test split, area-resized to the fitting resolution:
      how well it reads the target domain's layout;
    - per source: the network's training seconds, the fit's seconds ("reused": a fit stage already done, by the run
      or an earlier call), the mean content loss, and the fitted rows' unit-cube MAE to the true attributes, beside
      the initial centre's; then the error per attribute;
    - with ``--score``: the score of the task network trained on each source's rows (stage ``score-ours``) and on
      the initial scenes.

FN's training set is the ``features`` config section: ``--sample`` (``features.sample``: ``uniform`` over the
attribute box or the ``initial`` distribution; this option was ``--source`` before ``features.source`` took that
name), ``--images``, ``--epochs``, ``--augment`` / ``--no-augment`` (``features.augment``: one
:func:`scenefit.augment.photometric_augment` draw per image, or none). Unset options keep the run's values.
The fit includes the set-level shift when the config sets ``fit.calibrate.attributes``; ``--set
fit.calibrate.attributes=[]`` compares the per-target fits alone.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from scenefit.configio import load_saved_config, merge, overrides_from_strings
from scenefit.evaluate import attribute_errors
from scenefit.pipeline import Pipeline
from scenefit.runs import (
    FolderError,
    RunFolder,
    claim,
    clean_partials,
    locked,
    merge_runs,
)

SOURCES = ("task", "fit_net")


def features_overrides(args: argparse.Namespace, source: str) -> dict:
    """The ``features`` section changes of one source (unset options keep the run's values)."""
    out: dict = {"source": source}
    for key in ("sample", "images", "epochs"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    if args.augment is not None:
        out["augment"] = {} if args.augment else None  # {}: the config's augmentation, or the default one
    return out


def source_pipeline(run: Path, folder: Path, args: argparse.Namespace, source: str, extra: dict, stack: ExitStack) -> Pipeline:
    """Run folder ``folder`` holding the run's problem with ``features.source`` = ``source``, the run merged in;
    the folder stays locked until ``stack`` closes."""
    cfg = replace(load_saved_config(run / "config.yaml"), device=args.device)
    cfg = merge(merge(cfg, {"features": features_overrides(args, source)}), extra)
    pipe = Pipeline(cfg, folder, progress=False, log=lambda m: None)
    if RunFolder(run).info("problem").get("key") != pipe.problem_key() or pipe.problem.targets.attrs is None:
        pipe.res.close()
        raise SystemExit(f"{run} does not hold the targets its config synthesises (with --set {extra or '{}'}): this "
                         f"benchmark needs the built-in target domain, and --set may not change the problem")
    stack.callback(pipe.res.close)
    claim(folder, "run")
    stack.enter_context(locked(folder))
    clean_partials(folder)
    pipe.start()
    merge_runs(run, folder)
    return pipe


def test_at(pipe: Pipeline) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split at the fitting resolution: images area-resized, label masks nearest."""
    fe, test = pipe.res.fit_engine, pipe.problem.test
    size = (fe.height, fe.width)
    images = F.interpolate(test.image, size=size, mode="area")
    labels = F.interpolate(test.label[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return images, labels


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a driving run folder on the built-in target domain")
    p.add_argument("--out", type=Path, required=True, help="folder for one run folder per source (resumed)")
    p.add_argument("--sources", default=",".join(SOURCES), help="comma-separated features.source values (default task,fit_net)")
    p.add_argument("--sample", choices=["uniform", "initial"], default=None, help="features.sample (default: the run's)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None, help="features.augment on/off (default: the run's)")
    p.add_argument("--images", type=int, default=None, help="features.images (default: the run's)")
    p.add_argument("--epochs", type=int, default=None, help="features.epochs (default: the run's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another config override for both runs (repeatable)")
    p.add_argument("--score", action="store_true", help="also train and score the task network on each source's rows")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not sources or any(s not in SOURCES for s in sources):
        raise SystemExit(f"--sources takes a comma-separated subset of {list(SOURCES)}, got '{args.sources}'")
    if not (args.run / "config.yaml").is_file() or not (args.run / "stages" / "problem.json").is_file():
        raise SystemExit(f"{args.run} is not a scenefit run folder (no config.yaml or stages/problem.json)")
    extra = overrides_from_strings(args.set)
    if "features" in extra and "source" in extra["features"]:
        raise SystemExit("--set features.source is what this benchmark varies; use --sources")
    try:
        with ExitStack() as stack:
            pipes = {s: source_pipeline(args.run, args.out / f"features-{s}", args, s, extra, stack) for s in sources}
            compare(pipes, args)
    except FolderError as e:
        raise SystemExit(str(e)) from None


def compare(pipes: dict[str, Pipeline], args: argparse.Namespace) -> None:
    """Fit once per fit-feature source (stages reused where done) and print a markdown table per source: the network's
    score, its and the fit's seconds, the mean fit loss and the fitted rows' unit-cube MAE to the true attributes."""
    first = next(iter(pipes.values()))
    fe, space = first.res.fit_engine, first.res.engine.space
    true = first.problem.targets.attrs
    test_x, test_y = test_at(first)
    print(f"run {args.run} ({first.cfg.setting.name}, seed {first.cfg.seed}): {len(true)} targets, fitting resolution "
          f"{fe.height}x{fe.width}, layer '{first.res.content_layer}', fit '{first.cfg.fit.method}', torch threads {args.threads}, "
          f"device {args.device}")
    rows: dict[str, torch.Tensor] = {}
    print("| features | network's score on T at the fitting resolution | network seconds | fit seconds | mean fit loss | unit MAE to truth |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s, pipe in pipes.items():
        feats = pipe.models.fit_features()
        stage = "features" if s == "fit_net" else "task"
        net_s = pipe.models.report(stage).get("seconds", float("nan"))
        sc = feats.net.score(test_x, test_y)
        reused = pipe.run.done("fit", pipe.fit_key(), ("fitted.parquet",))
        t0 = time.time()
        attrs, loss = pipe.fit()
        fit_s = f"{pipe.run.info('fit')['seconds']:.0f} (reused)" if reused else f"{time.time() - t0:.0f}"
        rows[s] = attrs
        f = pipe.cfg.features
        what = "F (initial scenes)" if s == "task" else (f"FN ({f.sample}, {f.images} images x {f.epochs} epochs, "
                                                         f"augment {'on' if f.augment is not None else 'off'})")
        print(f"| {what} | {sc['metric']} {100 * sc['score']:.1f}% | {net_s:.0f} | {fit_s} | {loss.mean():.4f} | "
              f"{attribute_errors(space, attrs, true)['unit_mae']:.4f} |", flush=True)
    centre = first.res.initial_centre()[None].expand_as(true)
    print(f"| initial centre | | | | | {attribute_errors(space, centre, true)['unit_mae']:.4f} |")
    err = {k: (space.normalize(a) - space.normalize(true)).abs().mean(0) for k, a in {**rows, "centre": centre}.items()}
    print("\nattribute                   " + " ".join(f"{k:>8s}" for k in err) + "   (mean |error| of row i against target i, unit cube)")
    for j, name in enumerate(space.names):
        print(f"{name:27s} " + " ".join(f"{e[j]:8.3f}" for e in err.values()))
    if args.score:
        print()
        r = first.score("initial")
        print(f"{r['metric']} of the task network trained on the initial scenes: {100 * r['score']:.1f}%")
        for s, pipe in pipes.items():
            r = pipe.score("ours")
            print(f"{r['metric']} of the task network trained on ours with features.source={s}: {100 * r['score']:.1f}% "
                  f"(stage seconds {r['seconds']:.0f})", flush=True)


if __name__ == "__main__":
    main()
