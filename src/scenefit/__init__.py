"""scenefit: fit a rendering engine's attributes to unlabeled target images, image by image,
and render the fitted attributes into a labeled synthetic dataset."""

__version__ = "0.1.0"
