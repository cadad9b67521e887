"""More synthetic rows than targets: a density over the fitted attribute rows, to sample new scenes from.

:class:`AttributeDensity` is a kernel density estimate in the attribute space's unit cube:

- continuous columns: a Gaussian kernel per fitted row with one bandwidth per column, Scott's rule
  ``h = s * n^(-1 / (d + 4))`` (``s`` the column's standard deviation, circular for periodic columns, ``d`` the
  number of columns that vary) times ``bandwidth`` (default 1; :func:`select_density` picks it by likelihood
  cross-validation, as ``scenefit fit --sample`` does, since Scott's rule over-smooths several modes); periodic columns wrap the kernel around the period,
  bounded ones truncate it to the box (renormalised, so no mass is lost at a bound and no sample lies past one);
- categorical columns: the row's category kept with probability ``1 - lam``, any other with ``lam / (K - 1)``;
- columns with no spread (not fitted, e.g. held at the initial centre) are copied.

``log_prob`` is in nats per row relative to the uniform density over the attribute box (0: no better than
uniform), so figures compare across engines. :func:`held_out_log_likelihood` fits on one part of the rows and
scores the rest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.data import render_rows
from scenefit.datasets import write_rows
from scenefit.seeding import index_seeds

if TYPE_CHECKING:
    from scenefit.config import RunConfig
    from scenefit.resolve import Resolved

SAMPLE_SEED = 505
"""Offset of the seeds of sampled rows (draws and renders) from the run's seed."""

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class AttributeDensity:
    """Kernel density over attribute rows (module doc). ``rows`` (N, D) natural units, N >= 2."""

    def __init__(self, space: AttributeSpace, rows: torch.Tensor, bandwidth: float = 1.0, lam: float = 0.05) -> None:
        space.check(rows)
        if rows.shape[0] < 2:
            raise ValueError(f"a density needs at least 2 fitted rows, got {rows.shape[0]}")
        if not (bandwidth > 0 and math.isfinite(bandwidth)) or not 0 <= lam < 1:
            raise ValueError(f"bandwidth must be > 0 and lam in [0, 1), got {bandwidth}, {lam}")
        self.space, self.lam, self.factor = space, float(lam), float(bandwidth)
        self.unit = space.normalize(rows.double())  # (N, D)
        spread = self._spread(self.unit)
        self.cont = [c for c in space.continuous if spread[c] > 1e-9]
        self.cats = [c for c in space.categorical if bool((rows[:, c] != rows[0, c]).any())]
        n, d = rows.shape[0], max(len(self.cont), 1)
        self.h = (spread * n ** (-1.0 / (d + 4)) * bandwidth).clamp(min=1e-4)  # (D,)

    def _spread(self, unit: torch.Tensor) -> torch.Tensor:
        """Per column standard deviation in unit coordinates (circular for periodic columns)."""
        std = unit.std(0)
        for c, a in enumerate(self.space):
            if a.periodic:
                ang = 2 * math.pi * unit[:, c]
                r = torch.sqrt(ang.sin().mean() ** 2 + ang.cos().mean() ** 2).clamp(1e-12, 1.0)
                std[c] = torch.sqrt(-2 * torch.log(r)) / (2 * math.pi)
        return std

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` new rows (n, D) in natural units."""
        pick = torch.randint(self.unit.shape[0], (n,), generator=generator)
        out = self.unit[pick].clone()
        for c in self.cont:
            a, h = self.space.attributes[c], float(self.h[c])
            if a.periodic:
                out[:, c] = (out[:, c] + h * torch.randn(n, generator=generator, dtype=out.dtype)) % 1.0
                continue
            centre = out[:, c].clone()
            todo = torch.ones(n, dtype=torch.bool)
            while bool(todo.any()):  # truncated kernel by rejection: a kernel centred in [0, 1] keeps >= ~half
                k = int(todo.sum())
                draw = centre[todo] + h * torch.randn(k, generator=generator, dtype=out.dtype)
                ok = (draw >= 0) & (draw <= 1)
                idx = todo.nonzero()[:, 0]
                out[idx[ok], c] = draw[ok]
                todo[idx[ok]] = False
        for c in self.cats:
            k = self.space.attributes[c].num_categories
            flip = torch.rand(n, generator=generator) < self.lam
            own = torch.round(out[:, c] * (k - 1)).long()
            other = torch.randint(k - 1, (n,), generator=generator)
            other = other + (other >= own).long()  # any category but its own, each alike
            out[:, c] = torch.where(flip, other.double() / (k - 1), out[:, c])
        return self.space.clamp(self.space.denormalize(out).float())

    def log_prob(self, rows: torch.Tensor) -> torch.Tensor:
        """Log density (M,) of rows (M, D) in nats, relative to the uniform density over the box (module doc)."""
        u = self.space.normalize(rows.double())
        total = torch.zeros(u.shape[0], self.unit.shape[0], dtype=torch.float64)  # (M, N): log kernel of row j at row i
        for c in self.cont:
            a, h = self.space.attributes[c], self.h[c].double()
            diff = u[:, None, c] - self.unit[None, :, c]
            if a.periodic:
                diff = torch.stack([diff - 1, diff, diff + 1])
                total += torch.logsumexp(-0.5 * (diff / h) ** 2, 0) - _LOG_SQRT_2PI - torch.log(h)
                continue
            mass = _phi((1 - self.unit[:, c]) / h) - _phi(-self.unit[:, c] / h)  # (N,) kernel mass inside [0, 1]
            total += -0.5 * (diff / h) ** 2 - _LOG_SQRT_2PI - torch.log(h) - torch.log(mass.clamp(min=1e-300))[None]
        for c in self.cats:
            k = self.space.attributes[c].num_categories
            same = torch.round(u[:, None, c] * (k - 1)) == torch.round(self.unit[None, :, c] * (k - 1))
            p = torch.where(same, torch.tensor(1 - self.lam, dtype=torch.float64), torch.tensor(self.lam / (k - 1), dtype=torch.float64))
            total += torch.log(p.clamp(min=1e-300)) + math.log(k)  # relative to uniform over the K categories
        return torch.logsumexp(total, 1) - math.log(self.unit.shape[0])


FACTORS = (2.0, 1.0, 0.5, 0.25, 0.125, 0.0625)
"""Multiples of Scott's bandwidths :func:`select_density` tries (Scott's rule over-smooths multi-mode columns)."""


def select_density(space: AttributeSpace, rows: torch.Tensor, generator: torch.Generator, lam: float = 0.05,
                   factors: tuple[float, ...] = FACTORS) -> AttributeDensity:
    """The density of ``rows`` (N, D) whose bandwidth factor gives the best log-likelihood of a random quarter of
    ``rows`` under the density of the other three quarters (likelihood cross-validation), refitted on all rows."""
    n = rows.shape[0]
    if n < 8:
        return AttributeDensity(space, rows, 1.0, lam)
    perm = torch.randperm(n, generator=generator)
    k = n // 4
    scores = [_mean_log_prob(AttributeDensity(space, rows[perm[k:]], f, lam), rows[perm[:k]]) for f in factors]
    return AttributeDensity(space, rows, factors[max(range(len(factors)), key=scores.__getitem__)], lam)


def _mean_log_prob(density: AttributeDensity, rows: torch.Tensor) -> float:
    """Mean log density (nats per row over uniform) of ``rows`` (M, D) under ``density``."""
    return density.log_prob(rows).mean().item()


def _phi(x: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def held_out_log_likelihood(space: AttributeSpace, rows: torch.Tensor, generator: torch.Generator, held_out: float = 0.2,
                            bandwidth: float | None = None, lam: float = 0.05) -> float:
    """Mean :meth:`AttributeDensity.log_prob` (nats per row, relative to uniform) of a random ``held_out`` share of
    ``rows`` (N, D) under the density fitted to the others: with ``bandwidth`` None the one :func:`select_density`
    chooses on those others alone (the held-out rows never choose it), else that factor of Scott's rule."""
    n = rows.shape[0]
    k = max(1, int(round(held_out * n)))
    if n - k < 2:
        raise ValueError(f"{n} rows leave {n - k} to fit a density on; it needs at least 2")
    perm = torch.randperm(n, generator=generator)
    rest = rows[perm[k:]]
    dens = select_density(space, rest, generator, lam) if bandwidth is None else AttributeDensity(space, rest, bandwidth, lam)
    return _mean_log_prob(dens, rows[perm[:k]])


def append_sampled_rows(folder: Path, meta: dict[str, list], fit: dict[str, list], res: Resolved, cfg: RunConfig, width: int,
                        progress: bool = False, log: Callable[[str], None] = print, chunk: int = 256) -> dict:
    """Draw ``cfg.export.sample`` rows from the density of the fitted rows ``fit`` (``fitted.parquet``'s columns),
    render each once with R and write them into ``folder`` after the fitted rows, extending the metadata columns
    ``meta`` in place (``target`` empty, ``fit_loss`` NaN). Returns the manifest's ``sample`` entry: rows, the held-out
    log-likelihood (nats per row relative to uniform, 20% of the fitted rows held out) and the bandwidths."""
    space, n = res.engine.space, cfg.export.sample
    fitted = torch.tensor([fit[name] for name in space.names], dtype=torch.float32).T.reshape(-1, space.dim)
    g = torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED)
    ll = held_out_log_likelihood(space, fitted, g) if fitted.shape[0] >= 3 else None
    dens = select_density(space, fitted, g)
    rows = dens.sample(n, g)
    seeds = index_seeds(cfg.seed + SAMPLE_SEED, torch.arange(n))
    first = len(meta["file_name"])
    for lo in tqdm(range(0, n, chunk), desc="sampled rows", disable=not progress, leave=False):
        hi = min(lo + chunk, n)
        out = render_rows(res.engine, rows[lo:hi], seeds[lo:hi])
        cols = write_rows(folder, first + lo, out["image"], out["label"], rows[lo:hi], res.engine, targets=[""] * (hi - lo),
                          fit_loss=torch.full((hi - lo,), float("nan")), seeds=seeds[lo:hi], width=width)
        for k, v in cols.items():
            meta[k].extend(v)
    log(f"[scenefit] sampled {n} rows from the density of {fitted.shape[0]} fitted rows"
        + (f" (held-out log-likelihood {ll:.2f} nats per row over uniform)" if ll is not None else ""))
    return {"rows": n, "held_out_log_likelihood": ll, "fitted_rows": int(fitted.shape[0]),
            "bandwidth_factor": dens.factor, "bandwidth_unit": {space.names[c]: float(dens.h[c]) for c in dens.cont}, "lam": dens.lam}


__all__ = ["FACTORS", "SAMPLE_SEED", "AttributeDensity", "append_sampled_rows", "held_out_log_likelihood", "select_density"]
