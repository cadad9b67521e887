"""The paper's driving-scene experiment (§4.2, Table 4): fit the street engine to street images, train a segmenter.

Stages, each cached in ``out`` (outputs written atomically, then a marker in
``stages/``; a rerun skips finished stages, so an interrupted run resumes):

    targets    X_t (unlabeled for fitting; its labels are kept aside for the oracle) and a labeled test split
    task       F: the segmenter trained on initial scenes -- Table 4's "initial scenes" row and the feature network
    surrogate  G imitating R at the fitting resolution; held-out L1 against R, the mean image and R's own noise
    features   FN, the fit's feature network: a segmenter trained on augmented renders of the whole attribute box
               (``fit_net``; ``--fit-features task`` fits on F instead, as the paper does, and skips this stage)
    fit        per target: codebook search over R's renders, refinement through G, choice verified with R
    calibrate  optional (``set_level``, off by default): one shared shift of chosen columns of the fitted rows
    ours       R(ξ*) (after calibrate) at full resolution with labels -> ``dataset/``; segmenter with the fixed recipe
    ours_per_target  only with ``set_level``: the rows without the shift (the per-target fit alone; an ablation row)
    metasim    Meta-Sim with the same features, number of images and recipe
    oracle     segmenter trained on the labeled target images (the role Virtual KITTI plays in the paper)
    (report)   table4.md/.csv, results.json, figures/ -- rewritten on every call

``stages=`` (CLI ``--stages``) runs only the named stages, once the stages they read (:data:`STAGE_NEEDS`) are
done, so copies of one folder can run independent stages at once, on one machine or several;
:func:`merge_stages` (CLI ``--merge-from``) copies the finished ones back into one folder.

**Fitting resolution.** Fitting, Meta-Sim and the surrogate work at ``1/fit_factor``
of the engine's resolution (48×160 for the default 96×320): G then has the
paper's 2 FC + 8 transposed convolutions (4 doubling ones from 3×10, 4 at
48×160) at 128 base channels, and one G step costs ~0.37 s at batch 16 on one
CPU thread instead of ~1.8 s at full resolution; F's feature pass is ~7× and
its input-gradient pass ~6× cheaper. The "fit engine" is the same
:class:`StreetEngine` at that size, which lays out the same scene for the same
seed (mean |difference| 0.011 against an area-downsampled full render). The
content loss is ``1 - cos`` on F's class-probability map (``layer`` "probs":
the softmax of the logits at output stride 8, i.e. the predicted layout) of
images area-resized to the fitting resolution, for targets and renders alike;
the datasets every method trains on are rendered at full resolution.

**Fit features.** The paper fits on F's features. On the built-in target domain
F reads the graded, blurred, noisy targets badly (36.3% mIoU at the fitting
resolution, paper scale), so its fitted rows ended farther from the targets'
true attributes than the initial centre (unit-cube MAE 0.272 against 0.229).
By default the fit therefore uses FN (stage ``features``): the same segmenter
architecture trained with F's recipe on ``fit_net.images`` renders drawn
uniformly from the whole attribute box, each passed once through
:func:`scenefit.augment.photometric_augment` (generic camera variation; no
target image or label is used). At the paper scale FN read the targets at
55.0% (F 36.3%), its rows landed at MAE 0.210, and they trained to 52.0, 48.6
and 53.5% mIoU over three segmenter seeds against 44.3-47.6 for F's rows
(docs/RESULTS.md).
Meta-Sim keeps F's features, as before. The paper
uses the final feature map ("aspp": ASPP + 3×3 head); on the quick scale the
predicted layout gave 37.9% mIoU against 36.8% (3 segmenter seeds each,
``benchmarks/bench_driving_ceiling.py``; a gap the size of the seed spread), so
it is the default here. Meta-Sim keeps the "aspp" features for its MMD
(``metasim_layer``).

**Ours** = the paper's Algorithm 1 with two safeguards against the local minima
the paper reports: every target starts from the ``keep`` best of ``codes`` Sobol
points of the whole attribute space, rendered by R (the engine is cheap to run
forward and sharper than G), and after the gradient steps through G the final
ξ* is chosen among {codebook starts, refined point} by the content loss of
R's renders (``verify_seeds`` seeds shared by the candidates of a target).
An optional departure from the paper, off by default (``set_level`` empty; the
``--set-level`` flag turns it on): attributes such as the street engine's
``sun_brightness`` and ``sky_color`` describe the capture conditions of the
whole target set more than the content of one image, so
:func:`scenefit.calibration.set_level_shift` can add one shared unit-cube shift
to those columns of every fitted row, chosen by the MMD² between the fit's
features (FN's, or F's) of R's renders and of X_t (no labels); the ``ours_per_target`` row then trains
on the unshifted rows. It lowered MMD² but cost mIoU: 35.6% against 36.0% over
four quick-scale runs, and 43.5% against 46.7% over three segmenter seeds at
the paper scale (docs/RESULTS.md), hence off.

Layout of ``out``::

    config.json                  the resolved scale config, seed and target source; a resumed run must match
    stages/<stage>.json          per-stage report (timings, mIoU, per-class IoU)
    targets.safetensors          X_t and test images + labels (+ true attributes of the built-in domain)
    task_initial.safetensors     F (+ .json); seg_<method>.safetensors: the other segmenters
    fit_net.safetensors          FN (+ .json), the fit's feature network (absent with ``--fit-features task``)
    surrogate.safetensors        G (+ .json with its report)
    fitted.parquet               per target: fitted attributes (before calibration), chosen candidate, content losses
    stages/calibrate.json        the set-level shift, MMD² before/after and every candidate evaluated (empty when off)
    metasim_attrs.safetensors    Meta-Sim's sampled attributes
    dataset/                     ours: PNG images + label masks + metadata.csv + manifest.json
    table4.md, table4.csv, results.json, figures/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from scenefit.augment import PhotometricAugment, photometric_augment
from scenefit.baselines import make_baseline
from scenefit.calibration import apply_shift, set_level_shift
from scenefit.config import ConfigError
from scenefit.datasets import export_dataset
from scenefit.engines.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from scenefit.engines.street import StreetEngine
from scenefit.experiments.driving_figures import PAPER_TABLE4, write_outputs
from scenefit.features import content_loss
from scenefit.fitting import FitConfig, code_grid, codebook_starts, fit_candidates
from scenefit.io import save_tensors, write_json
from scenefit.segmentation import SegNet, SegRecipe, evaluate_miou, load_segmenter, save_segmenter, train_segmenter
from scenefit.street_targets import load_cityscapes, load_kitti_semantics, render_target_domain
from scenefit.surrogate import SurrogateConfig, holdout_set, l1_error, load_surrogate, noise_floor, save_surrogate, train_surrogate

METHODS = ("initial", "metasim", "ours", "ours_per_target", "oracle")
STAGES = ("targets", "task", "surrogate", "features", "fit", "calibrate", "ours", "ours_per_target", "metasim", "oracle")
# the stages each stage reads: with --stages, these must be done (in this folder) first
STAGE_NEEDS: dict[str, tuple[str, ...]] = {
    "targets": (), "task": ("targets",), "surrogate": (), "features": ("targets",), "fit": ("targets", "task", "surrogate", "features"),
    "calibrate": ("fit",),
    "ours": ("calibrate",), "ours_per_target": ("fit",), "metasim": ("task",), "oracle": ("targets",),
}
# the files each stage writes beside stages/<stage>.json (what to copy when merging folders run apart)
STAGE_FILES: dict[str, tuple[str, ...]] = {
    "targets": ("config.json", "targets.safetensors"), "task": ("task_initial.safetensors", "task_initial.json"),
    "surrogate": ("surrogate.safetensors", "surrogate.json"), "features": ("fit_net.safetensors", "fit_net.json"),
    "fit": ("fitted.parquet",), "calibrate": (),
    "ours": ("seg_ours.safetensors", "seg_ours.json", "dataset"),
    "ours_per_target": ("seg_ours_per_target.safetensors", "seg_ours_per_target.json"),
    "metasim": ("metasim_attrs.safetensors", "seg_metasim.safetensors", "seg_metasim.json"),
    "oracle": ("seg_oracle.safetensors", "seg_oracle.json"),
}
# the fields of ``scale_config`` each stage reads itself; a stage's result depends on these and on its needs' fields
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "targets": ("height", "width", "n_targets", "n_test"), "task": ("seg", "renders_per_target"),
    "surrogate": ("height", "width", "fit_factor", "surrogate"), "features": ("fit_factor", "seg", "fit_net"),
    "fit": ("fit_factor", "codes", "keep", "verify_seeds", "fit", "layer", "fit_net"),
    "calibrate": ("set_level", "set_level_points", "set_level_rounds", "layer", "fit_net"),
    "ours": ("seg", "renders_per_target"), "ours_per_target": ("seg", "renders_per_target"),
    "metasim": ("fit_factor", "metasim", "metasim_layer", "seg", "renders_per_target"), "oracle": ("seg", "renders_per_target"),
}


def stage_fields(stage: str) -> set[str]:
    """Every ``scale_config`` field that ``stage``'s result depends on: its own and, recursively, its needs'."""
    fields = set(STAGE_FIELDS[stage])
    for need in STAGE_NEEDS[stage]:
        fields |= stage_fields(need)
    return fields


@dataclass(frozen=True)
class MetaSimBudget:
    """Meta-Sim's budget (``make_baseline('metasim', scale, **fields)``); one iteration renders batch × 39 images.

    box_weight: :class:`scenefit.baselines.MetaSimConfig`'s pull-back on outputs past a bound. Without it (0), at
    the paper budget all values of the first 200 Meta-Sim rows sat at a bound and the row scored 12.0% mIoU;
    with 1.0, 49.2% (docs/RESULTS.md).
    """

    iterations: int
    batch: int
    num_real: int
    lr: float
    box_weight: float = 1.0


@dataclass(frozen=True)
class FitNetConfig:
    """FN, the fit's feature network: a :class:`SegNet` trained with the scale's ``seg`` recipe (``epochs``
    replaced) at the fitting resolution on ``images`` engine renders labeled by the engine.

    source: ``"uniform"`` (the whole attribute box) or ``"initial"`` (the engine's initial distribution);
    augment: one :func:`scenefit.augment.photometric_augment` draw per training image, or None for clean renders.
    """

    source: str = "uniform"
    images: int = 2000
    epochs: int = 10
    augment: PhotometricAugment | None = PhotometricAugment()

    def __post_init__(self) -> None:
        if self.source not in ("uniform", "initial"):
            raise ValueError(f"fit_net.source must be 'uniform' or 'initial', got {self.source!r}")
        if self.images < 2 or self.epochs < 1:
            raise ValueError(f"fit_net.images must be >= 2 and fit_net.epochs >= 1, got {self.images}, {self.epochs}")


@dataclass(frozen=True)
class DrivingScale:
    """Sizes and budgets of one scale.

    height, width: engine resolution (px); fit_factor: fitting/G/feature resolution divisor.
    n_targets: |X_t|; n_test: labeled test images; renders_per_target: synthetic images per fitted
        target, so every method trains on ``n_targets * renders_per_target`` images (the oracle on X_t tiled).
    seg: the fixed segmentation recipe (F and every Table 4 row); layer: F's layer for ours' content loss and
        calibration; metasim_layer: F's layer for Meta-Sim's MMD.
    surrogate: G's architecture and budget (target_l1 0: the street engine's noise keeps G far above the digits'
        0.065 stop, so G trains its full step budget); codes, keep: codebook size and starts kept per target;
    verify_seeds: R renders per candidate in the final choice; fit: refinement through G; metasim: its budget.
    fit_net: FN, the network whose ``layer`` features the fit and calibration compare (stage ``features``);
        None fits on F's features (the paper's choice) and drops the stage.
    set_level: attributes calibrated once for the whole target set (:mod:`scenefit.calibration`), searched on a
        grid of ``set_level_points`` shifts per attribute in [-1, 1] (unit cube), then ``set_level_rounds`` finer grids;
        empty (quick, paper): no calibration and no ``ours_per_target`` row. Tiny keeps it on to test the code path.
    """

    name: str
    height: int
    width: int
    fit_factor: int
    n_targets: int
    n_test: int
    renders_per_target: int
    seg: SegRecipe
    surrogate: SurrogateConfig
    codes: int
    keep: int
    verify_seeds: int
    fit: FitConfig
    metasim: MetaSimBudget
    fit_net: FitNetConfig | None = FitNetConfig()
    layer: str = "probs"
    metasim_layer: str = "aspp"
    set_level: tuple[str, ...] = ()
    set_level_points: int = 9
    set_level_rounds: int = 1

    @property
    def n_synthetic(self) -> int:
        return self.n_targets * self.renders_per_target

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages a run of this scale has (``ours_per_target`` only with a set-level calibration, ``features``
        only with ``fit_net``)."""
        return tuple(s for s in STAGES if not (s == "ours_per_target" and not self.set_level) and not (s == "features" and self.fit_net is None))

    @property
    def methods(self) -> tuple[str, ...]:
        """Table 4's rows for this scale."""
        return METHODS if self.set_level else tuple(m for m in METHODS if m != "ours_per_target")


