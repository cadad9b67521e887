"""Command line: thin wrappers over library functions.

    scenefit run PRESET_OR_CONFIG --out DIR          the whole pipeline: targets, F/G/E, fit, dataset, scores
    scenefit fit PRESET_OR_CONFIG --targets FOLDER [--glob PATTERN] --out DATASET [--models DIR] [--per-target N] [--sample N]
    scenefit check PRESET_OR_CONFIG [--targets FOLDER [--glob PATTERN]] [--models DIR]     validate everything, train nothing
    scenefit train-surrogate PRESET_OR_CONFIG --out DIR
    scenefit evaluate RUN_DIR
    scenefit presets
    scenefit experiment mnist|driving|shift --scale tiny|quick|paper --out DIR

Exit codes: 0 done, 2 bad input or a refused folder (one line on stderr), 130 interrupted, 143 terminated.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from scenefit.config import ConfigError, RunConfig
from scenefit.configio import load_config, load_saved_config, overrides_from_strings, preset, preset_names


GLOB_HELP = ("which files of --targets are targets, relative to it, e.g. 'training/image_2/*.png' or "
             "'**/*_leftImg8bit.png' ('**' descends into sub-folders; default: every image, sub-folders too, "
             "or the images of a KITTI or Cityscapes root)")


class Terminated(Exception):
    """SIGTERM arrived."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a preset (see 'scenefit presets') or a YAML config file")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="torch device (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set setting.n_targets=500 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _config(args: argparse.Namespace) -> RunConfig:
    over = overrides_from_strings(args.set)
    if args.seed is not None:
        over["seed"] = args.seed
    if args.device is not None:
        over["device"] = args.device
    for name in ("per_target", "sample"):  # scenefit fit's shorthands of export.<name>
        if getattr(args, name, None) is not None:
            over.setdefault("export", {})[name] = getattr(args, name)
    return load_config(args.config, over)


def _print_scores(res: dict) -> None:
    sc = res["scores"]
    print(f"{res['metric']} on T: initial {100 * sc['initial']:.1f}%  ours {100 * sc['ours']:.1f}%  oracle {100 * sc['oracle']:.1f}%")
    for k, v in res["attribute_error"].items():
        print(f"  {k}: {v:.3f}")


