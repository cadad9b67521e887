"""Task network F for digits, its training recipe, and the content loss.

The digit classifier follows the paper (and Meta-Sim's MNIST task net): two
convolution layers, then fully connected layers of 50, 100 and 10 features with
dropout. It is trained on labeled synthetic images and doubles as the feature
extractor of the content loss ``L_c = 1 - cos(F(x_s), F(x_t))``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

FEATURE_LAYERS = ("conv1", "conv2", "fc1", "fc2", "logits")


class DigitNet(nn.Module):
    """The paper's MNIST task network for an S×S grayscale canvas.

    Layers: conv(1→10, 5×5) → maxpool 2 → ReLU → conv(10→20, 5×5) → dropout →
    maxpool 2 → ReLU → fc 50 → fc 100 → fc 10 (dropout 0.5 between fc layers).
    """

    def __init__(self, canvas: int, num_classes: int = 10) -> None:
        super().__init__()
        self.canvas = canvas
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.drop2d = nn.Dropout2d(0.25)
        side = ((canvas - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(20 * side * side, 50)
        self.fc2 = nn.Linear(50, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def features(self, x: torch.Tensor, layer: str = "logits") -> torch.Tensor:
        """Activations of ``layer`` for images (B, 1, S, S) in [0, 1], flattened to (B, F)."""
        if layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown feature layer '{layer}'; choose one of {list(FEATURE_LAYERS)}")
        h = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 10, (S-4)/2, ..)
        if layer == "conv1":
            return h.flatten(1)
        h = F.relu(F.max_pool2d(self.drop2d(self.conv2(h)), 2))  # (B, 20, side, side)
        if layer == "conv2":
            return h.flatten(1)
        h = F.relu(self.fc1(h.flatten(1)))  # (B, 50)
        if layer == "fc1":
            return h
        h = F.relu(self.fc2(F.dropout(h, 0.5, self.training)))  # (B, 100)
        if layer == "fc2":
            return h
        return self.fc3(F.dropout(h, 0.5, self.training))  # (B, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 10) for images (B, 1, S, S)."""
        return self.features(x, "logits")


def content_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Per-pair content loss ``1 - cos(f_s, f_t)``: (B, F), (B, F) -> (B,), in [0, 2]."""
    return 1.0 - F.cosine_similarity(f_s, f_t, dim=1, eps=1e-8)


@dataclass(frozen=True)
class TrainRecipe:
    """The fixed task-training recipe used for every method's synthetic set.

    Adam at ``lr`` for ``epochs`` passes over the training images, batch
    ``batch_size``, no augmentation (as in the paper). Calibrated so that 4,000
    labeled target-distribution images reach ~96% on Rot. G2.
    """

    epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError(f"task.epochs and task.batch_size must be > 0, got {self.epochs}, {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"task.lr must be a finite number > 0, got {self.lr}")


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: TrainRecipe,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
    desc: str = "task net",
) -> DigitNet:
    """Train a :class:`DigitNet` on images (N, 1, S, S) in [0, 1] and labels (N,) int64.

    Returns the network in eval mode.
    """
    torch.manual_seed(seed)
    net = DigitNet(images.shape[-1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    g = torch.Generator().manual_seed(seed + 1)
    n = images.shape[0]
    net.train()
    for _ in tqdm(range(recipe.epochs), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            loss = F.cross_entropy(net(images[idx].to(device)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Class predictions (N,) int64 for images (N, 1, S, S)."""
    dev = next(net.parameters()).device
    net.eval()
    return torch.cat([net(images[i : i + batch].to(dev)).argmax(1).cpu() for i in range(0, images.shape[0], batch)])


@torch.no_grad()
def extract(net: DigitNet, images: torch.Tensor, layer: str, batch: int = 1024) -> torch.Tensor:
    """Features (N, F) of ``layer`` for images (N, 1, S, S), in eval mode."""
    dev = next(net.parameters()).device
    net.eval()
    return torch.cat([net.features(images[i : i + batch].to(dev), layer).cpu() for i in range(0, images.shape[0], batch)])
