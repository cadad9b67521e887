"""Exporting a synthetic dataset that Hugging Face ``datasets`` loads with its names.

Layout (``load_dataset("imagefolder", data_dir=OUT)`` reads it as it is)::

    OUT/
      train/
        000000.png ...            synthetic images
        masks/000000.png ...      label masks, class ids as 8-bit grey ("mask" engines; column ``mask``)
        metadata.parquet          file_name, [mask_file_name | label], every attribute, target, fit_loss, seed
      classes.json                the label table: id, name, colour
      README.md                   dataset card (dataset_info: the label as ClassLabel, the mask as Image)
      manifest.json               resolved config, engine identity, seed, package versions, counts
      .scenefit                   ownership marker

The parquet schema carries the Hugging Face feature types, so ``label`` (and every categorical attribute)
loads as ``ClassLabel`` with the class names and ``mask`` as an ``Image``. The folder appears only when
complete (written to a temporary sibling, then renamed); an existing folder is replaced only when it is a
scenefit dataset and ``overwrite`` is set.
"""

from __future__ import annotations

import json
import platform
import shutil
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml
from PIL import Image
from tqdm.auto import tqdm

from scenefit.engines.base import Engine
from scenefit.io import atomic_dir, write_json
from scenefit.runs import MARKER, FolderError, marker, sibling_lock

RESERVED = ("file_name", "mask_file_name", "label", "target", "fit_loss", "seed")


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


def _column(name: str) -> str:
    return f"attr_{name}" if name in RESERVED else name


def _features(engine: Engine, masks: bool, targets: bool, fit_loss: bool, seeds: bool) -> dict:
    """Hugging Face feature types of the metadata columns (``Features.to_dict()`` form)."""
    feats: dict = {"file_name": {"dtype": "string", "_type": "Value"}}
    if masks:
        feats["mask_file_name"] = {"dtype": "string", "_type": "Value"}
    else:
        feats["label"] = {"names": list(engine.labels.names), "_type": "ClassLabel"}
    for a in engine.space:
        feats[_column(a.name)] = ({"names": list(a.categories), "_type": "ClassLabel"} if a.categorical
                                  else {"dtype": "float64", "_type": "Value"})
    if targets:
        feats["target"] = {"dtype": "string", "_type": "Value"}
    if fit_loss:
        feats["fit_loss"] = {"dtype": "float64", "_type": "Value"}
    if seeds:
        feats["seed"] = {"dtype": "int64", "_type": "Value"}
    return feats