def cmd_run(args: argparse.Namespace) -> int:
    """``scenefit run``: the whole pipeline into ``args.out``; prints the scores; returns the exit code 0."""
    from scenefit.workflows import run_pipeline

    t0 = time.time()
    res = run_pipeline(_config(args), args.out, progress=not args.no_progress)
    _print_scores(res)
    out = Path(args.out)
    print(f"done in {time.time() - t0:.0f}s; results: {out / 'results.json'}, summary: {out / 'summary.md'}, dataset: {res['dataset']}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """``scenefit fit``: fit the images of ``args.targets`` and write the dataset ``args.out``; returns 0."""
    from scenefit.workflows import fit_folder

    res = fit_folder(_config(args), args.targets, args.out, args.models, args.overwrite, progress=not args.no_progress,
                     backend=args.backend, workers=args.workers, ray_address=args.ray_address, shard_size=args.shard_size,
                     threads=args.threads, retrain=args.retrain, glob=args.glob)
    print(f"fitted {res['targets']} targets ({res['rows']} rows, {res['shards']} shards, {res['ran']} run now) in {res['seconds']:.0f}s "
          f"(mean content loss {res['mean_loss']:.4f}); models: {res['models']}; dataset: {res['dataset']}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``scenefit check``: validate the config, targets and models, training nothing; returns 0."""
    from scenefit.workflows import check

    for line in check(_config(args), args.targets, args.models, args.glob):
        print(line)
    return 0


def cmd_train_surrogate(args: argparse.Namespace) -> int:
    """``scenefit train-surrogate``: train the surrogate renderer into ``args.out``; returns 0."""
    from scenefit.workflows import train_models

    rep = train_models(_config(args), args.out, ("surrogate",), progress=not args.no_progress)
    s = rep["surrogate"]
    print(f"surrogate: held-out L1 {s['heldout_l1']:.4f} after {s['steps']} steps ({s['seconds']:.0f}s); "
          f"checkpoint: {rep['surrogate_folder']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``scenefit evaluate``: the pipeline again on run folder ``args.run``'s saved config (finished stages reused);
    prints the scores; returns 0."""
    from scenefit.workflows import run_pipeline

    path = Path(args.run) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"not a scenefit run folder (no config.yaml): {args.run}")
    res = run_pipeline(load_saved_config(path), args.run, progress=not args.no_progress)
    _print_scores(res)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """``scenefit presets``: print one line per preset; returns 0."""
    from scenefit.configio import preset_description

    for name in preset_names():
        cfg = preset(name)
        s = cfg.setting
        modes = len(s.target.components) if s.target is not None else 0
        print(f"{name:13s} {cfg.engine.name:7s} {s.n_targets:5d} targets, {modes} target modes, fit {cfg.fit.method:16s} "
              f"{preset_description(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``scenefit`` command."""
    p = argparse.ArgumentParser(prog="scenefit", description="Fit a rendering engine's attributes to unlabeled target images.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="whole pipeline on a preset/config: targets, F/G/E, fitting, dataset, scores")
    _common(r)
    r.add_argument("--out", required=True, help="run folder (resumed if it holds this problem; created if missing)")
    r.set_defaults(func=cmd_run)
    f = sub.add_parser("fit", help="fit a folder of target images and write the labeled synthetic dataset")
    _common(f)
    f.add_argument("--targets", required=True,
                   help="folder of target images (PNG, JPEG, ...; any size: centre-cropped and resized), sub-folders too; "
                        "a KITTI root reads its image_2 folders, a Cityscapes root its leftImg8bit folder")
    f.add_argument("--glob", default=None, metavar="PATTERN", help=GLOB_HELP)
    f.add_argument("--out", required=True, help="dataset folder to create")
    f.add_argument("--models", default=None,
                   help="run folder or model store to read F, G, E from, never changed (default: the user's store, "
                        "$SCENEFIT_CACHE/models, trained there when missing)")
    f.add_argument("--per-target", type=int, default=None, metavar="N",
                   help="renders per fitted target, each with its own seed (texture, layout, noise); = --set export.per_target=N")
    f.add_argument("--sample", type=int, default=None, metavar="N",
                   help="add N rows drawn from a density fitted to the fitted rows, each rendered once; = --set export.sample=N")
    f.add_argument("--overwrite", action="store_true", help="replace an existing scenefit dataset folder")
    f.add_argument("--retrain", action="store_true", help="train F, G, E again into the model store even if they are there")
    f.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: shards one after another in this process; ray: a pool of Ray actors (pip install 'scenefit[ray]')")
    f.add_argument("--workers", type=int, default=1, help="Ray actors (--backend ray); default 1")
    f.add_argument("--ray-address", default=None, help="a running Ray cluster to join (default: start a local one)")
    f.add_argument("--shard-size", type=int, default=2048, help="targets per shard (default 2048); a rerun resumes from finished shards")
    f.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's for local, 1 for Ray)")
    f.set_defaults(func=cmd_fit)
    c = sub.add_parser("check", help="validate a config (and a target folder, a model folder) without training anything")
    _common(c)
    c.add_argument("--targets", default=None, help="a target folder to read and check")
    c.add_argument("--glob", default=None, metavar="PATTERN", help=GLOB_HELP)
    c.add_argument("--models", default=None, help="a run folder or model store to check for the trained networks")
    c.set_defaults(func=cmd_check)
    t = sub.add_parser("train-surrogate", help="train the surrogate G and report its held-out L1")
    _common(t)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_train_surrogate)
    e = sub.add_parser("evaluate", help="finish or recompute a run folder's outputs from its config.yaml")
    e.add_argument("run", help="run folder made by 'scenefit run'")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_evaluate)
    s = sub.add_parser("presets", help="list the presets")
    s.set_defaults(func=cmd_presets)
    from scenefit.experiments.cli import add_experiment_parser

    add_experiment_parser(sub)
    return p


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (see module doc)."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("scenefit: interrupted; finished stages are kept and a rerun resumes", file=sys.stderr)
        return 130
    except Terminated:
        print("scenefit: terminated; finished stages are kept and a rerun resumes", file=sys.stderr)
        return 143
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        print(f"scenefit: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"scenefit: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
