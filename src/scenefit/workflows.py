"""What the commands do, as library calls: ``run``, ``fit`` on a folder, ``train-surrogate``, ``check``.

Each checks the whole config and builds its inputs before it writes anything, claims and
locks its output folder (:mod:`scenefit.runs`), and writes outputs atomically.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from scenefit.config import ConfigError, RunConfig
from scenefit.evaluate import sample_grid, summary_markdown
from scenefit.imagefolder import load_targets
from scenefit.io import atomic_write_text, follow_umask, read_json, replace_dir, write_json, write_parquet
from scenefit.models import Models
from scenefit.pipeline import Pipeline
from scenefit.resolve import resolve
from scenefit.runs import FolderError, ModelStore, check_disjoint, claim, clean_partials, locked, sibling_lock
from scenefit.targetfiles import find_targets

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
    """Train what is missing, export ours' dataset, score ``methods`` on T; returns ``results.json``'s content.

    ``scores`` are task seed 0's; ``scores_seeds`` lists every seed's (``evaluate.task_seeds`` networks per training
    set, seed k of every method trained alike)."""
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
    seeded = {m: pipe.score_seeds(m) for m in methods}  # evaluate.task_seeds networks per set, paired by seed
    scores = {m: seeded[m][0] for m in methods}
    for m in methods:
        seconds[f"score-{m}"] = sum(r["seconds"] for r in seeded[m])
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
        "task_seeds": cfg.evaluate.task_seeds, "scores_seeds": {m: [r["score"] for r in seeded[m]] for m in methods},
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
               progress: bool = True, log: Callable[[str], None] = print, backend: str = "local", workers: int = 1,
               ray_address: str | None = None, shard_size: int = 2048, threads: int | None = None, retrain: bool = False,
               on_done: Callable[[dict, list], None] | None = None, glob: str | None = None) -> dict:
    """Fit every target image of folder ``targets`` and write the labeled dataset to ``out``, shard by shard (:mod:`scenefit.shards`).

    Which files are targets (sub-folders, KITTI and Cityscapes roots, ``glob`` as ``--glob``) and their names: see
    :mod:`scenefit.targetfiles`; the rule used is logged once unless the folder is flat.

    Networks come from ``models`` (read as they are) or the user's model store (trained there when missing, or again
    with ``retrain``). ``out`` may not be, hold or lie inside ``targets`` or ``models``. The work goes to
    ``.<out>.shards`` beside ``out``; an interrupted call resumes from its finished shards; the folder becomes ``out``
    when every shard is done. ``backend``, ``workers``, ``ray_address``, ``threads``: see :func:`scenefit.backends.run_shards`.

    With the population prior (``fit.amortized.prior_iters`` > 0) a pre-pass runs E on every target before the shards
    and writes each target's prior to the work folder (:mod:`scenefit.shardprior`; reused on resume, removed when the
    dataset is finished; the manifest's ``fit.prior`` records the share of targets it moved), so the fitted rows are
    those of one fit over all targets whatever the shard size.
    """
    from scenefit.amplify import append_sampled_rows
    from scenefit.backends import run_shards
    from scenefit.datasets import check_replaceable, clean_stale, finish_dataset
    from scenefit.fitreport import write_fit_report
    from scenefit.imagefolder import size_warning
    from scenefit.shardprior import PRIORS, ensure_priors, uses_priors
    from scenefit.shards import done, job_record, merge_shards, plan_shards

    check_disjoint(out, targets=targets, models=models)
    if cfg.fit.calibrate.attributes:
        raise ConfigError("fit.calibrate shifts every fitted row by one amount chosen on all targets at once; scenefit fit "
                          "streams shards of targets: leave fit.calibrate.attributes empty (or use scenefit run)")
    if cfg.fit.plain.selects:
        raise ConfigError("fit.plain.select_lrs and fit.plain.select_steps choose fit.lr and fit.steps on a fit's first targets; "
                          "scenefit fit streams shards, each of which would choose its own: set fit.lr and fit.steps to the pair "
                          "a scenefit run chose (its fit stage records plain_select) and leave the select fields empty")
    if retrain and models is not None:
        raise ConfigError("--retrain trains into the user's model store; --models folders are read as they are: leave out one of them")
    res = resolve(cfg, labeled_targets=False)
    out = Path(out)
    try:
        found = find_targets(targets, glob)
        files, names = list(found.files), list(found.names)
        if found.rule:
            log(f"[scenefit] {found.rule}")
        store = model_store(models)
        trained = Models(res, store, progress, log)
        for stage in trained.needed():
            if retrain:
                trained.retrain(stage)
            trained.get(stage)
        out.parent.mkdir(parents=True, exist_ok=True)
        with sibling_lock(out):
            clean_stale(out)
            check_replaceable(out, overwrite)
            work = out.with_name(f".{out.name}.shards")
            record = job_record(cfg.to_dict(), {s: trained.key(s) for s in trained.needed()}, files, shard_size, names)
            if work.exists():
                old = read_json(work / "job.json") if (work / "job.json").is_file() else None
                if old is None:
                    raise FolderError(f"{work} exists and is not scenefit's work folder; move it away")
                if old["key"] != record["key"]:
                    shutil.rmtree(work)  # ours, from another job
            if not work.exists():
                work.mkdir()
                follow_umask(work, directory=True)
                write_json(work / "job.json", record)
            shards = plan_shards(files, shard_size, names)
            todo = [s for s in shards if not done(work, s)]
            if len(todo) < len(shards):
                log(f"[scenefit] {out}: resuming, {len(shards) - len(todo)} of {len(shards)} shards are done")
            t0 = time.time()
            prior = ensure_priors(work, record["key"], res, trained, files, progress, log) if uses_priors(res) else None
            width = len(str(max(len(files) * cfg.export.per_target + cfg.export.sample - 1, 0)))
            args = {"config": cfg.to_dict(), "store": str(store.root), "folder": str(work), "rows_width": width,
                    "prior_key": record["key"] if prior else None}
            records = run_shards(args, todo, backend, workers, ray_address, threads, cfg.device.startswith("cuda"), progress, on_done)
            seconds = time.time() - t0
            changed: dict = {}
            for s in shards:
                for did, w, h, n in read_json(work / "shards" / f"{s.index:06d}.done.json")["resized"]:
                    changed[(did, w, h)] = changed.get((did, w, h), 0) + n
            msg = size_warning(targets, changed, len(files), res.engine.height, res.engine.width)
            if msg:
                warnings.warn(msg, stacklevel=2)
            meta, fit = merge_shards(work, shards)
            write_parquet(work / "fitted.parquet", fit)
            sampled = append_sampled_rows(work, meta, fit, res, cfg, width, progress, log) if cfg.export.sample else None
            e = res.engine
            report = write_fit_report(work, fit, meta, targets, e.space, res.sample_initial(5000, torch.Generator().manual_seed(cfg.seed + 11)),
                                      e.channels, e.height, e.width)
            manifest = {"config": cfg.to_dict(), "seed": cfg.seed, "setting": cfg.setting.name, "targets": str(targets),
                        "engine": res.engine.describe(), "models": str(store.root), "backend": backend, "workers": workers,
                        "shard_size": shard_size, "shards": len(shards),
                        "fit": {"method": cfg.fit.method, "layer": res.content_layer, "features": cfg.features.source,
                                "mean_loss": float(torch.tensor(fit["fit_loss"]).mean()), "report": "fit_report.md",
                                "loss_quantiles": report["loss"], **({"prior": prior} if prior else {})},
                        "sample": sampled}
            finish_dataset(work, meta, res.engine, manifest)
            shutil.rmtree(work / "shards")
            (work / PRIORS).unlink(missing_ok=True)
            (work / "job.json").unlink()
            replace_dir(work, out)
        log(f"[scenefit] fit report: {out / 'fit_report.md'} (content loss median {report['loss']['q50']:.4f}, "
            f"q90 {report['loss']['q90']:.4f}; worst {report['worst'][0][0] if report['worst'] else '-'})")
        for flag in report["flags"]:
            log(f"[scenefit] fit report flag: {flag.replace('**', '')}")
        loss = torch.tensor(fit["fit_loss"])
        stages = {k: sum(r["seconds"][k] for r in records) for k in ("read", "fit", "render", "write")}
        return {"targets": len(files), "rows": len(meta["file_name"]), "sampled": sampled, "seconds": seconds, "mean_loss": float(loss.mean()),
                "shards": len(shards), "ran": len(records), "dataset": str(out), "models": str(store.root),
                "report": str(out / "fit_report.md"),
                "worker_seconds": stages, "worker_max_rss_kb": max((r["max_rss_kb"] for r in records), default=0)}
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


def check(cfg: RunConfig, targets: str | Path | None = None, models: str | Path | None = None, glob: str | None = None) -> list[str]:
    """Validate everything a run would read — the config against its engine and task, a target folder (its files
    chosen as by :func:`fit_folder` with ``glob``), the trained networks in ``models`` — without training; returns one
    line per check (errors raise, naming the file or field)."""
    res = resolve(cfg, labeled_targets=targets is None)
    try:
        e, space = res.engine, res.engine.space
        lines = [f"config: engine '{e.name}' ({e.channels}x{e.height}x{e.width}, {e.label_kind} labels, "
                 f"{len(space)} attributes: {', '.join(space.names)}); task '{res.task_name}'; fit '{cfg.fit.method}' at "
                 f"{res.fit_engine.height}x{res.fit_engine.width}, layer '{res.content_layer}'"]
        if targets is not None:
            found = find_targets(targets, glob)
            _, names = load_targets(found, e.channels, e.height, e.width, progress=False)
            rule = f" ({found.rule})" if found.rule else ""
            lines.append(f"targets: {len(names)} images in {targets}, read at {e.width}x{e.height}{rule}")
        if models is not None:
            trained = Models(res, model_store(models), progress=False, log=lambda m: None, allowed=set())
            for stage in trained.needed():
                trained.get(stage)  # loads and checks every weight; a missing model raises
                lines.append(f"model {stage}: {trained.store.folder(stage, trained.key(stage))}")
        return lines
    finally:
        res.close()
