"""Task network F for street scenes: a small DeepLabv3, its training recipe, prediction and mIoU.

The paper uses DeepLabv3 both as the segmentation task network and, through its
final feature map, as the feature extractor of the content loss
``L_c = 1 - cos(F(x_s), F(x_t))`` (§4.2). :class:`SegNet` keeps DeepLabv3's
structure -- a residual backbone at output stride 8 whose last stage is dilated,
ASPP (1×1, three 3×3 atrous branches, image pooling), a 3×3 head and a 1×1
classifier, bilinear upsampling to the input size -- at a width that trains from
scratch on a few CPU cores in minutes at 96×320.

Example::

    net = train_segmenter(images, labels, SegRecipe(), seed=0)   # (N, 3, H, W), (N, H, W)
    pred = predict(net, images)                                   # (N, H, W) int64 train ids
    evaluate_miou(net, images, labels)["miou"]
    f = net.features(images[:4], "aspp")                          # (4, 64 * H/8 * W/8)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from scenefit.engines.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from scenefit.io import load_checkpoint_meta, load_weights, save_checkpoint
from scenefit.metrics import MeanIoU

SEG_FEATURE_LAYERS = ("aspp", "logits", "probs")
OUTPUT_STRIDE = 8


@dataclass(frozen=True)
class SegNetConfig:
    """Architecture of :class:`SegNet`.

    stem: channels of the stride-2 stem convolution; widths: channels of the four
    backbone stages, which (as in DeepLabv3's ResNet at output stride 8) run at
    strides 4, 8, 8, 8, the last two dilated by 2 and 4 instead of strided;
    blocks: basic residual blocks per stage;
    aspp_channels: width of every ASPP branch and of the head; rates: dilations of
    the 3×3 ASPP branches, in feature-map pixels (the map of a 96×320 input is 12×40).
    """

    stem: int = 16
    widths: tuple[int, int, int, int] = (24, 48, 64, 64)
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    aspp_channels: int = 64
    rates: tuple[int, ...] = (2, 4, 6)
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        for name in ("widths", "blocks"):
            val = tuple(getattr(self, name))
            if len(val) != 4 or any(not isinstance(v, int) or v < 1 for v in val):
                raise ValueError(f"SegNetConfig.{name} must be 4 positive ints, got {val!r}")
            object.__setattr__(self, name, val)  # lists from JSON become tuples
        object.__setattr__(self, "rates", tuple(self.rates))
        if any(not isinstance(r, int) or r < 1 for r in self.rates):
            raise ValueError(f"SegNetConfig.rates must be positive ints, got {self.rates!r}")
        for name in ("stem", "aspp_channels", "num_classes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SegNetConfig.{name} must be a positive int, got {getattr(self, name)!r}")


def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, pad, dilation, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convolutions + identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, 3, stride, dilation)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, dilation, dilation, bias=False), nn.BatchNorm2d(c_out))
        self.short = (
            nn.Identity() if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.short(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, one 3×3 per rate, image pooling; concatenated and projected by 1×1."""

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn(c_in, c_out, 1)] + [_conv_bn(c_in, c_out, 3, dilation=r) for r in rates])
        # No BatchNorm on the pooled (B, C, 1, 1) branch: with batch 1 it has a single value per channel.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))
        self.project = _conv_bn(c_out * (len(rates) + 2), c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, dim=1))  # (B, c_out, h, w)


