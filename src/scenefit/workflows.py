"""What the commands do, as library calls: ``run``, ``fit`` on a folder, ``train-surrogate``, ``check``.

Each checks the whole config and builds its inputs before it writes anything, claims and
locks its output folder (:mod:`scenefit.runs`), and writes outputs atomically.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from scenefit.config import RunConfig
from scenefit.data import ImageSet, Problem
from scenefit.datasets import export_dataset
from scenefit.evaluate import sample_grid, summary_markdown
from scenefit.imagefolder import load_image_folder
from scenefit.io import atomic_write_text, write_json
from scenefit.models import Models
from scenefit.pipeline import Pipeline
from scenefit.resolve import resolve
from scenefit.runs import ModelStore, check_disjoint, claim, clean_partials, locked

METHODS = ("initial", "ours", "oracle")


def cache_dir() -> Path:
    """scenefit's cache folder: ``$SCENEFIT_CACHE`` or ``~/.cache/scenefit``."""
    return Path(os.environ.get("SCENEFIT_CACHE", Path.home() / ".cache" / "scenefit"))


def model_store(models: str | Path | None) -> ModelStore:
    """``--models DIR`` (read as it is: a run folder's ``models/`` or a store itself), else the user's store."""
    if models is None:
        return ModelStore(cache_dir() / "models")
    root = Path(models)
    if not root.is_dir():
        raise FileNotFoundError(f"--models folder not found: {root}")
    return ModelStore(root / "models" if (root / "models").is_dir() else root, read_only=True)


def run_results(pipe: Pipeline, methods: tuple[str, ...] = METHODS) -> dict:
    """Train what is missing, export ours' dataset, score ``methods`` on T; returns ``results.json``'s content."""
    cfg, res = pipe.cfg, pipe.res
    seconds: dict[str, float] = {}
    for stage in pipe.models.needed():
        t0 = time.time()
        pipe.models.get(stage)
        seconds[stage] = pipe.models.report(stage).get("seconds", time.time() - t0)
    attrs, loss = pipe.fit()
    seconds["fit"] = pipe.run.info("fit")["seconds"]
    pipe.log(f"[scenefit] fit ({cfg.fit.method}): {attrs.shape[0]} targets, mean content loss {loss.mean():.4f}")
    folder = pipe.export()
    seconds["export"] = pipe.run.info("export")["seconds"]
    scores = {m: pipe.score(m) for m in methods}
    for m in methods:
        seconds[f"score-{m}"] = scores[m]["seconds"]
    srep = pipe.models.report("surrogate") if pipe.models.uses("surrogate") else None
    fit = pipe.run.info("fit")
    metric = scores[methods[0]]["metric"]
    return {
        "setting": cfg.setting.name, "engine": res.engine.name, "seed": cfg.seed, "n_targets": len(pipe.problem.targets),
        "n_test": len(pipe.problem.test), "fit_method": cfg.fit.method, "metric": metric,
        "scores": {m: scores[m]["score"] for m in methods}, metric: {m: scores[m]["score"] for m in methods},
        "per_class": {m: scores[m]["per_class"] for m in methods if "per_class" in scores[m]},
        "attribute_error": fit.get("attribute_error", {}), "attribute_error_initial_centre": fit.get("attribute_error_initial_centre", {}),
        "surrogate": {k: srep[k] for k in ("heldout_l1", "mean_image_l1", "noise_floor", "steps", "resolution")} if srep else None,
        "fit": {k: v for k, v in fit.items() if k not in ("key",)}, "seconds": seconds, "dataset": str(folder),
        "fit_features_test_score": pipe.feature_score(),
    }


def write_report(pipe: Pipeline, results: dict) -> None:
    """``results.json``, ``summary.md`` and ``samples.png`` (targets, initial scenes, ours) in the run folder."""
    write_json(pipe.run.path("results.json"), results)
    k = 10
    sample_grid({"targets": pipe.problem.targets.image[:k], "initial": pipe.models.initial_set().image[:k],
                 "ours": pipe.ours().image[:: pipe.cfg.export.per_target][:k]}, pipe.run.path("samples.png"))
    atomic_write_text(pipe.run.path("summary.md"), summary_markdown(results))


