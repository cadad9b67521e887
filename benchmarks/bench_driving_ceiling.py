"""What mIoU do training sets built from *known* attributes reach? The ceiling of per-target fitting on the driving task.

    python benchmarks/bench_driving_ceiling.py RUN_DIR --attrs truth --seeds 3
    python benchmarks/bench_driving_ceiling.py RUN_DIR --attrs truth --set sky_color=0
    python benchmarks/bench_driving_ceiling.py RUN_DIR --attrs metasim --seeds 0 --per-attribute

``RUN_DIR`` is a run folder of ``scenefit experiment driving`` or ``scenefit run street-...`` on the built-in
target domain (targets synthesised from the config, so their true attributes are known). It is only read: its
``config.yaml`` regenerates the targets and test split (checked against ``stages/problem.json``), F, FN and the
stages come from the folder, and nothing is trained or written there. ``--attrs`` picks the attribute rows the
training set is rendered from:

    truth     the targets' true attributes: the set a perfect per-target fit would give
    ours      ours' rows, ``fitted.parquet`` (the fit stage's output: the per-target fit, then the set-level
              shift when the run's config sets ``fit.calibrate.attributes``). The former ``ours-per-target``
              row is now ``--attrs ours`` on a run made with ``--set fit.calibrate.attributes=[]``
    metasim   the first ``n_targets`` rows of Meta-Sim's sampled attributes (stage ``baseline-metasim``)
    centre    every row at the initial scenes' centre
    initial   the attributes of the initial scenes F was trained on (``n_targets * export.per_target`` draws,
              each rendered once, with this benchmark's render seeds)

``--set NAME=U`` overrides one attribute in every row with the unit-cube value ``U`` in [0, 1] (repeatable),
to see which attributes move the score. Each row is rendered ``export.per_target`` times at the engine's
resolution and the task network is trained with the run's fixed recipe (``task``), once per ``--seeds``
(``--seeds 0`` trains none). Seed k trains with seed ``seed + 5 + k`` and renders each row with the pipeline's
per-row seeds (``fitjob.rendered_rows``) at ``seed + k``, the pipeline's own seeds at k = 0: ``--attrs ours`` with seed 0 repeats the run's
``score-ours`` stage. Prints the score on the run's test split per seed and their mean; the mean unit-cube
|error| of the rows against the true attributes and their spread (mean per-attribute standard deviation, share
of values at a bound); ``--per-attribute`` adds each attribute's error beside the initial centre's.

It also prints the rows' distance to X_t as the fit and the set metrics see it. The rows are rendered once at
the fitting resolution (render seeds 777 + i) and compared with the targets on F's set layer and content layer
(``aspp`` and ``probs`` for the segmenter) and, when the run fits on the fit-feature network
(``features.source: fit_net``), on FN's content layer: unbiased MMD² with the Gaussian bandwidth fixed per
feature set by the median distance among the targets' own features (the same for every ``--attrs``), and the
mean content loss ``1 - cos`` of row i's render against target i, the quantity per-target fitting minimises.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from scenefit.configio import load_saved_config
from scenefit.data import render_rows
from scenefit.evaluate import attribute_errors
from scenefit.methods import baseline_rows
from scenefit.metrics import median_bandwidth, mmd2
from scenefit.models import SEED
from scenefit.fitjob import rendered_rows
from scenefit.pipeline import Pipeline
from scenefit.runs import FolderError
from scenefit.tasks import TaskFeatures, content_loss

ATTRS = ("truth", "ours", "metasim", "centre", "initial")


def open_run(run: Path, device: str) -> Pipeline:
    """The run's pipeline, read only (no stage may run), with its synthesised targets checked against the folder's."""
    if not (run / "config.yaml").is_file() or not (run / "stages" / "problem.json").is_file():
        raise SystemExit(f"{run} is not a scenefit run folder (no config.yaml or stages/problem.json)")
    cfg = replace(load_saved_config(run / "config.yaml"), device=device)
    pipe = Pipeline(cfg, run, progress=False, log=lambda m: None, allowed=set())
    if pipe.run.info("problem").get("key") != pipe.problem_key() or pipe.problem.targets.attrs is None:
        pipe.res.close()
        raise SystemExit(f"{run} does not hold the targets its config synthesises: this benchmark needs the built-in target domain")
    return pipe


def rows(kind: str, pipe: Pipeline) -> torch.Tensor:
    """(N, D) natural-unit attribute rows of ``kind`` (N = n_targets, or the initial set's size for ``initial``)."""
    true = pipe.problem.targets.attrs
    n = true.shape[0]
    if kind == "truth":
        return true.clone()
    if kind == "ours":
        return pipe.fit()[0]
    if kind == "metasim":
        return baseline_rows(pipe, "metasim")[0][:n].clone()
    if kind == "initial":
        return pipe.models.initial_set().attrs.clone()
    return pipe.res.initial_centre()[None].repeat(n, 1)


def feature_sets(pipe: Pipeline) -> list[tuple[str, TaskFeatures]]:
    """(name, features at the fitting resolution): F's set and content layers, and FN's content layer if the fit uses it."""
    res, fe = pipe.res, pipe.res.fit_engine
    size = (fe.height, fe.width)
    net = pipe.models.task()
    out = [(f"F '{layer}'", TaskFeatures(net, layer, size)) for layer in dict.fromkeys((res.set_layer, res.content_layer))]
    if pipe.cfg.features.source == "fit_net":
        out.append((f"FN '{res.content_layer}'", pipe.models.fit_features()))
    return out


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a driving run folder on the built-in target domain")
    p.add_argument("--attrs", choices=ATTRS, default="truth")
    p.add_argument("--set", action="append", default=[], metavar="NAME=U", help="unit-cube value for one attribute (repeatable)")
    p.add_argument("--seeds", type=int, default=1, help="task networks to train (default 1; 0: none)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1 (default 0)")
    p.add_argument("--per-attribute", action="store_true", help="also print each attribute's error against the truth")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the networks run (default cpu)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe = open_run(args.run, args.device)
    try:
        report(pipe, args)
    except FolderError as e:
        raise SystemExit(f"{args.run}: {e}") from None
    finally:
        pipe.res.close()


def report(pipe: Pipeline, args: argparse.Namespace) -> None:
    """Print, for one driving run folder, the chosen rows (``--attrs``, with ``--set NAME=U`` overrides in the unit cube):
    their unit-cube MAE to the truth, their spread, their MMD² to the targets, and what task networks trained on R's renders
    of them score on the test set."""
    cfg, res = pipe.cfg, pipe.res
    space, true = res.engine.space, pipe.problem.targets.attrs
    attrs = rows(args.attrs, pipe)
    unit = space.normalize(attrs)
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            u = float(value)
        except ValueError:
            u = float("nan")
        if name not in space.names or not 0.0 <= u <= 1.0:
            raise SystemExit(f"--set expects NAME=U with NAME one of {list(space.names)} and U in [0, 1], got '{item}'")
        unit[:, space.index(name)] = u
    attrs = space.clamp(space.denormalize(unit))
    paired = args.attrs != "initial" and attrs.shape[0] == true.shape[0]  # initial rows are no per-target rows
    reps = 1 if args.attrs == "initial" else cfg.export.per_target  # the initial set holds distinct draws
    mae = attribute_errors(space, attrs, true)["unit_mae"] if paired else float("nan")
    print(f"run {args.run} ({cfg.setting.name}, seed {cfg.seed}), rows '{args.attrs}' {args.set or ''}, {attrs.shape[0]} x "
          f"{reps} images, unit-cube MAE vs truth {mae:.4f}, torch threads {args.threads}, networks on {args.device}")
    cont = list(space.continuous)
    u = space.normalize(attrs)[:, cont]
    print(f"spread of the rows over the continuous attributes (unit cube): mean per-attribute std {u.std(0).mean():.3f} "
          f"(targets' true rows {space.normalize(true)[:, cont].std(0).mean():.3f}); values at a bound (<1e-4 from 0 or 1): "
          f"{100 * ((u < 1e-4) | (u > 1 - 1e-4)).float().mean():.0f}%")
    if args.per_attribute:
        err = (space.normalize(attrs) - space.normalize(true)).abs().mean(0) if paired else torch.full((space.dim,), float("nan"))
        centre = (space.normalize(res.initial_centre()[None]) - space.normalize(true)).abs().mean(0)
        m_rows, m_true = space.normalize(attrs).mean(0), space.normalize(true).mean(0)
        print("attribute                 |error|: rows  centre   mean: rows  truth   (unit cube; error of row i against target i)")
        for j, name in enumerate(space.names):
            print(f"{name:26s} {err[j]:12.3f} {centre[j]:7.3f} {m_rows[j]:11.3f} {m_true[j]:6.3f}")
    targets = pipe.problem.targets.image
    n = targets.shape[0]
    low = render_rows(res.fit_engine, attrs, torch.arange(attrs.shape[0], dtype=torch.int64) + 777)["image"]
    for name, feats in feature_sets(pipe):
        f_t, f_r = feats.batched(targets).double().cpu(), feats.batched(low).double().cpu()
        sigma = median_bandwidth(f_t[: n // 2], f_t[n // 2 :])
        pair = content_loss(f_r, f_t).mean().item() if paired else float("nan")
        print(f"MMD² to X_t on {name} features (sigma {sigma:.3g}): {mmd2(f_r, f_t, bandwidth=sigma):.5f}; "
              f"mean content loss of row i against target i: {pair:.4f}", flush=True)
    test = pipe.problem.test
    scores = []
    for k in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.time()
        train, seeds = rendered_rows(attrs, reps, cfg.seed + k)  # k = 0: the pipeline's own render seeds
        syn = render_rows(res.engine, train, seeds)
        net = res.task_cls.train_net(syn["image"], syn["label"], res.engine.labels, cfg.task, cfg.seed + SEED["task"] + k, cfg.device,
                                     progress=False)
        r = net.score(test.image, test.label)
        scores.append(100 * r["score"])
        print(f"seed {k}: {r['metric']} {scores[-1]:.1f}%  ({time.time() - t0:.0f} s)", flush=True)
    if scores:
        print(f"mean {r['metric']} {sum(scores) / len(scores):.1f}% over {len(scores)} seed(s)")


if __name__ == "__main__":
    main()
