"""The paper's MNIST experiments (§4.1): Table 2, Table 3 and Figures 3-9, from one call.

For each of the ten settings and each method, one labeled synthetic training set
of ``n_targets`` images is made and scored by training the task network with one
fixed recipe (``cfg.task``, same seed) and measuring its accuracy on T:

    initial            the initial scenes (upright, centred digits), no learning
    metasim            Meta-Sim: attribute network trained with feature MMD (no labels)
    attribute-descent  per-attribute Gaussian means searched by FID (no labels)
    sdr                SDR: REINFORCE on accuracy on a *labeled* validation split of X_t
    ours               per-image fitting through G (``pipeline.fit_images``), rendered by R
    oracle             the labeled target images X_t themselves

Every method but the oracle renders with the engine textures; X_t and T use
held-out textures. The task network F trained on the initial scenes is shared:
ours uses it for the content loss (``fit.layer``), the baselines and the
distribution metrics use its ``fc2`` features (:data:`FEATURE_LAYER`). F and
the surrogate G depend only on the engine and the initial scenes, which are the
same within a family (``rot``: 48 px; ``trans``: 64 px with tx, ty, shared by
Trans. and Rot.&Trans.), so each is trained once per family.

Layout of ``out``::

    experiment.json                     scale and seed; a resumed run must match
    models/<family>/                    pipeline RunDir holding F and G
    <setting>/<method>/result.json      one per finished (setting, method); skipped when present
    <setting>/<method>/attrs.safetensors  the synthetic set's attributes (re-rendered for figures)
    table2.md/.csv, table3.md/.csv, results.json, figures/*.png
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from scenefit.baselines import digit_score_fn, make_baseline, mixture_sampler
from scenefit.config import ConfigError, RunConfig, config_from_dict, preset
from scenefit.encoder import EncoderConfig
from scenefit.evaluate import attribute_errors, train_and_score
from scenefit.experiments import METHODS, SCALE_NAMES
from scenefit.features import DigitNet, TrainRecipe, extract
from scenefit.io import save_tensors, write_json
from scenefit.metrics import fid, kid, median_bandwidth, mmd2
from scenefit.pipeline import DigitData, RunDir, build_data, fit_images, render_fitted, stage_encoder, stage_surrogate, stage_task_initial
from scenefit.scenarios import PAPER_SETTINGS

FEATURE_LAYER = "fc2"
"""Task-network layer (100 features, the penultimate one) for baselines, MMD, FID and KID."""


@dataclass(frozen=True)
class MnistScale:
    """Sizes and budgets of one experiment scale (dict fields are plain data, recorded in ``experiment.json``).

    n_targets: X_t size, and the number of synthetic images of every method.
    n_test: T size. n_validation: labeled X_t images SDR's reward is measured on.
    task: ``TrainRecipe`` overrides: the one recipe of F and of every method's scoring.
    surrogate_steps, surrogate_holdout: G's training budget and held-out set; encoder_steps: E's budget.
    baseline_scale: ``make_baseline`` scale; ``baselines``: per-method config overrides.
    reward_epochs: epochs of the task net trained for each SDR reward (else the task recipe).
    fit: ``FitConfig`` overrides for ours.
    kid_subset: KID subset size (capped by the set size).
    sensitivity_targets: targets averaged in Fig. 9.
    """

    name: str
    n_targets: int
    n_test: int
    n_validation: int
    task: dict
    surrogate_steps: int
    surrogate_holdout: int
    baseline_scale: str
    reward_epochs: int
    baselines: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    kid_subset: int = 1000
    sensitivity_targets: int = 200
    encoder_steps: int = EncoderConfig().steps


SCALES: dict[str, MnistScale] = {
    # seconds per setting: a smoke test of the whole flow, numbers are meaningless
    "tiny": MnistScale(
        "tiny", n_targets=48, n_test=64, n_validation=16, task={"epochs": 1}, surrogate_steps=20, surrogate_holdout=64,
        baseline_scale="tiny", reward_epochs=1,
        baselines={"metasim": {"iterations": 4}, "attribute-descent": {"grid": 6, "passes": 1}, "sdr": {"iterations": 3, "episodes": 2}},
        fit={"steps": 2, "grid_periodic": 12, "grid_bounded": 3, "chunk": 512}, kid_subset=16, sensitivity_targets=8,
        encoder_steps=5,
    ),
    # all ten settings x six methods in under 45 min on 2 CPU cores: small sets, short budgets for every method
    "quick": MnistScale(
        "quick", n_targets=400, n_test=1000, n_validation=100, task={"epochs": 12, "batch_size": 32, "lr": 0.003},
        surrogate_steps=1500, surrogate_holdout=512, baseline_scale="quick", reward_epochs=2,
        baselines={"metasim": {"iterations": 70}, "attribute-descent": {"grid": 12},
                   "sdr": {"iterations": 20, "episodes": 3, "episode_size": 150}},
        fit={"steps": 10, "grid_periodic": 24, "grid_bounded": 6}, kid_subset=200, sensitivity_targets=100,
        encoder_steps=600,
    ),
    # the full run: 4,000 targets, 2,000 test images, the default recipe and budgets
    "paper": MnistScale(
        "paper", n_targets=4000, n_test=2000, n_validation=500, task={}, surrogate_steps=3000, surrogate_holdout=1024,
        baseline_scale="paper", reward_epochs=5, baselines={}, fit={}, kid_subset=1000, sensitivity_targets=200,
    ),
}


def select(values: list[str] | None, known: tuple[str, ...], what: str) -> list[str]:
    """Validate a ``--settings``/``--methods`` filter; returns the names in canonical order (all when None)."""
    if values is None:
        return list(known)
    values = [v.strip() for v in values if v.strip()]
    if not values:
        raise ValueError(f"no {what} selected; choose from: {', '.join(known)}")
    for v in values:
        if v not in known:
            raise ValueError(f"unknown {what} '{v}'; choose from: {', '.join(known)}")
    return [k for k in known if k in values]


def setting_config(name: str, scale: MnistScale, seed: int, device: str) -> RunConfig:
    """The preset ``name`` with the scale's sizes, budgets and the seed."""
    return config_from_dict({
        "setting": {"n_targets": scale.n_targets, "n_test": scale.n_test},
        # target_l1 = 0: G always gets the scale's whole budget; an absolute pixel-L1 stop is met by the
        # mean image on the mostly-background 64 px canvas, which stopped G before it drew any digit
        "surrogate": {"max_steps": scale.surrogate_steps, "holdout": scale.surrogate_holdout, "target_l1": 0.0,
                      "eval_every": max(1, min(250, scale.surrogate_steps))},
        "task": dict(scale.task),
        "encoder": {"steps": scale.encoder_steps},
        "fit": dict(scale.fit),
        "seed": seed,
        "device": device,
    }, base=preset(name))


