"""Task network F for "mask" engines (street scenes): a small DeepLabv3, its training, prediction and mIoU.

The paper uses DeepLabv3 both as the segmentation task network and, through its
final feature map, as the feature extractor of the content loss
``L_c = 1 - cos(F(x_s), F(x_t))`` (§4.2). :class:`SegNet` keeps DeepLabv3's
structure -- a residual backbone at output stride 8 whose last stage is dilated,
ASPP (1×1, three 3×3 atrous branches, image pooling), a 3×3 head and a 1×1
classifier, bilinear upsampling to the input size -- at a width that trains from
scratch on a few CPU cores in minutes at 96×320.

Example::

    net = SegNet.train_net(images, labels, table, TaskConfig(epochs=5, lr=2e-3, batch_size=16), seed=0)
    pred = net.predict(images)                                    # (N, H, W) int64 class ids
    net.score(images, labels)["score"]                            # mIoU over the classes present
    f = net.features(images[:4], "aspp")                          # (4, 64 * H/8 * W/8)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from scenefit.engines.base import LabelTable
from scenefit.guards import check_loss, check_model
from scenefit.metrics import MeanIoU
from scenefit.tasks.base import TaskConfig, TaskNet, make_optimizer

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
    num_classes: int = 19

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
        if max(self.widths + (self.stem, self.aspp_channels)) > 4096 or max(self.blocks) > 64 or max(self.rates) > 256:
            raise ValueError(f"SegNetConfig: widths, stem and aspp_channels must be <= 4096, blocks <= 64, rates <= 256 "
                             f"(got widths {self.widths}, blocks {self.blocks}, rates {self.rates})")


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
        """(B, c_in, h, w) -> (B, c_out, ⌈h / stride⌉, ⌈w / stride⌉)."""
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
        """(B, c_in, h, w) -> (B, c_out, h, w)."""
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, dim=1))  # (B, c_out, h, w)


class SegNet(TaskNet):
    """DeepLabv3-style segmenter: images (B, C, H, W) in [0, 1] -> logits (B, num_classes, H, W).

    H and W must be multiples of 8 (the output stride). Content-loss layer ``probs`` (the predicted layout),
    set-distance layer ``aspp`` (the final feature map, as the paper).
    """

    label_kind: ClassVar[str] = "mask"
    layers: ClassVar[tuple[str, ...]] = SEG_FEATURE_LAYERS
    content_layer: ClassVar[str] = "probs"
    set_layer: ClassVar[str] = "aspp"
    metric: ClassVar[str] = "miou"

    def __init__(self, cfg: SegNetConfig | None = None, channels: int = 3, labels: LabelTable | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SegNetConfig()
        self.channels = channels
        self.labels = labels or LabelTable(tuple(str(c) for c in range(cfg.num_classes)), ignore_index=255)
        if self.labels.num_classes != cfg.num_classes:
            raise ValueError(f"segmenter: {cfg.num_classes} output classes but a label table of {self.labels.num_classes}")
        self.build_args = {"channels": channels, "height": 0, "width": 0,
                           "args": {k: v for k, v in asdict(cfg).items() if k != "num_classes"}}
        w, n = cfg.widths, cfg.blocks

        def stage(c_in: int, c_out: int, count: int, stride: int, dilation: int) -> nn.Sequential:
            return nn.Sequential(BasicBlock(c_in, c_out, stride, dilation), *[BasicBlock(c_out, c_out, 1, dilation) for _ in range(count - 1)])

        self.stem = _conv_bn(channels, cfg.stem, 3, stride=2)  # /2
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
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] % OUTPUT_STRIDE or x.shape[3] % OUTPUT_STRIDE:
            raise ValueError(f"SegNet expects images (B, {self.channels}, H, W) with H, W multiples of {OUTPUT_STRIDE}, got {tuple(x.shape)}")
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


    @classmethod
    def build(cls, channels: int, height: int, width: int, labels: LabelTable, args: dict) -> "SegNet":
        """A segmenter for ``channels``-channel images and the classes of ``labels``; ``args``: :class:`SegNetConfig` fields."""
        known = {f.name for f in fields(SegNetConfig)} - {"num_classes"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"the segmenter takes no task.args {unknown}; known: {sorted(known)}")
        if height % OUTPUT_STRIDE or width % OUTPUT_STRIDE:
            raise ValueError(f"the segmenter needs image sides that are multiples of {OUTPUT_STRIDE} px, got {height}x{width}")
        net = cls(SegNetConfig(**args, num_classes=labels.num_classes), channels, labels)
        net.build_args.update(height=height, width=width)
        return net

    @classmethod
    def train_net(cls, images: torch.Tensor, labels: torch.Tensor, table: LabelTable, cfg: TaskConfig, seed: int,
                  device: str = "cpu", progress: bool = True, desc: str = "segmenter") -> "SegNet":
        """Train from scratch on images (N, C, H, W) in [0, 1] and class-id masks (N, H, W) int64.

        Pixel-wise cross-entropy (``table.ignore_index`` ignored), ``cfg``'s optimiser with a polynomial decay
        (power 0.9, as DeepLabv3) to 0 over the run, random horizontal flips with ``cfg.hflip``. A batch of one
        image, or one whose pixels are all ignored, is skipped (BatchNorm needs two samples). Deterministic for
        a given ``seed`` on a given device and thread count; returns the network in eval mode.
        """
        _check_pairs(images, labels)
        ignore = table.ignore_index if table.ignore_index is not None else -100
        with torch.random.fork_rng(devices=[]):  # parameter init without touching the caller's global RNG
            torch.manual_seed(seed)
            net = cls.build(images.shape[1], images.shape[2], images.shape[3], table, dict(cfg.args))
        net = net.to(device).train()
        opt = make_optimizer(net.parameters(), cfg)
        n = images.shape[0]
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1.0 - s / total) ** 0.9)
        g = torch.Generator().manual_seed(seed + 1)
        bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=g)
            flips = torch.rand(n, generator=g) < 0.5 if cfg.hflip else torch.zeros(n, dtype=torch.bool)
            for i in range(0, n, cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                x, y = images[idx].to(device), labels[idx].to(device)  # (b, C, H, W), (b, H, W)
                f = flips[idx].to(device)
                x = torch.where(f[:, None, None, None], x.flip(-1), x)
                y = torch.where(f[:, None, None], y.flip(-1), y)
                if len(idx) > 1 and bool((y != ignore).any()):
                    loss = F.cross_entropy(net(x), y, ignore_index=ignore)
                    check_loss(loss, desc, "task.lr")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                sched.step()
                bar.update()
        bar.close()
        check_model(net, desc, "task.lr")
        return net.eval()

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """Class-id predictions (N, H, W) int64 (on CPU) for images (N, C, H, W) in [0, 1]."""
        return super().predict(images, batch)

    @torch.no_grad()
    def score(self, images: torch.Tensor, labels: torch.Tensor, batch: int = 32) -> dict:
        """mIoU on images (N, C, H, W) against class-id masks (N, H, W).

        ``score`` (and ``miou``): the mean IoU over the classes present in the test labels (the Cityscapes
        convention); ``miou_union``: over classes present in labels or predictions; ``pixel_accuracy``;
        ``per_class``: IoU per class name (None where undefined); ``classes``: the classes present.
        """
        _check_pairs(images, labels)
        ignore = self.labels.ignore_index if self.labels.ignore_index is not None else -100
        meter = MeanIoU(self.labels.num_classes, ignore)
        for i in range(0, images.shape[0], batch):
            meter.update(self.predict(images[i : i + batch], batch), labels[i : i + batch])
        union, per_class = meter.compute()
        conf = meter.conf
        acc = float(conf.diagonal().sum() / conf.sum()) if conf.sum() > 0 else math.nan
        names = self.labels.names
        per = {names[c]: (None if math.isnan(v) else v) for c, v in enumerate(per_class.tolist())}
        valid = labels[(labels != ignore) & (labels >= 0) & (labels < len(names))]
        present = [names[c] for c in torch.bincount(valid, minlength=len(names)).nonzero()[:, 0].tolist()]
        miou = sum(per[c] or 0.0 for c in present) / max(len(present), 1)
        return {"metric": "miou", "score": miou, "miou": miou, "miou_union": union, "pixel_accuracy": acc,
                "classes": present, "per_class": per}


def _check_pairs(images: torch.Tensor, labels: torch.Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W) float in [0, 1], got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels must be (N, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(labels.shape)}")
