"""``fitted.parquet``: one schema for every engine and every fitting strategy.

Columns, one row per target:

==========================  ========================================================================
``target``                  the target's name (for a folder of images its path relative to the folder, ``/``-separated)
``fit_loss``                content loss of the chosen candidate (the strategy's own measure)
``candidate``               index of the chosen candidate among the target's ``M`` candidates
``candidate_loss_<j>``      loss of candidate ``j`` (``j`` < M)
``<attribute>``...          the fitted attributes in natural units, in the engine's column order
==========================  ========================================================================
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from scenefit.attributes import AttributeSpace
from scenefit.fitting import FitResult
from scenefit.io import write_parquet


def save_fit(path: str | Path, space: AttributeSpace, result: FitResult, names: list[str]) -> None:
    """Write ``result`` for targets ``names`` as parquet, atomically (see module doc)."""
    path = Path(path)
    cols: dict[str, list] = {"target": list(names), "fit_loss": result.loss.tolist(), "candidate": result.candidate.tolist()}
    for j in range(result.losses.shape[1]):
        cols[f"candidate_loss_{j}"] = result.losses[:, j].tolist()
    for i, name in enumerate(space.names):
        cols[name] = result.attrs[:, i].tolist()
    write_parquet(path, cols)


def load_fit(path: str | Path, space: AttributeSpace) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read :func:`save_fit`'s file: attrs (N, D) natural units, fit loss (N,), target names."""
    try:
        t = pq.read_table(path).to_pydict()
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None
    missing = [n for n in ("target", "fit_loss", *space.names) if n not in t]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; it was written for another engine")
    attrs = torch.tensor([t[n] for n in space.names], dtype=torch.float32).T.contiguous().reshape(len(t["target"]), space.dim)
    return attrs, torch.tensor(t["fit_loss"], dtype=torch.float32), list(t["target"])
