"""Generic nuisance augmentation for training networks that must read images of another look.

The fit compares renders and target images on a task network's features. A network trained on clean engine
renders reads targets of another look badly; the fit-feature network FN (``features.source: fit_net``) is
trained on renders passed once through :func:`photometric_augment` instead (measured effect: docs/RESULTS.md).
The ranges are generic camera variations; none is the street target domain's fixed grading matrix or its
vignetting (the ``street-grade`` look, :mod:`scenefit.looks`), and no target image is used to choose them.
:func:`nuisance_augment` adds what a pen or a scanner changes (stroke width, content scale, resolution) before
the photometric draw; the encoder E uses it with ``encoder.augment: nuisance``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scenefit.looks import gaussian_blur
from scenefit.shifts import dilate, erode, lowres, pixel_factor


def _check(cfg: object, ranges: tuple[str, ...], probs: tuple[str, ...]) -> None:
    """Raise ValueError naming the field unless every ``ranges`` field is ``(lo, hi)`` with 0 < lo <= hi (finite) and
    every ``probs`` field lies in [0, 1]."""
    for name in ranges:
        lo, hi = getattr(cfg, name)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"augment.{name} must be a range 0 < lo <= hi, got ({lo}, {hi})")
    for name in probs:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(cfg, name)}")


def _check_batch(images: torch.Tensor) -> None:
    """Raise ValueError unless ``images`` is a (B, 1, H, W) or (B, 3, H, W) batch."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1, H, W) or (B, 3, H, W), got shape {tuple(images.shape)}")


@dataclass(frozen=True)
class PhotometricAugment:
    """Ranges of one random draw per image; a factor range ``(a, a)`` is a fixed factor, ``(1, 1)`` the identity.

    brightness, contrast (about the image mean), saturation (about the per-pixel grey), gain (per channel):
    multiplicative factors drawn uniformly; gamma: exponent applied after clamping to [0, 1]; blur_prob:
    probability of a Gaussian blur of sigma U(0, blur_sigma) px; noise: Gaussian noise of sigma U(0, noise).
    """

    brightness: tuple[float, float] = (0.7, 1.3)
    contrast: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.6, 1.2)
    gain: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.5
    blur_sigma: float = 1.2
    noise: float = 0.03

    def __post_init__(self) -> None:
        _check(self, ("brightness", "contrast", "saturation", "gain", "gamma"), ("blur_prob",))
        if not (self.blur_sigma >= 0 and self.noise >= 0):
            raise ValueError(f"augment.blur_sigma and augment.noise must be >= 0, got {self.blur_sigma}, {self.noise}")


