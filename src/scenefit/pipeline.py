"""One pipeline for every engine: config → engine + task → F, G, E, FN → fit → render → export → evaluate.

:class:`Pipeline` runs the stages over a resolved config into a run folder (:mod:`scenefit.runs`)::

    fit        per-target attributes with the configured strategy (fitted.parquet)
    export     R(ξ*) rendered into a labeled dataset (dataset/)
    score-<m>  the task network trained on method m's set and scored on T (initial, ours, ceiling, oracle, baselines);
               score-<m>-seed<k>: the same with task seed k (``evaluate.task_seeds``, :meth:`Pipeline.score_seeds`)

The networks live in a model store (:mod:`scenefit.models`). Every stage records a key of
what it depends on, so a rerun skips what is done, resumes after an interruption, and
redoes only what a changed config touches. ``scenefit run``, ``scenefit fit`` and both
experiments use it; the experiments add the baselines (:mod:`scenefit.methods`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from scenefit.calibration import set_level_shift
from scenefit.config import ConfigError, RunConfig
from scenefit.configio import config_yaml, load_saved_config
from scenefit.data import ImageSet, Problem, render_rows, synthesize
from scenefit.fitfile import load_fit, save_fit
from scenefit.fitjob import fit_images, rendered_rows
from scenefit.fitting import FitResult
from scenefit.fitting.config import PlainConfig
from scenefit.io import atomic_write_text, first_difference, read_json
from scenefit.models import SEED, Models
from scenefit.resolve import Resolved, resolve
from scenefit.runs import FolderError, ModelStore, RunFolder, key_of
from scenefit.tasks import TaskNet

SET_SEED = {"targets": 101, "test": 202, "calibrate": 8}


def synthesize_problem(res: Resolved) -> Problem:
    """X_t and T drawn from ``setting.target``, rendered by the target/test engines with ``setting.look`` and then
    ``setting.shift`` (seeded; the shift changes the images, not the attributes or labels)."""
    cfg, s = res.cfg, res.cfg.setting
    dist = s.target if s.target is not None else s.initial
    targets = synthesize(res.target_engine, dist, s.n_targets, cfg.seed + SET_SEED["targets"], res.look, res.shift)
    test = synthesize(res.test_engine, dist, s.n_test, cfg.seed + SET_SEED["test"], res.look, res.shift)
    source = {"kind": "synthesized", "target_engine": res.target_engine.describe(), "test_engine": res.test_engine.describe(),
              "target": dist.to_dict() if dist is not None else "engine prior", "look": asdict(s.look),
              "n_targets": s.n_targets, "n_test": s.n_test, "seed": cfg.seed}
    if s.shift:  # only when set: unshifted problems keep the keys of run folders made before shifts existed
        source["shift"] = s.shift
    return Problem(targets, test, source)


class Pipeline:
    """The stages of one run (module doc) in run folder ``out``, with models in ``store`` (default ``out/models``).

    ``problem``: the targets (and test set) to use; default: synthesised from the config. ``allowed``: stages this
    call may run (None: every missing one); a needed stage outside it raises, naming it.
    """

    def __init__(self, cfg: RunConfig | Resolved, out: str | Path, problem: Problem | None = None, store: ModelStore | None = None,
                 progress: bool = True, log: Callable[[str], None] = print, allowed: set[str] | None = None) -> None:
        self.res = cfg if isinstance(cfg, Resolved) else resolve(cfg, labeled_targets=problem is None)
        self.cfg = self.res.cfg
        self.run = RunFolder(out)
        self.store = store or ModelStore(Path(out) / "models")
        self.progress, self.log, self.allowed = progress, log, allowed
        self.models = Models(self.res, self.store, progress, log, allowed)
        self._problem = problem
        self._cache: dict[str, object] = {}
        self._sets: dict[str, tuple[Callable[[], str], Callable[[], ImageSet]]] = {}
        self.seconds: dict[str, float] = {}

    # ----------------------------------------------------------------- problem
    @property
    def problem(self) -> Problem:
        """X_t and T (synthesised on first use unless given)."""
        if self._problem is None:
            t0 = time.time()
            self._problem = synthesize_problem(self.res)
            self.seconds["data"] = time.time() - t0
        return self._problem

    def problem_key(self) -> str:
        """Store key of the problem (X_t and T: :meth:`Problem.key_parts`), computed once."""
        if "problem_key" not in self._cache:
            self._cache["problem_key"] = key_of(self.problem.key_parts())
        return self._cache["problem_key"]

    def start(self) -> None:
        """Bind the run folder to this problem: refuse a folder holding another problem, then write ``config.yaml``.

        Call with the folder claimed and locked (:func:`scenefit.runs.claim`, :func:`scenefit.runs.locked`).
        """
        marker = self.run.path("stages/problem.json")
        if marker.is_file():
            saved = read_json(marker)
            if saved.get("key") != self.problem_key():
                old = self.run.path("config.yaml")
                diff = ""
                if old.is_file():
                    try:
                        prev = load_saved_config(old).to_dict()
                        now = self.cfg.to_dict()
                        diff = ", ".join(k for k in ("engine", "setting", "seed") if first_difference(prev.get(k), now.get(k)) is not None)
                    except ConfigError:
                        diff = ""
                raise FolderError(f"{self.run.root} holds a run of another problem ({old}: {diff or 'the targets'} differ); "
                                  f"use another --out")
        else:
            self.run.mark("problem", self.problem_key(), {"source": self.problem.source, "targets_sha256": self.problem.targets.sha256(),
                                                         "n_targets": len(self.problem.targets)})
        atomic_write_text(self.run.path("config.yaml"), config_yaml(self.cfg))

    # --------------------------------------------------------------- stage keys
    def needs(self, stage: str, key: str, outputs: tuple[str, ...] = ()) -> bool:
        """Whether ``stage`` must run now; raises if it must but this call may not run it."""
        if self.run.done(stage, key, outputs):
            return False
        if self.allowed is not None and stage not in self.allowed:
            raise FolderError(f"stage '{stage}' has not finished in {self.run.root} and this call may not run it; "
                              f"run it first or add it to --stages")
        return True

    def fit_key(self) -> str:
        """Key of the fit stage: the problem, the networks the fit reads (F or FN, G, E), ``fit`` (fields left at their
        defaults or unused dropped, so older fits keep their keys), the content layer and the seed."""
        c, m = self.cfg, self.models
        feats = m.key("features") if c.features.source == "fit_net" else m.key("task")
        enc = m.key("encoder") if c.fit.method == "amortized" else None
        sur = m.key("surrogate") if m.uses("surrogate") else None
        fit = asdict(c.fit)
        if not self.res.engine.space.look:  # looks are searched only for look attributes: other fits keep their keys
            del fit["codebook"]["look_codes"]
        if not self.res.engine.space.look or c.fit.codebook.look_steps == 0:  # no look refinement (look_lr unused):
            del fit["codebook"]["look_steps"], fit["codebook"]["look_lr"]   # fits made before it keep their keys
        if not c.fit.amortized.prior_iters or c.fit.method != "amortized":  # no population prior: fits made before it keep their keys
            for k in ("prior_iters", "prior_given", "prior_bandwidth"):
                del fit["amortized"][k]
        if c.fit.plain == PlainConfig():  # fit.plain at its defaults: fits made before the section keep their keys
            del fit["plain"]
        return key_of("fit", self.problem_key(), feats, sur, enc, fit, self.res.content_layer, c.seed)

    def ours_key(self) -> str:
        """Key of ours' set: the fit's key, ``export`` (less ``sample``), R's identity and the seed."""
        export = asdict(self.cfg.export)
        del export["sample"]  # sampled rows are scenefit fit's, never part of ours' set
        return key_of("ours", self.fit_key(), export, self.res.engine.describe(), self.cfg.seed)

    # ---------------------------------------------------------------------- fit
    def fit(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fitted attributes (N, D) natural units and their fit loss (N,); runs the fit stage if needed."""
        if "fit" in self._cache:
            return self._cache["fit"]
        key, path = self.fit_key(), self.run.path("fitted.parquet")
        if self.needs("fit", key, ("fitted.parquet",)):
            t0 = time.time()
            result, info = self._fit_now()
            save_fit(path, self.res.engine.space, result, self.problem.targets.names)
            self.run.mark("fit", key, {"seconds": time.time() - t0, "method": self.cfg.fit.method, "layer": self.res.content_layer,
                                       "features": self.cfg.features.source, "candidates_per_target": int(result.losses.shape[1]),
                                       "mean_loss": result.loss.mean().item(), "files": ["fitted.parquet"], **result.info, **info})
        attrs, loss, _ = load_fit(path, self.res.engine.space)
        self._cache["fit"] = (attrs, loss)
        return attrs, loss

    def _fit_now(self) -> tuple[FitResult, dict]:
        cfg, res = self.cfg, self.res
        result, f_t = fit_images(res, self.models, self.problem.targets.image, self.progress)
        info: dict = {"fit_seconds": result.seconds}
        cal = cfg.fit.calibrate
        if cal.attributes:
            shift = set_level_shift(res.fit_engine.images, self.models.fit_features().batched, res.engine.space, result.attrs, f_t,
                                    cal.attributes, cal.points, cal.rounds, cfg.seed + SET_SEED["calibrate"], progress=self.progress)
            result.attrs = shift.attrs
            info["calibrate"] = {"delta": shift.delta, "mmd2_start": shift.mmd2_start, "mmd2_best": shift.mmd2_best,
                                 "bandwidth": shift.bandwidth, "evaluated": [[list(d), m] for d, m in shift.evaluated]}
        if self.problem.targets.attrs is not None:
            from scenefit.evaluate import attribute_errors

            true, space = self.problem.targets.attrs, res.engine.space
            skip = self.attributes_without_truth()
            info["attribute_error"] = attribute_errors(space, result.attrs, true, skip)
            info["attribute_error_initial_centre"] = attribute_errors(space, res.initial_centre()[None].expand_as(true), true, skip)
            if skip:
                info["attribute_error_skipped"] = {"attributes": list(skip), "why": f"the targets' look is '{cfg.setting.look.name}'"}
        return result, info

    def attributes_without_truth(self) -> tuple[str, ...]:
        """Attributes the targets' true rows do not describe: the engine's look attributes when the targets got their
        appearance from ``setting.look`` instead; left out of attribute errors."""
        space = self.res.engine.space
        return tuple(space.names[i] for i in space.look) if self.cfg.setting.look.name else ()

    # ------------------------------------------------------------------ render
    def ours(self) -> ImageSet:
        """R(ξ*): ``export.per_target`` renders of every fitted row (seeded per row), with labels."""
        if "ours" not in self._cache:
            self._cache["ours"] = self.render_per_target(self.fit()[0])
        return self._cache["ours"]

    def render_per_target(self, attrs: torch.Tensor) -> ImageSet:
        """R at one attribute row per target (N, D), rendered as ours is: ``export.per_target`` renders each, seeded by
        global row index, named by target."""
        reps = self.cfg.export.per_target
        rows, seeds = rendered_rows(attrs, reps, self.cfg.seed)
        out = render_rows(self.res.engine, rows, seeds)
        names = [n for n in self.problem.targets.names for _ in range(reps)]
        return ImageSet(out["image"], out["label"], rows, names, seeds)

    def export(self) -> Path:
        """Write ours' labeled dataset to ``dataset/`` (stage ``export``); returns the folder."""
        from scenefit.datasets import export_dataset

        key, folder = self.ours_key(), self.run.path("dataset")
        if self.needs("export", key, ("dataset",)):
            t0 = time.time()
            ours = self.ours()
            _, loss = self.fit()
            manifest = {"config": self.cfg.to_dict(), "seed": self.cfg.seed, "setting": self.cfg.setting.name,
                        "engine": self.res.engine.describe(), "source": self.problem.source}
            export_dataset(folder, ours.image, ours.label, ours.attrs, self.res.engine, manifest, targets=ours.names,
                           fit_loss=loss.repeat_interleave(self.cfg.export.per_target), seeds=ours.seeds,
                           overwrite=True, progress=self.progress)
            self.run.mark("export", key, {"seconds": time.time() - t0, "count": len(ours), "files": ["dataset"]})
        return folder

    # ------------------------------------------------------------------ scores
    def oracle(self) -> ImageSet:
        """The labeled targets X_t, tiled ``export.per_target`` times (the same number of images as ours)."""
        t = self.problem.targets
        if t.label is None:
            raise ValueError("the oracle needs labeled targets")
        reps = self.cfg.export.per_target
        return ImageSet(t.image.repeat(reps, *[1] * (t.image.dim() - 1)), t.label.repeat(reps, *[1] * (t.label.dim() - 1)))

    def ceiling(self) -> ImageSet:
        """The engine-true ceiling: R (the engine's own textures and look) at the targets' *true* attributes, rendered as
        ours is (same rows' seeds, ``export.per_target`` each) — what ours gives after a perfect fit."""
        t = self.problem.targets
        if t.attrs is None:
            raise ValueError("the ceiling needs the targets' true attributes (synthesised targets)")
        if "ceiling" not in self._cache:
            self._cache["ceiling"] = self.render_per_target(t.attrs)
        return self._cache["ceiling"]

    def feature_score(self) -> dict | None:
        """How well the fit's feature network reads T at the fitting resolution (stage ``score-features``; FN only,
        labeled T only): its task score (accuracy or mIoU), a diagnostic of the look gap; None otherwise."""
        test = self.problem.test
        if self.cfg.features.source != "fit_net" or test is None or test.label is None:
            return None
        key = key_of("score-features", self.models.key("features"), self.problem_key())
        if self.needs("score-features", key):
            t0 = time.time()
            fe = self.res.fit_engine
            size = (fe.height, fe.width)
            images, labels = test.image, test.label
            if tuple(images.shape[-2:]) != size:
                images = F.interpolate(images, size=size, mode="area")
                if labels.dim() == 3:
                    labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
            self.run.mark("score-features", key, {**self.models.get("features").score(images, labels), "resolution": list(size),
                                                  "seconds": time.time() - t0})
        return self.run.info("score-features")

    def register_set(self, method: str, key: Callable[[], str], make: Callable[[], ImageSet]) -> None:
        """Add a method's training set (a baseline's, say): ``key()`` identifies it, ``make()`` builds it."""
        self._sets[method] = (key, make)

    def _set(self, method: str) -> tuple[Callable[[], str], Callable[[], ImageSet]]:
        sets = {"initial": (self.models.initial_key, self.models.initial_set), "ours": (self.ours_key, self.ours),
                "oracle": (lambda: key_of("oracle", self.problem_key(), self.cfg.export.per_target), self.oracle),
                "ceiling": (lambda: key_of("ceiling", self.problem_key(), self.cfg.export.per_target, self.res.engine.describe(),
                                           self.cfg.seed), self.ceiling), **self._sets}
        if method not in sets:
            raise ValueError(f"unknown method '{method}'; known here: {', '.join(sets)}")
        return sets[method]

    def training_set(self, method: str) -> ImageSet:
        """The labeled training set of ``method``: ``initial``, ``ours``, ``ceiling``, ``oracle`` or a registered one."""
        return self._set(method)[1]()

    def set_key(self, method: str) -> str:
        """Key of ``method``'s training set."""
        return self._set(method)[0]()

    def score(self, method: str, info: dict | None = None, task_seed: int = 0) -> dict:
        """Train the task network on ``method``'s set with the fixed recipe and score it on T (stage ``score-<method>``).

        ``initial`` is F itself. ``task_seed`` k > 0 trains another network on the same set and scores it on the same
        T, with seed ``seed + SEED["task"] + k`` (k = 0 is the seed F and every ``score-<method>`` stage train with),
        as its own stage ``score-<method>-seed<k>`` (:func:`score_stage`).
        """
        if self.problem.test is None or self.problem.test.label is None:
            raise ValueError("scores need a labeled test set T")
        if task_seed < 0:
            raise ValueError(f"task_seed must be >= 0, got {task_seed}")
        stage = score_stage(method, task_seed)
        key = key_of(f"score-{method}", self.set_key(method), asdict(self.cfg.task), self.res.task_name, self.problem_key(), self.cfg.seed)
        if task_seed:  # seed 0 keeps the key of folders scored before task seeds existed
            key = key_of(key, "task seed", task_seed)
        if self.needs(stage, key):
            t0 = time.time()
            if method == "initial" and task_seed == 0:
                net: TaskNet = self.models.task()
                n = self.models.n_initial
            else:
                data = self.training_set(method)
                net = self.res.task_cls.train_net(data.image, data.label, self.res.engine.labels, self.cfg.task,
                                                  self.cfg.seed + SEED["task"] + task_seed, self.cfg.device, self.progress,
                                                  f"task net ({method}{f', seed {task_seed}' if task_seed else ''})")
                n = len(data)
            test = self.problem.test
            seeded = {"task_seed": task_seed} if task_seed else {}  # seed 0's report stays as it was
            self.run.mark(stage, key, {**net.score(test.image, test.label), "images": n, "seconds": time.time() - t0, **seeded,
                                       **(info or {})})
        return self.run.info(stage)

    def score_seeds(self, method: str, info: dict | None = None) -> list[dict]:
        """:meth:`score` once per task seed 0 .. ``evaluate.task_seeds`` - 1: networks of several seeds on one training
        set and one T, so rows compare paired, seed by seed."""
        return [self.score(method, info, k) for k in range(self.cfg.evaluate.task_seeds)]


def score_stage(method: str, task_seed: int = 0) -> str:
    """The stage name of ``method``'s score with task seed ``task_seed`` (``score-<method>``, ``score-<method>-seed<k>``)."""
    return f"score-{method}" if task_seed == 0 else f"score-{method}-seed{task_seed}"
