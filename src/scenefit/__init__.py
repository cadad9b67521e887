"""scenefit: fit a rendering engine's attributes to unlabeled target images, image by image,
and render the fitted attributes into a labeled synthetic dataset.

The engine contract::

    from scenefit import Engine, Attribute, AttributeSpace, LabelTable
"""

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.engines.base import Engine, LabelTable
from scenefit.engines.registry import register_engine

__version__ = "0.1.0"
__all__ = ["Attribute", "AttributeSpace", "Engine", "LabelTable", "register_engine", "__version__"]
