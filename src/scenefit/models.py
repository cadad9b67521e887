"""The trained networks of a run — F, G, E, the fit's feature network FN and the set-distance probe P — each kept
in a model store by key.

A network's key covers everything it depends on: the engine's ``describe()`` (at the
resolution the network sees), its config section, the seed and, for F, the initial
scenes it is trained on. Two runs whose keys match share one trained network; a run
with another ``fit.*`` setting reuses F, G and E as they are.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any, Callable

import torch

from scenefit.augment import photometric_augment
from scenefit.data import ImageSet, render_rows
from scenefit.encoder import AttributeEncoder, load_encoder, save_encoder, train_encoder
from scenefit.fitting import uses_surrogate
from scenefit.probe import ProbeFeatures, load_probe, save_probe, train_probe
from scenefit.resolve import Resolved
from scenefit.runs import FolderError, ModelStore, key_of
from scenefit.seeding import draw_seeds
from scenefit.surrogate import Surrogate, load_surrogate, save_surrogate, surrogate_report, train_surrogate
from scenefit.tasks import TaskFeatures, TaskNet, load_task

SEED = {"initial": 303, "task": 5, "surrogate": 2, "encoder": 3, "features": 9, "probe": 13}
"""Offsets added to ``cfg.seed`` for each network's randomness; every task network a run trains (F and each compared
set's) starts from ``seed + 5``."""

MODEL_STAGES = ("task", "surrogate", "encoder", "features", "probe")


