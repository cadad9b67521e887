"""Look shifts: fixed, named changes of how images look, for testing fitting against a gap between looks.

A shift acts on any image batch (B, C, H, W) float in [0, 1] (``jpeg``: C = 1 or 3) and
returns one of the same shape and range. Each comes at two levels, ``mild`` and ``strong``,
with fixed parameters; only ``noise`` draws randomness, from each row's own seed
(:mod:`scenefit.seeding`), so a row's output never depends on the batch it travels in.
A config names one as ``setting.shift: NAME:LEVEL`` (e.g. ``blur:strong``); it is applied to
the target and test images after their render and look, never to the engine's own renders.

Pixel sizes below are for images up to 95 px on their short side (the 48 and 64 px digit
canvases); larger images multiply them by ``s = floor(min(H, W) / 48)`` (a 256 px image: 5),
so a shift takes the same share of the content on a finer camera. Sizes that are fractions
of the frame (``lowres``, ``box_*``) need no factor.

=============  ==========================================  =========================  =======================
name           what                                        mild                       strong
=============  ==========================================  =========================  =======================
``thick``      grey-level dilation (max over a footprint)  3x3 cross (L1 radius 1 s)  3x3 square (radius 1 s)
``thin``       grey-level erosion (min over a footprint)   3x3 cross (L1 radius 1 s)  3x3 square (radius 1 s)
``blur``       Gaussian blur, kernel radius ceil(3 sigma)  sigma 1.0 s px             sigma 2.0 s px
``lowres``     area downsample, bilinear upsample          to 1/3 of H and W          to 1/5 of H and W
``gamma``      ``x ** gamma``                              gamma 2                    gamma 3
``contrast``   ``m + c (x - m)``, m the image's mean       c 0.6                      c 0.3
``noise``      ``clamp(x + N(0, sigma^2))`` per pixel      sigma 0.05                 sigma 0.15
``box_small``  content scaled about the frame centre       x 0.8                      x 0.6
``box_large``  (bilinear resample, zeros outside)          x 1.25                     x 1.6
``jpeg``       8-bit JPEG round trip (Pillow)              quality 30                 quality 8
=============  ==========================================  =========================  =======================

``thick`` and ``thin`` thicken and thin *bright* strokes on a dark ground (the MNIST
convention); on dark-on-light content they swap roles. Their footprints stay small because
digit strokes are a few px wide: on renders of the 48 px digit canvas a 5x5 square dilation
closes the loops of 8s and 9s, and a 5x5 square erosion leaves almost no stroke pixel above
0.5 (a 3x3 one about a fifth, the 3x3 cross about two fifths). ``lowres`` sides are rounded
and at least 2 px (48 px: 16 and 10). Gamma and contrast are separate shifts: gamma darkens
the mid tones and keeps 0 and 1; contrast pulls every pixel toward the image's mean (over its
channels and pixels) and keeps constant images.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from scenefit.looks import gaussian_blur
from scenefit.seeding import row_normal

LEVELS = ("mild", "strong")

PARAMS: dict[str, dict[str, object]] = {
    "thick": {"mild": ("cross", 1), "strong": ("square", 1)},
    "thin": {"mild": ("cross", 1), "strong": ("square", 1)},
    "blur": {"mild": 1.0, "strong": 2.0},
    "lowres": {"mild": 1 / 3, "strong": 1 / 5},
    "gamma": {"mild": 2.0, "strong": 3.0},
    "contrast": {"mild": 0.6, "strong": 0.3},
    "noise": {"mild": 0.05, "strong": 0.15},
    "box_small": {"mild": 0.8, "strong": 0.6},
    "box_large": {"mild": 1.25, "strong": 1.6},
    "jpeg": {"mild": 30, "strong": 8},
}
"""Each shift's parameter per level (the table of the module doc), before the pixel-size factor."""

SHIFTS = tuple(PARAMS)
"""The shift names, in the order the experiment lists them."""

REFERENCE_PX = 48
"""Images up to ``2 * REFERENCE_PX - 1`` px get the listed pixel sizes; larger ones ``floor(min(H, W) / 48)`` times them."""


