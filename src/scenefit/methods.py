"""The experiments' other rows on the same pipeline: dataset-level baselines and set distances, as keyed stages.

    baseline-<m>   Meta-Sim, Attribute Descent or SDR learns an attribute distribution toward X_t
                   (``baselines.<m>`` config; attributes saved in ``methods/<m>.safetensors``)
    score-<m>      the task network trained on its rows rendered by R, scored on T (:meth:`Pipeline.score`);
                   ``score-<m>-seed<k>`` with task seed k (:func:`score_method_seeds`, ``evaluate.task_seeds``)
    metrics-<m>    MMD², FID and KID between a method's set and X_t on the set features (``baselines.features``: P,
                   or F's ``baselines.layer``)

Baselines work at the fitting resolution (the engine R at ``1 / fit_divisor``, F's features there); the sets
they are scored on are rendered at full resolution, as ours is.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, replace

import torch
import torch.nn.functional as F

from scenefit.baselines import BASELINES
from scenefit.baselines.base import ScoreFn
from scenefit.data import ImageSet, render_rows
from scenefit.io import load_tensors, save_tensors
from scenefit.metrics import fid, kid, median_bandwidth, mmd2
from scenefit.pipeline import Pipeline
from scenefit.runs import key_of
from scenefit.seeding import draw_seeds

BASELINE_METHODS = ("metasim", "attribute-descent", "sdr")
ALL_METHODS = ("initial", "metasim", "attribute-descent", "sdr", "ours", "oracle")


def stable_seed(seed: int, *names: str) -> int:
    """A seed that depends only on ``seed`` and ``names`` (not on which jobs ran before)."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**62)


def _section(pipe: Pipeline, method: str):
    return getattr(pipe.cfg.baselines, method.replace("-", "_"))


def _features_key(pipe: Pipeline, method: str) -> str:
    """What a baseline's rows depend on of the set features: nothing for SDR (rewarded by accuracy)."""
    return pipe.models.set_features_key() if BASELINES[method][0].uses_features else "reads no features"


