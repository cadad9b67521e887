"""The population prior: E's per-image readings re-weighted by what the other targets say.

E reads each target alone. Where an image cannot tell two readings apart (a "1" or an "8" upside down, a 6 and a
9 at 180°), E splits its mass between them, and its argmax picks either. The targets as a set can tell: if every
legible digit stands upright, the ambiguous ones stand upright too. This module estimates, for every categorical
or periodic head of E, the targets' own distribution over that head's bins by expectation-maximisation (the
prior-shift EM of Saerens et al., 2002: E was trained on uniform draws, so its outputs are likelihoods up to a
constant), and returns each target's log prior, to be added to E's log-probabilities before the modes are taken.

Each target's prior leaves the target itself out, and holds one pseudo-count spread evenly over the bins, so a few
targets cannot lock themselves in. With ``given`` attribute columns (bounded continuous attributes E regresses, in
the unit cube), the prior of target i is the other targets' posteriors weighted by a Gaussian kernel of bandwidth
``bandwidth`` on those readings: a pose can then depend on a position (two groups of scenes, one at 45° on the
left, one at -135° on the right). Without ``given`` every other target weighs the same. Cost: O(N·B) per
iteration without ``given``, O(N²) with it (in chunks of rows).
"""

from __future__ import annotations

import math

import torch

CHUNK = 1024
"""Rows of the kernel computed at once (memory: CHUNK × N floats)."""


def _kernel(given: torch.Tensor, rows: slice, bandwidth: float) -> torch.Tensor:
    """Gaussian weights (len(rows), N) between the ``given`` readings (N, K) of ``rows`` and all targets; a row's
    weight on itself is 0."""
    d2 = torch.cdist(given[rows], given).pow(2)
    w = torch.exp(-0.5 * d2 / bandwidth ** 2)
    idx = torch.arange(rows.start, rows.stop)
    w[idx - rows.start, idx] = 0.0
    return w


def population_log_prior(log_probs: torch.Tensor, iters: int, given: torch.Tensor | None = None,
                         bandwidth: float = 0.1) -> torch.Tensor:
    """Each target's log prior over one head's bins, from the other targets.

    Args:
        log_probs: (N, B) E's log-probabilities of one categorical or periodic head (rows sum to 1 in probability).
        iters: EM iterations (>= 1).
        given: (N, K) E's readings of the conditioning attributes in the unit cube, or None for one prior shared
            by all targets (still leaving each target out).
        bandwidth: the kernel's standard deviation in unit-cube units (only with ``given``).
    Returns:
        (N, B) log prior per target, each row normalised.
    """
    if iters < 1:
        raise ValueError(f"population prior: iters must be >= 1, got {iters}")
    n, bins = log_probs.shape
    lp = log_probs.double()
    log_pi = torch.full((n, bins), -math.log(bins), dtype=torch.float64)  # uniform to start
    given = None if given is None or given.shape[1] == 0 else given.double()
    for _ in range(iters):
        q = torch.softmax(lp + log_pi, dim=1)  # (N, B) posteriors under the current priors
        if given is None:
            mass = q.sum(0, keepdim=True) - q  # every other target, weight 1
            weight = torch.full((n, 1), float(n - 1), dtype=torch.float64)
        else:
            mass = torch.empty_like(q)
            weight = torch.empty((n, 1), dtype=torch.float64)
            for s in range(0, n, CHUNK):
                rows = slice(s, min(n, s + CHUNK))
                w = _kernel(given, rows, bandwidth)
                mass[rows] = w @ q
                weight[rows, 0] = w.sum(1)
        log_pi = ((mass + 1.0 / bins) / (weight + 1.0)).log()  # one pseudo-count spread over the bins
    return log_pi.float()


__all__ = ["population_log_prior"]
