"""Rendering engines R: attributes in, images and labels out."""

from scenefit.engines.base import Engine, make_engine, register_engine, registered_engines
from scenefit.engines.digits import DigitEngine

__all__ = ["Engine", "DigitEngine", "make_engine", "register_engine", "registered_engines"]
from scenefit.engines.street import StreetEngine  # noqa: E402  (moderngl is imported lazily on first render)

__all__ += ["StreetEngine"]
