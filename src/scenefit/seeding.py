"""Per-row randomness: every row of a batch draws its nuisance from its own integer seed.

An engine that renders row ``i`` from ``(attrs[i], seeds[i])`` alone gives the same
image whatever batch or shard the row travels in. The draws here are counter-based
(SplitMix64 over ``(seed, stream, counter)``), so they are vectorised over the batch
and never depend on the batch's size or order.

Example::

    seeds = draw_seeds(4, torch.Generator().manual_seed(0))   # (4,) int64
    u = row_uniform(seeds, 3)                                  # (4, 3) float32 in [0, 1)
    z = row_normal(seeds, 2, stream=1)                         # (4, 2) float32, N(0, 1)
"""

from __future__ import annotations

import math

import numpy as np
import torch

SEED_HIGH = 2**62
"""Seeds are drawn in ``[0, SEED_HIGH)``."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_STREAM = np.uint64(0xD1B54A32D192ED03)


def _splitmix(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def draw_seeds(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` row seeds (n,) int64 in ``[0, 2**62)`` from ``generator`` (``None``: a generator seeded with 0)."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return torch.randint(0, SEED_HIGH, (n,), generator=generator, dtype=torch.int64)


def _check_seeds(seeds: torch.Tensor) -> np.ndarray:
    if seeds.dim() != 1:
        raise ValueError(f"seeds must be a 1-D int64 tensor (B,), got shape {tuple(seeds.shape)}")
    if seeds.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"seeds must be integers, got dtype {seeds.dtype}")
    return seeds.detach().cpu().numpy().astype(np.int64).view(np.uint64)


def row_bits(seeds: torch.Tensor, n: int, stream: int = 0) -> np.ndarray:
    """(B, n) uint64 random words: word ``j`` of row ``i`` depends only on ``(seeds[i], stream, j)``."""
    s = _check_seeds(seeds)
    with np.errstate(over="ignore"):
        key = _splitmix(s ^ (np.uint64(stream + 1) * _STREAM))
        counter = (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        return _splitmix(key[:, None] + counter)


def row_uniform(seeds: torch.Tensor, n: int, stream: int = 0) -> torch.Tensor:
    """(B, n) float32 uniforms in [0, 1) (24-bit resolution), row ``i`` a function of ``seeds[i]`` and ``stream``."""
    bits = row_bits(seeds, n, stream) >> np.uint64(40)
    return torch.from_numpy(bits.astype(np.float32) * np.float32(2.0**-24))


def row_normal(seeds: torch.Tensor, n: int, stream: int = 0) -> torch.Tensor:
    """(B, n) float32 standard normals (Box-Muller over :func:`row_uniform`'s words)."""
    u = row_uniform(seeds, 2 * n, stream).double()
    u1 = 1.0 - u[:, :n]  # (0, 1]: log is finite
    u2 = u[:, n:]
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).float()


def row_generator_seeds(seeds: torch.Tensor, stream: int = 0) -> list[int]:
    """One non-negative Python int per row, to seed a per-row ``numpy.random.Generator`` (B,)."""
    return [int(v) for v in (row_bits(seeds, 1, stream)[:, 0] >> np.uint64(2))]


def derive_seeds(seeds: torch.Tensor, stream: int) -> torch.Tensor:
    """New per-row seeds (B,) int64 in ``[0, 2**62)`` derived from ``seeds`` for an independent ``stream``
    (e.g. a look applied after a render: its noise must not reuse the render's draws)."""
    bits = row_bits(seeds, 1, stream=1000 + stream)[:, 0] >> np.uint64(2)
    return torch.from_numpy(bits.astype(np.int64))


def index_seeds(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Seeds (N,) int64 in ``[0, 2**62)`` for rows by their global ``index`` (N,): row ``i`` gets the same seed
    whatever shard, batch or worker renders it."""
    s = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = _splitmix(index.detach().cpu().numpy().astype(np.uint64) * _GOLDEN + _splitmix(np.array([s]))[0])
    return torch.from_numpy((z >> np.uint64(2)).astype(np.int64))