def pixel_factor(height: int, width: int) -> int:
    """The factor ``s`` (>= 1) pixel sizes are multiplied by for an H x W image (module doc)."""
    return max(1, min(height, width) // REFERENCE_PX)


def parse_shift(text: str) -> tuple[str, str]:
    """``"blur:strong"`` -> ``("blur", "strong")``; raises ValueError naming the bad part and the known values."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise ValueError(f"shift {text!r} must be NAME:LEVEL, e.g. 'blur:strong', with NAME one of {', '.join(SHIFTS)} "
                         f"and LEVEL one of {', '.join(LEVELS)}")
    name, level = (p.strip() for p in text.split(":"))
    check_shift(name, level)
    return name, level


def check_shift(name: str, level: str) -> None:
    """Raise ValueError unless ``name`` is one of :data:`SHIFTS` and ``level`` one of :data:`LEVELS`."""
    if name not in PARAMS:
        raise ValueError(f"unknown shift '{name}'; known shifts: {', '.join(SHIFTS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown shift level '{level}' (shift '{name}'); known levels: {', '.join(LEVELS)}")


def _footprint_max(x: torch.Tensor, shape: str, r: int) -> torch.Tensor:
    """Max of (B, C, H, W) over a square (L-inf) or cross (L1) footprint of radius ``r`` px; out-of-frame pixels ignored."""
    # replicate padding repeats a pixel the (convex, centred) footprint already holds, so it never adds a value
    p = F.pad(x, (r, r, r, r), mode="replicate")
    if shape == "square":
        return F.max_pool2d(p, 2 * r + 1, stride=1)
    h, w = x.shape[-2:]
    out = x.clone()
    for dy in range(-r, r + 1):
        for dx in range(-(r - abs(dy)), r - abs(dy) + 1):
            out = torch.maximum(out, p[..., r + dy : r + dy + h, r + dx : r + dx + w])
    return out


def dilate(images: torch.Tensor, shape: str, radius: int) -> torch.Tensor:
    """Grey-level dilation of (B, C, H, W): max over a ``square`` or ``cross`` footprint of ``radius`` px."""
    return _footprint_max(images, shape, radius)


def erode(images: torch.Tensor, shape: str, radius: int) -> torch.Tensor:
    """Grey-level erosion of (B, C, H, W): min over a ``square`` or ``cross`` footprint of ``radius`` px."""
    return -_footprint_max(-images, shape, radius)


def lowres(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, C, H, W) area-downsampled to ``round(fraction * H) x round(fraction * W)`` (at least 2 px), then bilinearly
    upsampled back to H x W."""
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(2, round(fraction * h)), max(2, round(fraction * w))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def scale_content(images: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, C, H, W) with its content scaled by ``factor`` about the frame centre (bilinear, zeros outside the frame)."""
    b = images.shape[0]
    theta = torch.tensor([[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(b, 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """(B, C, H, W), C = 1 or 3, through an 8-bit JPEG at ``quality`` (1-95) and back: multiples of 1/255."""
    c = images.shape[1]
    if c not in (1, 3):
        raise ValueError(f"the jpeg shift needs 1- or 3-channel images (B, C, H, W), got shape {tuple(images.shape)}")
    px = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, C)
    out = []
    for row in px:
        buf = io.BytesIO()
        Image.fromarray(row[..., 0] if c == 1 else row, "L" if c == 1 else "RGB").save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if c == 1 else "RGB"))
        out.append(dec[..., None] if c == 1 else dec)
    back = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(images.device)
    return back.to(images.dtype) / 255


def apply_shift(images: torch.Tensor, name: str, level: str, seeds: torch.Tensor) -> torch.Tensor:
    """Shift ``name`` at ``level`` (module doc) on images (B, C, H, W) in [0, 1] with per-row ``seeds`` (B,) int64.

    Returns (B, C, H, W) float in [0, 1]; row ``i`` depends only on ``images[i]`` and ``seeds[i]``.
    """
    check_shift(name, level)
    if images.dim() != 4 or images.shape[1] < 1:
        raise ValueError(f"a shift needs an image batch (B, C, H, W), got shape {tuple(images.shape)}")
    if tuple(seeds.shape) != (images.shape[0],):
        raise ValueError(f"a shift needs one seed per image: {images.shape[0]} images, seeds of shape {tuple(seeds.shape)}")
    x = images.float()
    p = PARAMS[name][level]
    s = pixel_factor(*x.shape[-2:])
    if name in ("thick", "thin"):
        shape, r = p
        y = (dilate if name == "thick" else erode)(x, shape, r * s)
    elif name == "blur":
        sigma = float(p) * s
        y = gaussian_blur(x, torch.full((x.shape[0],), sigma), radius=math.ceil(3 * sigma))  # fixed radius: rows independent
    elif name == "lowres":
        y = lowres(x, float(p))
    elif name == "gamma":
        y = x.clamp(0, 1) ** float(p)
    elif name == "contrast":
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        y = m + float(p) * (x - m)
    elif name == "noise":
        b, c, h, w = x.shape
        y = x + float(p) * row_normal(seeds, c * h * w).view(b, c, h, w).to(x.device)
    elif name in ("box_small", "box_large"):
        y = scale_content(x, float(p))
    else:
        y = jpeg(x, int(p))
    return y.clamp(0, 1)


__all__ = ["LEVELS", "PARAMS", "SHIFTS", "apply_shift", "check_shift", "dilate", "erode", "jpeg", "lowres", "parse_shift",
           "pixel_factor", "scale_content"]