class SegNet(nn.Module):
    """DeepLabv3-style segmenter: images (B, 3, H, W) in [0, 1] -> logits (B, num_classes, H, W).

    H and W must be multiples of 8 (the output stride).
    """

    def __init__(self, cfg: SegNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SegNetConfig()
        w, n = cfg.widths, cfg.blocks

        def stage(c_in: int, c_out: int, count: int, stride: int, dilation: int) -> nn.Sequential:
            return nn.Sequential(BasicBlock(c_in, c_out, stride, dilation), *[BasicBlock(c_out, c_out, 1, dilation) for _ in range(count - 1)])

        self.stem = _conv_bn(3, cfg.stem, 3, stride=2)  # /2
        self.stages = nn.Sequential(
            stage(cfg.stem, w[0], n[0], 2, 1),  # /4
            stage(w[0], w[1], n[1], 2, 1),  # /8
            stage(w[1], w[2], n[2], 1, 2),  # /8: dilated instead of strided keeps the field of view growing
            stage(w[2], w[3], n[3], 1, 4),  # /8
        )
        self.aspp = ASPP(w[3], cfg.aspp_channels, cfg.rates)
        self.head = _conv_bn(cfg.aspp_channels, cfg.aspp_channels, 3)
        self.classifier = nn.Conv2d(cfg.aspp_channels, cfg.num_classes, 1)

    def feature_maps(self, x: torch.Tensor, layer: str = "aspp") -> torch.Tensor:
        """Feature map of ``layer`` at output stride 8: (B, aspp_channels or num_classes, H/8, W/8).

        ``"aspp"``: the final feature map before the classifier (ASPP + 3×3 head);
        ``"logits"``: class scores before upsampling; ``"probs"``: their softmax over classes (the predicted
        layout, each pixel's vector sums to 1).
        """
        if layer not in SEG_FEATURE_LAYERS:
            raise ValueError(f"unknown segmentation feature layer '{layer}'; choose one of {list(SEG_FEATURE_LAYERS)}")
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % OUTPUT_STRIDE or x.shape[3] % OUTPUT_STRIDE:
            raise ValueError(f"SegNet expects images (B, 3, H, W) with H, W multiples of {OUTPUT_STRIDE}, got {tuple(x.shape)}")
        h = self.stages(self.stem(x * 2.0 - 1.0))  # (B, w3, H/8, W/8)
        h = self.head(self.aspp(h))  # (B, A, H/8, W/8)
        if layer == "aspp":
            return h
        logits = self.classifier(h)
        return logits if layer == "logits" else logits.softmax(1)

    def features(self, x: torch.Tensor, layer: str = "aspp") -> torch.Tensor:
        """Flattened :meth:`feature_maps` (B, F) for the content loss; F = 64·H/8·W/8 for "aspp" by default."""
        return self.feature_maps(x, layer).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes, H, W), bilinearly upsampled from output stride 8."""
        return F.interpolate(self.feature_maps(x, "logits"), size=x.shape[2:], mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class SegRecipe:
    """The fixed segmentation training recipe used for every method's synthetic set.

    ``epochs`` passes over the images in batches of ``batch_size``; ``optimizer``
    ``"adam"`` or ``"sgd"`` (momentum 0.9) at ``lr`` with a polynomial decay
    (power 0.9, as DeepLabv3) to 0 over the run and ``weight_decay``; pixel-wise
    cross-entropy with ignore index 255; ``hflip``: random horizontal flips (street
    scenes are mirror-symmetric in distribution). The defaults are a starting
    point, not calibrated: at 96×320 training runs at ~16-20 images/s on one CPU
    thread (``benchmarks/bench_segmentation.py``), so size ``epochs`` to the set.
    """

    epochs: int = 20
    lr: float = 2e-3
    batch_size: int = 16
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    hflip: bool = True

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError(f"seg.epochs and seg.batch_size must be > 0, got {self.epochs}, {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"seg.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"seg.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"seg.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


def _check_pairs(images: torch.Tensor, labels: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) float in [0, 1], got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels must be (N, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(labels.shape)}")


def train_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: SegRecipe,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
    cfg: SegNetConfig | None = None,
    desc: str = "segmenter",
) -> SegNet:
    """Train a :class:`SegNet` from scratch on images (N, 3, H, W) in [0, 1] and train-id labels (N, H, W) int64.

    Deterministic for a given ``seed`` on a given device and thread count. Returns the network in eval mode.
    """
    _check_pairs(images, labels)
    with torch.random.fork_rng(devices=[]):  # parameter init without touching the caller's global RNG
        torch.manual_seed(seed)
        net = SegNet(cfg)
    net = net.to(device).train()
    params = net.parameters()
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    n = images.shape[0]
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1.0 - s / total) ** 0.9)
    g = torch.Generator().manual_seed(seed + 1)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(recipe.epochs):
        perm = torch.randperm(n, generator=g)
        flips = torch.rand(n, generator=g) < 0.5 if recipe.hflip else torch.zeros(n, dtype=torch.bool)
        for i in range(0, n, recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            x, y = images[idx].to(device), labels[idx].to(device)  # (b, 3, H, W), (b, H, W)
            f = flips[idx].to(device)
            x = torch.where(f[:, None, None, None], x.flip(-1), x)
            y = torch.where(f[:, None, None], y.flip(-1), y)
            if len(idx) > 1 and bool((y != IGNORE_INDEX).any()):  # BN needs 2 samples; CE of an all-ignored batch is NaN
                loss = F.cross_entropy(net(x), y, ignore_index=IGNORE_INDEX)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            sched.step()
            bar.update()
    bar.close()
    return net.eval()


@torch.no_grad()
def predict(net: SegNet, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Train-id predictions (N, H, W) int64 (on CPU) for images (N, 3, H, W) in [0, 1]."""
    dev = next(net.parameters()).device
    net.eval()
    return torch.cat([net(images[i : i + batch].to(dev)).argmax(1).cpu() for i in range(0, images.shape[0], batch)])


