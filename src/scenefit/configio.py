"""Reading configs: presets, YAML files and ``--set`` overrides, checked field by field against their types.

A YAML file may start from a preset (``preset: rot-g2``) and override any field::

    preset: rot-g2
    seed: 1
    setting:
      n_targets: 1000
      target:
        components:
          - {weight: 0.7, rotation: {mean: 90, std: 5}}
          - {weight: 0.3, rotation: {mean: -90, std: 5}}
    fit: {method: restarts, restarts: {count: 12}}

Presets are such files in ``scenefit/presets/`` (names starting with ``_`` are bases, not listed).
YAML is read with ``yaml.safe_load`` (no Python objects are built); every error names the file and
the field.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields, is_dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from scenefit.config import ConfigError, RunConfig
from scenefit.scenarios import Mixture, mixture_from_dict

PRESET_DIR = Path(__file__).parent / "presets"
MAX_INT = 2**62


def preset_names() -> list[str]:
    """The presets ``scenefit run NAME`` accepts (files in ``presets/``, bases starting with ``_`` left out)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def preset_description(name: str) -> str:
    """The first comment line of preset ``name``'s file."""
    for line in (PRESET_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def read_yaml(path: Path) -> dict:
    """The top-level mapping of the UTF-8 YAML file ``path``; :class:`ConfigError` (naming the file) if it is unreadable,
    invalid, empty or not a mapping."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}); expected a YAML config") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; a config needs at least 'preset: NAME' or the fields to set")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _number(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"'{at}' must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)  # "nan", "inf" and "1e-3" arrive as strings from the command line
        except ValueError:
            raise ConfigError(f"'{at}' must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{at}: value {value} is not a finite number")
    return value


def coerce(value: Any, tp: Any, current: Any, at: str) -> Any:
    """``value`` (from YAML or ``--set``) checked and converted to the field type ``tp``; ``current`` is the field's
    present value (dataclasses and dicts merge into it). Raises :class:`ConfigError` naming ``at``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        inner = args[0]
        if inner is Mixture:
            try:
                return mixture_from_dict(value, at)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        return coerce(value, inner, current if current is not None else inner(), at)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{at}' must be a mapping, got {value!r}")
        return merge(current if current is not None else tp(), value, at)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{at}' must be true or false, got {value!r}")
        return value
    if tp is int:
        v = _number(value, at)
        if abs(v) >= MAX_INT:  # before the integer check: float(10**30) != 10**30, but the problem is the size
            raise ConfigError(f"'{at}': {value!r} is too large (the limit is 2**62)")
        if float(v) != int(v):
            raise ConfigError(f"'{at}' must be an integer, got {value!r}")
        return int(v)
    if tp is float:
        return float(_number(value, at))
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"'{at}' must be a string, got {value!r}")
        return str(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{at}' must be a mapping, got {value!r}")
        out = dict(current or {})
        for k, v in value.items():
            out[str(k)] = v if not (isinstance(v, dict) and isinstance(out.get(str(k)), dict)) else {**out[str(k)], **v}
        return out
    if origin is tuple:
        args = typing.get_args(tp)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], None, f"{at}[{i}]") for i, v in enumerate(items))
        if len(items) != len(args):
            raise ConfigError(f"'{at}' must be a list of {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, None, f"{at}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
    raise ConfigError(f"'{at}': fields of type {_type_name(tp)} cannot be set from a config")


_DC = TypeVar("_DC")


def merge(dc: _DC, updates: dict, where: str = "") -> _DC:
    """A copy of dataclass ``dc`` with ``updates`` applied recursively; unknown keys and bad values raise
    :class:`ConfigError` naming the field."""
    if not isinstance(updates, dict):
        raise ConfigError(f"'{where or 'config'}' must be a mapping, got {updates!r}")
    known = {f.name: f for f in fields(dc)}
    hints = _hints(type(dc))
    changes = {}
    for key, value in updates.items():
        at = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ConfigError(f"unknown config key '{at}'; known keys here: {sorted(known)}")
        changes[key] = coerce(value, hints[key], getattr(dc, key), at)
    try:
        return replace(dc, **changes)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where + ': ' if where and not str(e).startswith(where) else ''}{e}") from None


@lru_cache(maxsize=None)
def _preset_data(name: str) -> tuple[Path, dict]:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}'; available presets: {', '.join(preset_names())}")
    return path, read_yaml(path)


def _resolve(data: dict, where: str, seen: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """The chain of (where, overrides) a file expands to, base presets first."""
    data = dict(data)
    base = data.pop("preset", None)
    chain: list[tuple[str, dict]] = []
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{where}: 'preset' must be a preset name, got {base!r}")
        if base in seen:
            raise ConfigError(f"{where}: preset '{base}' includes itself ({' -> '.join((*seen, base))})")
        path, bdata = _preset_data(base)
        chain += _resolve(bdata, str(path), (*seen, base))
    return chain + [(where, data)]


def _merge_at(cfg: RunConfig, data: dict, at: str) -> RunConfig:
    """:func:`merge`, with ``at`` (a file, ``--set``) put before any error."""
    try:
        return merge(cfg, data)
    except ConfigError as e:
        raise ConfigError(f"{at}: {e}") from None


def config_from_dict(d: dict, base: RunConfig | None = None, where: str = "") -> RunConfig:
    """Apply a nested dict of overrides (optionally starting from ``preset``) to ``base`` or the defaults."""
    cfg = base or RunConfig()
    for at, data in _resolve(dict(d or {}), where or "config"):
        cfg = _merge_at(cfg, data, at)
    return cfg


def preset(name: str) -> RunConfig:
    """The preset ``name`` (e.g. ``rot-g2``, ``street-quick``)."""
    path, data = _preset_data(name)
    return config_from_dict({"preset": name}, where=str(path))


def overrides_from_strings(items: list[str]) -> dict:
    """``["fit.steps=10", "seed=3"]`` -> ``{"fit": {"steps": 10}, "seed": 3}`` (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: the key must be dotted field names, e.g. fit.steps")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {' '.join(str(e).split())}") from None
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' was already set to a value")
        node[parts[-1]] = parsed
    return out


def load_config(spec: str, overrides: dict | None = None) -> RunConfig:
    """Resolve ``spec`` (a preset name or a YAML file path), then apply ``overrides``.

    A file's own folder is added to ``plugin_path``, so an engine named ``module:Class`` beside the config loads.
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError("a config is needed: a preset name or a YAML file path")
    path = Path(spec)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        cfg = config_from_dict(read_yaml(path), where=str(path))
        folder = str(path.resolve().parent)
        if folder not in cfg.plugin_path:
            cfg = replace(cfg, plugin_path=(*cfg.plugin_path, folder))
    else:
        cfg = preset(spec)
    return _merge_at(cfg, overrides, "--set") if overrides else cfg


def load_saved_config(path: Path) -> RunConfig:
    """A resolved config written beside a run's outputs (``config.yaml``)."""
    return config_from_dict(read_yaml(path), where=str(path))


def config_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def section_dict(cfg: RunConfig, path: str) -> Any:
    """The plain-data value of a dotted section path (``"fit"``, ``"setting.target"``) of ``cfg``."""
    node: Any = yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    for part in path.split("."):
        node = node[part]
    return node


__all__ = ["ConfigError", "PRESET_DIR", "coerce", "config_from_dict", "config_yaml", "load_config", "load_saved_config", "merge",
           "overrides_from_strings", "preset", "preset_names", "section_dict"]
