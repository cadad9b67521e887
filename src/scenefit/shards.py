"""Streaming ``scenefit fit``: the targets in shards of a fixed size, each fitted, rendered and written on its own.

A shard is read lazily from its files, fitted (:func:`scenefit.fitjob.fit_images`), rendered with seeds that
depend on each row's global index, and written straight into the dataset's work folder: its PNGs, its metadata
rows and fitted rows (``shards/<k>.parquet``, ``shards/<k>.fit.parquet``) and, last, its completion marker
``shards/<k>.done.json``. Memory stays flat in the number of targets. A shard with a completion marker is
finished: a rerun after a crash (or a retried worker) skips it, and a shard cut short is simply written again
under the same names, so every target ends up in the dataset exactly once. The same shard boundaries give the
same fitted rows and the same PNG bytes on any backend (:mod:`scenefit.backends`) and any number of workers.
With the population prior (``fit.amortized.prior_iters`` > 0) each shard reads its rows of the prior estimated over
all targets before the shards (:mod:`scenefit.shardprior`), so its fitted rows do not depend on the shard size either.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch

from scenefit.configio import config_from_dict
from scenefit.data import render_rows
from scenefit.datasets import write_rows
from scenefit.fitjob import fit_images, rendered_rows
from scenefit.imagefolder import load_images
from scenefit.io import read_json, write_json, write_parquet
from scenefit.models import Models
from scenefit.resolve import resolve
from scenefit.runs import ModelStore, key_of
from scenefit.shardprior import shard_priors, uses_priors

SHARDS = "shards"


@dataclass(frozen=True)
class Shard:
    """Shard ``index``: target ``files`` (absolute paths) numbered from ``first`` among all targets, and their
    ``names`` in the dataset (paths relative to the target folder, :mod:`scenefit.targetfiles`)."""

    index: int
    files: tuple[str, ...]
    first: int
    names: tuple[str, ...]


def plan_shards(files: list[Path], size: int, names: list[str] | None = None) -> list[Shard]:
    """Cut ``files`` into shards of ``size`` targets (the last may be shorter); ``names``: the targets' names
    (default: the file names)."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    names = [Path(f).name for f in files] if names is None else list(names)
    if len(names) != len(files):
        raise ValueError(f"{len(files)} target files but {len(names)} names")
    return [Shard(k, tuple(str(Path(f).resolve()) for f in files[i : i + size]), i, tuple(names[i : i + size]))
            for k, i in enumerate(range(0, len(files), size))]


def marker_path(folder: str | Path, index: int) -> Path:
    """Completion marker of shard ``index`` in work folder ``folder``."""
    return Path(folder) / SHARDS / f"{index:06d}.done.json"


def done(folder: str | Path, shard: Shard) -> bool:
    """Whether ``shard`` is finished in ``folder``."""
    return marker_path(folder, shard.index).is_file()


