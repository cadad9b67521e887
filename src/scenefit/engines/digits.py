"""The digit engine R of the paper's MNIST experiments (§4.1).

A grayscale canvas with a low-contrast procedural background and one 28×28
MNIST digit pasted on it, rotated about its centre and translated.

Conventions (pixel units, image axes: x to the right, y *down*):
    rotation  degrees, counter-clockwise as seen on screen, periodic in (-180, 180]
    tx, ty    offset of the digit centre from the canvas centre, px (ty > 0 = down)
    digit     class index 0..9 (categorical); the label

A rotation of +90° equals ``torch.rot90(image, 1, dims=(-2, -1))`` of the
unrotated digit. The warp is bilinear sampling, so the engine is differentiable
in rotation, tx and ty.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.engines.base import Engine, register_engine
from scenefit.mnist import DigitBank

DIGIT_SIZE = 28
CLASSES = tuple(str(i) for i in range(10))


def digit_space(translate: bool, max_shift: float) -> AttributeSpace:
    """Attribute space of the digit engine: rotation [, tx, ty], digit."""
    attrs = [Attribute("rotation", -180.0, 180.0, "deg", periodic=True)]
    if translate:
        attrs += [Attribute("tx", -max_shift, max_shift, "px"), Attribute("ty", -max_shift, max_shift, "px")]
    attrs.append(Attribute("digit", unit="class", categories=CLASSES))
    return AttributeSpace(attrs)


def procedural_background(n: int, height: int, width: int, contrast: float, generator: torch.Generator | None) -> torch.Tensor:
    """Smooth value-noise backgrounds, (n, 1, H, W) in [0, contrast]."""
    coarse = torch.rand(n, 1, 6, 6, generator=generator)
    fine = torch.rand(n, 1, 16, 16, generator=generator)
    bg = 0.7 * F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    bg = bg + 0.3 * F.interpolate(fine, size=(height, width), mode="bilinear", align_corners=False)
    return contrast * bg.clamp(0.0, 1.0)


def paste_grid(rotation_deg: torch.Tensor, shift: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid that pastes a 28×28 texture rotated and shifted on an H×W canvas.

    Args:
        rotation_deg: (B,) counter-clockwise degrees.
        shift: (B, 2) digit-centre offset (tx, ty) from the canvas centre, px.
    Returns:
        (B, H, W, 2) grid in ``grid_sample``'s normalized texture coordinates
        (``align_corners=False``).
    """
    dtype, device = shift.dtype, shift.device
    ys = torch.arange(height, dtype=dtype, device=device) + 0.5 - height / 2
    xs = torch.arange(width, dtype=dtype, device=device) + 0.5 - width / 2
    py, px = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) offsets from the canvas centre
    dx = px[None] - shift[:, 0, None, None]
    dy = py[None] - shift[:, 1, None, None]
    theta = rotation_deg * (math.pi / 180.0)
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    # inverse of the on-screen counter-clockwise rotation (y axis points down)
    sx = dx * c - dy * s
    sy = dx * s + dy * c
    half = DIGIT_SIZE / 2
    return torch.stack([sx / half, sy / half], dim=-1)  # (B, H, W, 2)


class DigitEngine(Engine):
    """Batched, seeded, differentiable MNIST-on-texture renderer.

    Args:
        bank: digit textures to paste (engine textures or held-out target textures).
        canvas: square canvas side, px (48 for rotation settings, 64 for translation).
        translate: expose tx, ty as attributes (otherwise the digit stays centred).
        max_shift: bound of |tx|, |ty| in px.
        background: ``"texture"`` (procedural, seeded, low contrast) or ``"plain"`` (black).
        contrast: maximum background intensity in [0, 1].
    """

    name = "digits"
    differentiable = True
    channels = 1

    def __init__(
        self,
        bank: DigitBank,
        canvas: int = 48,
        translate: bool = False,
        max_shift: float = 20.0,
        background: str = "texture",
        contrast: float = 0.25,
    ) -> None:
        if canvas < DIGIT_SIZE:
            raise ValueError(f"canvas must be at least {DIGIT_SIZE} px, got {canvas}")
        if background not in ("texture", "plain"):
            raise ValueError(f"background must be 'texture' or 'plain', got '{background}'")
        if not 0.0 <= contrast <= 1.0:
            raise ValueError(f"contrast must be in [0, 1], got {contrast}")
        present = set(bank.labels.unique().tolist())
        missing = sorted(set(range(10)) - present)
        if missing:
            raise ValueError(f"digit bank has no texture for classes {missing}")
        self.bank = bank
        self.height = self.width = canvas
        self.translate = translate
        self.max_shift = float(max_shift)
        self.background = background
        self.contrast = float(contrast)
        self.space = digit_space(translate, max_shift)
        # per-class texture index lists, padded into a (10, max_count) table for batched draws
        counts = torch.bincount(bank.labels, minlength=10)
        order = torch.argsort(bank.labels, stable=True)
        self._class_count = counts
        self._class_start = torch.cumsum(counts, 0) - counts
        self._order = order

    def describe(self) -> dict:
        """Identity for checkpoint checks (adds the canvas and translation range)."""
        return {**super().describe(), "translate": self.translate, "max_shift": self.max_shift}

    def sample_textures(self, digits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random texture indices into the bank, one per row, of the requested classes: (B,) int64."""
        digits = digits.round().long().clamp(0, 9).cpu()
        u = torch.rand(digits.shape[0], generator=generator)
        k = (u * self._class_count[digits]).long().clamp(max=self._class_count[digits] - 1)
        return self._order[self._class_start[digits] + k]

    def split(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D) attributes -> rotation (B,), shift (B, 2), digit (B,) long."""
        rot = attrs[:, self.space.index("rotation")]
        if self.translate:
            shift = attrs[:, [self.space.index("tx"), self.space.index("ty")]]
        else:
            shift = attrs.new_zeros(attrs.shape[0], 2)
        digit = attrs[:, self.space.index("digit")].round().long()
        return rot, shift, digit

    def render(
        self,
        attrs: torch.Tensor,
        generator: torch.Generator | None = None,
        textures: torch.Tensor | None = None,
        backgrounds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render a batch.

        Args:
            attrs: (B, D) natural units, columns as :attr:`space`.
            generator: draws texture choice and background (same seed, same render).
            textures: optional (B,) bank indices overriding the random choice.
            backgrounds: optional (B, 1, H, W) backgrounds overriding the procedural one.
        Returns:
            ``image`` (B, 1, H, W) float32 in [0, 1]; ``label`` (B,) int64 digit class;
            ``texture`` (B,) int64 bank index used.
        """
        rot, shift, digit = self.split(attrs)
        if textures is None:
            textures = self.sample_textures(digit, generator)
        tex = self.bank.images[textures.cpu()].to(attrs.device).unsqueeze(1)  # (B, 1, 28, 28)
        grid = paste_grid(rot, shift, self.height, self.width)
        glyph = F.grid_sample(tex, grid.to(tex.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        b = attrs.shape[0]
        if backgrounds is None:
            if self.background == "plain":
                backgrounds = glyph.new_zeros(b, 1, self.height, self.width)
            else:
                backgrounds = procedural_background(b, self.height, self.width, self.contrast, generator).to(glyph)
        image = backgrounds * (1.0 - glyph) + glyph  # the digit's intensity is its own alpha
        return {"image": image, "label": self.bank.labels[textures.cpu()].to(attrs.device), "texture": textures}


@register_engine("digits")
def _make_digit_engine(**kwargs) -> DigitEngine:
    return DigitEngine(**kwargs)
