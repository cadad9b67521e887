"""Command line: thin wrappers over library functions.

    scenefit run PRESET_OR_CONFIG --out DIR          whole pipeline, results.json + summary.md
    scenefit train-surrogate PRESET_OR_CONFIG --out DIR
    scenefit fit PRESET_OR_CONFIG --targets FOLDER --out DIR [--models RUN_DIR]
    scenefit evaluate RUN_DIR
    scenefit presets
    scenefit experiment mnist --scale quick|paper --out DIR     (paper Tables 2, 3; Figures 3-9)
    scenefit experiment driving --scale quick|paper --out DIR   (paper Table 4; Figures 10, 11)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from scenefit.config import ConfigError, RunConfig, load_config, overrides_from_strings
from scenefit.scenarios import PAPER_SETTINGS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help=f"a preset ({', '.join(PAPER_SETTINGS)}) or a YAML config file")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="torch device (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set setting.n_targets=500 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _overrides(args: argparse.Namespace) -> dict:
    out = overrides_from_strings(args.set)
    if args.seed is not None:
        out["seed"] = args.seed
    if args.device is not None:
        out["device"] = args.device
    return out


def _config(args: argparse.Namespace) -> RunConfig:
    cfg = load_config(args.config, _overrides(args))
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from scenefit.pipeline import run_pipeline

    cfg = _config(args)
    t0 = time.time()
    res = run_pipeline(cfg, args.out, progress=not args.no_progress)
    acc = res["accuracy"]
    print(f"accuracy on T: initial {100 * acc['initial']:.1f}%  ours {100 * acc['ours']:.1f}%  oracle {100 * acc['oracle']:.1f}%")
    for k, v in res["attribute_error"].items():
        print(f"  {k}: {v:.3f}")
    print(f"done in {time.time() - t0:.0f}s; results: {Path(args.out) / 'results.json'}, summary: {Path(args.out) / 'summary.md'}, "
          f"dataset: {res['dataset']}")
    return 0


def cmd_train_surrogate(args: argparse.Namespace) -> int:
    from scenefit.pipeline import RunDir, build_data, stage_surrogate

    cfg = _config(args)
    run = RunDir(args.out, cfg)
    stage_surrogate(run, build_data(cfg).engine, progress=not args.no_progress)
    rep = run.info("surrogate")
    print(f"surrogate: held-out L1 {rep['heldout_l1']:.4f} after {rep['steps']} steps ({rep['seconds']:.0f}s); "
          f"checkpoint: {run.path('surrogate.safetensors')}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from scenefit.datasets import export_dataset, load_image_folder
    from scenefit.pipeline import RunDir, build_data, fit_images, render_fitted, stage_encoder, stage_surrogate, stage_task_initial

    cfg = _config(args)
    progress = not args.no_progress
    # load the targets first: a bad folder fails before any work and writes nothing
    side = cfg.setting.canvas
    images, names = load_image_folder(args.targets, 1, side, side, progress)
    data = build_data(cfg)
    engine = data.engine
    run = RunDir(args.models or Path(args.out).with_name(Path(args.out).name + "-models"), cfg)
    net = stage_task_initial(run, data, progress)
    G = stage_surrogate(run, engine, progress)
    enc = stage_encoder(run, engine, progress) if cfg.fit.method == "amortized" else None
    res = fit_images(cfg, engine, net, G, enc, images, progress)
    synth = render_fitted(engine, res.attrs, cfg.seed + 404)
    manifest = {"config": cfg.to_dict(), "seed": cfg.seed, "targets": str(args.targets), "engine": engine.describe()}
    export_dataset(args.out, synth["image"], synth["label"], res.attrs, engine.space, manifest,
                   targets=names, fit_loss=res.loss, overwrite=args.overwrite, progress=progress)
    print(f"fitted {len(names)} targets in {res.seconds:.0f}s (mean content loss {res.loss.mean():.4f}); dataset: {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from scenefit.pipeline import load_run_config, run_pipeline

    cfg = load_run_config(args.run)
    (Path(args.run) / "stages" / "evaluate.json").unlink(missing_ok=True)
    res = run_pipeline(cfg, args.run, progress=not args.no_progress)
    print(json.dumps({"accuracy": res["accuracy"], "attribute_error": res["attribute_error"]}, indent=2))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from scenefit.config import preset

    for name in PAPER_SETTINGS:
        s = preset(name).setting
        print(f"{name:12s} canvas {s.canvas}x{s.canvas}  modes {len(s.target.components)}  translate={s.translate}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``scenefit`` command."""
    p = argparse.ArgumentParser(prog="scenefit", description="Fit a rendering engine's attributes to unlabeled target images.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="whole pipeline on a preset/config: targets, G, fitting, dataset, evaluation")
    _common(r)
    r.add_argument("--out", required=True, help="run folder (resumed if it exists with the same config)")
    r.set_defaults(func=cmd_run)
    t = sub.add_parser("train-surrogate", help="train the surrogate G and report its held-out L1")
    _common(t)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_train_surrogate)
    f = sub.add_parser("fit", help="fit a folder of target images and write the labeled synthetic dataset")
    _common(f)
    f.add_argument("--targets", required=True, help="folder of PNG/JPEG target images")
    f.add_argument("--out", required=True, help="dataset folder to create")
    f.add_argument("--models", default=None, help="run folder holding (or to hold) F, G, E (default: OUT-models)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    f.set_defaults(func=cmd_fit)
    e = sub.add_parser("evaluate", help="recompute the evaluation of a run folder")
    e.add_argument("run", help="run folder made by 'scenefit run'")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_evaluate)
    s = sub.add_parser("presets", help="list the presets")
    s.set_defaults(func=cmd_presets)
    from scenefit.experiments import add_experiment_parser
    from scenefit.experiments.driving_cli import add_driving_parser

    add_driving_parser(add_experiment_parser(sub))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"scenefit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
