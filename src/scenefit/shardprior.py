"""The population prior of a streamed ``scenefit fit`` (``fit.amortized.prior_iters`` > 0).

Each target's prior is estimated from the encoder E's readings of all targets (:mod:`scenefit.fitting.prior`), so
shards fitted on their own cannot estimate it. Before the shards, :func:`ensure_priors` reads every target in
batches of :data:`BATCH` exactly as a shard reads it (:func:`scenefit.imagefolder.load_images` at the engine's
resolution, then :func:`scenefit.fitjob.fit_resolution`), runs E, estimates every target's log prior
(:func:`scenefit.fitting.amortized.population_priors`) and writes them to :data:`PRIORS` in the work folder, the
job's key in the file's metadata: a resumed job reads them back, a file with another key is computed again. Each
shard then reads its own rows only (:func:`shard_priors`). Neither the batches nor the prior depend on the shard
size, the backend or the worker count, so the fitted rows do not either.

Memory: E's logits and the priors of all N targets, N × (the bins of E's categorical and periodic heads) floats
each; the images are read :data:`BATCH` at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from scenefit.encoder import encoder_outputs
from scenefit.fitjob import fit_resolution
from scenefit.fitting.amortized import population_priors, prior_moved
from scenefit.imagefolder import load_images
from scenefit.io import save_tensors
from scenefit.models import Models
from scenefit.resolve import Resolved

PRIORS = "priors.safetensors"
"""The priors' file in a streamed fit's work folder (removed when the dataset is finished)."""

BATCH = 256
"""Targets read and run through E at once in the pre-pass."""


def uses_priors(res: Resolved) -> bool:
    """Whether the configured fit weighs E's readings by the population prior (``amortized``, ``prior_iters`` > 0)."""
    fit = res.cfg.fit
    return fit.method == "amortized" and fit.amortized.prior_iters > 0


def encoder_readings(res: Resolved, models: Models, files: list[Path], progress: bool = False,
                     batch: int = BATCH) -> list[torch.Tensor]:
    """E's head outputs for the target ``files``, read as a shard reads them, ``batch`` at a time; per attribute (on
    the CPU): logits (N, n) for categorical and periodic attributes, a unit value (N,) otherwise."""
    e, enc = res.engine, models.encoder()
    enc.requires_grad_(False)
    parts: list[list[torch.Tensor]] = []
    bar = tqdm(total=len(files), desc="prior: E on all targets", unit="target", disable=not progress)
    try:
        for lo in range(0, len(files), batch):
            images, _ = load_images(list(files[lo : lo + batch]), e.channels, e.height, e.width)
            with torch.no_grad():
                parts.append(encoder_outputs(enc, fit_resolution(res, images), batch, torch.device(res.cfg.device)))
            bar.update(images.shape[0])
    finally:
        bar.close()
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]


def _metadata(path: Path) -> dict[str, str] | None:
    """The metadata of safetensors file ``path``, or None when it is missing or unreadable."""
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (FileNotFoundError, SafetensorError, OSError):
        return None


def ensure_priors(folder: str | Path, key: str, res: Resolved, models: Models, files: list[Path], progress: bool = False,
                  log: Callable[[str], None] = print) -> dict:
    """The population prior of all target ``files`` in work folder ``folder``: read back when :data:`PRIORS` there holds
    ``key``, else estimated (E on every target, :func:`encoder_readings`) and written atomically with ``key``.

    Returns what the manifest records: ``iters``, ``given``, ``targets`` (N) and ``changed`` (the share of targets
    whose first start the prior moved, in [0, 1])."""
    path = Path(folder) / PRIORS
    meta = _metadata(path)
    if meta is None or meta.get("key") != key:
        outs = encoder_readings(res, models, files, progress)
        priors = population_priors(res.engine.space, outs, res.cfg.fit.amortized)
        assert priors is not None  # prior_iters > 0
        share = prior_moved(res.engine.space, res.cfg.encoder.bins, outs, priors).float().mean().item()
        meta = {"key": key, "targets": str(len(files)), "changed": repr(share)}
        save_tensors(path, priors, meta)
        log(f"[scenefit] population prior over {len(files)} targets: it moves the first start of {share:.1%} of them")
    amortized = res.cfg.fit.amortized
    return {"iters": amortized.prior_iters, "given": list(amortized.prior_given), "targets": int(meta["targets"]),
            "changed": float(meta["changed"])}


def shard_priors(folder: str | Path, key: str, first: int, n: int) -> dict[str, torch.Tensor]:
    """Rows ``first`` .. ``first + n`` (a shard's targets) of the priors in work folder ``folder``: per attribute name,
    (n, bins) log prior. ``ValueError`` when the file is missing, holds another key or fewer rows."""
    path = Path(folder) / PRIORS
    meta = _metadata(path)
    if meta is None or meta.get("key") != key:
        raise ValueError(f"{path}: the population prior of this job (key {key}) is missing; it is written before the shards")
    if first + n > int(meta["targets"]):
        raise ValueError(f"{path} holds {meta['targets']} targets; a shard asks for rows {first} to {first + n}")
    with safe_open(str(path), "pt") as f:
        return {name: f.get_slice(name)[first : first + n] for name in f.keys()}


__all__ = ["BATCH", "PRIORS", "encoder_readings", "ensure_priors", "shard_priors", "uses_priors"]
