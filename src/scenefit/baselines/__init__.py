"""Dataset-level baselines: Meta-Sim, Attribute Descent, SDR, the initial scenes and the oracle.

Each learns an attribute distribution (or none) and samples attribute rows; see
:mod:`scenefit.baselines.base` for the shared interface. Build one by name::

    method = make_baseline("metasim", scale="quick", lr=0.001)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scenefit.baselines.attribute_descent import AttributeDescent, AttributeDescentConfig
from scenefit.baselines.base import (
    SCALES,
    Baseline,
    FeatureFn,
    InitialConfig,
    InitialScenes,
    Oracle,
    Sampler,
    ScoreFn,
    mixture_sampler,
)
from scenefit.baselines.metasim import MetaSim, MetaSimConfig
from scenefit.baselines.sdr import SDR, SDRConfig

BASELINES: dict[str, tuple[type[Baseline], Any]] = {
    "initial": (InitialScenes, InitialConfig),
    "metasim": (MetaSim, MetaSimConfig),
    "attribute-descent": (AttributeDescent, AttributeDescentConfig),
    "sdr": (SDR, SDRConfig),
}
"""name -> (method class, config class); the oracle needs the targets' attributes and is built directly."""


def make_baseline(name: str, scale: str = "paper", **overrides: Any) -> Baseline:
    """Build a registered baseline with its config at ``scale`` (tiny/quick/paper) plus field ``overrides``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline '{name}'; registered baselines: {sorted(BASELINES)}")
    cls, config_cls = BASELINES[name]
    known = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} config fields {unknown}; known: {known}")
    return cls(config_cls.at_scale(scale, **overrides))


__all__ = [
    "BASELINES",
    "SCALES",
    "AttributeDescent",
    "AttributeDescentConfig",
    "Baseline",
    "FeatureFn",
    "InitialConfig",
    "InitialScenes",
    "MetaSim",
    "MetaSimConfig",
    "Oracle",
    "SDR",
    "SDRConfig",
    "Sampler",
    "ScoreFn",
    "make_baseline",
    "mixture_sampler",
]