def _card(engine: Engine, feats: dict, n: int, masks: bool, manifest: dict) -> str:
    info = []
    for name, f in feats.items():
        col = name[: -len("_file_name")] if name == "mask_file_name" else ("image" if name == "file_name" else name)
        if name in ("file_name", "mask_file_name"):
            info.append({"name": col, "dtype": "image"})
        elif f["_type"] == "ClassLabel":
            info.append({"name": col, "dtype": {"class_label": {"names": {str(i): c for i, c in enumerate(f["names"])}}}})
        else:
            info.append({"name": col, "dtype": f["dtype"]})
    header = {"dataset_info": {"features": info, "splits": [{"name": "train", "num_examples": n}]},
              "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "train/**"}]}]}
    lab = engine.labels
    rows = "\n".join(f"| {i} | {name} | {tuple(lab.colors[i]) if lab.colors else ''} |" for i, name in enumerate(lab.names))
    kind = "a label mask per image (`mask`, class ids as 8-bit grey" + (f"; {lab.ignore_index} = ignore" if lab.ignore_index is not None else "") + ")" \
        if masks else "a class label per image (`label`)"
    return (f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n# Synthetic dataset from scenefit\n\n"
            f"{n} images rendered by the engine `{engine.name}` at attributes fitted to the target images, with {kind}, "
            f"every attribute, the target each row was fitted to (`target`), the fit's content loss and the render seed.\n\n"
            f"```python\nfrom datasets import load_dataset\nds = load_dataset(\"imagefolder\", data_dir=\"<this folder>\")\n```\n\n"
            f"| id | class | colour |\n| --- | --- | --- |\n{rows}\n\nSetting: `{manifest.get('setting', '')}`; the resolved config "
            f"and package versions are in `manifest.json`.\n")


def export_dataset(
    out: str | Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    attrs: torch.Tensor,
    engine: Engine,
    manifest: dict,
    targets: list[str] | None = None,
    fit_loss: torch.Tensor | None = None,
    seeds: torch.Tensor | None = None,
    overwrite: bool = False,
    progress: bool = True,
    extra: dict[str, Path] | None = None,
) -> Path:
    """Write a labeled synthetic dataset (module doc).

    Args:
        images: (N, C, H, W) in [0, 1]. labels: (N,) class ids, or (N, H, W) masks of class ids.
        attrs: (N, D) natural units, one column per attribute of ``engine.space``.
        manifest: resolved config and seed; package versions, counts and the label table are added.
        targets: per row, the target it was fitted to; fit_loss: (N,) content loss; seeds: (N,) render seeds.
        extra: files copied into the dataset folder under the given names (e.g. ``fitted.parquet``).
    Returns:
        the dataset folder.
    """
    out = Path(out)
    if str(out) in ("", "."):
        raise FolderError("the dataset folder must be named (got an empty path); pass e.g. --out runs/my-dataset")
    if labels.shape[0] != images.shape[0] or attrs.shape[0] != images.shape[0]:
        raise ValueError(f"export: {images.shape[0]} images but {labels.shape[0]} labels and {attrs.shape[0]} attribute rows")
    out.parent.mkdir(parents=True, exist_ok=True)
    with sibling_lock(out):
        clean_stale(out)
        return _export(out, images, labels, attrs, engine, manifest, targets, fit_loss, seeds, overwrite, progress, extra)


def clean_stale(out: Path) -> None:
    """Remove temporary folders an interrupted export to ``out`` left beside it (called under its lock)."""
    for p in out.parent.glob(f".{out.name}.*.partial"):
        shutil.rmtree(p, ignore_errors=True)
    old = out.with_name(f".{out.name}.old")
    if old.is_dir() and marker(old) is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_replaceable(out: Path, overwrite: bool) -> None:
    """Raise unless ``out`` is missing, or a scenefit dataset and ``overwrite`` is set."""
    if out.exists():
        m = marker(out)
        if m is None or m.get("kind") != "dataset":
            raise FolderError(f"{out} exists and is not a scenefit dataset; scenefit replaces only folders it created: choose another --out")
        if not overwrite:
            raise FileExistsError(f"dataset folder already exists: {out} (choose another --out or pass --overwrite)")


def row_name(i: int, width: int = 6) -> str:
    """File name of dataset row ``i`` (``width`` digits, at least 6)."""
    return f"{i:0{max(width, 6)}d}.png"


def write_rows(folder: Path, first_row: int, images: torch.Tensor, labels: torch.Tensor, attrs: torch.Tensor, engine: Engine,
               targets: list[str] | None = None, fit_loss: torch.Tensor | None = None, seeds: torch.Tensor | None = None,
               width: int = 6, progress: bool = False) -> dict[str, list]:
    """Write rows ``first_row ...`` (images (N, C, H, W), labels (N,) or (N, H, W), attrs (N, D)) as PNGs into
    ``folder/train`` and return their metadata columns (the schema of :func:`metadata_features`)."""
    n = images.shape[0]
    if labels.shape[0] != n or attrs.shape[0] != n:
        raise ValueError(f"export: {n} images but {labels.shape[0]} labels and {attrs.shape[0]} attribute rows")
    masks = labels.dim() == 3
    train = folder / "train"
    (train / "masks").mkdir(parents=True, exist_ok=True) if masks else train.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list] = {"file_name": []}
    cols["mask_file_name" if masks else "label"] = []
    pixels = to_uint8(images)
    for i in tqdm(range(n), desc="writing dataset", disable=not progress, leave=False):
        name = row_name(first_row + i, width)
        save_png(pixels[i], train / name)
        cols["file_name"].append(name)
        if masks:
            save_png(labels[i].to(torch.uint8).cpu().numpy(), train / "masks" / name)
            cols["mask_file_name"].append(f"masks/{name}")
        else:
            cols["label"].append(int(labels[i]))
    for j, a in enumerate(engine.space):
        v = attrs[:, j].cpu()
        cols[_column(a.name)] = v.round().long().tolist() if a.categorical else v.double().tolist()
    if targets is not None:
        cols["target"] = list(targets)
    if fit_loss is not None:
        cols["fit_loss"] = fit_loss.double().tolist()
    if seeds is not None:
        cols["seed"] = seeds.long().tolist()
    return cols


def finish_dataset(folder: Path, cols: dict[str, list], engine: Engine, manifest: dict) -> None:
    """Write ``train/metadata.parquet`` (Hugging Face feature types in its schema), the card, ``classes.json``,
    ``manifest.json`` and the ownership marker into ``folder`` (whose rows :func:`write_rows` wrote)."""
    n = len(cols["file_name"])
    masks = "mask_file_name" in cols
    feats = _features(engine, masks, "target" in cols, "fit_loss" in cols, "seed" in cols)
    table = pa.table({k: cols[k] for k in feats}).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
    pq.write_table(table, folder / "train" / "metadata.parquet")
    (folder / "README.md").write_text(_card(engine, feats, n, masks, manifest))
    lab = engine.labels
    write_json(folder / "classes.json", {"label_kind": engine.label_kind, "ignore_index": lab.ignore_index,
                                         "classes": [{"id": i, "name": c, "color": list(lab.colors[i]) if lab.colors else None}
                                                     for i, c in enumerate(lab.names)]})
    write_json(folder / "manifest.json", {**manifest, "count": n, "label_kind": engine.label_kind, "labels": lab.to_dict(),
                                          "attributes": engine.space.to_dict(), "versions": package_versions(),
                                          "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    write_json(folder / MARKER, {"kind": "dataset", "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def _export(out: Path, images, labels, attrs, engine, manifest, targets, fit_loss, seeds, overwrite, progress, extra) -> Path:
    check_replaceable(out, overwrite)
    with atomic_dir(out, overwrite=True) as tmp:
        cols = write_rows(tmp, 0, images, labels, attrs, engine, targets, fit_loss, seeds, len(str(max(images.shape[0] - 1, 0))),
                          progress)
        for name, src in (extra or {}).items():
            shutil.copy2(src, tmp / name)
        finish_dataset(tmp, cols, engine, manifest)
    return out


def read_metadata(folder: str | Path) -> dict[str, list]:
    """The metadata columns of an exported dataset (``train/metadata.parquet``) as lists."""
    return pq.read_table(Path(folder) / "train" / "metadata.parquet").to_pydict()
