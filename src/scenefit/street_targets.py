"""Target domains for the street engine: a built-in stand-in for real images, and KITTI / Cityscapes loaders.

**Built-in target domain** (:func:`render_target_domain`), for machines without
real street images. It differs from the engine's own output in two ways:

1. *Content* — attributes come from a held-out two-mode mixture
   (:data:`TARGET_MODES`), not from the engine's initial or uniform
   distribution: ``"urban_canyon"`` (tall, dense facades right at the sidewalk,
   wide road, many cars and people, dim light) and ``"open_suburban"`` (low,
   sparse, set-back houses, narrow road, much vegetation, bright sun, bends).
   Each mode is an independent Gaussian per continuous attribute (natural units)
   plus a categorical law for ``lane_count``, clamped to the attribute bounds.
2. *Appearance* — :func:`target_appearance` applies what the rasterizer never
   produces, in this order: colour grading (a fixed warm channel-mixing matrix,
   15% desaturation, gamma 0.85, per-image white-balance gains U(0.92, 1.08) per
   channel), Gaussian blur (per-image sigma U(0.5, 1.1) px), vignetting
   (``1 - k r^2`` with ``k`` ~ U(0.2, 0.45), ``r`` = 1 at the corners), sensor noise
   (read noise N(0, 0.012^2) plus shot noise N(0, 0.02^2 x)), then clamping to
   [0, 1] and 8-bit quantisation.

Labels of the target domain are returned for evaluation only; fitting must not
see them.

**Loaders** (:func:`load_kitti_semantics`, :func:`load_cityscapes`) read image +
Cityscapes-id label pairs, centre-crop them to the engine's aspect ratio
(optional), resize to the engine resolution (bilinear for images, nearest for
labels) and map ids to train ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Engine
from scenefit.engines.labels import id_to_train_id


@dataclass(frozen=True)
class TargetMode:
    """One Gaussian mode of the target attribute distribution.

    mean, std: natural units per continuous attribute; lane_probs: probability
    of each ``lane_count`` category (index 0 = one lane).
    """

    name: str
    weight: float
    mean: dict[str, float]
    std: dict[str, float]
    lane_probs: tuple[float, float, float, float]


TARGET_MODES: tuple[TargetMode, ...] = (
    TargetMode(
        "urban_canyon", 0.5,
        mean=dict(camera_height=1.65, camera_pitch=0.5, road_width=13.0, sidewalk_width_left=4.0, sidewalk_width_right=4.0,
                  building_height_left=26.0, building_height_right=24.0, building_density_left=0.92, building_density_right=0.92,
                  building_setback_left=0.5, building_setback_right=0.5, vegetation_density=0.12, car_density=0.65,
                  car_offset=5.0, pole_spacing=20.0, person_density=0.6, road_curvature=0.0, sun_brightness=0.3, sky_color=0.35),
        std=dict(camera_height=0.08, camera_pitch=0.8, road_width=2.0, sidewalk_width_left=0.8, sidewalk_width_right=0.8,
                 building_height_left=6.0, building_height_right=6.0, building_density_left=0.06, building_density_right=0.06,
                 building_setback_left=0.5, building_setback_right=0.5, vegetation_density=0.08, car_density=0.12,
                 car_offset=3.0, pole_spacing=4.0, person_density=0.15, road_curvature=0.0015, sun_brightness=0.12, sky_color=0.15),
        lane_probs=(0.05, 0.45, 0.4, 0.1),
    ),
    TargetMode(
        "open_suburban", 0.5,
        mean=dict(camera_height=1.7, camera_pitch=1.8, road_width=7.0, sidewalk_width_left=1.2, sidewalk_width_right=1.5,
                  building_height_left=7.0, building_height_right=7.5, building_density_left=0.35, building_density_right=0.4,
                  building_setback_left=12.0, building_setback_right=11.0, vegetation_density=0.8, car_density=0.15,
                  car_offset=5.0, pole_spacing=45.0, person_density=0.06, road_curvature=0.0, sun_brightness=0.85, sky_color=0.85),
        std=dict(camera_height=0.08, camera_pitch=0.8, road_width=1.0, sidewalk_width_left=0.6, sidewalk_width_right=0.6,
                 building_height_left=2.0, building_height_right=2.0, building_density_left=0.12, building_density_right=0.12,
                 building_setback_left=3.0, building_setback_right=3.0, vegetation_density=0.1, car_density=0.08,
                 car_offset=3.0, pole_spacing=8.0, person_density=0.04, road_curvature=0.004, sun_brightness=0.08, sky_color=0.08),
        lane_probs=(0.45, 0.55, 0.0, 0.0),
    ),
)

# Warm "film" grading: rows are output R, G, B as mixes of input R, G, B.
_GRADE = torch.tensor([[1.08, 0.06, -0.04], [0.02, 1.00, 0.00], [-0.02, 0.04, 0.86]])


def sample_target_attributes(space: AttributeSpace, n: int, generator: torch.Generator,
                             modes: tuple[TargetMode, ...] = TARGET_MODES) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` attribute rows from the target mixture.

    Returns:
        attrs: (n, D) float32 in natural units, within the space's bounds;
        mode: (n,) int64 index into ``modes``.
    """
    weights = torch.tensor([m.weight for m in modes], dtype=torch.float64)
    mode = torch.multinomial(weights, n, replacement=True, generator=generator)
    z = torch.randn(n, space.dim, generator=generator)
    u = torch.rand(n, generator=generator)
    cols = []
    for i, a in enumerate(space):
        if a.categorical:
            cdf = torch.tensor([np.cumsum(m.lane_probs).tolist() for m in modes], dtype=torch.float32)[mode]  # (n, 4)
            cols.append((u[:, None] > cdf).sum(1).clamp(max=a.num_categories - 1).float())
            continue
        mean = torch.tensor([m.mean[a.name] for m in modes])[mode]
        std = torch.tensor([m.std[a.name] for m in modes])[mode]
        cols.append(mean + std * z[:, i])
    return space.clamp(torch.stack(cols, dim=1)), mode


