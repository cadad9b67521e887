"""Reading a folder of target images: any size, bit depth and mode, into one (N, C, H, W) batch.

What is accepted (every other file in the folder is an error that names it):

- formats: PNG, JPEG, BMP, TIFF, WebP, PGM (by extension, case-insensitive); hidden files are ignored;
- modes: 8-bit and 16-bit grey (scaled by their full range, 65535 for 16 bit), RGB, palette, 32-bit float
  (clipped to [0, 1]); an alpha channel is composited on black;
- colour to grey: ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B); grey to colour: the grey value in every channel;
- size: each image is centre-cropped to the engine's aspect ratio, then resized to the engine's size (bilinear,
  antialiased when shrinking); one warning says how many were cropped or resized;
- images above 89 million pixels (Pillow's decompression-bomb limit) are refused.

Which files are targets, and their names (paths relative to the folder; sub-folders, KITTI and Cityscapes roots,
``--glob``): :mod:`scenefit.targetfiles`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from scenefit.targetfiles import IMAGE_SUFFIXES, TargetFiles, TargetFolderError, find_targets  # noqa: F401  (re-exported: older imports)

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def list_images(folder: str | Path, pattern: str | None = None) -> list[Path]:
    """The target image files of ``folder`` (sub-folders too; KITTI/Cityscapes roots; ``pattern`` as ``--glob``),
    sorted by relative path: :func:`scenefit.targetfiles.find_targets`; raises if missing or empty."""
    return list(find_targets(folder, pattern).files)


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """One image as (H, W, channels) float32 in [0, 1] (module doc); errors name the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                arr = _to_float(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TargetFolderError(f"image {path} is too large (over {Image.MAX_IMAGE_PIXELS:,} pixels); shrink it first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise TargetFolderError(f"cannot read image {path}: {e}") from None
    if channels == 1 and arr.shape[2] == 3:
        arr = (arr @ LUMA)[:, :, None]
    elif channels == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] != channels:
        raise TargetFolderError(f"image {path} has {arr.shape[2]} channels; the engine renders {channels}")
    return arr


def _to_float(im: Image.Image) -> np.ndarray:
    """(H, W, 1 or 3) float32 in [0, 1] from any Pillow mode, alpha composited on black."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return (np.asarray(im, dtype=np.float32) / 65535.0)[:, :, None]
    if mode == "I":
        a = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if a.max(initial=0) <= 65535 else 4294967295.0
        return np.clip(a / scale, 0, 1).astype(np.float32)[:, :, None]
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0, 1)[:, :, None]
    if mode in ("1", "L"):
        return (np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[:, :, None]
    if mode == "LA" or (mode == "P" and "transparency" in im.info) or mode in ("RGBA", "RGBa", "PA"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        rgb = rgba[:, :, :3] * rgba[:, :, 3:]
        return rgb[:, :, :1] if mode == "LA" else rgb
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def crop_box(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """Centre box (top, left, h, w) of an ``height`` × ``width`` image with the aspect ratio of ``out_h`` × ``out_w``."""
    target = out_w / out_h
    if width / height > target:  # too wide: crop the sides
        w = max(1, round(height * target))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width / target))
    return (height - h) // 2, 0, h, width


def fit_to(arr: np.ndarray, out_h: int, out_w: int) -> tuple[torch.Tensor, str]:
    """(H, W, C) -> (C, out_h, out_w): centre-crop to the aspect ratio, resize bilinearly; returns what was done
    (``""``, ``"resized"`` or ``"cropped and resized"``)."""
    h, w = arr.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if (h, w) == (out_h, out_w):
        return x, ""
    top, left, ch, cw = crop_box(h, w, out_h, out_w)
    x = x[:, top : top + ch, left : left + cw]
    x = F.interpolate(x[None], size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=(ch > out_h or cw > out_w))[0]
    return x.clamp(0, 1), ("cropped and resized" if (ch, cw) != (h, w) else "resized")


def load_images(files: list[Path], channels: int, height: int, width: int, progress: bool = False) -> tuple[torch.Tensor, dict]:
    """Images ``files`` as (N, channels, height, width) float32 in [0, 1], and what was done to their sizes:
    ``{(what, width, height): count}`` for :func:`size_warning`."""
    out = torch.empty(len(files), channels, height, width)
    changed: dict[tuple[str, int, int], int] = {}
    for i, path in enumerate(tqdm(files, desc="loading targets", disable=not progress, leave=False)):
        arr = read_image(path, channels)
        out[i], did = fit_to(arr, height, width)
        if did:
            key = (did, arr.shape[1], arr.shape[0])
            changed[key] = changed.get(key, 0) + 1
    return out, changed


def size_warning(folder: str | Path, changed: dict, total: int, height: int, width: int) -> str | None:
    """The one warning that says how many images were cropped or resized (None when none were)."""
    if not changed:
        return None
    sizes = ", ".join(f"{n} {did} at {w}x{h}" for (did, w, h), n in sorted(changed.items()))
    cropped = sum(n for (did, _, _), n in changed.items() if did.startswith("cropped"))
    what = "centre-cropped to the aspect ratio and resized" if cropped else "resized"
    return f"{folder}: {what} {sum(changed.values())} of {total} images to {width}x{height} ({sizes})"


def load_image_folder(folder: str | Path, channels: int, height: int, width: int, progress: bool = True,
                      pattern: str | None = None) -> tuple[torch.Tensor, list[str]]:
    """Every target image of ``folder`` (``pattern``: see :func:`list_images`) as (N, channels, height, width) float32
    in [0, 1], and their names (paths relative to ``folder``, ``/``-separated; the file names in a flat folder).

    Nothing is returned partially: any unreadable file raises :class:`TargetFolderError` naming it.
    """
    return load_targets(find_targets(folder, pattern), channels, height, width, progress)


def load_targets(found: TargetFiles, channels: int, height: int, width: int, progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """The images of ``found`` (:func:`scenefit.targetfiles.find_targets`) as (N, channels, height, width) float32 in
    [0, 1], and their names; one warning says how many were cropped or resized."""
    out, changed = load_images(list(found.files), channels, height, width, progress)
    msg = size_warning(found.root, changed, len(found.files), height, width)
    if msg:
        warnings.warn(msg, stacklevel=3)
    return out, list(found.names)