def peak_rss_kb() -> int:
    """This process's peak resident memory in KiB since it started (Linux ``VmHWM``). ``ru_maxrss`` is not used where
    ``VmHWM`` exists: Linux keeps it across ``exec``, so a process started by a large parent reports the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class ShardWorker:
    """Fits and renders shards into one work folder; holds the engines and the trained networks (read from ``store``,
    never trained here). One per process: a Ray actor keeps its networks and GL context between shards.

    Args:
        config: the resolved config as plain data (``RunConfig.to_dict()``).
        store: model store folder holding every network the fit needs.
        folder: the dataset's work folder. rows_width: digits of the row file names. threads: torch threads, or None.
        prior_key: with the population prior, the job key its file in ``folder`` was written with
            (:func:`scenefit.shardprior.ensure_priors`); required then, unused otherwise.
    """

    def __init__(self, config: dict, store: str, folder: str, rows_width: int = 6, threads: int | None = None,
                 prior_key: str | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.res = resolve(config_from_dict(config), labeled_targets=False)
        self.cfg = self.res.cfg
        self.models = Models(self.res, ModelStore(store, read_only=True), progress=False, log=lambda m: None, allowed=set())
        for stage in self.models.needed():
            self.models.get(stage)
        self.folder, self.width = Path(folder), rows_width
        self.prior_key = prior_key if uses_priors(self.res) else None
        if uses_priors(self.res) and prior_key is None:
            raise ValueError("fit.amortized.prior_iters > 0: a shard worker needs the key of the population prior "
                             "written over all targets before the shards (scenefit.shardprior.ensure_priors)")

    def pid(self) -> int:
        """The worker's process id (tests kill it)."""
        return os.getpid()

    def run(self, shard: Shard) -> dict:
        """Fit, render and write ``shard`` (skipped when its marker exists); returns the marker's content."""
        marker = marker_path(self.folder, shard.index)
        if marker.is_file():
            return read_json(marker)
        t0 = time.time()
        e, reps = self.res.engine, self.cfg.export.per_target
        images, changed = load_images([Path(f) for f in shard.files], e.channels, e.height, e.width)
        t_read = time.time()
        prior = shard_priors(self.folder, self.prior_key, shard.first, len(shard.files)) if self.prior_key else None
        result, _ = fit_images(self.res, self.models, images, first_target=shard.first, log_prior=prior)
        t_fit = time.time()
        rows, seeds = rendered_rows(result.attrs, reps, self.cfg.seed, shard.first)
        out = render_rows(e, rows, seeds)
        t_render = time.time()
        names = list(shard.names)
        cols = write_rows(self.folder, shard.first * reps, out["image"], out["label"], rows, e, [n for n in names for _ in range(reps)],
                          result.loss.repeat_interleave(reps), seeds, self.width)
        (self.folder / SHARDS).mkdir(exist_ok=True)
        write_parquet(self.folder / SHARDS / f"{shard.index:06d}.parquet", cols)
        fit_cols = {"target": names, "fit_loss": result.loss.tolist(), "candidate": result.candidate.tolist(),
                    **{name: result.attrs[:, j].tolist() for j, name in enumerate(e.space.names)}}
        write_parquet(self.folder / SHARDS / f"{shard.index:06d}.fit.parquet", fit_cols)
        info = {"shard": shard.index, "targets": len(names), "rows": len(cols["file_name"]), "pid": os.getpid(),
                "seconds": {"read": t_read - t0, "fit": t_fit - t_read, "render": t_render - t_fit, "write": time.time() - t_render},
                "resized": [[k[0], k[1], k[2], v] for k, v in changed.items()],
                "max_rss_kb": peak_rss_kb()}
        write_json(marker, info)
        return info

    def close(self) -> None:
        """Release the engines (GL contexts)."""
        self.res.close()


def merge_shards(folder: str | Path, shards: list[Shard]) -> tuple[dict[str, list], dict[str, list]]:
    """The dataset's metadata columns and the fitted rows of every shard, in shard order."""
    folder = Path(folder)
    meta: dict[str, list] = {}
    fit: dict[str, list] = {}
    for s in shards:
        for cols, suffix in ((meta, ".parquet"), (fit, ".fit.parquet")):
            t = pq.read_table(folder / SHARDS / f"{s.index:06d}{suffix}").to_pydict()
            for k, v in t.items():
                cols.setdefault(k, []).extend(v)
    return meta, fit


def job_record(config: dict, model_keys: dict[str, str], files: list[Path], shard_size: int,
               names: list[str] | None = None) -> dict:
    """What a work folder was started for (a key over the config, the networks, every target's name — ``names``,
    default the file names — size and modification time, and the shard size): a rerun resumes it only when the key
    is equal."""
    names = [f.name for f in files] if names is None else list(names)
    stats = [(name, f.stat().st_size, f.stat().st_mtime_ns) for name, f in zip(names, files, strict=True)]
    return {"key": key_of("job", config, model_keys, stats, shard_size), "targets": len(files), "shard_size": shard_size}


__all__ = ["SHARDS", "Shard", "ShardWorker", "done", "job_record", "marker_path", "merge_shards", "peak_rss_kb", "plan_shards"]