SCALES: dict[str, DrivingScale] = {
    "tiny": DrivingScale(
        "tiny", 64, 160, 2, n_targets=12, n_test=8, renders_per_target=1, seg=SegRecipe(epochs=1, batch_size=6),
        surrogate=SurrogateConfig(hidden=32, base_channels=16, num_upsamples=8, target_l1=0.0, batch_size=8, max_steps=3, eval_every=3, holdout=8),
        codes=24, keep=2, verify_seeds=1, fit=FitConfig(method="codebook", steps=2, lr=0.02, chunk=16, layer="probs"),
        metasim=MetaSimBudget(iterations=2, batch=4, num_real=8, lr=0.01), fit_net=FitNetConfig(images=16, epochs=1),
        set_level=("sun_brightness", "sky_color"), set_level_points=3, set_level_rounds=0,
    ),
    "quick": DrivingScale(
        "quick", 96, 320, 2, n_targets=200, n_test=100, renders_per_target=2, seg=SegRecipe(epochs=5, batch_size=16),
        surrogate=SurrogateConfig(hidden=256, base_channels=128, num_upsamples=8, target_l1=0.0, batch_size=16, max_steps=700, eval_every=350, holdout=256),
        codes=3000, keep=2, verify_seeds=2, fit=FitConfig(method="codebook", steps=10, lr=0.02, chunk=32, layer="probs"),
        metasim=MetaSimBudget(iterations=30, batch=16, num_real=200, lr=0.01), fit_net=FitNetConfig(images=1000, epochs=5),
    ),
    "paper": DrivingScale(
        "paper", 96, 320, 2, n_targets=200, n_test=200, renders_per_target=10, seg=SegRecipe(epochs=20, batch_size=16),
        surrogate=SurrogateConfig(hidden=256, base_channels=128, num_upsamples=8, target_l1=0.0, batch_size=32, max_steps=6000, eval_every=500, holdout=1024),
        codes=20000, keep=4, verify_seeds=4, fit=FitConfig(method="codebook", steps=40, lr=0.01, chunk=32, layer="probs"),
        metasim=MetaSimBudget(iterations=300, batch=50, num_real=200, lr=0.003), fit_net=FitNetConfig(images=2000, epochs=10),
    ),
}


