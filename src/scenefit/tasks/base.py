"""The task-network protocol: train, predict, features for the content loss, score, save, load.

A task network F is what the user's synthetic dataset is for (a classifier, a
segmenter...). scenefit trains it with one fixed recipe (:class:`TaskConfig`) on every
training set it compares, and uses its features for the content loss
``L_c = 1 - cos(F(x_s), F(x_t))``. The same class, trained on augmented renders of the
whole attribute box, is the fit's feature network FN. Implementations:
:class:`~scenefit.tasks.classifier.Classifier` (``label_kind`` "class") and
:class:`~scenefit.tasks.segmenter.Segmenter` ("mask"); a user's own network subclasses
:class:`TaskNet` and is named ``package.module:Class`` in ``task.name``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from scenefit.engines.base import LabelTable
from scenefit.io import load_checkpoint_meta, load_weights, save_checkpoint

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TaskConfig:
    """The task network and the fixed recipe every compared training set is trained with (config ``task``).

    name: ``auto`` (classifier for "class" engines, segmenter for "mask" engines), ``classifier``,
        ``segmenter`` or ``package.module:Class`` (a :class:`TaskNet` subclass).
    epochs, batch_size: passes over the training images and images per step.
    lr, optimizer (``adam`` or ``sgd`` with momentum 0.9), weight_decay: the optimiser.
    hflip: random horizontal flips (for scenes that are mirror-symmetric in distribution).
    args: architecture arguments of the network (e.g. a segmenter's ``widths``).
    """

    name: str = "auto"
    epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adam"
    weight_decay: float = 0.0
    hflip: bool = False
    args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task.name must be a non-empty string, got {self.name!r}")
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError(f"task.epochs and task.batch_size must be > 0, got {self.epochs}, {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"task.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"task.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"task.optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if not isinstance(self.args, dict):
            raise ValueError(f"task.args must be a mapping of architecture arguments, got {self.args!r}")


class TaskNet(nn.Module):
    """A task network: images (B, C, H, W) in [0, 1] -> logits; see the module doc.

    Subclasses set the class attributes and implement :meth:`build`, :meth:`features`, :meth:`forward`,
    :meth:`train_net` and :meth:`score`; :meth:`predict`, :meth:`save` and :func:`load_task` are shared.
    """

    label_kind: ClassVar[str] = "class"
    layers: ClassVar[tuple[str, ...]] = ()
    content_layer: ClassVar[str] = ""  # default layer of the fit's content loss
    set_layer: ClassVar[str] = ""  # default layer of set distances (MMD, FID, KID, the baselines)
    metric: ClassVar[str] = "accuracy"

    build_args: dict
    labels: LabelTable

    @classmethod
    @abstractmethod
    def build(cls, channels: int, height: int, width: int, labels: LabelTable, args: dict) -> "TaskNet":
        """An untrained network for images (B, channels, height, width) and the classes of ``labels``."""

    @abstractmethod
    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Activations of ``layer`` for images (B, C, H, W), flattened to (B, F)."""

    @classmethod
    @abstractmethod
    def train_net(cls, images: torch.Tensor, labels: torch.Tensor, table: LabelTable, cfg: TaskConfig, seed: int,
                  device: str = "cpu", progress: bool = True, desc: str = "task net") -> "TaskNet":
        """Train from scratch on images (N, C, H, W) and labels ((N,) or (N, H, W) int64); returns it in eval mode.

        Deterministic for a given ``seed`` on a given device and thread count.
        """

    @abstractmethod
    def score(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """``{"metric": name, "score": value in [0, 1], ...}`` on a labeled test set."""

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Predicted class ids on the CPU: (N,) for "class" networks, (N, H, W) for "mask" ones."""
        dev = next(self.parameters()).device
        self.eval()
        return torch.cat([self(images[i : i + batch].to(dev)).argmax(1).cpu() for i in range(0, images.shape[0], batch)])

    def save(self, path: str | Path, task_name: str, extra: dict | None = None) -> None:
        """Checkpoint as safetensors + JSON: ``task_name``, build arguments, label table, ``extra`` (recipe, report)."""
        meta = {"kind": "task", "task": task_name, "class": f"{type(self).__module__}:{type(self).__qualname__}",
                "build": self.build_args, "labels": self.labels.to_dict(), **(extra or {})}
        save_checkpoint(path, self, meta)


def load_task(path: str | Path, cls: type[TaskNet], task_name: str, device: str = "cpu") -> TaskNet:
    """Load a :meth:`TaskNet.save` checkpoint as ``cls`` (the class the config names; checkpoints never choose code).

    Raises ``ValueError`` naming the file when it holds another kind or task.
    """
    meta = load_checkpoint_meta(path)
    if meta.get("kind") != "task" or meta.get("task") != task_name:
        raise ValueError(f"{path} is not a '{task_name}' task-network checkpoint (kind={meta.get('kind')!r}, task={meta.get('task')!r})")
    b = meta.get("build")
    if not isinstance(b, dict) or not {"channels", "height", "width", "args"} <= set(b):
        raise ValueError(f"{Path(path).with_suffix('.json')}: 'build' must hold channels, height, width and args, got {b!r}")
    net = cls.build(b["channels"], b["height"], b["width"], LabelTable.from_dict(meta["labels"]), b["args"])
    load_weights(path, net)
    return net.to(device).eval()


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TaskConfig) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9, at ``cfg.lr`` with ``cfg.weight_decay``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


class TaskFeatures:
    """F's ``layer`` on images area-resized to ``size`` = (h, w) (None: as they come): (B, C, H, W) -> (B, F) on F's
    device, or on ``out_device`` when given (the baselines and torchmetrics take CPU features)."""

    def __init__(self, net: TaskNet, layer: str, size: tuple[int, int] | None = None, out_device: str | None = None) -> None:
        if layer not in net.layers:
            raise ValueError(f"unknown feature layer '{layer}' for {type(net).__name__}; choose one of {list(net.layers)}")
        self.net, self.layer, self.size = net, layer, tuple(size) if size is not None else None
        self.device = next(net.parameters()).device
        self.out_device = out_device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="area")
        f = self.net.features(x, self.layer)
        return f.to(self.out_device) if self.out_device is not None else f

    @torch.no_grad()
    def batched(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Features of many images (N, C, H, W), without gradients, on F's device."""
        self.net.eval()
        return torch.cat([self(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def content_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Per-pair content loss ``1 - cos(f_s, f_t)``: (B, F), (B, F) -> (B,), in [0, 2]."""
    return 1.0 - F.cosine_similarity(f_s, f_t, dim=1, eps=1e-8)


def recipe_dict(cfg: TaskConfig) -> dict:
    """JSON-ready recipe (for checkpoints and reports)."""
    return asdict(cfg)
