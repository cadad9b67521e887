"""Looks: appearance changes that no engine attribute renders, applied to image batches row by row.

A look turns engine renders into images of another camera or scanner (colour
grading, blur, vignetting, sensor noise...). A config applies one to the target
and test images it synthesises (``setting.look``), so that fitting is tested on
targets that do not look like the engine's own output. Every row draws its
randomness from its own seed (:mod:`scenefit.seeding`), so a look gives the same
image in any batch.

Built-in looks (:data:`LOOKS`):

``street-grade``  the built-in street target domain's look, in this order: colour grading (a fixed
    warm channel-mixing matrix, 15% desaturation, gamma 0.85, per-image white-balance gains
    U(0.92, 1.08) per channel), Gaussian blur (per-image sigma U(0.5, 1.1) px), vignetting
    (``1 - k r^2``, ``k`` ~ U(0.2, 0.45), ``r`` = 1 at the corners), sensor noise (read noise
    N(0, 0.012²) plus shot noise N(0, 0.02² x)), then clamping and 8-bit quantisation.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from scenefit.seeding import row_normal, row_uniform

LookFn = Callable[..., torch.Tensor]
"""``(images (B, C, H, W) in [0, 1], seeds (B,) int64, **args) -> (B, C, H, W) in [0, 1]``."""


def gaussian_blur(image: torch.Tensor, sigma: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """Blur (B, C, H, W) with a per-image Gaussian of ``sigma`` (B,) px (separable, reflect padding).

    ``radius``: kernel half-width in px; default ``ceil(3 max sigma)``. Pass a fixed one to make each row
    independent of the others' sigma.
    """
    b, c, h, w = image.shape
    radius = int(math.ceil(3 * float(sigma.max()))) if radius is None else int(radius)
    radius = max(1, min(radius, h - 1, w - 1))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    k = torch.exp(-0.5 * (x[None] / sigma[:, None].to(image.dtype)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    flat = image.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


# Warm "film" grading: rows are output R, G, B as mixes of input R, G, B.
_GRADE = torch.tensor([[1.08, 0.06, -0.04], [0.02, 1.00, 0.00], [-0.02, 0.04, 0.86]])


def street_grade_draws(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-image draws of the ``street-grade`` look for look seeds (B,): ``gains`` (B, 3) white-balance gains,
    ``blur_sigma`` (B,) px at the image's own resolution, ``vignetting`` (B,) the ``k`` of ``1 - k r^2``. The
    fixed part of the look (grading matrix, 15% desaturation, gamma 0.85, noise levels) is in the module doc."""
    u = row_uniform(seeds, 5)  # per row: 3 gains, blur sigma, vignetting strength
    return {"gains": 0.92 + 0.16 * u[:, :3], "blur_sigma": 0.5 + 0.6 * u[:, 3], "vignetting": 0.2 + 0.25 * u[:, 4]}


def street_grade(images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """The built-in street target look (module doc) on RGB images (B, 3, H, W); returns multiples of 1/255."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"street-grade needs RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    d = {k: v.to(images.device) for k, v in street_grade_draws(seeds).items()}
    x = torch.einsum("oc,bchw->bohw", _GRADE.to(images.device), images.float())
    grey = x.mean(1, keepdim=True)
    x = (0.85 * x + 0.15 * grey).clamp(0, 1) ** 0.85
    x = x * d["gains"][:, :, None, None]
    x = gaussian_blur(x, d["blur_sigma"], radius=4)  # 4 = ceil(3 * 1.1): rows do not depend on each other
    yy = (torch.arange(h, device=x.device) + 0.5 - h / 2) / (h / 2)
    xx = (torch.arange(w, device=x.device) + 0.5 - w / 2) / (w / 2)
    r2 = (xx[None] ** 2 + yy[:, None] ** 2) / 2  # 1 at the corners
    x = x * (1 - d["vignetting"][:, None, None, None] * r2)
    noise = row_normal(seeds, 3 * h * w, stream=1).view(b, 3, h, w).to(x.device)
    x = x + noise * torch.sqrt(0.012**2 + 0.02**2 * x.clamp(min=0))
    return (x.clamp(0, 1) * 255).round() / 255


LOOKS: dict[str, LookFn] = {"street-grade": street_grade}
"""Look name -> function; register more with :func:`register_look`."""


def register_look(name: str) -> Callable[[LookFn], LookFn]:
    """Decorator: make a look usable by ``name`` in ``setting.look``."""

    def deco(fn: LookFn) -> LookFn:
        LOOKS[name] = fn
        return fn

    return deco


def apply_look(name: str, images: torch.Tensor, seeds: torch.Tensor, args: dict | None = None) -> torch.Tensor:
    """Apply look ``name`` with keyword ``args`` to images (B, C, H, W) in [0, 1] with per-row ``seeds`` (B,)."""
    if name not in LOOKS:
        raise ValueError(f"unknown look '{name}'; known looks: {sorted(LOOKS)}")
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"a look needs one seed per image: {images.shape[0]} images, seeds of shape {tuple(seeds.shape)}")
    return LOOKS[name](images, seeds, **(args or {}))
