"""The paper's driving-scene experiment (§4.2, Table 4): the street engine fitted to street images, a segmenter
trained on each method's set.

The run is the one pipeline on the preset ``street-<scale>`` (``--set`` reaches every field) in the run folder
``out``; its rows:

    initial   F, the segmenter trained on the initial scenes (the engine's prior)
    metasim   Meta-Sim with F's set features, the same engine, number of images and recipe
    ours      the per-target fit (default ``codebook-verify`` on FN's features), rendered by R
    oracle    the segmenter trained on the labeled target images (the role Virtual KITTI plays in the paper)

Targets: the built-in domain of the preset (a two-mode scene mixture with the ``street-grade`` look), or a
KITTI / Cityscapes folder. ``stages`` runs only some stages (the ones they read must be done), so copies of a
folder can run stages apart; ``merge_from`` joins folders of the same targets. Table 4, ``results.json`` and the
figures are written once every row is done. Measured figures: docs/RESULTS.md.

Task seeds: with ``evaluate.task_seeds`` n (the street-quick and street-paper presets set 3), every row's set trains
n segmenters, seed k with ``seed + 5 + k`` (k = 0: the row's one score, stage ``score-<row>``; k > 0: stage
``score-<row>-seed<k>``), on the same rendered set and scored on the same test split, so rows pair seed by seed.
``results.json`` keeps ``miou``, ``per_class`` and ``images`` as seed 0's, and adds:

    task_seeds         n; ``task_net_seeds``: the seeds the networks trained with, the same list for every row
    miou_seeds         row -> [mIoU of seed 0, ..., seed n - 1]
    miou_mean          row -> mean over the seeds
    miou_std           row -> sample standard deviation over the seeds (n - 1 in the denominator; null at n = 1)
    paired_vs_initial  row -> per_seed [row_k - initial_k], their mean and sample std (metasim, ours, oracle)
    gap_closed         row -> per_seed [(row_k - initial_k) / (oracle_k - initial_k)], ``mean`` of those, and
                       ``ratio_of_means`` (mean row - mean initial) / (mean oracle - mean initial) (metasim, ours;
                       null where the gap is 0)

``seconds`` holds each row's wall time summed over its seeds.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

import torch

from scenefit.config import ConfigError, RunConfig
from scenefit.configio import config_from_dict, merge
from scenefit.data import ImageSet, Problem, render_rows
from scenefit.experiments import DRIVING_STAGES, driving_figures
from scenefit.experiments.driving_camera import camera_comparison
from scenefit.fitjob import rendered_rows
from scenefit.io import write_json
from scenefit.methods import baseline_rows, method_set, score_method_seeds
from scenefit.models import SEED
from scenefit.pipeline import Pipeline, score_stage
from scenefit.resolve import Resolved, resolve
from scenefit.runs import FolderError, claim, clean_partials, locked, merge_runs
from scenefit.street_targets import load_cityscapes, load_kitti_semantics

METHODS = ("initial", "metasim", "ours", "oracle")
ALLOWS = {"task": {"task"}, "surrogate": {"surrogate"}, "features": {"features"}, "fit": {"fit"},
          "initial": {"task", "score-initial"}, "ours": {"export", "score-ours"}, "metasim": {"probe", "baseline-metasim", "score-metasim"},
          "oracle": {"score-oracle"}}
"""The stages each ``--stages`` entry may run (task seed 0's; :func:`allowed_stages` adds the other seeds')."""


def driving_config(scale: str = "quick", seed: int = 0, device: str = "cpu", overrides: dict | None = None) -> RunConfig:
    """The preset ``street-<scale>`` with the seed, the device and ``overrides``."""
    if scale not in ("tiny", "quick", "paper"):
        raise ConfigError(f"unknown scale '{scale}'; choose from: tiny, quick, paper")
    cfg = config_from_dict({"preset": f"street-{scale}", "seed": seed, "device": device})
    return merge(cfg, overrides) if overrides else cfg


def folder_problem(res: Resolved, kitti: Path | None, cityscapes: Path | None) -> Problem | None:
    """X_t and the test split from a KITTI semantics folder (split by the seed) or a Cityscapes root (train / val);
    None for the built-in domain."""
    cfg, e = res.cfg, res.engine
    s = cfg.setting
    if kitti is not None:
        pool = load_kitti_semantics(kitti, e.height, e.width, limit=s.n_targets + s.n_test)
        n = pool["image"].shape[0]
        if n < 4:
            raise ValueError(f"KITTI folder {kitti} holds {n} labeled images; the experiment needs at least 4 (2 targets, 2 test)")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 100))
        n_test = min(s.n_test, n // 2)
        test, tgt = perm[:n_test], perm[n_test:]
        names = pool["names"]
        return Problem(ImageSet(pool["image"][tgt], pool["label"][tgt], names=[names[i] for i in tgt.tolist()]),
                       ImageSet(pool["image"][test], pool["label"][test]), {"kind": "kitti", "path": str(Path(kitti).resolve())})
    if cityscapes is not None:
        tgt = load_cityscapes(cityscapes, "train", e.height, e.width, limit=s.n_targets)
        test = load_cityscapes(cityscapes, "val", e.height, e.width, limit=s.n_test)
        return Problem(ImageSet(tgt["image"], tgt["label"], names=tgt["names"]), ImageSet(test["image"], test["label"]),
                       {"kind": "cityscapes", "path": str(Path(cityscapes).resolve())})
    return None


def allowed_stages(stages: list[str], task_seeds: int) -> set[str]:
    """The pipeline stages that ``--stages`` entries ``stages`` may run, each row's score at every task seed."""
    names = set().union(*(ALLOWS[s] for s in stages))
    rows = [m for m in METHODS if f"score-{m}" in names]
    return names | {score_stage(m, k) for m in rows for k in range(1, task_seeds)}


