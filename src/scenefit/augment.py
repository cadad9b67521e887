"""Generic photometric augmentation for training feature networks that must read images of another look.

The fit compares renders and target images on a task network's features. A network trained on clean engine
renders reads targets of another look badly; the fit-feature network FN (``features.source: fit_net``) is
trained on renders passed once through :func:`photometric_augment` instead (measured effect: docs/RESULTS.md).
The ranges are generic camera variations; none is the street target domain's fixed grading matrix or its
vignetting (the ``street-grade`` look, :mod:`scenefit.looks`), and no target image is used to choose them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scenefit.looks import gaussian_blur


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
        for name in ("brightness", "contrast", "saturation", "gain", "gamma"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                raise ValueError(f"augment.{name} must be a range 0 < lo <= hi, got ({lo}, {hi})")
        if not 0.0 <= self.blur_prob <= 1.0:
            raise ValueError(f"augment.blur_prob must be in [0, 1], got {self.blur_prob}")
        if not (self.blur_sigma >= 0 and self.noise >= 0):
            raise ValueError(f"augment.blur_sigma and augment.noise must be >= 0, got {self.blur_sigma}, {self.noise}")


def photometric_augment(images: torch.Tensor, generator: torch.Generator, cfg: PhotometricAugment | None = None) -> torch.Tensor:
    """Augment images (B, C, H, W) in [0, 1], one independent draw per image (see :class:`PhotometricAugment`).

    Saturation and per-channel gain apply to RGB images (C = 3) only, but are drawn for any C so that the
    other draws do not depend on the channel count. Returns a new (B, C, H, W) tensor in [0, 1];
    deterministic for the generator's state.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1, H, W) or (B, 3, H, W), got shape {tuple(images.shape)}")
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