def run_pipeline(cfg: RunConfig, out: str | Path, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Every stage into run folder ``out`` (resumed when it holds this problem); returns the results dict."""
    res = resolve(cfg)
    try:
        pipe = Pipeline(res, out, progress=progress, log=log)
        t0 = time.time()
        _ = pipe.problem  # built before anything is written: a bad config fails here
        claim(out, "run")
        with locked(out):
            clean_partials(out)
            pipe.start()
            log(f"[scenefit] data: {len(pipe.problem.targets)} targets, {len(pipe.problem.test)} test images ({time.time() - t0:.1f}s)")
            results = run_results(pipe)
            write_report(pipe, results)
        return results
    finally:
        res.close()


def fit_folder(cfg: RunConfig, targets: str | Path, out: str | Path, models: str | Path | None = None, overwrite: bool = False,
               progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Fit every image of folder ``targets`` and write the labeled dataset to ``out``.

    Networks come from ``models`` (read as they are) or the user's model store (trained there when missing).
    ``out`` may not be, hold or lie inside ``targets`` or ``models``.
    """
    check_disjoint(out, targets=targets, models=models)
    res = resolve(cfg, labeled_targets=False)
    try:
        e = res.engine
        images, names = load_image_folder(targets, e.channels, e.height, e.width, progress)
        store = model_store(models)
        problem = Problem(ImageSet(images, names=names), None, {"kind": "folder", "path": str(Path(targets).resolve())})
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="scenefit-fit-") as work:
            pipe = Pipeline(res, work, problem, store, progress, log)
            for stage in pipe.models.needed():
                pipe.models.get(stage)
            _, loss = pipe.fit()
            ours = pipe.ours()
            fit = pipe.run.info("fit")
            manifest = {"config": cfg.to_dict(), "seed": cfg.seed, "setting": cfg.setting.name, "targets": str(targets),
                        "engine": e.describe(), "models": str(store.root), "fit": {k: v for k, v in fit.items() if k != "key"}}
            export_dataset(out, ours.image, ours.label, ours.attrs, e, manifest, targets=ours.names,
                           fit_loss=loss.repeat_interleave(cfg.export.per_target), seeds=ours.seeds,
                           overwrite=overwrite, progress=progress, extra={"fitted.parquet": pipe.run.path("fitted.parquet")})
        return {"targets": len(names), "seconds": time.time() - t0, "mean_loss": float(loss.mean()), "fit": fit, "dataset": str(out),
                "models": str(store.root)}
    finally:
        res.close()


def train_models(cfg: RunConfig, out: str | Path, stages: tuple[str, ...] = ("surrogate",), progress: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Train the named model stages into run folder ``out``'s store; returns their reports."""
    res = resolve(cfg, labeled_targets=False)
    try:
        claim(out, "run")
        with locked(out):
            models = Models(res, ModelStore(Path(out) / "models"), progress, log)
            reports = {s: models.report(s) for s in stages}
            reports.update({f"{s}_folder": str(models.store.folder(s, models.key(s))) for s in stages})
            return reports
    finally:
        res.close()


def check(cfg: RunConfig, targets: str | Path | None = None, models: str | Path | None = None) -> list[str]:
    """Validate everything a run would read — the config against its engine and task, a target folder, the trained
    networks in ``models`` — without training; returns one line per check (errors raise, naming the file or field)."""
    res = resolve(cfg, labeled_targets=targets is None)
    try:
        e, space = res.engine, res.engine.space
        lines = [f"config: engine '{e.name}' ({e.channels}x{e.height}x{e.width}, {e.label_kind} labels, "
                 f"{len(space)} attributes: {', '.join(space.names)}); task '{res.task_name}'; fit '{cfg.fit.method}' at "
                 f"{res.fit_engine.height}x{res.fit_engine.width}, layer '{res.content_layer}'"]
        if targets is not None:
            _, names = load_image_folder(targets, e.channels, e.height, e.width, progress=False)
            lines.append(f"targets: {len(names)} images in {targets}, read at {e.width}x{e.height}")
        if models is not None:
            trained = Models(res, model_store(models), progress=False, log=lambda m: None, allowed=set())
            for stage in trained.needed():
                trained.get(stage)  # loads and checks every weight; a missing model raises
                lines.append(f"model {stage}: {trained.store.folder(stage, trained.key(stage))}")
        return lines
    finally:
        res.close()