def _pending(pipe: Pipeline, method: str) -> bool:
    """Whether ``method``'s row is not done yet at every task seed (checked without running anything)."""
    allowed, models_allowed = pipe.allowed, pipe.models.allowed
    pipe.allowed = pipe.models.allowed = set()
    try:
        score_method_seeds(pipe, method)
        return False
    except FolderError:
        return True
    finally:
        pipe.allowed, pipe.models.allowed = allowed, models_allowed


def run_driving_experiment(
    out: str | Path, scale: str = "quick", seed: int = 0, device: str = "cpu", progress: bool = True,
    kitti: str | Path | None = None, cityscapes: str | Path | None = None, log: Callable[[str], None] = print,
    stages: list[str] | None = None, merge_from: list[str | Path] | tuple = (), overrides: dict | None = None,
) -> dict:
    """Run (or resume) Table 4 into ``out``; returns the ``results.json`` content, or ``{"missing": [...]}`` while a
    ``stages`` run leaves rows undone. A bad config or target folder raises before anything is written."""
    if kitti is not None and cityscapes is not None:
        raise ValueError("pass either kitti or cityscapes targets, not both")
    if stages is not None:
        bad = [s for s in stages if s not in DRIVING_STAGES]
        if bad or not stages:
            raise ValueError(f"unknown stage(s) {bad or stages!r}; choose from: {', '.join(DRIVING_STAGES)}")
    out = Path(out)
    res = resolve(driving_config(scale, seed, device, overrides), labeled_targets=kitti is None and cityscapes is None)
    try:
        allowed = None if stages is None else allowed_stages(stages, res.cfg.evaluate.task_seeds)
        pipe = Pipeline(res, out, folder_problem(res, kitti, cityscapes), progress=progress, log=log, allowed=allowed)
        _ = pipe.problem  # built before anything is written
        claim(out, "run")
        with locked(out):
            clean_partials(out)
            pipe.start()
            for src in merge_from:
                copied = merge_runs(src, out)
                log(f"[driving] merged from {src}: {', '.join(copied) or 'nothing new'}")
            for s in stages or ():
                if s in ("task", "surrogate", "features"):
                    pipe.models.get(s)
                elif s == "fit":
                    pipe.fit()
            for m in METHODS:
                if stages is None or m in stages:
                    r = [x["score"] for x in score_method_seeds(pipe, m)]
                    each = ", ".join(f"{100 * x:.1f}" for x in r)
                    more = f" (task seeds: {each}; mean {100 * sum(r) / len(r):.1f}%)" if len(r) > 1 else ""
                    log(f"[driving] {m}: mIoU {100 * r[0]:.1f}%{more}")
                    if m == "ours":
                        pipe.export()
            missing = [m for m in METHODS if _pending(pipe, m)]
            if missing:
                log(f"[driving] {out}: rows still to run: {', '.join(missing)}")
                return {"experiment": "driving", "scale": scale, "seed": seed, "missing": missing}
            pipe.allowed = pipe.models.allowed = None  # every row is done: the table's cheap diagnostics may run
            results = driving_results(pipe, scale)
            data = figure_inputs(pipe)
            cam = camera_comparison(pipe)
            if cam is not None:
                results["camera"], data["camera"] = cam
            driving_figures.write_outputs(out, results, data)
            write_json(out / "results.json", results)
            log(f"[driving] wrote {out / 'table4.md'}, {out / 'results.json'} and {out / 'figures'}")
            return results
    finally:
        res.close()