def family_name(cfg: RunConfig) -> str:
    """``trans`` for the 64 px engine with tx, ty; ``rot`` for the 48 px one."""
    return "trans" if cfg.setting.translate else "rot"


def stable_seed(seed: int, *names: str) -> int:
    """A seed that depends only on ``seed`` and ``names`` (not on which jobs ran before)."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**62)


class Family:
    """F and G of one engine family, trained on first use in ``out/models/<family>`` (a pipeline RunDir)."""

    def __init__(self, root: Path, cfg: RunConfig, progress: bool) -> None:
        name = family_name(cfg)
        # the target mixture plays no part in F or G: record the family's own config, not a setting's
        fam_cfg = dataclasses.replace(cfg, setting=dataclasses.replace(cfg.setting, name=f"{name}-family", target=cfg.setting.initial))
        self.run = RunDir(root / "models" / name, fam_cfg)
        self.progress = progress
        self._net: DigitNet | None = None
        self._G = None
        self._enc = None

    def net(self, data: DigitData) -> DigitNet:
        """F trained on the family's initial scenes (eval mode)."""
        if self._net is None:
            self._net = stage_task_initial(self.run, data, self.progress)
        return self._net

    def surrogate(self, data: DigitData):
        """G for the family's engine, and its training report."""
        if self._G is None:
            self._G = stage_surrogate(self.run, data.engine, self.progress)
        return self._G, self.run.info("surrogate")

    def encoder(self, data: DigitData):
        """E, only for ``fit.method = amortized``."""
        if self._enc is None:
            self._enc = stage_encoder(self.run, data.engine, self.progress)
        return self._enc

    @property
    def has_surrogate(self) -> bool:
        return self.run.done("surrogate")


def feature_fn(net: DigitNet, layer: str = FEATURE_LAYER):
    """``images (N, 1, S, S) -> (N, F)`` CPU features of ``layer`` (for baselines and torchmetrics)."""
    dev = next(net.parameters()).device
    return lambda x: net.features(x.to(dev), layer).cpu()


