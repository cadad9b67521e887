"""Finding an engine by name: built-ins, installed plug-ins, or a ``module:Class`` string.

Three ways to name an engine in a config's ``engine.name``:

- a built-in: ``digits``, ``street`` (registered with :func:`register_engine`);
- a plug-in installed as a package that declares an entry point in the group
  ``scenefit.engines`` (``[project.entry-points."scenefit.engines"] shapes = "shapes_pkg:ShapesEngine"``);
- ``"package.module:Class"`` (or a factory function), imported from ``sys.path`` or,
  failing that, from a ``module.py`` in one of ``search_dirs`` (the config file's folder).

The core never imports a plug-in by name; it only resolves what a config asks for.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from scenefit.engines.base import Engine, check_engine
from scenefit.plugins import PluginError, entry_points, resolve

ENTRY_POINT_GROUP = "scenefit.engines"

_REGISTRY: dict[str, Callable[..., Engine]] = {}


class EngineSpecError(ValueError):
    """An engine name cannot be resolved, or its arguments do not fit it."""


def register_engine(name: str) -> Callable[[Callable[..., Engine]], Callable[..., Engine]]:
    """Class (or factory) decorator: make an engine constructible by ``name`` from configs."""

    def deco(factory: Callable[..., Engine]) -> Callable[..., Engine]:
        _REGISTRY[name] = factory
        return factory

    return deco


def registered_engines() -> list[str]:
    """Names accepted without a ``module:Class`` path: built-ins and installed plug-ins."""
    return sorted(set(_REGISTRY) | set(entry_points(ENTRY_POINT_GROUP)))


def engine_factory(name: str, search_dirs: tuple[str | Path, ...] = ()) -> Callable[..., Engine]:
    """The class or factory that ``name`` names (see module doc); raises :class:`EngineSpecError` listing the known names."""
    try:
        obj = resolve(name, _REGISTRY, ENTRY_POINT_GROUP, search_dirs, "engine")
    except PluginError as e:
        raise EngineSpecError(str(e)) from None
    if not callable(obj):
        raise EngineSpecError(f"engine '{name}' is not a class or factory")
    return obj


def make_engine(name: str, args: dict | None = None, search_dirs: tuple[str | Path, ...] = ()) -> Engine:
    """Build the engine ``name`` with keyword ``args``; checks the contract's static parts and records ``engine.spec``."""
    factory = engine_factory(name, search_dirs)
    args = dict(args or {})
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        known = [p for p, v in sig.parameters.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY) and p != "self"]
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise EngineSpecError(f"engine '{name}' takes no argument(s) {unknown} in engine.args; it takes: {known}")
    try:
        engine = factory(**args)
    except (TypeError, ValueError) as e:
        raise EngineSpecError(f"engine '{name}' with engine.args {args}: {e}") from None
    try:
        check_engine(engine, f"engine '{name}'")
    except ValueError as e:
        raise EngineSpecError(str(e)) from None
    engine.spec = {"name": name, "args": args}
    return engine
