"""Check a whole config against its engine and task before anything is written or trained.

:func:`resolve` builds the engine (and its target/test variants), resolves the task network,
and checks every name and shape a run will use: mixture components and ``fit.attributes``
against the engine's attribute space, layers against the task network, the look and shift, the
fitting strategy's needs (for ``fit.codebook.look_steps``: the engine's look stage), and the
networks' shapes (built, not trained). Every error is a :class:`~scenefit.config.ConfigError`
naming the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import torch

from scenefit.config import ConfigError, RunConfig
from scenefit.encoder import AttributeEncoder
from scenefit.engines.base import Engine
from scenefit.engines.registry import EngineSpecError, make_engine
from scenefit.fitting.look_refine import engine_look_parts
from scenefit.looks import LOOKS, apply_look
from scenefit.shifts import apply_shift, parse_shift
from scenefit.surrogate import Surrogate
from scenefit.tasks import TaskNet, task_class, task_name

MAX_SET_GB = float(os.environ.get("SCENEFIT_MAX_SET_GB", "16"))


@dataclass
class Resolved:
    """A checked config with what it names: engine R (full resolution), R at the fitting resolution, the task class."""

    cfg: RunConfig
    engine: Engine
    fit_engine: Engine
    task_cls: type[TaskNet]
    task_name: str

    @property
    def content_layer(self) -> str:
        """The task network's layer of the fit's content loss."""
        return self.cfg.fit.layer or self.task_cls.content_layer

    @property
    def set_layer(self) -> str:
        """The task network's layer of set distances (baselines, MMD, FID, KID)."""
        return self.cfg.baselines.layer or self.task_cls.set_layer

    @property
    def set_space(self) -> str:
        """What set distances compare, as reports name it: ``probe`` (P's features) or F's layer (``fc2``, ``aspp``)."""
        return "probe" if self.cfg.baselines.features == "probe" else self.set_layer

    @property
    def free(self) -> list[int]:
        """Continuous columns the fit optimises."""
        space = self.engine.space
        names = self.cfg.fit.attributes or tuple(space.names[i] for i in space.continuous)
        return [space.index(n) for n in names]

    def variant(self, overrides: dict) -> Engine:
        """The engine built with ``engine.args`` updated by ``overrides`` (the same engine if empty)."""
        if not overrides:
            return self.engine
        e = self.cfg.engine
        return make_engine(e.name, {**e.args, **overrides}, self.cfg.plugin_path)

    @cached_property
    def target_engine(self) -> Engine:
        """The engine that renders X_t (``setting.target_engine``)."""
        return self.variant(self.cfg.setting.target_engine)

    @cached_property
    def test_engine(self) -> Engine:
        """The engine that renders T (``setting.test_engine``)."""
        return self.variant(self.cfg.setting.test_engine)

    def initial_centre(self) -> torch.Tensor:
        """(D,) centre of the initial distribution (the config's mixture, else the engine's prior)."""
        m = self.cfg.setting.initial
        return m.centre(self.engine.space) if m is not None else self.engine.initial_centre()

    def sample_initial(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, D) initial scenes: the config's mixture, else the engine's ``sample_initial``."""
        m = self.cfg.setting.initial
        return m.sample(self.engine.space, n, generator)[0] if m is not None else self.engine.sample_initial(n, generator)

    @property
    def look(self) -> tuple[str, dict] | None:
        """``setting.look`` as (name, args), or None."""
        lk = self.cfg.setting.look
        return (lk.name, dict(lk.args)) if lk.name else None

    @property
    def shift(self) -> tuple[str, str] | None:
        """``setting.shift`` as (name, level), or None."""
        return parse_shift(self.cfg.setting.shift) if self.cfg.setting.shift else None

    def close(self) -> None:
        """Release the engines' resources (GL contexts)."""
        for e in {id(x): x for x in (self.engine, self.fit_engine, self.__dict__.get("target_engine"), self.__dict__.get("test_engine")) if x}.values():
            e.close()


def _engine(cfg: RunConfig, args: dict, field: str) -> Engine:
    try:
        return make_engine(cfg.engine.name, {**cfg.engine.args, **args}, cfg.plugin_path)
    except EngineSpecError as e:
        raise ConfigError(f"{field}: {e}") from None


def _continuous(space, names, field: str) -> None:
    for n in names:
        if n not in space.names:
            raise ConfigError(f"{field} names unknown attribute '{n}'; known: {list(space.names)}")
        if space[n].categorical:
            raise ConfigError(f"{field}: '{n}' is categorical; only continuous attributes can be listed here")


def _prior(space, cfg: RunConfig) -> None:
    """``fit.amortized.prior_given``: bounded continuous attributes of the engine only."""
    am = cfg.fit.amortized
    _continuous(space, am.prior_given, "fit.amortized.prior_given")
    for n in am.prior_given:
        if space[n].periodic:
            raise ConfigError(f"fit.amortized.prior_given: '{n}' is periodic; the prior is conditioned on bounded continuous attributes only")


