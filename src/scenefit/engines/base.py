"""The engine interface R and the engine registry.

An engine renders a batch of attribute vectors into images and labels::

    out = engine.render(attrs, generator=g)   # attrs: (B, D) natural units
    out["image"]   # (B, C, H, W) float32 in [0, 1]
    out["label"]   # engine-specific, documented by the engine

The surrogate G has the same call shape (``attrs -> (B, C, H, W)``), so fitting
code never cares which one it differentiates through.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from scenefit.attributes import AttributeSpace


class Engine(ABC):
    """Base class of rendering engines.

    Subclasses set :attr:`space`, :attr:`channels`, :attr:`height`, :attr:`width`,
    :attr:`name`, :attr:`differentiable` and implement :meth:`render`.
    """

    name: str = "engine"
    differentiable: bool = False
    space: AttributeSpace
    channels: int
    height: int
    width: int

    @abstractmethod
    def render(self, attrs: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Render ``attrs`` (B, D) in natural units.

        Returns:
            dict with at least ``"image"`` (B, C, H, W) float32 in [0, 1] and ``"label"``.
        """

    def images(self, attrs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image-only view of :meth:`render`: (B, D) -> (B, C, H, W)."""
        return self.render(attrs, generator=generator)["image"]

    def describe(self) -> dict:
        """JSON-ready identity used to check that a checkpoint fits this engine."""
        return {
            "engine": self.name,
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "attributes": self.space.to_dict(),
        }


_REGISTRY: dict[str, Callable[..., Engine]] = {}


def register_engine(name: str) -> Callable[[Callable[..., Engine]], Callable[..., Engine]]:
    """Class decorator: make an engine constructible by name from configs."""

    def deco(factory: Callable[..., Engine]) -> Callable[..., Engine]:
        _REGISTRY[name] = factory
        return factory

    return deco


def make_engine(name: str, **kwargs) -> Engine:
    """Build a registered engine by name; unknown names raise with the known list."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown engine '{name}'; registered engines: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def registered_engines() -> list[str]:
    """Names accepted by :func:`make_engine`."""
    return sorted(_REGISTRY)
