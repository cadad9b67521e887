"""The image classifier F of the paper's MNIST experiments, for any channel count and image size.

Two convolution layers, then fully connected layers of 50, 100 and ``n`` features with
dropout (the paper's and Meta-Sim's MNIST task network). It is trained on labeled
synthetic images with the fixed recipe and doubles as the content-loss feature
extractor (default layer ``conv1``; set distances use ``fc2``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from scenefit.engines.base import LabelTable
from scenefit.guards import check_loss, check_model
from scenefit.metrics import accuracy
from scenefit.tasks.base import TaskConfig, TaskNet, make_optimizer

CLASSIFIER_LAYERS = ("conv1", "conv2", "fc1", "fc2", "logits")
MIN_SIDE = 16  # two 5x5 convolutions and two 2x poolings leave at least one pixel


class Classifier(TaskNet):
    """conv(C→10, 5×5) → maxpool 2 → ReLU → conv(10→20, 5×5) → dropout → maxpool 2 → ReLU → fc 50 → fc 100 → fc n
    (dropout 0.5 between fc layers). Images (B, C, H, W) in [0, 1], H and W at least 16 px."""

    label_kind: ClassVar[str] = "class"
    layers: ClassVar[tuple[str, ...]] = CLASSIFIER_LAYERS
    content_layer: ClassVar[str] = "conv1"
    set_layer: ClassVar[str] = "fc2"
    metric: ClassVar[str] = "accuracy"

    def __init__(self, channels: int, height: int, width: int, labels: LabelTable) -> None:
        super().__init__()
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"the classifier needs images of at least {MIN_SIDE}x{MIN_SIDE} px, got {height}x{width}")
        self.build_args = {"channels": channels, "height": height, "width": width, "args": {}}
        self.labels = labels
        self.conv1 = nn.Conv2d(channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.drop2d = nn.Dropout2d(0.25)
        h, w = ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(20 * h * w, 50)
        self.fc2 = nn.Linear(50, 100)
        self.fc3 = nn.Linear(100, labels.num_classes)

    @classmethod
    def build(cls, channels: int, height: int, width: int, labels: LabelTable, args: dict) -> "Classifier":
        """A classifier for images (B, channels, height, width) and the classes of ``labels``; ``args`` must be empty."""
        if args:
            raise ValueError(f"the classifier takes no task.args, got {sorted(args)}")
        return cls(channels, height, width, labels)

    def features(self, x: torch.Tensor, layer: str = "logits") -> torch.Tensor:
        """Activations of ``layer`` for images (B, C, H, W) in [0, 1], flattened to (B, F)."""
        if layer not in CLASSIFIER_LAYERS:
            raise ValueError(f"unknown feature layer '{layer}'; choose one of {list(CLASSIFIER_LAYERS)}")
        h = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 10, (H-4)/2, (W-4)/2)
        if layer == "conv1":
            return h.flatten(1)
        h = F.relu(F.max_pool2d(self.drop2d(self.conv2(h)), 2))  # (B, 20, h, w)
        if layer == "conv2":
            return h.flatten(1)
        h = F.relu(self.fc1(h.flatten(1)))  # (B, 50)
        if layer == "fc1":
            return h
        h = F.relu(self.fc2(F.dropout(h, 0.5, self.training)))  # (B, 100)
        if layer == "fc2":
            return h
        return self.fc3(F.dropout(h, 0.5, self.training))  # (B, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n) for images (B, C, H, W)."""
        return self.features(x, "logits")

    @classmethod
    def train_net(cls, images: torch.Tensor, labels: torch.Tensor, table: LabelTable, cfg: TaskConfig, seed: int,
                  device: str = "cpu", progress: bool = True, desc: str = "task net") -> "Classifier":
        """Train on images (N, C, H, W) in [0, 1] and class ids (N,) int64 with ``cfg`` (cross-entropy)."""
        if images.dim() != 4 or labels.shape != (images.shape[0],):
            raise ValueError(f"classifier training needs images (N, C, H, W) and labels (N,), got {tuple(images.shape)}, {tuple(labels.shape)}")
        torch.manual_seed(seed)
        net = cls.build(images.shape[1], images.shape[2], images.shape[3], table, dict(cfg.args)).to(device)
        opt = make_optimizer(net.parameters(), cfg)
        g = torch.Generator().manual_seed(seed + 1)
        n = images.shape[0]
        net.train()
        for _ in tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False):
            perm = torch.randperm(n, generator=g)
            flips = torch.rand(n, generator=g) < 0.5 if cfg.hflip else None
            for i in range(0, n, cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                x = images[idx].to(device)
                if flips is not None:
                    x = torch.where(flips[idx].to(device)[:, None, None, None], x.flip(-1), x)
                loss = F.cross_entropy(net(x), labels[idx].to(device))
                check_loss(loss, desc, "task.lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        check_model(net, desc, "task.lr")
        return net.eval()

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """``{"metric": "accuracy", "score": fraction of test images classified right}``."""
        return {"metric": "accuracy", "score": accuracy(self.predict(images), labels)}