class Models:
    """Trains (or loads) F, G, E and FN for a resolved config, in ``store``.

    ``allowed``: model stages this call may train (None: all); a missing model outside it raises, naming it.
    """

    def __init__(self, res: Resolved, store: ModelStore, progress: bool = True, log: Callable[[str], None] = print,
                 allowed: set[str] | None = None) -> None:
        self.res, self.cfg, self.store = res, res.cfg, store
        self.progress, self.log, self.allowed = progress, log, allowed
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ keys
    @property
    def n_initial(self) -> int:
        """Size of the initial set (= every compared training set: n_targets × export.per_target)."""
        return self.cfg.setting.n_targets * self.cfg.export.per_target

    def initial_key(self) -> str:
        """Store key of the initial scenes: R's identity, the initial distribution (or the engine prior), their number
        and the seed."""
        m = self.cfg.setting.initial
        return key_of("initial", self.res.engine.describe(), m.to_dict() if m is not None else "engine prior", self.n_initial, self.cfg.seed)

    def key(self, stage: str) -> str:
        """The model store key of ``stage`` (one of :data:`MODEL_STAGES`)."""
        c, fe = self.cfg, self.res.fit_engine.describe()
        if stage == "task":
            return key_of("task", self.initial_key(), asdict(c.task), self.res.task_name)
        if stage == "surrogate":
            return key_of("surrogate", fe, asdict(c.surrogate), c.seed)
        if stage == "encoder":
            enc = asdict(c.encoder)
            if enc["augment"] == "none":  # the default keeps the keys of encoders trained before the option existed
                del enc["augment"]
            if enc["augment_prob"] == 1.0 or "augment" not in enc:  # likewise for the share (moot without augmentation)
                del enc["augment_prob"]
            return key_of("encoder", fe, enc, c.seed)
        if stage == "features":
            m = c.setting.initial
            prior = (m.to_dict() if m is not None else "engine prior") if c.features.sample == "initial" else None
            return key_of("features", fe, asdict(c.task), self.res.task_name, asdict(c.features), prior, c.seed)
        if stage == "probe":
            return key_of("probe", fe, asdict(c.probe), c.seed)
        raise ValueError(f"unknown model stage '{stage}'")

    def set_features_key(self) -> str:
        """What set-distance features a key depends on: F's layer name with ``baselines.features: task`` (the keys
        of runs from before P existed), P's key with ``probe``."""
        if self.cfg.baselines.features == "task":
            return self.res.set_layer
        return key_of("set-features", self.key("probe"))

    def done(self, stage: str) -> bool:
        """Whether ``stage``'s model (current key) is already in the store."""
        return self.store.has(stage, self.key(stage))

    def retrain(self, stage: str) -> None:
        """Remove ``stage``'s stored model (the next :meth:`get` trains it again); refused for a read-only store."""
        if self.store.read_only:
            raise FolderError(f"{self.store.root} is read as it is; --retrain trains into the user's model store")
        self.store.remove(stage, self.key(stage))
        self._cache.pop(stage, None)

    def report(self, stage: str) -> dict:
        """The training report stored with a model (trains it first if needed)."""
        self.get(stage)
        return self.store.report(stage, self.key(stage))

    def get(self, stage: str) -> Any:
        """The trained network of ``stage`` on ``cfg.device`` (trained and stored first if missing): a :class:`TaskNet`
        (``task``, ``features``), :class:`Surrogate`, :class:`AttributeEncoder` or :class:`~scenefit.probe.ProbeNet`."""
        if stage not in self._cache:
            key = self.key(stage)
            if not self.store.has(stage, key):
                if self.allowed is not None and stage not in self.allowed and not self.store.read_only:
                    raise FolderError(f"model '{stage}' (key {key}) is not in {self.store.root} and this call may not train it; "
                                      f"run stage '{stage}' first or add it to --stages")
                self.store.publish(stage, key, lambda folder: getattr(self, f"_train_{stage}")(folder))
            else:
                self.log(f"[scenefit] {stage}: reusing the trained model {self.store.folder(stage, key)}")
            self._cache[stage] = self._load(stage, self.store.folder(stage, key) / "model.safetensors")
        return self._cache[stage]

    # --------------------------------------------------------------- loading
    def _load(self, stage: str, path):
        dev, fe = self.cfg.device, self.res.fit_engine
        if stage == "surrogate":
            return load_surrogate(path, fe, dev)
        if stage == "encoder":
            return load_encoder(path, fe, dev)
        if stage == "probe":
            return load_probe(path, fe, dev)
        return load_task(path, self.res.task_cls, self.res.task_name, dev)

    # -------------------------------------------------------------- training
    def initial_set(self) -> ImageSet:
        """The initial scenes (n_targets × per_target), rendered by R at full resolution (not stored)."""
        if "initial_set" not in self._cache:
            g = torch.Generator().manual_seed(self.cfg.seed + SEED["initial"])
            attrs = self.res.sample_initial(self.n_initial, g)
            out = render_rows(self.res.engine, attrs, draw_seeds(self.n_initial, g))
            self._cache["initial_set"] = ImageSet(out["image"], out["label"], attrs)
        return self._cache["initial_set"]

    def _train_task(self, folder) -> dict:
        t0 = time.time()
        init = self.initial_set()
        net = self.res.task_cls.train_net(init.image, init.label, self.res.engine.labels, self.cfg.task,
                                          self.cfg.seed + SEED["task"], self.cfg.device, self.progress, "F (initial scenes)")
        net.save(folder / "model.safetensors", self.res.task_name, {"recipe": asdict(self.cfg.task), "trained_on": "initial scenes"})
        return {"seconds": time.time() - t0, "images": len(init)}

    def _train_surrogate(self, folder) -> dict:
        fe = self.res.fit_engine
        G, rep = train_surrogate(fe, self.cfg.surrogate, self.cfg.seed + SEED["surrogate"], self.cfg.device, self.progress)
        rep = {**rep, **surrogate_report(G, fe, self.cfg.surrogate.holdout, self.cfg.seed + 20)}
        save_surrogate(folder / "model.safetensors", G, fe, rep)
        self.log(f"[scenefit] surrogate G at {fe.height}x{fe.width}: held-out L1 {rep['heldout_l1']:.4f} after {rep['steps']} steps "
                 f"(mean image {rep['mean_image_l1']:.4f}, engine noise floor {rep['noise_floor']:.4f})")
        return rep

    def _train_encoder(self, folder) -> dict:
        fe = self.res.fit_engine
        enc, rep = train_encoder(fe, self.cfg.encoder, self.cfg.seed + SEED["encoder"], self.cfg.device, self.progress)
        save_encoder(folder / "model.safetensors", enc, fe, rep)
        return rep

    def _train_probe(self, folder) -> dict:
        fe = self.res.fit_engine
        net, rep = train_probe(fe, self.cfg.probe, self.cfg.seed + SEED["probe"], self.cfg.device, self.progress)
        save_probe(folder / "model.safetensors", net, fe, rep)
        errs = ", ".join(f"{k} {v:.3g}" for k, v in rep["heldout_error"].items())
        self.log(f"[scenefit] probe P at {fe.height}x{fe.width}: held-out mean errors {errs} after {rep['steps']} steps")
        return rep

    def _train_features(self, folder) -> dict:
        """FN: the task network trained on augmented renders of the fitting engine (``features`` config)."""
        t0 = time.time()
        c, fe = self.cfg.features, self.res.fit_engine
        g = torch.Generator().manual_seed(self.cfg.seed + SEED["features"])
        attrs = fe.space.sample_uniform(c.images, g) if c.sample == "uniform" else self.res.sample_initial(c.images, g)
        out = render_rows(fe, attrs, draw_seeds(c.images, g))
        x = out["image"]
        if c.augment is not None:
            x = torch.cat([photometric_augment(x[i : i + 256], g, c.augment) for i in range(0, c.images, 256)])
        recipe = replace(self.cfg.task, epochs=c.epochs)
        net = self.res.task_cls.train_net(x, out["label"], fe.labels, recipe, self.cfg.seed + SEED["features"], self.cfg.device,
                                          self.progress, "FN (fit features)")
        net.save(folder / "model.safetensors", self.res.task_name, {"recipe": asdict(recipe), "trained_on": "FN (fit features)",
                                                                     "features": asdict(c)})
        return {"seconds": time.time() - t0, "images": c.images, "resolution": [fe.height, fe.width]}

    # ----------------------------------------------------------- conveniences
    def task(self) -> TaskNet:
        """F, trained on the initial scenes."""
        return self.get("task")

    def surrogate(self) -> Surrogate:
        """G, imitating R at the fitting resolution."""
        return self.get("surrogate")

    def encoder(self) -> AttributeEncoder:
        """E, the amortized-start network."""
        return self.get("encoder")

    def fit_features(self) -> TaskFeatures:
        """The fit's content-loss features at the fitting resolution: FN's with ``features.source: fit_net``, else F's."""
        net = self.get("features") if self.cfg.features.source == "fit_net" else self.task()
        fe = self.res.fit_engine
        return TaskFeatures(net, self.res.content_layer, (fe.height, fe.width))

    def set_features(self) -> TaskFeatures | ProbeFeatures:
        """The set-distance features at the fitting resolution (baselines, MMD, FID, KID), returned on the CPU:
        P's with ``baselines.features: probe``, F's set layer with ``task``."""
        fe = self.res.fit_engine
        if self.cfg.baselines.features == "probe":
            return ProbeFeatures(self.get("probe"), (fe.height, fe.width))
        return TaskFeatures(self.task(), self.res.set_layer, (fe.height, fe.width), out_device="cpu")

    def uses(self, stage: str) -> bool:
        """Whether the configured fit reads model ``stage`` (G only when the strategy goes through it)."""
        return stage in self.needed()

    def needed(self) -> list[str]:
        """Model stages the configured fit needs, in training order."""
        out = ["task"] if self.cfg.features.source == "task" else ["features"]
        if uses_surrogate(self.cfg.fit):
            out.append("surrogate")
        if self.cfg.fit.method == "amortized":
            out.append("encoder")
        return out


__all__ = ["MODEL_STAGES", "Models", "SEED"]