def _make_set(method: str, cfg: RunConfig, scale: MnistScale, data: DigitData, fam: Family, seed: int, progress: bool) -> tuple[dict, dict]:
    """The synthetic training set of ``method``: ``image`` (N, 1, S, S), ``label`` (N,), ``attrs`` (N, D); and an info dict."""
    engine, n = data.engine, cfg.setting.n_targets
    if method == "initial":
        return data.initial, {"source": "initial scenes rendered by R (engine textures)"}
    if method == "oracle":
        return data.targets, {"source": "labeled target images X_t (held-out textures)"}
    net = fam.net(data)
    if method == "ours":
        G, srep = fam.surrogate(data)
        enc = fam.encoder(data) if cfg.fit.method == "amortized" else None
        res = fit_images(cfg, engine, net, G, enc, data.targets["image"], progress)
        out = render_fitted(engine, res.attrs, seed)
        info = {"fit_seconds": res.seconds, "fit_method": cfg.fit.method, "fit_layer": cfg.fit.layer,
                "fit_loss_mean": res.loss.mean().item(), "attribute_error": attribute_errors(engine.space, res.attrs, data.targets["attrs"]),
                "surrogate": {"heldout_l1": srep["heldout_l1"], "steps": srep["steps"]}}
        return {"image": out["image"], "label": out["label"], "attrs": res.attrs}, info
    method_obj = make_baseline(method, scale.baseline_scale, **scale.baselines.get(method, {}))
    validation = score = None
    if method_obj.uses_target_labels:
        k = scale.n_validation
        validation = (data.targets["image"][:k], data.targets["label"][:k])
        recipe = dataclasses.replace(cfg.task, epochs=scale.reward_epochs)
        score = digit_score_fn(recipe, cfg.seed + 6, cfg.device)
    g = torch.Generator().manual_seed(seed)
    report = method_obj.fit(engine, mixture_sampler(cfg.setting.initial, engine.space), data.targets["image"],
                            feature_fn(net), g, progress, validation, score)
    attrs = method_obj.sample(n, g)
    with torch.no_grad():
        out = engine.render(attrs, torch.Generator().manual_seed(seed + 1))
    return {"image": out["image"], "label": out["label"], "attrs": attrs}, {"report": report, "feature_layer": FEATURE_LAYER}


def distribution_metrics(net: DigitNet, synth: torch.Tensor, targets: torch.Tensor, sigma: float, kid_subset: int, seed: int) -> dict:
    """MMD² (Gaussian kernel, bandwidth ``sigma``), FID and KID (torchmetrics) on F's ``fc2`` features."""
    fn = feature_fn(net)
    f_s, f_t = extract(net, synth, FEATURE_LAYER), extract(net, targets, FEATURE_LAYER)
    subset = max(2, min(kid_subset, synth.shape[0], targets.shape[0]))
    kid_mean, kid_std = kid(targets, synth, fn, subset_size=subset, subsets=100, seed=seed)
    return {"layer": FEATURE_LAYER, "bandwidth": sigma, "mmd2": mmd2(f_s, f_t, bandwidth=sigma),
            "fid": fid(targets, synth, fn), "kid_mean": kid_mean, "kid_std": kid_std, "kid_subset_size": subset}


def target_bandwidth(net: DigitNet, targets: torch.Tensor) -> float:
    """Median heuristic on the targets' ``fc2`` features (even vs odd rows), once per setting."""
    f_t = extract(net, targets, FEATURE_LAYER)
    return median_bandwidth(f_t[0::2], f_t[1::2])


def run_job(out: Path, setting: str, method: str, cfg: RunConfig, scale: MnistScale, data: DigitData, fam: Family, progress: bool) -> dict:
    """Make, score and measure one (setting, method); writes ``out/<setting>/<method>/result.json`` last."""
    folder = out / setting / method
    folder.mkdir(parents=True, exist_ok=True)
    seed = stable_seed(cfg.seed, setting, method)
    t0 = time.time()
    synth, info = _make_set(method, cfg, scale, data, fam, seed, progress)
    t_make = time.time() - t0
    t0 = time.time()
    acc = train_and_score(synth["image"], synth["label"], data.test["image"], data.test["label"], cfg.task,
                          cfg.seed + 5, cfg.device, progress, f"task net ({method})")
    t_score = time.time() - t0
    t0 = time.time()
    metrics = None
    if method != "oracle":  # the oracle's set *is* X_t: its distances to X_t are 0 by construction
        net = fam.net(data)
        sigma = target_bandwidth(net, data.targets["image"])
        metrics = distribution_metrics(net, synth["image"], data.targets["image"], sigma, scale.kid_subset, seed + 2)
    t_metrics = time.time() - t0
    save_tensors(folder / "attrs.safetensors", {"attrs": synth["attrs"]})
    result = {
        "setting": setting, "method": method, "scale": scale.name, "seed": cfg.seed,
        "n_images": int(synth["image"].shape[0]), "n_test": int(data.test["image"].shape[0]),
        "uses_target_labels": method in ("sdr", "oracle") or bool(info.get("report", {}).get("uses_target_labels")),
        "accuracy": acc, "metrics": metrics, "render_seed": seed + 1 if method in ("metasim", "attribute-descent", "sdr") else seed,
        "seconds": {"make": t_make, "score": t_score, "metrics": t_metrics, "total": t_make + t_score + t_metrics},
        "info": info,
    }
    write_json(folder / "result.json", result)
    return result


