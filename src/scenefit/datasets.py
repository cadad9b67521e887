"""Loading target image folders and exporting synthetic datasets.

Export layout (read as it is by Hugging Face ``datasets``' ``imagefolder``)::

    OUT/
      train/
        000000.png ...            synthetic images
        labels/000000.png ...     label masks (segmentation engines only)
        metadata.csv              file_name, label (or label_file), every attribute,
                                  target (source target file), fit_loss
      manifest.json               resolved config, seed, package versions, counts

The folder appears only when complete (written to a temporary sibling, then renamed).
"""

from __future__ import annotations

import csv
import io
import platform
import warnings
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.io import atomic_dir, write_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm")


class TargetFolderError(ValueError):
    """A target folder or one of its files cannot be used."""


def list_images(folder: str | Path) -> list[Path]:
    """Files of ``folder`` (non-recursive, sorted, hidden files skipped); raises if missing or empty."""
    folder = Path(folder)
    if not folder.exists():
        raise TargetFolderError(f"target folder does not exist: {folder}")
    if not folder.is_dir():
        raise TargetFolderError(f"target path is not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TargetFolderError(f"target folder is empty: {folder} (expected PNG or JPEG images)")
    return files


def load_image_folder(folder: str | Path, channels: int, height: int, width: int, progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """Load every image of ``folder`` as (N, C, H, W) float32 in [0, 1].

    Images are converted to grayscale (C=1) or RGB (C=3) and resized
    (bilinear) to H×W with one warning that says how many were resized.
    Any file that is not a readable image raises :class:`TargetFolderError`
    naming it; nothing is returned partially.

    Returns:
        images and the file names (relative to ``folder``).
    """
    files = list_images(folder)
    mode = {1: "L", 3: "RGB"}[channels]
    out = np.empty((len(files), height, width, channels), dtype=np.uint8)
    resized: dict[tuple[int, int], int] = {}
    for i, path in enumerate(tqdm(files, desc="loading targets", disable=not progress, leave=False)):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise TargetFolderError(f"not an image file: {path} (supported: {', '.join(IMAGE_SUFFIXES)})")
        try:
            with Image.open(path) as im:
                im.load()
                im = im.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise TargetFolderError(f"cannot read image {path}: {e}") from None
        if im.size != (width, height):
            resized[im.size] = resized.get(im.size, 0) + 1
            im = im.resize((width, height), Image.BILINEAR)
        out[i] = np.asarray(im).reshape(height, width, channels)
    if resized:
        sizes = ", ".join(f"{n} at {w}x{h}" for (w, h), n in sorted(resized.items()))
        warnings.warn(f"{folder}: resized {sum(resized.values())} of {len(files)} images to {width}x{height} ({sizes})", stacklevel=2)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0
    return images, [p.name for p in files]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8."""
    return (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(array: np.ndarray, path: Path) -> None:
    """Write an (H, W, C) or (H, W) uint8 array as PNG."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    Image.fromarray(array).save(path, format="PNG")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the output."""
    out = {"python": platform.python_version()}
    for name in ("scenefit", "torch", "numpy", "pillow", "moderngl"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def export_dataset(
    out: str | Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    attrs: torch.Tensor,
    space: AttributeSpace,
    manifest: dict,
    targets: list[str] | None = None,
    fit_loss: torch.Tensor | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a labeled synthetic dataset in imagefolder layout (see module doc).

    Args:
        images: (N, C, H, W) in [0, 1].
        labels: (N,) class ids, or (N, H, W) label masks (saved as PNG, column ``label_file``).
        attrs: (N, D) natural units, one column per attribute of ``space``.
        manifest: resolved config and seed; package versions and counts are added.
        targets: per row, the target file it was fitted to; fit_loss: (N,) content loss.
    Returns:
        the dataset folder.
    """
    n = images.shape[0]
    if labels.shape[0] != n or attrs.shape[0] != n:
        raise ValueError(f"export: {n} images but {labels.shape[0]} labels and {attrs.shape[0]} attribute rows")
    mask_labels = labels.ndim == 3
    pixels = to_uint8(images)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        train = tmp / "train"
        (train / "labels").mkdir(parents=True) if mask_labels else train.mkdir(parents=True)
        buf = io.StringIO()
        writer = csv.writer(buf)
        header = ["file_name", "label_file" if mask_labels else "label", *space.names]
        header += ["target"] if targets is not None else []
        header += ["fit_loss"] if fit_loss is not None else []
        writer.writerow(header)
        for i in tqdm(range(n), desc="writing dataset", disable=not progress, leave=False):
            name = f"{i:06d}.png"
            save_png(pixels[i], train / name)
            if mask_labels:
                save_png(labels[i].to(torch.uint8).cpu().numpy(), train / "labels" / name)
                row = [name, f"labels/{name}"]
            else:
                row = [name, int(labels[i])]
            row += [f"{v:.6g}" for v in attrs[i].tolist()]
            row += [targets[i]] if targets is not None else []
            row += [f"{float(fit_loss[i]):.6g}"] if fit_loss is not None else []
            writer.writerow(row)
        (train / "metadata.csv").write_text(buf.getvalue())
        write_json(
            tmp / "manifest.json",
            {
                **manifest,
                "count": n,
                "attributes": space.to_dict(),
                "versions": package_versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    return Path(out)
