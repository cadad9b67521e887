"""Real street target folders: KITTI semantics and Cityscapes loaders (images with Cityscapes-id labels).

Both read image + label pairs, centre-crop them to the engine's aspect ratio
(optional), resize to the engine resolution (bilinear for images, nearest for
labels) and map ids to train ids. The built-in street target domain, for machines
without real street images, is a config: the ``street-*`` presets' target mixture
rendered by the street engine and given the ``street-grade`` look
(:mod:`scenefit.looks`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scenefit.engines.labels import id_to_train_id


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