def driving_results(pipe: Pipeline, scale: str) -> dict:
    """Table 4's numbers and the run's reports (every row done)."""
    seeds = {m: score_method_seeds(pipe, m) for m in METHODS}
    rows = {m: seeds[m][0] for m in METHODS}
    fe, cfg = pipe.res.fit_engine, pipe.cfg
    srep = pipe.models.report("surrogate")
    ms = pipe.run.info("baseline-metasim")
    src = pipe.problem.source
    return {
        "experiment": "driving", "scale": scale, "seed": cfg.seed, "config": cfg.to_dict(),
        "targets": {"kind": "builtin" if src["kind"] == "synthesized" else src["kind"], "path": src.get("path")},
        "fit_resolution": [fe.height, fe.width], "feature_layer": pipe.res.content_layer, "metasim_layer": ms["feature_layer"],
        "miou": {m: rows[m]["score"] for m in METHODS}, "per_class": {m: rows[m]["per_class"] for m in METHODS},
        "classes": rows["initial"]["classes"], "images": {m: rows[m]["images"] for m in METHODS},
        "paper": {m: v[1] for m, v in driving_figures.PAPER_TABLE4.items()},
        "surrogate": {k: srep[k] for k in ("heldout_l1", "mean_image_l1", "noise_floor", "steps", "resolution")},
        "fit_features": ({**pipe.models.report("features"), "test_score": pipe.feature_score()}
                         if cfg.features.source == "fit_net" else None),
        "fit": {k: v for k, v in pipe.run.info("fit").items() if k != "key"},
        "metasim": {k: v for k, v in ms.items() if k != "key"},
        "seconds": {**{m: sum(r["seconds"] for r in seeds[m]) for m in METHODS}, "fit": pipe.run.info("fit")["seconds"]},
        "look_attributes": [fe.space.names[i] for i in fe.space.look],
        "task_seeds": cfg.evaluate.task_seeds, "task_net_seeds": [cfg.seed + SEED["task"] + k for k in range(cfg.evaluate.task_seeds)],
        **seed_statistics({m: [r["score"] for r in seeds[m]] for m in METHODS}),
    }


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for one value) of ``xs``."""
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def seed_statistics(miou_seeds: dict[str, list[float]]) -> dict:
    """Table 4 over task seeds from each row's per-seed mIoU (rows ``initial``, ``metasim``, ``ours``, ``oracle``, one
    entry per seed, seed k of every row trained with the same seed): ``results.json``'s seed keys (module doc)."""
    n = {len(v) for v in miou_seeds.values()}
    if len(n) != 1 or 0 in n:
        counts = {m: len(v) for m, v in miou_seeds.items()}
        raise ValueError(f"every row needs the same, non-zero number of task seeds; got {counts}")
    stats = {m: _mean_std(v) for m, v in miou_seeds.items()}
    init, orc = miou_seeds["initial"], miou_seeds["oracle"]
    paired = {}
    for m in ("metasim", "ours", "oracle"):
        d = [r - i for r, i in zip(miou_seeds[m], init)]
        mean, std = _mean_std(d)
        paired[m] = {"per_seed": d, "mean": mean, "std": std}
    gap, top = {}, stats["oracle"][0] - stats["initial"][0]
    for m in ("metasim", "ours"):
        shares = [(r - i) / (o - i) if o != i else None for r, i, o in zip(miou_seeds[m], init, orc)]
        gap[m] = {"per_seed": shares, "mean": None if None in shares else sum(shares) / len(shares),
                  "ratio_of_means": (stats[m][0] - stats["initial"][0]) / top if top != 0 else None}
    return {"miou_seeds": {m: list(v) for m, v in miou_seeds.items()}, "miou_mean": {m: v[0] for m, v in stats.items()},
            "miou_std": {m: v[1] for m, v in stats.items()}, "paired_vs_initial": paired, "gap_closed": gap}


def figure_inputs(pipe: Pipeline, k: int = 6) -> dict:
    """What Figures 10, 11 and the attribute chart draw (renders of the first ``k`` targets' rows, Meta-Sim's first
    ``k`` images, and with look attributes ours' scenes again at the initial look; attribute rows)."""
    res, cfg = pipe.res, pipe.cfg
    fe = res.fit_engine
    targets = pipe.problem.targets
    init = pipe.models.initial_set()
    ours = pipe.ours()
    fitted, _ = pipe.fit()
    G = pipe.models.surrogate()
    dev = next(G.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed + 606)
    uniform = fe.space.sample_uniform(k, g)
    with torch.no_grad():
        r_uni, r_fit = fe.images(uniform, g), fe.images(fitted[:k], g)
        g_uni, g_fit = G(uniform.to(dev)).cpu(), G(fitted[:k].to(dev)).cpu()
    reps = cfg.export.per_target
    ms_rows = baseline_rows(pipe, "metasim")[0]
    rows = {"initial": init.attrs[:500], "Meta-Sim": ms_rows, "ours": fitted}
    ms = method_set(pipe, "metasim")
    neutral = None
    if res.engine.space.look:  # ours' first k scenes again, every look attribute at the initial centre's value
        plain = fitted[:k].clone()
        look = list(res.engine.space.look)
        plain[:, look] = res.initial_centre()[look]
        prow, pseeds = rendered_rows(plain, reps, cfg.seed)
        neutral = render_rows(res.engine, prow[::reps], pseeds[::reps])["image"]
    if targets.attrs is not None:
        rows["targets (truth)"] = targets.attrs
    return {"space": res.engine.space, "labels": res.engine.labels,
            "targets": (targets.image[:k], targets.label[:k] if targets.label is not None else None),
            "initial": (init.image[:k], init.label[:k]), "ours": (ours.image[::reps][:k], ours.label[::reps][:k]),
            "metasim": (ms.image[:k], ms.label[:k]), "ours_neutral_look": neutral,
            "fit_resolution": (fe.height, fe.width), "surrogate": {"R uniform": r_uni, "G uniform": g_uni, "R fitted": r_fit, "G fitted": g_fit},
            "attribute_rows": rows}