def gaussian_blur(image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur (B, C, H, W) with a per-image Gaussian of ``sigma`` (B,) px (separable, reflect padding)."""
    b, c, h, w = image.shape
    radius = int(math.ceil(3 * float(sigma.max())))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    k = torch.exp(-0.5 * (x[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    flat = image.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def target_appearance(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Give engine images (B, 3, H, W) in [0, 1] the target look (grading, blur, vignetting, noise; see module doc).

    Returns:
        (B, 3, H, W) float32 in [0, 1], multiples of 1/255.
    """
    b, _, h, w = image.shape
    x = torch.einsum("oc,bchw->bohw", _GRADE, image.float())
    grey = x.mean(1, keepdim=True)
    x = (0.85 * x + 0.15 * grey).clamp(0, 1) ** 0.85
    x = x * (0.92 + 0.16 * torch.rand(b, 3, 1, 1, generator=generator))
    x = gaussian_blur(x, 0.5 + 0.6 * torch.rand(b, generator=generator))
    yy = (torch.arange(h) + 0.5 - h / 2) / (h / 2)
    xx = (torch.arange(w) + 0.5 - w / 2) / (w / 2)
    r2 = (xx[None] ** 2 + yy[:, None] ** 2) / 2  # 1 at the corners
    x = x * (1 - (0.2 + 0.25 * torch.rand(b, 1, 1, 1, generator=generator)) * r2)
    noise = torch.randn(x.shape, generator=generator)
    x = x + noise * torch.sqrt(0.012**2 + 0.02**2 * x.clamp(min=0))
    return (x.clamp(0, 1) * 255).round() / 255


def render_target_domain(engine: Engine, n: int, generator: torch.Generator, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Render ``n`` images of the built-in target domain with ``engine`` (a street engine).

    Returns:
        ``"image"`` (n, 3, H, W) float32 in [0, 1] (target appearance applied);
        ``"label"`` (n, H, W) int64 train ids and ``"label_id"`` (n, H, W) int64
        Cityscapes ids (evaluation only); ``"attrs"`` (n, D) float32 natural units;
        ``"mode"`` (n,) int64 index into :data:`TARGET_MODES`.
    """
    attrs, mode = sample_target_attributes(engine.space, n, generator)
    parts = []
    for i in range(0, n, chunk):
        out = engine.render(attrs[i:i + chunk], generator=generator)
        parts.append({"image": target_appearance(out["image"], generator), "label": out["label"], "label_id": out["label_id"]})
    result = {k: torch.cat([p[k] for p in parts]) for k in ("image", "label", "label_id")}
    result.update(attrs=attrs, mode=mode)
    return result


# ------------------------------------------------------------------------------------------- loaders
def _png_files(folder: Path, what: str, pattern: str = "*.png") -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files = sorted(folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{what} folder {folder} holds no files matching '{pattern}'")
    return files


def _crop_box(size: tuple[int, int], height: int, width: int, keep_aspect: bool) -> tuple[int, int, int, int]:
    """Centre box (left, top, right, bottom) of a (W, H) image with the target aspect ratio."""
    w, h = size
    if not keep_aspect:
        return (0, 0, w, h)
    target = width / height
    if w / h > target:  # too wide: crop the sides
        cw = round(h * target)
        return ((w - cw) // 2, 0, (w - cw) // 2 + cw, h)
    ch = round(w / target)
    return (0, (h - ch) // 2, w, (h - ch) // 2 + ch)


def _load_pairs(pairs: list[tuple[Path, Path | None]], height: int, width: int, keep_aspect: bool) -> dict:
    images, ids = [], []
    for img_path, lab_path in pairs:
        with Image.open(img_path) as im:
            size = im.size
            box = _crop_box(size, height, width, keep_aspect)
            images.append(np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR, box=box)))
        if lab_path is None:
            continue
        with Image.open(lab_path) as lab:
            if lab.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"label {lab_path} has mode {lab.mode}; expected a single-channel PNG of Cityscapes ids "
                                 "(KITTI: semantic/, not semantic_rgb/; Cityscapes: *_gtFine_labelIds.png)")
            if lab.size != size:
                raise ValueError(f"label {lab_path} is {lab.size[0]}x{lab.size[1]} px but image {img_path} is {size[0]}x{size[1]}")
            arr = np.asarray(lab.resize((width, height), Image.NEAREST, box=box)).astype(np.int64)
            ids.append(np.where((arr >= 0) & (arr < 256), arr, 0))
    out = {
        "image": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0,
        "names": [p.name for p, _ in pairs],
    }
    if ids:
        label_id = torch.from_numpy(np.stack(ids))
        out.update(label=id_to_train_id(label_id), label_id=label_id)
    return out


def load_kitti_semantics(root: str | Path, height: int = 96, width: int = 320, limit: int | None = None,
                         labels: bool = True, keep_aspect: bool = True) -> dict:
    """Load a KITTI semantics folder: ``root/image_2/*.png`` with ``root/semantic/<same name>`` (Cityscapes ids).

    Args:
        root: the folder holding ``image_2`` (and ``semantic`` when ``labels``), e.g. ``data_semantics/training``.
        height, width: output size (px); limit: first ``limit`` images by name;
        labels: False loads images only (e.g. the unlabeled KITTI test split);
        keep_aspect: centre-crop to ``width / height`` before resizing.
    Returns:
        ``"image"`` (N, 3, H, W) float32 in [0, 1]; ``"label"`` (N, H, W) int64 train
        ids (255 ignore) and ``"label_id"`` (N, H, W) int64 ids when ``labels``; ``"names"``.
    """
    root = Path(root)
    files = _png_files(root / "image_2", "KITTI image")[:limit]
    pairs: list[tuple[Path, Path | None]] = []
    for f in files:
        lab = root / "semantic" / f.name
        if labels and not lab.is_file():
            if not (root / "semantic").is_dir():
                raise FileNotFoundError(f"KITTI label folder not found: {root / 'semantic'} (pass labels=False for images only)")
            raise FileNotFoundError(f"no label for image {f}: expected {lab}")
        pairs.append((f, lab if labels else None))
    return _load_pairs(pairs, height, width, keep_aspect)


def load_cityscapes(root: str | Path, split: str = "val", height: int = 96, width: int = 320, limit: int | None = None,
                    labels: bool = True, keep_aspect: bool = True) -> dict:
    """Load Cityscapes ``root/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``root/gtFine/<split>/<city>/*_gtFine_labelIds.png``.

    Arguments and returned keys as in :func:`load_kitti_semantics`; files are
    sorted by city then name.
    """
    root = Path(root)
    files = _png_files(root / "leftImg8bit" / split, f"Cityscapes '{split}' image", "*/*_leftImg8bit.png")[:limit]
    pairs: list[tuple[Path, Path | None]] = []
    for f in files:
        stem = f.name[: -len("_leftImg8bit.png")]
        lab = root / "gtFine" / split / f.parent.name / f"{stem}_gtFine_labelIds.png"
        if labels and not lab.is_file():
            if not (root / "gtFine" / split).is_dir():
                raise FileNotFoundError(f"Cityscapes label folder not found: {root / 'gtFine' / split} (pass labels=False for images only)")
            raise FileNotFoundError(f"no label for image {f}: expected {lab}")
        pairs.append((f, lab if labels else None))
    return _load_pairs(pairs, height, width, keep_aspect)