@torch.no_grad()
def extract(net: SegNet, images: torch.Tensor, layer: str = "aspp", batch: int = 32) -> torch.Tensor:
    """Features (N, F) of ``layer`` for images (N, 3, H, W), in eval mode, on CPU."""
    dev = next(net.parameters()).device
    net.eval()
    return torch.cat([net.features(images[i : i + batch].to(dev), layer).cpu() for i in range(0, images.shape[0], batch)])


@torch.no_grad()
def evaluate_miou(net: SegNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 32) -> dict:
    """mIoU of ``net`` on images (N, 3, H, W) against train-id labels (N, H, W).

    Returns ``{"miou": float, "pixel_accuracy": float, "per_class": {name: IoU}}``, IoUs in [0, 1];
    a class absent from both prediction and labels has IoU NaN and is left out of the mean.
    """
    _check_pairs(images, labels)
    meter = MeanIoU(net.cfg.num_classes, IGNORE_INDEX)
    for i in range(0, images.shape[0], batch):
        meter.update(predict(net, images[i : i + batch], batch), labels[i : i + batch])
    mean, per_class = meter.compute()
    names = CLASS_NAMES if net.cfg.num_classes == NUM_CLASSES else [str(c) for c in range(net.cfg.num_classes)]
    conf = meter.conf
    acc = float(conf.diagonal().sum() / conf.sum()) if conf.sum() > 0 else math.nan
    return {"miou": mean, "pixel_accuracy": acc, "per_class": dict(zip(names, per_class.tolist()))}


def save_segmenter(path, net: SegNet, recipe: SegRecipe | None = None, extra: dict | None = None) -> None:
    """Checkpoint ``net`` as safetensors + JSON (architecture, recipe, ``extra``)."""
    meta = {"kind": "segmenter", "config": asdict(net.cfg), "recipe": asdict(recipe) if recipe else None, **(extra or {})}
    save_checkpoint(path, net, meta)


def load_segmenter(path, device: str = "cpu") -> SegNet:
    """Load a :func:`save_segmenter` checkpoint (eval mode); raises ``ValueError`` for another kind of checkpoint."""
    meta = load_checkpoint_meta(path)
    if meta.get("kind") != "segmenter":
        raise ValueError(f"{path} is not a segmenter checkpoint (kind={meta.get('kind')!r})")
    net = SegNet(SegNetConfig(**meta["config"]))
    load_weights(path, net)
    return net.to(device).eval()
