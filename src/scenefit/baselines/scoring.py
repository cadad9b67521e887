"""Ready-made :data:`~scenefit.baselines.base.ScoreFn` callbacks."""

from __future__ import annotations

import torch

from scenefit.baselines.base import ScoreFn
from scenefit.features import TrainRecipe, predict, train_classifier
from scenefit.metrics import accuracy


def digit_score_fn(recipe: TrainRecipe, seed: int, device: str = "cpu") -> ScoreFn:
    """Train a :class:`~scenefit.features.DigitNet` with ``recipe`` on the synthetic set; return its validation accuracy in [0, 1].

    Every call trains from the same ``seed``, so rewards differ only through the data.
    """

    def score(images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor, val_labels: torch.Tensor) -> float:
        net = train_classifier(images, labels, recipe, seed, device=device, progress=False)
        return accuracy(predict(net, val_images), val_labels)

    return score
