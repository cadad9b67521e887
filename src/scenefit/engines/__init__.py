"""Rendering engines R: attributes in, images and labels out (the contract is :mod:`scenefit.engines.base`)."""

from scenefit.engines.base import Engine, EngineRenderer, LabelTable, ResizedEngine, check_engine
from scenefit.engines.digits import DigitEngine, digit_engine
from scenefit.engines.registry import ENTRY_POINT_GROUP, EngineSpecError, engine_factory, make_engine, register_engine, registered_engines
from scenefit.engines.street import StreetEngine  # moderngl is imported lazily on first render

__all__ = [
    "ENTRY_POINT_GROUP", "DigitEngine", "Engine", "EngineRenderer", "EngineSpecError", "LabelTable", "ResizedEngine", "StreetEngine",
    "check_engine", "digit_engine", "engine_factory", "make_engine", "register_engine", "registered_engines",
]
