"""Resolving plug-in names: a built-in, an installed entry point, or a ``package.module:Object`` string.

Engines (group ``scenefit.engines``) and task networks (group ``scenefit.tasks``) are
found the same way. A ``module:Object`` string is imported from ``sys.path`` or, failing
that, from ``module.py`` in one of ``search_dirs`` (a config file's own folder), so that a
user's engine beside their config needs no packaging.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any


class PluginError(ValueError):
    """A plug-in name cannot be resolved."""


def entry_points(group: str) -> dict[str, importlib_metadata.EntryPoint]:
    """Installed entry points of ``group`` by name."""
    return {ep.name: ep for ep in importlib_metadata.entry_points(group=group)}


def import_module(module: str, search_dirs: tuple[Path, ...] = (), what: str = "plug-in") -> Any:
    """Import ``module`` from ``sys.path``, else from ``<dir>/<module>.py`` of the first ``search_dirs`` entry holding it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise  # the module exists but one of its own imports is missing: show that
    rel = Path(*module.split("."))
    for folder in search_dirs:
        for path in (Path(folder) / rel.with_suffix(".py"), Path(folder) / rel / "__init__.py"):
            if path.is_file():
                spec = importlib.util.spec_from_file_location(module, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[module] = mod
                try:
                    spec.loader.exec_module(mod)
                except BaseException:
                    del sys.modules[module]
                    raise
                return mod
    where = f" or in {', '.join(str(d) for d in search_dirs)}" if search_dirs else ""
    raise PluginError(f"{what} '{module}': module '{module}' not found on sys.path{where}")


def resolve(name: str, builtins: dict[str, Any], group: str, search_dirs: tuple[str | Path, ...] = (), what: str = "plug-in") -> Any:
    """The object ``name`` names: ``builtins[name]``, the entry point ``name`` of ``group``, or ``module:Object``.

    Raises :class:`PluginError` naming ``what`` and listing the known names.
    """
    if not isinstance(name, str) or not name:
        raise PluginError(f"{what} name must be a non-empty string, got {name!r}")
    if name in builtins:
        return builtins[name]
    eps = entry_points(group)
    if name in eps:
        try:
            return eps[name].load()
        except Exception as e:  # a broken plug-in: say which one
            raise PluginError(f"{what} plug-in '{name}' ({eps[name].value}) failed to load: {type(e).__name__}: {e}") from None
    if ":" not in name:
        known = sorted(set(builtins) | set(eps))
        raise PluginError(f"unknown {what} '{name}'; known: {known}, or give 'package.module:Class'")
    module, _, attr = name.partition(":")
    obj = import_module(module, tuple(Path(d) for d in search_dirs), what)
    for part in attr.split("."):
        if not part or not hasattr(obj, part):
            raise PluginError(f"{what} '{name}': module '{module}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    return obj
