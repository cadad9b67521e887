"""Amortized initialization: a network E trained on engine renders to guess attributes from an image.

Gradient descent on the content loss from one start falls into local minima
(a digit near 0° never turns to 135°; 180° flips look alike). E gives every
target a *global* start: for each periodic attribute a distribution over
``bins`` angle bins, for each categorical attribute class probabilities, for
each bounded continuous attribute a regressed value. :func:`encoder_starts`
turns these into a few candidate starts per target (top modes), which fitting
then refines through G and keeps by lowest content loss.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.augment import nuisance_augment, photometric_augment
from scenefit.engines.base import Engine
from scenefit.guards import check_loss, check_model
from scenefit.io import load_model_for_engine, save_model_for_engine


AUGMENTS = ("none", "photometric", "nuisance")
"""Values of ``encoder.augment``."""


@dataclass(frozen=True)
class EncoderConfig:
    """Size and training budget of E (trained on fresh uniform engine samples).

    norm: ``batch`` puts BatchNorm after every convolution (default), ``none`` leaves it out (E before this option:
    its training could stall at the chance loss from the start for some seeds; docs/RESULTS.md).
    augment: ``none`` (default) trains on clean renders; ``photometric`` passes every training batch through
    :func:`scenefit.augment.photometric_augment` (brightness, contrast, gamma, blur, noise; one draw per image), so
    that E reads targets whose look differs from the engine's; ``nuisance`` adds stroke width, content scale and
    resolution draws first (:func:`scenefit.augment.nuisance_augment`), for pens and scanners that differ too.
    augment_prob: the share of each batch's images that are augmented (the others stay clean renders).
    """

    width: int = 16
    bins: int = 36
    lr: float = 0.002
    batch_size: int = 64
    steps: int = 8000
    norm: str = "batch"
    augment: str = "none"
    augment_prob: float = 1.0

    def __post_init__(self) -> None:
        for name in ("width", "bins", "batch_size", "steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"encoder.{name} must be > 0, got {getattr(self, name)}")
        for name, cap in (("width", 1024), ("bins", 3600), ("batch_size", 65536)):  # a typo must not ask for gigabytes
            if getattr(self, name) > cap:
                raise ValueError(f"encoder.{name} must be <= {cap}, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"encoder.lr must be a finite number > 0, got {self.lr}")
        if self.norm not in ("batch", "none"):
            raise ValueError(f"encoder.norm must be 'batch' or 'none', got {self.norm!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"encoder.augment must be one of {list(AUGMENTS)}, got {self.augment!r}")
        if not 0.0 <= self.augment_prob <= 1.0:
            raise ValueError(f"encoder.augment_prob must be in [0, 1], got {self.augment_prob}")


class AttributeEncoder(nn.Module):
    """CNN: images (B, C, H, W) -> per-attribute head outputs (see module doc)."""

    def __init__(self, space: AttributeSpace, channels: int, height: int, width: int, cfg: EncoderConfig) -> None:
        super().__init__()
        self.space, self.cfg = space, cfg
        w = cfg.width

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), *([nn.BatchNorm2d(c_out)] if cfg.norm == "batch" else []), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *conv(channels, w), nn.MaxPool2d(2), *conv(w, 2 * w), nn.MaxPool2d(2),
            *conv(2 * w, 4 * w), nn.MaxPool2d(2), *conv(4 * w, 4 * w), nn.AdaptiveAvgPool2d((4, 4)),
        )
        self.sizes = [a.num_categories if a.categorical else (cfg.bins if a.periodic else 1) for a in space]
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.ReLU(inplace=True))
        self.head = nn.Linear(256, sum(self.sizes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pose-and-content features (B, 256): the layer before the attribute heads."""
        return self.hidden(self.body(images))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute: logits (B, n) for categorical/periodic, a unit value (B,) in [0, 1] otherwise."""
        out = self.head(self.features(images)).split(self.sizes, dim=1)
        return [o if n > 1 else torch.sigmoid(o[:, 0]) for o, n in zip(out, self.sizes)]

    def loss(self, images: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """Training loss against true attributes (B, D): cross-entropy on classes and angle bins, L1 on the rest."""
        total = images.new_zeros(())
        for i, (a, o) in enumerate(zip(self.space, self(images))):
            v = attrs[:, i]
            if a.categorical:
                total = total + F.cross_entropy(o, v.round().long())
            elif a.periodic:
                b = ((v - a.low) / a.span * self.cfg.bins).floor().long() % self.cfg.bins
                total = total + F.cross_entropy(o, b)
            else:
                total = total + (o - (v - a.low) / a.span).abs().mean()
        return total


@torch.no_grad()
def encoder_outputs(enc: AttributeEncoder, images: torch.Tensor, batch: int = 1024, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """E's head outputs for ``images`` (N, C, H, W), read in batches of ``batch`` on ``device``; per attribute (on the
    CPU): logits (N, n) for categorical and periodic attributes, a unit value (N,) otherwise."""
    enc.eval()
    parts = [enc(images[i : i + batch].to(device)) for i in range(0, images.shape[0], batch)]
    return [torch.cat([p[k] for p in parts]).cpu() for k in range(len(enc.sizes))]


def _own_peak_near(own: torch.Tensor, centre: torch.Tensor, half: int) -> torch.Tensor:
    """(N,) the bin of highest ``own`` log-probability (N, B) within ``half`` bins (circularly) of ``centre`` (N,)."""
    bins = own.shape[1]
    d = (torch.arange(bins, device=own.device)[None] - centre[:, None]) % bins
    return own.masked_fill(torch.minimum(d, bins - d) > half, float("-inf")).argmax(1)


def starts_from_outputs(space: AttributeSpace, bins: int, outs: list[torch.Tensor], top: dict[str, int],
                        log_prior: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate starts from E's head outputs ``outs`` (as :func:`encoder_outputs`).

    Args:
        top: how many modes to take per categorical/periodic attribute name (missing names: 1). Candidates are
            the Cartesian product.
        log_prior: per attribute name, (N, n) log prior added to E's log-probabilities before the modes are taken
            (:mod:`scenefit.fitting.prior`). For a periodic attribute the prior only picks the basin: the start is
            E's own top bin within 45° (``bins // 8`` bins) of the weighed mode, and its angle comes from E's own
            probabilities, so the prior resolves flips without narrowing E's readings towards the prior's peak.
    Returns:
        starts (N, M, D) natural units and their log-probability (N, M), prior included.
    """
    n = outs[0].shape[0]
    choices: list[list[tuple[torch.Tensor, torch.Tensor]]] = []  # per attribute: list of (value (N,), logp (N,))
    for a, o in zip(space, outs):
        if o.ndim == 1:
            choices.append([(a.low + o * a.span, torch.zeros(n, device=o.device))])
            continue
        own = F.log_softmax(o, dim=1)
        weighed = log_prior is not None and a.name in log_prior
        logp = own + log_prior[a.name].to(own) if weighed else own
        k = min(top.get(a.name, 1), o.shape[1])
        idx = logp.topk(k, dim=1).indices  # (N, k)
        if weighed and a.periodic:  # the prior picks the basin, E the bin within it: E's own top bin within 45°
            idx = torch.stack([_own_peak_near(own, idx[:, j], bins // 8) for j in range(k)], dim=1)
        opts = []
        for j in range(k):
            b = idx[:, j]
            if a.categorical:
                opts.append((b.float(), logp.gather(1, b[:, None])[:, 0]))
            else:
                # circular mean of the top bin and its two neighbours under E, for sub-bin precision
                nb = torch.stack([(b - 1) % bins, b, (b + 1) % bins], dim=1)  # (N, 3)
                w = own.gather(1, nb).exp()
                ang = (nb.float() + 0.5) / bins * 2 * math.pi
                phase = torch.atan2((w * ang.sin()).sum(1), (w * ang.cos()).sum(1)) % (2 * math.pi)
                opts.append((a.low + phase / (2 * math.pi) * a.span, logp.gather(1, b[:, None])[:, 0]))
        choices.append(opts)
    combos = list(itertools.product(*choices))
    starts = torch.stack([torch.stack([v for v, _ in c], dim=1) for c in combos], dim=1)  # (N, M, D)
    logp = torch.stack([sum(lp for _, lp in c) for c in combos], dim=1)  # (N, M)
    starts = space.clamp(starts.reshape(-1, space.dim)).reshape(n, len(combos), space.dim)
    return starts, logp


@torch.no_grad()
def encoder_starts(enc: AttributeEncoder, images: torch.Tensor, top: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate starts from E's top modes for ``images`` (N, C, H, W): :func:`starts_from_outputs` of E's outputs.
    Returns starts (N, M, D) natural units and their E log-probability (N, M)."""
    enc.eval()
    return starts_from_outputs(enc.space, enc.cfg.bins, enc(images), top)


def train_encoder(
    engine: Engine, cfg: EncoderConfig, seed: int, device: str = "cpu", progress: bool = True,
    callback: Callable[[int, AttributeEncoder], None] | None = None, callback_every: int = 1000,
) -> tuple[AttributeEncoder, dict]:
    """Train E on fresh uniform engine samples; returns (model in eval mode, report).

    ``callback(step, enc)``, if given, runs every ``callback_every`` steps and after the
    last one, with E in eval mode (it is put back in train mode afterwards).
    """
    torch.manual_seed(seed)
    enc = AttributeEncoder(engine.space, engine.channels, engine.height, engine.width, cfg).to(device)
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.time()
    losses = []
    for step in tqdm(range(1, cfg.steps + 1), desc="encoder", disable=not progress, leave=False):
        attrs = engine.space.sample_uniform(cfg.batch_size, g)
        with torch.no_grad():
            images = engine.images(attrs, g)
            if cfg.augment != "none":
                pick = torch.rand(images.shape[0], generator=g) < cfg.augment_prob if cfg.augment_prob < 1 else slice(None)
                aug = photometric_augment if cfg.augment == "photometric" else nuisance_augment
                if isinstance(pick, slice) or pick.any():
                    images[pick] = aug(images[pick], g)
        loss = enc.loss(images.to(device), attrs.to(device))
        check_loss(loss, "encoder E", "encoder.lr", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if callback is not None and (step % callback_every == 0 or step == cfg.steps):
            enc.eval()
            callback(step, enc)
            enc.train()
    enc.eval()
    check_model(enc, "encoder E", "encoder.lr")
    tail = losses[-50:]
    return enc, {"steps": cfg.steps, "seconds": time.time() - t0, "final_loss": sum(tail) / len(tail)}


def save_encoder(path: str | Path, enc: AttributeEncoder, engine: Engine, report: dict | None = None) -> None:
    """Checkpoint E as safetensors + JSON."""
    save_model_for_engine(path, enc, "encoder", engine.describe(), report)


def load_encoder(path: str | Path, engine: Engine, device: str = "cpu") -> AttributeEncoder:
    """Load E for ``engine``; raises ``ValueError`` if made for another engine or canvas."""
    return load_model_for_engine(
        path, "encoder", engine.describe(),
        lambda c: AttributeEncoder(engine.space, engine.channels, engine.height, engine.width, EncoderConfig(**c)), device,
    )