def resolve(cfg: RunConfig, labeled_targets: bool = True) -> Resolved:
    """Check ``cfg`` as a whole (module doc) and return what it names; raises :class:`ConfigError` naming the field.

    ``labeled_targets``: whether the run synthesises X_t and T (``scenefit run``); ``scenefit fit`` reads X_t
    from a folder and skips the target/test engine checks.
    """
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{cfg.device}' was asked for, but torch sees no CUDA device")
    engine = _engine(cfg, {}, "engine")
    space = engine.space
    d = cfg.fit_divisor
    if engine.height % d or engine.width % d:
        raise ConfigError(f"fit_divisor {d} must divide the engine's image size {engine.height}x{engine.width}")
    fit_engine = engine.resized(engine.height // d, engine.width // d)
    s = cfg.setting
    for key in ("initial", "target"):
        m = getattr(s, key)
        if m is not None:
            try:
                m.check(space, f"setting.{key}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
    gb = (s.n_targets * (1 + cfg.export.per_target * 2) + s.n_test) * engine.channels * engine.height * engine.width * 4 / 2**30
    if gb > MAX_SET_GB:
        raise ConfigError(f"setting.n_targets {s.n_targets} and setting.n_test {s.n_test} with export.per_target {cfg.export.per_target} "
                          f"need about {f'{gb:.0f}' if gb >= 100 else f'{gb:.3g}'} GiB of images in memory, over the {MAX_SET_GB:g} GiB cap; lower them, or raise the cap "
                          f"with the environment variable SCENEFIT_MAX_SET_GB")
    if labeled_targets:
        for key in ("target_engine", "test_engine"):
            if getattr(s, key):
                _engine(cfg, getattr(s, key), f"setting.{key}")
    if s.look.name:
        if s.look.name not in LOOKS:
            raise ConfigError(f"setting.look.name: unknown look '{s.look.name}'; known looks: {sorted(LOOKS)}")
        try:
            apply_look(s.look.name, torch.zeros(1, engine.channels, 16, 16), torch.zeros(1, dtype=torch.int64), dict(s.look.args))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"setting.look: '{s.look.name}' cannot be applied to the engine's {engine.channels}-channel images "
                              f"(checked on a 16x16 probe): {e}") from None
    if s.shift:
        try:
            apply_shift(torch.zeros(1, engine.channels, 16, 16), *parse_shift(s.shift), torch.zeros(1, dtype=torch.int64))
        except ValueError as e:
            raise ConfigError(f"setting.shift: '{s.shift}' cannot be applied to the engine's {engine.channels}-channel images: "
                              f"{e}") from None
    try:
        cls = task_class(cfg.task, engine.label_kind, cfg.plugin_path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    res = Resolved(cfg, engine, fit_engine, cls, task_name(cfg.task, engine.label_kind))
    for field, layer in (("fit.layer", res.content_layer), ("baselines.layer", res.set_layer)):
        if layer not in cls.layers:
            raise ConfigError(f"{field}: '{layer}' is not a layer of the {res.task_name} task network; choose one of {list(cls.layers)}")
    _continuous(space, cfg.fit.attributes, "fit.attributes")
    _continuous(space, cfg.fit.calibrate.attributes, "fit.calibrate.attributes")
    for name in ("metasim", "attribute_descent", "sdr"):
        _continuous(space, getattr(cfg.baselines, name).attributes, f"baselines.{name}.attributes")
    _prior(space, cfg)
    if not res.free:
        raise ConfigError(f"the engine has no continuous attribute to fit ({list(space.names)})")
    if space.look and cfg.fit.method == "amortized" and cfg.encoder.augment != "none":
        raise ConfigError(f"encoder.augment '{cfg.encoder.augment}' would hide from E the look attributes it must read "
                          f"({[space.names[i] for i in space.look]}): the engine renders its own look variation, so use "
                          f"encoder.augment none, or a fit.method that matches them by the look term")
    if cfg.fit.codebook.look_steps and cfg.fit.method in ("codebook", "codebook-verify") and set(res.free) & set(space.look):
        try:
            engine_look_parts(fit_engine, cfg.fit.codebook.look_steps, cfg.fit.method)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    _check_networks(res)
    return res


def _check_networks(res: Resolved) -> None:
    """Build G, E and F (untrained) and push one blank image through F where the fit will use it."""
    cfg, e, fe = res.cfg, res.engine, res.fit_engine
    try:
        Surrogate(fe.space, fe.channels, fe.height, fe.width, cfg.surrogate)
    except ValueError as err:
        raise ConfigError(f"surrogate: {err}") from None
    if cfg.fit.method == "amortized":
        AttributeEncoder(fe.space, fe.channels, fe.height, fe.width, cfg.encoder)
    try:
        net = res.task_cls.build(e.channels, e.height, e.width, e.labels, dict(cfg.task.args))
    except ValueError as err:
        raise ConfigError(f"task: {err}") from None
    if cfg.features.source == "fit_net" and (fe.height, fe.width) != (e.height, e.width):
        try:
            res.task_cls.build(fe.channels, fe.height, fe.width, fe.labels, dict(cfg.task.args))
        except ValueError as err:
            raise ConfigError(f"features: the feature network at the fitting resolution {fe.height}x{fe.width}: {err}") from None
    # with baselines.features task the set distances read F (features.source fit_net does not change them)
    sizes = [("fit.layer", res.content_layer, "features.source fit_net")] if cfg.features.source == "task" else []
    if cfg.baselines.features == "task":
        sizes.append(("baselines.layer", res.set_layer, "a baselines.layer that reads any image size, or baselines.features probe"))
    for field, layer, remedy in sizes:
        try:
            with torch.no_grad():
                net.eval().features(torch.zeros(2, fe.channels, fe.height, fe.width), layer)
        except (RuntimeError, ValueError) as err:
            raise ConfigError(f"{field}: the {res.task_name} network trained at {e.height}x{e.width} cannot read the fitting "
                              f"resolution {fe.height}x{fe.width} (fit_divisor {cfg.fit_divisor}): {str(err).splitlines()[0]}; "
                              f"use fit_divisor 1 or {remedy}") from None