def load_results(out: Path) -> dict[str, dict[str, dict]]:
    """Every finished ``result.json`` under ``out``: {setting: {method: result}} in canonical order."""
    res: dict[str, dict[str, dict]] = {}
    for s in PAPER_SETTINGS:
        for m in METHODS:
            p = out / s / m / "result.json"
            if p.is_file():
                res.setdefault(s, {})[m] = json.loads(p.read_text())
    return res


def load_attrs(out: Path, setting: str, method: str) -> torch.Tensor | None:
    """The saved synthetic attributes (N, D) of a finished job, or None."""
    p = out / setting / method / "attrs.safetensors"
    return load_file(str(p))["attrs"] if p.is_file() else None


def _check_experiment(out: Path, scale: MnistScale, seed: int) -> None:
    path = out / "experiment.json"
    record = {"experiment": "mnist", "scale": scale.name, "seed": seed, "scale_config": dataclasses.asdict(scale)}
    if path.is_file():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(record)):
            raise ConfigError(
                f"{path} holds an experiment with scale '{old.get('scale')}' and seed {old.get('seed')} "
                f"(this call: scale '{scale.name}', seed {seed}); use another --out or delete the folder"
            )
    else:
        write_json(path, record)


def run_mnist_experiment(
    out: str | Path, scale: str = "quick", settings: list[str] | None = None, methods: list[str] | None = None,
    seed: int = 0, device: str = "cpu", progress: bool = True, log=print,
) -> dict:
    """Run the selected settings × methods into ``out`` (resuming finished ones), then write tables and figures.

    Returns the ``results.json`` content: ``{"scale", "seed", "results": {setting: {method: result}}, ...}``,
    covering every finished job in ``out`` (also those of earlier calls with other filters).
    """
    from scenefit.experiments.mnist_figures import make_figures
    from scenefit.experiments.tables import write_tables

    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}'; choose from: {', '.join(SCALE_NAMES)}")
    sc = SCALES[scale]
    chosen_settings = select(settings, tuple(PAPER_SETTINGS), "setting")
    chosen_methods = select(methods, METHODS, "method")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_experiment(out, sc, seed)
    families: dict[str, Family] = {}
    jobs = [(s, m) for s in chosen_settings for m in chosen_methods]
    bar = tqdm(jobs, desc=f"mnist ({scale})", disable=not progress)
    data_cache: dict[str, DigitData] = {}
    for s, m in bar:
        bar.set_postfix_str(f"{s} / {m}")
        if (out / s / m / "result.json").is_file():
            continue
        cfg = setting_config(s, sc, seed, device)
        if s not in data_cache:
            data_cache.clear()  # one setting's data at a time
            data_cache[s] = build_data(cfg)
        if family_name(cfg) not in families:
            families[family_name(cfg)] = Family(out, cfg, progress)
        fam = families[family_name(cfg)]
        r = run_job(out, s, m, cfg, sc, data_cache[s], fam, progress)
        msg = f"[mnist] {s:12s} {m:18s} accuracy {100 * r['accuracy']:5.1f}%  ({r['seconds']['total']:.0f}s)"
        if progress:
            bar.write(msg)
        else:
            log(msg)
    results = load_results(out)
    summary = {"experiment": "mnist", "scale": scale, "seed": seed, "scale_config": dataclasses.asdict(sc),
               "feature_layer": FEATURE_LAYER, "results": results}
    write_json(out / "results.json", summary)
    write_tables(out, results, sc, setting_config(chosen_settings[0], sc, seed, device).task)
    make_figures(out, results, lambda s: setting_config(s, sc, seed, device), sc, progress, log)
    return summary