# ------------------------------------------------------------------------------------------- plumbing
class _Stages:
    """Stage markers of a run folder: ``stages/<name>.json`` written last, read on resume."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def done(self, stage: str) -> bool:
        return (self.root / "stages" / f"{stage}.json").is_file()

    def info(self, stage: str) -> dict:
        return json.loads((self.root / "stages" / f"{stage}.json").read_text())

    def mark(self, stage: str, info: dict) -> dict:
        write_json(self.root / "stages" / f"{stage}.json", info)
        return info


def _record(sc: DrivingScale, seed: int, kitti: Path | None, cityscapes: Path | None) -> dict:
    source = {"kind": "kitti", "path": str(kitti)} if kitti else {"kind": "cityscapes", "path": str(cityscapes)} if cityscapes else {"kind": "builtin"}
    return json.loads(json.dumps({"experiment": "driving", "scale": sc.name, "seed": seed, "targets": source,
                                  "scale_config": dataclasses.asdict(sc)}))


def _check_record(out: Path, record: dict) -> None:
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ConfigError(f"{path} holds a driving run that differs in {diff} (saved scale '{old.get('scale')}', seed "
                              f"{old.get('seed')}, targets {old.get('targets')}); use another --out (with --merge-from {out} to reuse "
                              f"its stages that the difference does not touch) or delete the folder")


class FitFeatures:
    """F's feature map ``layer`` on images area-resized to ``size`` = (h, w): (B, 3, H, W) -> (B, F) on F's device."""

    def __init__(self, net: SegNet, size: tuple[int, int], layer: str) -> None:
        self.net, self.size, self.layer = net, tuple(size), layer
        self.device = next(net.parameters()).device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="area")
        return self.net.features(x, self.layer)

    @torch.no_grad()
    def batched(self, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Features of many images (N, 3, H, W), without gradients, on F's device."""
        return torch.cat([self(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def _score(net: SegNet, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """mIoU over the classes present in the test labels (Cityscapes convention), plus evaluate_miou's numbers."""
    ev = evaluate_miou(net, images, labels)
    valid = labels[labels != IGNORE_INDEX]
    present = [CLASS_NAMES[c] for c in torch.bincount(valid, minlength=NUM_CLASSES).nonzero()[:, 0].tolist()]
    per = {k: (None if math.isnan(v) else v) for k, v in ev["per_class"].items()}
    return {"miou": sum(per[c] or 0.0 for c in present) / max(len(present), 1), "miou_union": ev["miou"],
            "pixel_accuracy": ev["pixel_accuracy"], "classes": present, "per_class": per}


# ------------------------------------------------------------------------------------------- stages
def load_targets(sc: DrivingScale, seed: int, kitti: Path | None, cityscapes: Path | None, engine: StreetEngine) -> dict:
    """X_t and the test split: ``target_image`` (N, 3, H, W), ``target_label`` (N, H, W) (oracle and figures only),
    ``test_image``, ``test_label``; the built-in domain adds ``target_attrs`` (N, D) and ``target_mode`` (N,)."""
    h, w = sc.height, sc.width
    if kitti is not None:
        pool = load_kitti_semantics(kitti, h, w, limit=sc.n_targets + sc.n_test)
        n = pool["image"].shape[0]
        if n < 4:
            raise ValueError(f"KITTI folder {kitti} holds {n} labeled images; the experiment needs at least 4 (2 targets, 2 test)")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 100))
        n_test = min(sc.n_test, n // 2)
        test, tgt = perm[:n_test], perm[n_test:]
        return {"target_image": pool["image"][tgt], "target_label": pool["label"][tgt],
                "test_image": pool["image"][test], "test_label": pool["label"][test]}
    if cityscapes is not None:
        tgt = load_cityscapes(cityscapes, "train", h, w, limit=sc.n_targets)
        test = load_cityscapes(cityscapes, "val", h, w, limit=sc.n_test)
        return {"target_image": tgt["image"], "target_label": tgt["label"], "test_image": test["image"], "test_label": test["label"]}
    with torch.no_grad():
        tgt = render_target_domain(engine, sc.n_targets, torch.Generator().manual_seed(seed + 101))
        test = render_target_domain(engine, sc.n_test, torch.Generator().manual_seed(seed + 202))
    return {"target_image": tgt["image"], "target_label": tgt["label"], "target_attrs": tgt["attrs"], "target_mode": tgt["mode"],
            "test_image": test["image"], "test_label": test["label"]}


def initial_set(engine: StreetEngine, n: int, seed: int) -> dict[str, torch.Tensor]:
    """The initial scenes: ``n`` rows of the engine's default distribution rendered at full resolution."""
    g = torch.Generator().manual_seed(seed)
    attrs = engine.initial_distribution(n, g)
    with torch.no_grad():
        out = engine.render(attrs, g)
    return {"image": out["image"], "label": out["label"], "attrs": attrs}


def train_and_score(images, labels, data: dict, sc: DrivingScale, seed: int, device: str, progress: bool, path: Path, desc: str) -> dict:
    """Train a segmenter with the fixed recipe, save it to ``path``, score it on the test split."""
    t0 = time.time()
    net = train_segmenter(images, labels, sc.seg, seed, device, progress, desc=desc)
    save_segmenter(path, net, sc.seg, {"trained_on": desc, "images": int(images.shape[0])})
    return {"train_seconds": time.time() - t0, "images": int(images.shape[0]), **_score(net, data["test_image"], data["test_label"])}


def surrogate_report(G, fit_engine: StreetEngine, n: int, seed: int) -> dict:
    """G's held-out L1 on fresh uniform renders, against the mean image and R's noise floor (pixels in [0, 1])."""
    attrs, images = holdout_set(fit_engine, n, seed)
    with torch.no_grad():
        mean = fit_engine.images(fit_engine.space.sample_uniform(max(n, 64), torch.Generator().manual_seed(seed + 1)),
                                 torch.Generator().manual_seed(seed + 1)).mean(0, keepdim=True)
    return {"heldout_l1": l1_error(G, attrs, images), "mean_image_l1": (images - mean).abs().mean().item(),
            "noise_floor": noise_floor(fit_engine, n, seed + 2), "holdout": n, "resolution": [fit_engine.height, fit_engine.width]}


def test_split_at(data: dict, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split resized to ``size`` = (h, w): images (N, 3, h, w) by area, labels (N, h, w) by nearest."""
    images = F.interpolate(data["test_image"], size=size, mode="area")
    labels = F.interpolate(data["test_label"][:, None].float(), size=size, mode="nearest")[:, 0].long()
    return images, labels


def train_fit_net(fit_engine: StreetEngine, cfg: FitNetConfig, recipe: SegRecipe, seed: int, device: str = "cpu",
                  progress: bool = True, chunk: int = 256) -> SegNet:
    """Train FN (:class:`FitNetConfig`) on ``cfg.images`` renders of ``fit_engine`` (the fitting resolution).

    The rows, render noise and augmentation come from one generator seeded with ``seed``; the network's
    initialization and batch order from ``seed`` as in :func:`train_segmenter`. Returns FN in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    space = fit_engine.space
    attrs = space.sample_uniform(cfg.images, g) if cfg.source == "uniform" else fit_engine.initial_distribution(cfg.images, g)
    with torch.no_grad():
        syn = fit_engine.render(attrs, g)
    x = syn["image"]
    if cfg.augment is not None:
        x = torch.cat([photometric_augment(x[i : i + chunk], g, cfg.augment) for i in range(0, cfg.images, chunk)])
    return train_segmenter(x, syn["label"], dataclasses.replace(recipe, epochs=cfg.epochs), seed, device, progress, desc="FN (fit features)")


def fit_targets(sc: DrivingScale, fit_engine: StreetEngine, G, feats: FitFeatures, targets: torch.Tensor, seed: int,
                progress: bool) -> tuple[torch.Tensor, dict]:
    """Fit every target image (N, 3, H, W): codebook over R, refinement through G, choice by R's content loss.

    Returns:
        attrs (N, D) natural units, and per-target columns: ``chosen`` (0..keep-1 a codebook start,
        keep the refined point), ``loss_r`` (N, keep+1) R content losses, ``loss_g`` (N,) G's after refinement.
    """
    space, dev = fit_engine.space, feats.device
    G.requires_grad_(False)
    feats.net.requires_grad_(False)
    f_t = feats.batched(targets)  # (N, F)
    free, cats = list(space.continuous), list(space.categorical)
    base = fit_engine.initial_centre()
    codes = code_grid(space, base, free, cats, {c: 2 for c in free}, sc.codes, seed)  # (K, D): a Sobol set, the grid is 2^19+
    g_codes = torch.Generator().manual_seed(seed + 1)
    render_r = lambda a, soft: fit_engine.images(a.cpu(), g_codes).to(dev)  # noqa: E731
    starts, _ = codebook_starts(render_r, feats, space, f_t, codes, free, sc.keep, batch=256, progress=progress)  # (N, keep, D)
    res = fit_candidates(lambda a, soft: G(a, soft), feats, space, f_t, starts, free, sc.fit, None, progress)
    cand = torch.cat([starts, res.attrs[:, None]], 1)  # (N, keep + 1, D)
    n, m, d = cand.shape
    g = torch.Generator().manual_seed(seed + 2)
    loss_r = torch.zeros(n, m)
    with torch.no_grad():
        for _ in range(sc.verify_seeds):
            seeds = torch.randint(0, 2**62, (n, 1), generator=g, dtype=torch.int64).expand(n, m).reshape(-1)  # shared per target
            flat = cand.reshape(-1, d)
            for lo in range(0, n * m, 256):
                img = fit_engine.render_seeded(flat[lo : lo + 256], seeds[lo : lo + 256])["image"]
                owner = torch.arange(lo, min(lo + 256, n * m)) // m
                loss_r.view(-1)[lo : lo + 256] += content_loss(feats(img), f_t[owner]).cpu() / sc.verify_seeds
    chosen = loss_r.argmin(1)
    attrs = cand[torch.arange(n), chosen]
    return attrs, {"chosen": chosen, "loss_r": loss_r, "loss_g": res.loss, "fit_seconds": res.seconds}


def save_fit(path: Path, space, attrs: torch.Tensor, info: dict) -> None:
    """Write fitted rows (N, D) natural units and :func:`fit_targets`' per-target info as parquet, atomically."""
    cols = {"target": [f"target_{i:06d}" for i in range(attrs.shape[0])], "chosen": info["chosen"].tolist(),
            "loss_r": info["loss_r"].gather(1, info["chosen"][:, None])[:, 0].tolist(), "loss_g_refined": info["loss_g"].tolist()}
    for j in range(info["loss_r"].shape[1]):
        cols[f"loss_r_candidate_{j}"] = info["loss_r"][:, j].tolist()
    for i, name in enumerate(space.names):
        cols[name] = attrs[:, i].tolist()
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, path)


def load_fit(path: Path, space) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a run's ``fitted.parquet``: fitted attributes (N, D) in natural units and the chosen R content loss (N,)."""
    t = pq.read_table(path).to_pydict()
    return torch.tensor([t[n] for n in space.names], dtype=torch.float32).T.contiguous(), torch.tensor(t["loss_r"])


def ours_attributes(run: Path, space) -> torch.Tensor:
    """Ours' final rows (N, D) of a run folder: ``fitted.parquet`` with the set-level shift of
    ``stages/calibrate.json`` applied (natural units)."""
    run = Path(run)
    delta = json.loads((run / "stages" / "calibrate.json").read_text())["delta"]
    return apply_shift(space, load_fit(run / "fitted.parquet", space)[0], delta)


def attribute_mae(space, attrs: torch.Tensor, true: torch.Tensor) -> float:
    """Mean |difference| in unit-cube coordinates over continuous attributes (built-in targets only)."""
    cols = list(space.continuous)
    return (space.normalize(attrs)[:, cols] - space.normalize(true)[:, cols]).abs().mean().item()


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def merge_stages(src: str | Path, dst: str | Path, log: Callable[[str], None] = print) -> list[str]:
    """Copy into run folder ``dst`` every stage that ``src`` finished and ``dst`` has not (its files, then its marker).

    Both folders must hold the same targets: equal seed and target source, equal ``scale_config`` fields for
    the targets stage, byte-identical ``targets.safetensors`` (and ``task_initial.safetensors`` when both have
    F), else ``ConfigError`` naming the file. The configs may differ elsewhere: a stage is copied only when every
    ``scale_config`` field it depends on (:func:`stage_fields`) is equal in both, so a run with another fit, say,
    reuses the targets, F, G, Meta-Sim and oracle of an earlier one. Returns the stages copied.
    """
    import shutil

    src, dst = Path(src), Path(dst)
    for folder in (src, dst):
        if not (folder / "stages" / "targets.json").is_file():
            raise ConfigError(f"{folder} is not a driving run folder with finished targets (no stages/targets.json)")
    rec_src, rec_dst = (json.loads((f / "config.json").read_text()) for f in (src, dst))
    cfg_src, cfg_dst = rec_src.get("scale_config", {}), rec_dst.get("scale_config", {})
    same = lambda stage: all(cfg_src.get(k) == cfg_dst.get(k) for k in stage_fields(stage))  # noqa: E731
    if any(rec_src.get(k) != rec_dst.get(k) for k in ("experiment", "seed", "targets")) or not same("targets"):
        raise ConfigError(f"{src / 'config.json'} and {dst / 'config.json'} have different targets (seed, source or sizes); "
                          f"only folders of one target set merge")
    checks = ["targets.safetensors"] + (["task_initial.safetensors"] if _Stages(src).done("task") and _Stages(dst).done("task") else [])
    for name in checks:
        if _sha256(src / name) != _sha256(dst / name):
            raise ConfigError(f"{src / name} differs from {dst / name}; stages computed from other inputs do not merge")
    s_src, s_dst, copied, skipped = _Stages(src), _Stages(dst), [], []
    for stage in STAGES:
        if not s_src.done(stage) or s_dst.done(stage):
            continue
        if not same(stage):
            skipped.append(f"{stage} ({', '.join(sorted(k for k in stage_fields(stage) if cfg_src.get(k) != cfg_dst.get(k)))} differ)")
            continue
        for name in STAGE_FILES[stage]:
            a, b = src / name, dst / name
            if a.is_dir():
                shutil.rmtree(b, ignore_errors=True)
                shutil.copytree(a, b)
            elif a.is_file():
                shutil.copy2(a, b)
            else:
                raise ConfigError(f"{src} marks stage '{stage}' done but lacks its file {a}")
        s_dst.mark(stage, s_src.info(stage))  # the marker last, so a failed copy leaves the stage undone
        copied.append(stage)
    log(f"[driving] merged from {src} into {dst}: {', '.join(copied) or 'nothing new'}"
        + (f"; not copied, the configs differ: {'; '.join(skipped)}" if skipped else ""))
    return copied


# ------------------------------------------------------------------------------------------- the run
def run_driving_experiment(
    out: str | Path, scale: str = "quick", seed: int = 0, device: str = "cpu", progress: bool = True,
    kitti: str | Path | None = None, cityscapes: str | Path | None = None, log: Callable[[str], None] = print,
    stages: tuple[str, ...] | list[str] | None = None, set_level: tuple[str, ...] | list[str] | None = None,
    fit_features: str | None = None,
) -> dict:
    """Run (or resume) Table 4 into ``out``; returns the ``results.json`` content.

    ``stages``: run only these (names in :data:`STAGES`; the stages they read must be done in ``out``), so
    several folders can run stages at once and :func:`merge_stages` joins them; the table is written once every
    stage is done, and until then the return value lists ``done`` and ``missing`` stages.
    ``set_level``: continuous attributes for the set-level calibration, replacing the scale's (``()`` turns it off);
    part of ``config.json``, so a folder resumes only with the same choice.
    ``fit_features``: ``"fn"`` (the scale's FN, stage ``features``) or ``"task"`` (fit on F, as the paper);
    None: the scale's (FN at every scale). Also part of ``config.json``.

    ``kitti``: a KITTI semantics folder (``image_2/`` + ``semantic/``), split by ``seed`` into X_t and a test
    split of ``n_test``; ``cityscapes``: a Cityscapes root (X_t from ``train``, test from ``val``); neither: the
    built-in target domain (:mod:`scenefit.street_targets`). A bad folder raises the loader's error and writes nothing.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}'; choose from: {', '.join(SCALES)}")
    if kitti is not None and cityscapes is not None:
        raise ValueError("pass either kitti or cityscapes targets, not both")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was asked for, but torch sees no CUDA device")
    if stages is not None:
        bad = [x for x in stages if x not in STAGES]
        if bad or not stages:
            raise ValueError(f"unknown stage(s) {bad or stages!r}; choose from: {', '.join(STAGES)}")
        stages = tuple(stages)
    sc, out = SCALES[scale], Path(out)
    if set_level is not None:
        sc = dataclasses.replace(sc, set_level=tuple(set_level))
    if fit_features not in (None, "fn", "task"):
        raise ValueError(f"fit_features must be 'fn' or 'task', got {fit_features!r}")
    if fit_features == "task":
        sc = dataclasses.replace(sc, fit_net=None)
    elif fit_features == "fn" and sc.fit_net is None:
        sc = dataclasses.replace(sc, fit_net=FitNetConfig())
    kitti, cityscapes = (Path(p) if p is not None else None for p in (kitti, cityscapes))
    record = _record(sc, seed, kitti, cityscapes)
    _check_record(out, record)
    with StreetEngine(height=sc.height, width=sc.width) as engine, \
            StreetEngine(height=sc.height // sc.fit_factor, width=sc.width // sc.fit_factor) as fit_engine:
        known = [x.name for x in engine.space if not x.categorical]
        for name in sc.set_level:  # checked before any stage runs
            if name not in known:
                raise ConfigError(f"set-level attribute '{name}' is not a continuous attribute of the street engine; "
                                  f"choose from: {', '.join(known)}")
        return _run(out, sc, seed, device, progress, kitti, cityscapes, record, engine, fit_engine, log, stages)


def _run(out: Path, sc: DrivingScale, seed: int, device: str, progress: bool, kitti: Path | None, cityscapes: Path | None,
         record: dict, engine: StreetEngine, fit_engine: StreetEngine, log: Callable[[str], None],
         only: tuple[str, ...] | None = None) -> dict:
    """The stages of :func:`run_driving_experiment`; ``fit_engine`` is ``engine`` at the fitting resolution.

    ``only``: run just these stages (the ones they need must be done already); None runs every missing one.
    """
    st = _Stages(out)
    seg_seed = seed + 7  # one initialization for every Table 4 segmenter
    cache: dict = {}

    def todo(stage: str) -> bool:
        """Whether ``stage`` runs now: not done yet, and asked for; a stage it needs must be done by then."""
        if st.done(stage) or stage not in sc.stages or (only is not None and stage not in only):
            return False
        for need in STAGE_NEEDS[stage]:
            if need in sc.stages and not st.done(need):
                raise ConfigError(f"stage '{stage}' needs stage '{need}', which {out} has not finished; "
                                  f"run '{need}' first or leave out --stages")
        return True

    def data() -> dict:
        if "data" not in cache:
            cache["data"] = load_file(str(out / "targets.safetensors"))
            d = cache["data"]
            log(f"[driving] targets: {d['target_image'].shape[0]} X_t, {d['test_image'].shape[0]} test ({record['targets']['kind']})")
        return cache["data"]

    def feats() -> FitFeatures:
        if "feats" not in cache:
            cache["net"] = load_segmenter(out / "task_initial.safetensors", device)
            cache["feats"] = FitFeatures(cache["net"], (fit_engine.height, fit_engine.width), sc.layer)
            log(f"[driving] F (initial scenes): mIoU {100 * st.info('task')['miou']:.1f}%")
        return cache["feats"]

    def fit_feats() -> FitFeatures:
        """The fit's and calibration's features: FN's when the scale has one, else F's."""
        if sc.fit_net is None:
            return feats()
        if "fit_feats" not in cache:
            net = load_segmenter(out / "fit_net.safetensors", device)
            cache["fit_feats"] = FitFeatures(net, (fit_engine.height, fit_engine.width), sc.layer)
            rep = st.info("features")
            log(f"[driving] FN (fit features): mIoU on the test split at {fit_engine.height}x{fit_engine.width} "
                f"{100 * rep['miou_fit_resolution']:.1f}%")
        return cache["fit_feats"]

    def surrogate():
        if "G" not in cache:
            cache["G"] = load_surrogate(out / "surrogate.safetensors", fit_engine, device)
            srep = st.info("surrogate")
            log(f"[driving] G at {fit_engine.height}x{fit_engine.width}: held-out L1 {srep['heldout_l1']:.4f} "
                f"(mean image {srep['mean_image_l1']:.4f}, R noise floor {srep['noise_floor']:.4f})")
        return cache["G"]

    def per_target() -> tuple[torch.Tensor, torch.Tensor]:
        if "fit" not in cache:
            cache["fit"] = load_fit(out / "fitted.parquet", fit_engine.space)
            log(f"[driving] fit: mean content loss (R) {cache['fit'][1].mean():.4f}; refined chosen for "
                f"{st.info('fit')['chosen_refined']} targets")
        return cache["fit"]

    def fitted() -> torch.Tensor:
        cal = st.info("calibrate")
        return apply_shift(fit_engine.space, per_target()[0], cal["delta"])

    # targets: loaded before anything is written, so a bad folder leaves no trace
    if todo("targets"):
        t0 = time.time()
        d = load_targets(sc, seed, kitti, cityscapes, engine)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", record)
        save_tensors(out / "targets.safetensors", d)
        st.mark("targets", {"seconds": time.time() - t0, "n_targets": int(d["target_image"].shape[0]),
                            "n_test": int(d["test_image"].shape[0]), "source": record["targets"]})
        del d
    if not st.done("targets"):
        raise ConfigError(f"{out} has no targets yet; run stage 'targets' first or leave out --stages")
    builtin = record["targets"]["kind"] == "builtin"
    n_syn = st.info("targets")["n_targets"] * sc.renders_per_target  # every method's training-set size

    if todo("task"):
        t0 = time.time()
        init = initial_set(engine, n_syn, seed + 303)
        info = train_and_score(init["image"], init["label"], data(), sc, seg_seed, device, progress, out / "task_initial.safetensors", "F (initial scenes)")
        st.mark("task", {**info, "seconds": time.time() - t0})
        del init

    if todo("surrogate"):
        t0 = time.time()
        G, train_rep = train_surrogate(fit_engine, sc.surrogate, seed + 2, device, progress)
        rep = {**surrogate_report(G, fit_engine, sc.surrogate.holdout, seed + 20), "steps": train_rep["steps"],
               "train_seconds": train_rep["seconds"], "curve": train_rep["curve"], "config": dataclasses.asdict(sc.surrogate)}
        save_surrogate(out / "surrogate.safetensors", G, fit_engine, rep)
        st.mark("surrogate", {**rep, "seconds": time.time() - t0})

    if todo("features"):
        t0 = time.time()
        d, size = data(), (fit_engine.height, fit_engine.width)
        fn = train_fit_net(fit_engine, sc.fit_net, sc.seg, seed + 9, device, progress)
        save_segmenter(out / "fit_net.safetensors", fn, dataclasses.replace(sc.seg, epochs=sc.fit_net.epochs),
                       {"trained_on": "FN (fit features)", "fit_net": dataclasses.asdict(sc.fit_net)})
        score = _score(fn, *test_split_at(d, size))  # how well FN reads the target domain's layout (labels: report only)
        st.mark("features", {"seconds": time.time() - t0, "miou_fit_resolution": score["miou"], "per_class": score["per_class"],
                             "resolution": list(size), "fit_net": dataclasses.asdict(sc.fit_net)})
        cache["fit_feats"] = FitFeatures(fn, size, sc.layer)  # the fit uses it as trained, without reading it back
        log(f"[driving] FN (fit features): mIoU on the test split at {size[0]}x{size[1]} {100 * score['miou']:.1f}%")

    if todo("fit"):
        t0 = time.time()
        d = data()
        attrs, info = fit_targets(sc, fit_engine, surrogate(), fit_feats(), d["target_image"], seed + 3, progress)
        save_fit(out / "fitted.parquet", fit_engine.space, attrs, info)
        counts = torch.bincount(info["chosen"], minlength=sc.keep + 1).tolist()
        extra = {}
        if builtin:  # how close ξ* is to the targets' true attributes, against the initial scenes' centre
            true, space = d["target_attrs"], fit_engine.space
            centre = fit_engine.initial_centre()[None].expand_as(true)
            extra["attribute_mae_unit"] = {"ours": attribute_mae(space, attrs, true), "initial_centre": attribute_mae(space, centre, true)}
        st.mark("fit", {"seconds": time.time() - t0, "gradient_seconds": info["fit_seconds"], "codes": sc.codes, "keep": sc.keep,
                        "features": "fit_net" if sc.fit_net is not None else "task",
                        "chosen_codebook": sum(counts[:-1]), "chosen_refined": counts[-1],
                        "mean_loss_r": info["loss_r"].gather(1, info["chosen"][:, None]).mean().item(),
                        "mean_loss_r_best_code": info["loss_r"][:, 0].mean().item(), **extra})

    if todo("calibrate") and not sc.set_level:  # off: the rows stay as fitted
        st.mark("calibrate", {"seconds": 0.0, "attributes": [], "delta": {}, "mmd2_start": None, "mmd2_best": None,
                              "bandwidth": None, "evaluated": []})
    elif todo("calibrate"):
        t0 = time.time()
        d, rows = data(), per_target()[0]
        f_t = fit_feats().batched(d["target_image"])
        res = set_level_shift(lambda a, s: fit_engine.render_seeded(a, s)["image"], fit_feats().batched, fit_engine.space, rows,
                              f_t, sc.set_level, sc.set_level_points, sc.set_level_rounds, seed + 8, progress=progress)
        extra = {}
        if builtin:
            extra["attribute_mae_unit"] = {"before": attribute_mae(fit_engine.space, rows, d["target_attrs"]),
                                           "after": attribute_mae(fit_engine.space, res.attrs, d["target_attrs"])}
        st.mark("calibrate", {"seconds": time.time() - t0, "attributes": list(sc.set_level), "delta": res.delta,
                              "mmd2_start": res.mmd2_start, "mmd2_best": res.mmd2_best, "bandwidth": res.bandwidth,
                              "evaluated": [[list(dl), m] for dl, m in res.evaluated], **extra})
        cal = st.info("calibrate")
        log(f"[driving] set-level shift {cal['delta']}: MMD² {cal['mmd2_start']:.4f} -> {cal['mmd2_best']:.4f}")

    if todo("ours"):
        t0 = time.time()
        loss_r = per_target()[1]
        rows = fitted()
        rep_attrs = rows.repeat_interleave(sc.renders_per_target, 0)
        with torch.no_grad():
            syn = engine.render(rep_attrs, torch.Generator().manual_seed(seed + 404))
        names = [f"target_{i:06d}" for i in range(rows.shape[0]) for _ in range(sc.renders_per_target)]
        export_dataset(out / "dataset", syn["image"], syn["label"], rep_attrs, engine.space,
                       {"experiment": "driving", **record, "engine": engine.describe()}, targets=names,
                       fit_loss=loss_r.repeat_interleave(sc.renders_per_target), overwrite=True, progress=progress)
        info = train_and_score(syn["image"], syn["label"], data(), sc, seg_seed, device, progress, out / "seg_ours.safetensors", "ours")
        st.mark("ours", {**info, "seconds": time.time() - t0})
        del syn
        log(f"[driving] ours: mIoU {100 * st.info('ours')['miou']:.1f}%")

    if todo("ours_per_target"):  # ablation: the same rows and render seed without the set-level shift
        t0 = time.time()
        with torch.no_grad():
            syn = engine.render(per_target()[0].repeat_interleave(sc.renders_per_target, 0), torch.Generator().manual_seed(seed + 404))
        info = train_and_score(syn["image"], syn["label"], data(), sc, seg_seed, device, progress, out / "seg_ours_per_target.safetensors",
                               "ours, per-target fit only")
        st.mark("ours_per_target", {**info, "seconds": time.time() - t0})
        del syn
        log(f"[driving] ours, per-target fit only: mIoU {100 * st.info('ours_per_target')['miou']:.1f}%")

    if todo("metasim"):
        t0 = time.time()
        d = data()
        method = make_baseline("metasim", sc.name, **dataclasses.asdict(sc.metasim))
        ms_feats = FitFeatures(feats().net, feats().size, sc.metasim_layer)
        cpu_feats = lambda x: ms_feats(x).cpu()  # noqa: E731
        rep = method.fit(fit_engine, lambda k, g: engine.initial_distribution(k, g), F.interpolate(d["target_image"], size=ms_feats.size, mode="area"),
                         cpu_feats, torch.Generator().manual_seed(seed + 5), progress)
        attrs = method.sample(n_syn, torch.Generator().manual_seed(seed + 6))
        save_tensors(out / "metasim_attrs.safetensors", {"attrs": attrs})
        cont = list(fit_engine.space.continuous)
        unit = fit_engine.space.normalize(attrs)[:, cont]
        spread = {"unit_std_mean": unit.std(0).mean().item(),  # collapse shows as ~0 std and values at the bounds
                  "at_bound_fraction": ((unit < 1e-4) | (unit > 1 - 1e-4)).float().mean().item(),
                  "outside_box_last": rep["outside_box"][-1]}
        fit_s = time.time() - t0
        with torch.no_grad():
            syn = engine.render(attrs, torch.Generator().manual_seed(seed + 505))
        info = train_and_score(syn["image"], syn["label"], d, sc, seg_seed, device, progress, out / "seg_metasim.safetensors", "Meta-Sim")
        st.mark("metasim", {**info, "seconds": time.time() - t0, "fit_seconds": fit_s, "mmd2_first": rep["curve"][0], "mmd2_last": rep["curve"][-1],
                            "mmd2_last10_mean": sum(rep["curve"][-10:]) / len(rep["curve"][-10:]), **spread,
                            "budget": dataclasses.asdict(sc.metasim), "mmd2_curve": rep["curve"], "outside_box_curve": rep["outside_box"]})
        del syn
        log(f"[driving] Meta-Sim: mIoU {100 * st.info('metasim')['miou']:.1f}%")

    if todo("oracle"):
        t0 = time.time()
        d = data()
        reps = sc.renders_per_target  # X_t tiled: the same number of training images (and steps) as the synthetic sets
        info = train_and_score(d["target_image"].repeat(reps, 1, 1, 1), d["target_label"].repeat(reps, 1, 1), d, sc,
                               seg_seed, device, progress, out / "seg_oracle.safetensors", "oracle (labeled X_t)")
        st.mark("oracle", {**info, "seconds": time.time() - t0, "repeats": reps})
        log(f"[driving] oracle: mIoU {100 * st.info('oracle')['miou']:.1f}%")

    missing = [s for s in sc.stages if not st.done(s)]
    if missing:  # a --stages run: the table waits for the rest
        done = [s for s in sc.stages if st.done(s)]
        log(f"[driving] {out}: stages done: {', '.join(done)}; still to run: {', '.join(missing)}")
        return {"experiment": "driving", "scale": sc.name, "seed": seed, "done": done, "missing": missing}
    for s in sc.methods:
        log(f"[driving] {s}: mIoU {100 * st.info('task' if s == 'initial' else s)['miou']:.1f}%")
    srep, cal = st.info("surrogate"), st.info("calibrate")
    d, G = data(), surrogate()
    rows = {m: st.info("task" if m == "initial" else m) for m in sc.methods}
    results = {
        "experiment": "driving", "scale": sc.name, "seed": seed, "targets": record["targets"], "scale_config": record["scale_config"],
        "fit_resolution": [fit_engine.height, fit_engine.width], "feature_layer": sc.layer, "metasim_layer": sc.metasim_layer,
        "miou": {m: rows[m]["miou"] for m in sc.methods},
        "per_class": {m: rows[m]["per_class"] for m in sc.methods}, "classes": rows["initial"]["classes"],
        "paper": {m: v[1] for m, v in PAPER_TABLE4.items()},
        "surrogate": {k: srep[k] for k in ("heldout_l1", "mean_image_l1", "noise_floor", "steps", "resolution")},
        "fit_features": ({k: v for k, v in st.info("features").items() if k != "per_class"} if sc.fit_net is not None else None),
        "fit": st.info("fit"), "calibrate": {k: v for k, v in cal.items() if k != "evaluated"},
        "stages": {s: st.info(s) for s in sc.stages}, "seconds": {s: st.info(s)["seconds"] for s in sc.stages},
    }
    write_outputs(out, results, d, engine, fit_engine, G, fitted(), seed, log)
    write_json(out / "results.json", results)
    return results