def photometric_augment(images: torch.Tensor, generator: torch.Generator, cfg: PhotometricAugment | None = None) -> torch.Tensor:
    """Augment images (B, C, H, W) in [0, 1], one independent draw per image (see :class:`PhotometricAugment`).

    Saturation and per-channel gain apply to RGB images (C = 3) only, but are drawn for any C so that the
    other draws do not depend on the channel count. Returns a new (B, C, H, W) tensor in [0, 1];
    deterministic for the generator's state.
    """
    _check_batch(images)
    rgb = images.shape[1] == 3
    cfg = cfg or PhotometricAugment()
    b = images.shape[0]

    def u(rng: tuple[float, float], *shape: int) -> torch.Tensor:
        return rng[0] + (rng[1] - rng[0]) * torch.rand(b, *shape, generator=generator)

    x = images * u(cfg.brightness, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * u(cfg.contrast, 1, 1, 1)
    grey = x.mean(1, keepdim=True)
    sat, gain = u(cfg.saturation, 1, 1, 1), u(cfg.gain, 3, 1, 1)
    if rgb:
        x = (grey + (x - grey) * sat) * gain
    x = x.clamp(0, 1) ** u(cfg.gamma, 1, 1, 1)
    blur = torch.rand(b, generator=generator) < cfg.blur_prob
    if blur.any():
        x[blur] = gaussian_blur(x[blur], 1e-3 + cfg.blur_sigma * torch.rand(int(blur.sum()), generator=generator))
    x = x + torch.randn(x.shape, generator=generator) * u((0.0, cfg.noise), 1, 1, 1)
    return x.clamp(0, 1)


@dataclass(frozen=True)
class NuisanceAugment:
    """Shape and resolution nuisances a scanner or a pen brings, then :class:`PhotometricAugment` (one draw per image).

    stroke_prob: probability of a grey-level erosion or dilation (even odds) over a 3x3 cross (times the shift
    module's pixel factor); scale: content scaled about its intensity centroid by a log-uniform factor in this
    range (the centroid stays, so position attributes keep their meaning); lowres_prob: probability of an area
    downsample by a factor U(lowres_factor) and a bilinear upsample back. The photometric draw follows, here with
    blur up to sigma 2 px and noise up to sigma 0.1. Every range was set once, before it was measured; the look
    shifts' strong levels of stroke (3x3 square), box (x0.6, x1.6), lowres (1/5) and noise (0.15) lie outside it.
    """

    stroke_prob: float = 0.5
    scale: tuple[float, float] = (0.75, 4 / 3)
    lowres_prob: float = 0.25
    lowres_factor: tuple[float, float] = (1.5, 4.0)
    photometric: PhotometricAugment = PhotometricAugment(blur_sigma=2.0, noise=0.1)

    def __post_init__(self) -> None:
        _check(self, ("scale", "lowres_factor"), ("stroke_prob", "lowres_prob"))


def _scale_about_centroid(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) with each image's content scaled by ``factor`` (B,) about its intensity centroid (of x minus the
    image's minimum); bilinear, the border value outside the frame."""
    b, _, h, w = x.shape
    mass = (x - x.amin((1, 2, 3), keepdim=True)).sum(1)  # (B, H, W)
    total = mass.sum((1, 2)).clamp_min(1e-8)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=x.dtype)  # pixel centres, align_corners=False
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=x.dtype)
    cy = (mass.sum(2) * ys).sum(1) / total
    cx = (mass.sum(1) * xs).sum(1) / total
    inv = 1 / factor.to(x.dtype)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = inv, inv
    theta[:, 0, 2], theta[:, 1, 2] = cx * (1 - inv), cy * (1 - inv)  # input = c + (output - c) / factor
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def nuisance_augment(images: torch.Tensor, generator: torch.Generator, cfg: NuisanceAugment | None = None) -> torch.Tensor:
    """Augment images (B, C, H, W) in [0, 1] (C = 1 or 3) with :class:`NuisanceAugment`: stroke, scale, resolution,
    then the photometric draw. Returns a new (B, C, H, W) tensor in [0, 1]; deterministic for the generator's state."""
    _check_batch(images)
    cfg = cfg or NuisanceAugment()
    b, _, h, w = images.shape
    r = pixel_factor(h, w)
    x = images.clone()
    stroke = torch.rand(b, generator=generator) < cfg.stroke_prob
    thicken = torch.rand(b, generator=generator) < 0.5
    for mask, op in ((stroke & thicken, dilate), (stroke & ~thicken, erode)):
        if mask.any():
            x[mask] = op(x[mask], "cross", r)
    lo, hi = (math.log(v) for v in cfg.scale)
    x = _scale_about_centroid(x, torch.exp(lo + (hi - lo) * torch.rand(b, generator=generator)))
    low = torch.rand(b, generator=generator) < cfg.lowres_prob
    factor = cfg.lowres_factor[0] + (cfg.lowres_factor[1] - cfg.lowres_factor[0]) * torch.rand(b, generator=generator)
    for i in torch.nonzero(low).flatten().tolist():
        x[i : i + 1] = lowres(x[i : i + 1], 1 / float(factor[i]))
    return photometric_augment(x.clamp(0, 1), generator, cfg.photometric)
