"""A minimal scenefit engine: one coloured shape (circle, square or triangle) on a noisy RGB canvas.

Attributes (columns of an ``attrs`` tensor, in this order; natural units; image axes: x right, y *down*):

    x, y    offset of the shape's centre from the canvas centre, px, in [-max_shift, max_shift]
    size    radius of the circle of the same area as the shape, px, in [min_size, max_size]
            (all three shapes of one size cover the same area, so brightness alone does not give the shape away)
    hue     colour hue, degrees, periodic in (-180, 180]: 0 red, 120 green, -120 blue (full saturation)
    shape   category 0 circle, 1 square, 2 triangle (pointing up); it is also the class label

Nuisance that is *not* an attribute: per-pixel background noise and a brightness jitter of the whole image.
Both are drawn from each row's own seed, so a row renders the same in any batch.

Use it from a config next to this file::

    engine: {name: "shapes_engine:ShapesEngine", args: {canvas: 32, noise: 0.03}}
"""

from __future__ import annotations

import math

import torch

import scenefit
from scenefit import Attribute, AttributeSpace, LabelTable
from scenefit.seeding import row_uniform

SHAPES = ("circle", "square", "triangle")
# half-side of the square / inradius of the triangle that give the area of a circle of radius 1
_SQUARE = math.sqrt(math.pi) / 2
_TRIANGLE = math.sqrt(math.pi / (3 * math.sqrt(3)))


def hue_to_rgb(hue_deg: torch.Tensor) -> torch.Tensor:
    """Fully saturated, full-value colours: hue (B,) degrees -> (B, 3) RGB in [0, 1]."""
    h = (hue_deg % 360.0)[:, None] / 60.0  # (B, 1) in [0, 6)
    k = (torch.tensor([5.0, 3.0, 1.0]) + h) % 6.0  # (B, 3)
    return 1.0 - torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


class ShapesEngine(scenefit.Engine):
    """Batched, seeded renderer of one shape per image.

    Args:
        canvas: square canvas side, px (a multiple of 16, for the surrogate's upsampling).
        max_shift: bound of |x| and |y|, px.
        min_size, max_size: bounds of ``size``, px.
        noise: amplitude of the uniform per-pixel background noise (background grey level is 0.15).
        brightness: the whole image is scaled by a factor drawn in [1 - brightness, 1 + brightness].
        edge: softness of the shape's outline, px (a sigmoid of the signed distance to the edge).
    """

    name = "shapes"
    channels = 3
    label_kind = "class"  # one class id per image (a "mask" engine returns a (B, H, W) label map instead)
    labels = LabelTable(SHAPES)  # class id i in out["label"] is called SHAPES[i] in the exported dataset

    def __init__(self, canvas: int = 32, max_shift: float = 8.0, min_size: float = 4.0, max_size: float = 10.0,
                 noise: float = 0.03, brightness: float = 0.1, edge: float = 0.5) -> None:
        if isinstance(canvas, bool) or not isinstance(canvas, int) or canvas < 16 or canvas % 16:
            raise ValueError(f"canvas must be a multiple of 16 px, got {canvas!r}")
        if not 0 < min_size < max_size:
            raise ValueError(f"need 0 < min_size < max_size, got {min_size}, {max_size}")
        if max_shift <= 0 or noise < 0 or not 0 <= brightness < 1 or edge <= 0:
            raise ValueError(f"need max_shift > 0, noise >= 0, 0 <= brightness < 1, edge > 0; "
                             f"got {max_shift}, {noise}, {brightness}, {edge}")
        self.height = self.width = canvas
        self.max_shift, self.min_size, self.max_size = float(max_shift), float(min_size), float(max_size)
        self.noise, self.brightness, self.edge = float(noise), float(brightness), float(edge)
        self.space = AttributeSpace([
            Attribute("x", -self.max_shift, self.max_shift, "px"),
            Attribute("y", -self.max_shift, self.max_shift, "px"),
            Attribute("size", self.min_size, self.max_size, "px"),
            Attribute("hue", -180.0, 180.0, "deg", periodic=True),
            Attribute("shape", unit="class", categories=SHAPES),
        ])

    def describe(self) -> dict:
        """Identity for checkpoint checks: the base fields plus every argument that changes a render."""
        return {**super().describe(), "max_shift": self.max_shift, "min_size": self.min_size, "max_size": self.max_size,
                "noise": self.noise, "brightness": self.brightness, "edge": self.edge}

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The prior before any fitting: centred (x, y ~ N(0, 1 px)), medium (size ~ N(7, 0.5) px),
        red (hue ~ N(0, 10) deg) shapes, each shape equally likely. Returns (n, 5) natural units."""
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        z = torch.randn(n, 4, generator=g)
        shape = torch.randint(len(SHAPES), (n,), generator=g).float()
        attrs = torch.stack([z[:, 0], z[:, 1], 7.0 + 0.5 * z[:, 2], 10.0 * z[:, 3], shape], dim=1)
        return self.space.clamp(attrs)  # clamp x, y, size into bounds; wrap hue into (-180, 180]

    def render_seeded(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render ``attrs`` (B, 5) natural units with per-row ``seeds`` (B,) int64.

        Returns:
            ``image`` (B, 3, H, W) float32 in [0, 1] and ``label`` (B,) int64 (the shape id).
        """
        b, s, device = attrs.shape[0], self.height, attrs.device
        a = attrs.detach().float().cpu()
        x, y, size, hue = a[:, 0, None, None], a[:, 1, None, None], a[:, 2, None, None], a[:, 3]
        shape = a[:, 4].round().long().clamp(0, len(SHAPES) - 1)
        c = torch.arange(s, dtype=torch.float32) + 0.5 - s / 2  # pixel centres, px from the canvas centre
        px, py = c[None, None, :] - x, c[None, :, None] - y  # (B, H, W) offsets from the shape's centre
        # signed distance to the outline, > 0 inside (px)
        circle = size - torch.sqrt(px**2 + py**2)
        square = _SQUARE * size - torch.maximum(px.abs(), py.abs())
        # triangle: inradius r; outward edge normals (0, 1), (+-sin 60, -1/2) in image axes (apex up)
        tri = _TRIANGLE * size - torch.maximum(py, 0.8660254 * px.abs() - 0.5 * py)
        dist = torch.stack([circle, square, tri], dim=1)[torch.arange(b), shape]  # (B, H, W)
        alpha = torch.sigmoid(dist / self.edge)[:, None]  # (B, 1, H, W)
        # nuisance: 3*H*W uniforms of background noise and 1 of brightness, from each row's own seed
        u = row_uniform(seeds, 3 * s * s + 1)
        background = 0.15 + self.noise * (2 * u[:, :-1].reshape(b, 3, s, s) - 1)
        image = background * (1 - alpha) + hue_to_rgb(hue)[:, :, None, None] * alpha
        image = image * (1 + self.brightness * (2 * u[:, -1:, None, None] - 1))
        return {"image": image.clamp(0, 1).to(device), "label": shape.to(device)}