def _no_features(images: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("this baseline was declared not to read features (uses_features = False) but called feature_fn")


def baseline_key(pipe: Pipeline, method: str) -> str:
    """Store key of baseline ``method``'s rows in ``pipe``: everything they depend on (problem, F, the method's config,
    the set features, reward settings, the fitting engine, the initial scenes, the seed)."""
    c = pipe.cfg
    m = c.setting.initial
    return key_of("baseline", method, pipe.problem_key(), pipe.models.key("task"), asdict(_section(pipe, method)), _features_key(pipe, method),
                  c.baselines.validation, c.baselines.reward_epochs, pipe.res.fit_engine.describe(),
                  m.to_dict() if m is not None else "engine prior", pipe.models.n_initial, c.seed)


def at_resolution(images: torch.Tensor, size: tuple[int, int],
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``images`` (N, C, H, W) area-resized to ``size`` and class masks (N, H, W) nearest-resized; as they are when
    already that size."""
    if tuple(images.shape[-2:]) == size:
        return images, labels
    small = F.interpolate(images, size=size, mode="area")
    if labels is not None and labels.dim() == 3:
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return small, labels


REWARD_SEED = 6
"""Every reward's task network starts from ``seed + REWARD_SEED``."""


def reward_inputs(pipe: Pipeline) -> tuple[tuple[torch.Tensor, torch.Tensor], ScoreFn]:
    """What a label-reading baseline (SDR, Meta-Sim's task term) is rewarded with: the labeled validation split (the
    first ``baselines.validation`` targets at the fitting resolution) and a :data:`ScoreFn` that trains a task
    network ``baselines.reward_epochs`` epochs with the ``task`` recipe and returns its score on that split."""
    res, cfg = pipe.res, pipe.cfg
    fe, targets = res.fit_engine, pipe.problem.targets
    k = min(cfg.baselines.validation, len(targets))
    validation = at_resolution(targets.image[:k], (fe.height, fe.width), targets.label[:k])
    recipe = replace(cfg.task, epochs=cfg.baselines.reward_epochs)

    def score_fn(images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor, val_labels: torch.Tensor) -> float:
        net = res.task_cls.train_net(images, labels, fe.labels, recipe, cfg.seed + REWARD_SEED, cfg.device, progress=False)
        return net.score(val_images, val_labels)["score"]

    return validation, score_fn


def baseline_rows(pipe: Pipeline, method: str) -> tuple[torch.Tensor, dict]:
    """The attribute rows (n_targets × per_target, D) ``method`` learns (stage ``baseline-<method>``) and its report."""
    stage, key, path = f"baseline-{method}", baseline_key(pipe, method), f"methods/{method}.safetensors"
    if pipe.needs(stage, key, (path,)):
        t0 = time.time()
        res, cfg = pipe.res, pipe.cfg
        fe = res.fit_engine
        size = (fe.height, fe.width)
        cls, _ = BASELINES[method]
        obj = cls(_section(pipe, method))
        targets = pipe.problem.targets
        validation, score_fn = reward_inputs(pipe) if obj.uses_target_labels else (None, None)
        feats = pipe.models.set_features() if cls.uses_features else _no_features
        g = torch.Generator().manual_seed(stable_seed(cfg.seed, method))
        report = obj.fit(fe, res.sample_initial, at_resolution(targets.image, size)[0], feats, g, pipe.progress,
                         validation, score_fn)
        attrs = obj.sample(pipe.models.n_initial, g)
        save_tensors(pipe.run.path(path), {"attrs": attrs})
        unit = fe.space.normalize(attrs)[:, list(fe.space.continuous)]
        spread = {"unit_std_mean": unit.std(0).mean().item(), "at_bound_fraction": ((unit < 1e-4) | (unit > 1 - 1e-4)).float().mean().item()}
        pipe.run.mark(stage, key, {"seconds": time.time() - t0, "report": report, "files": [path], **spread,
                                   "feature_layer": res.set_space if cls.uses_features else "none"})
    return load_tensors(pipe.run.path(path))["attrs"], pipe.run.info(stage)


def baseline_set(pipe: Pipeline, method: str) -> ImageSet:
    """``method``'s rows rendered by R at full resolution (seeded per row), with labels."""
    attrs, _ = baseline_rows(pipe, method)
    seeds = draw_seeds(attrs.shape[0], torch.Generator().manual_seed(stable_seed(pipe.cfg.seed, method) + 1))
    out = render_rows(pipe.res.engine, attrs, seeds)
    return ImageSet(out["image"], out["label"], attrs)


def register_baseline(pipe: Pipeline, method: str) -> None:
    """Make ``method``'s rendered rows one of ``pipe``'s training sets (key and builder)."""
    pipe.register_set(method, lambda: key_of(baseline_key(pipe, method), "rendered", pipe.res.engine.describe()),
                      lambda: baseline_set(pipe, method))


def _baseline_info(pipe: Pipeline, method: str) -> dict | None:
    """For a baseline: learn its rows if needed, register its set and return its score's extra report; else None."""
    if method not in BASELINE_METHODS:
        return None
    _, info = baseline_rows(pipe, method)
    register_baseline(pipe, method)
    return {"baseline_seconds": info["seconds"]}


def score_method(pipe: Pipeline, method: str, task_seed: int = 0) -> dict:
    """Train and score the task network on ``method``'s set (any of :data:`ALL_METHODS`, or ``ceiling``) with task
    seed ``task_seed`` (:meth:`Pipeline.score`; 0: the score every table reports)."""
    return pipe.score(method, _baseline_info(pipe, method), task_seed)


def score_method_seeds(pipe: Pipeline, method: str) -> list[dict]:
    """:func:`score_method` once per task seed 0 .. ``evaluate.task_seeds`` - 1, on one training set and one T
    (:meth:`Pipeline.score_seeds`)."""
    return pipe.score_seeds(method, _baseline_info(pipe, method))


def method_set(pipe: Pipeline, method: str) -> ImageSet:
    """The training set of ``method`` (initial, ours, oracle or a baseline)."""
    if method in BASELINE_METHODS:
        register_baseline(pipe, method)
    return pipe.training_set(method)


def set_metrics(pipe: Pipeline, method: str) -> dict:
    """MMD² (Gaussian kernel, median bandwidth of X_t's features), FID and KID between ``method``'s set and X_t on
    the set features (:meth:`Models.set_features`; stage ``metrics-<method>``)."""
    stage = f"metrics-{method}"
    if method in BASELINE_METHODS:
        register_baseline(pipe, method)
    c = pipe.cfg
    ev = {k: v for k, v in asdict(c.evaluate).items() if k != "task_seeds"}  # no score here: keys stay as before task seeds
    key = key_of(stage, pipe.set_key(method), pipe.models.key("task"), pipe.models.set_features_key(), ev, pipe.problem_key())
    if pipe.needs(stage, key):
        t0 = time.time()
        feats = pipe.models.set_features()
        synth, targets = method_set(pipe, method).image, pipe.problem.targets.image
        f_s, f_t = feats.batched(synth), feats.batched(targets)
        sigma = median_bandwidth(f_t[0::2], f_t[1::2])
        subset = max(2, min(c.evaluate.kid_subset, synth.shape[0], targets.shape[0]))
        kid_mean, kid_std = kid(targets, synth, feats, subset_size=subset, subsets=100, seed=stable_seed(c.seed, method) + 2)
        pipe.run.mark(stage, key, {"layer": pipe.res.set_space, "bandwidth": sigma, "mmd2": mmd2(f_s, f_t, bandwidth=sigma),
                                   "fid": fid(targets, synth, feats), "kid_mean": kid_mean, "kid_std": kid_std, "kid_subset_size": subset,
                                   "seconds": time.time() - t0})
    return pipe.run.info(stage)


__all__ = ["ALL_METHODS", "BASELINE_METHODS", "baseline_rows", "baseline_set", "method_set", "register_baseline", "score_method",
           "score_method_seeds", "set_metrics", "stable_seed"]
