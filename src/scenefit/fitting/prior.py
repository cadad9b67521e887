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
left, one at -135° on the right). Without ``given`` every other target weighs the same, at O(N·B) per iteration.
With ``given`` the other targets are a fixed sample of at most :data:`REFERENCE` of them (all of them up to that
count, so the prior is exact there), each standing for N / REFERENCE targets: O(REFERENCE²) per iteration and one
O(N·REFERENCE) pass, where every target against every other would be O(N²) per iteration (17.5 s per iteration at
20,000 targets on one CPU thread, and 25 times that at 100,000).
"""

from __future__ import annotations

import math

import torch

CHUNK = 1024
"""Rows of a kernel computed at once (memory: CHUNK × REFERENCE floats)."""

REFERENCE = 4096
"""With ``given``, the most targets the priors are estimated from; more targets use a fixed seeded sample of this
many (:func:`reference_rows`)."""


def reference_rows(n: int) -> torch.Tensor:
    """(min(n, REFERENCE),) sorted indices of the targets the conditioned prior is estimated from: all of them up to
    :data:`REFERENCE`, else a sample drawn with a fixed seed (the same for every call with the same ``n``)."""
    if n <= REFERENCE:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:REFERENCE].sort().values


def _kernel(given: torch.Tensor, rows: torch.Tensor, ref: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian weights (len(rows), len(ref)) between the ``given`` readings (N, K) of targets ``rows`` and of the
    reference targets ``ref``; a target's weight on itself is 0."""
    d2 = torch.cdist(given[rows], given[ref]).pow(2)
    w = torch.exp(-0.5 * d2 / bandwidth ** 2)
    w[rows[:, None] == ref[None, :]] = 0.0
    return w


def _update(mass: torch.Tensor, weight: torch.Tensor, bins: int) -> torch.Tensor:
    """The new log prior (N, B) from the weighted posteriors ``mass`` (N, B) and the weights' sums ``weight`` (N, 1),
    with one pseudo-count spread over the ``bins``."""
    return ((mass + 1.0 / bins) / (weight + 1.0)).log()


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
    uniform = torch.full((n, bins), -math.log(bins), dtype=torch.float64)
    if given is None or given.shape[1] == 0:
        log_pi = uniform
        for _ in range(iters):
            q = torch.softmax(lp + log_pi, dim=1)  # (N, B) posteriors under the current priors
            log_pi = _update(q.sum(0, keepdim=True) - q, torch.full((n, 1), float(n - 1), dtype=torch.float64), bins)
        return log_pi.float()
    given = given.double()
    ref = reference_rows(n)
    scale = n / len(ref)  # each reference target stands for this many targets
    w_ref = torch.cat([_kernel(given, ref[s:s + CHUNK], ref, bandwidth) for s in range(0, len(ref), CHUNK)]) * scale
    log_pi_ref = uniform[ref]
    for _ in range(iters - 1):
        log_pi_ref = _update(w_ref @ torch.softmax(lp[ref] + log_pi_ref, dim=1), w_ref.sum(1, keepdim=True), bins)
    q_ref = torch.softmax(lp[ref] + log_pi_ref, dim=1)  # the reference targets' posteriors before the last step
    if len(ref) == n:  # every target is a reference: the last step reads the kernel already computed
        return _update(w_ref @ q_ref, w_ref.sum(1, keepdim=True), bins).float()
    log_pi = torch.empty((n, bins), dtype=torch.float64)
    for s in range(0, n, CHUNK):
        rows = torch.arange(s, min(n, s + CHUNK))
        w = _kernel(given, rows, ref, bandwidth) * scale
        log_pi[rows] = _update(w @ q_ref, w.sum(1, keepdim=True), bins)
    return log_pi.float()


__all__ = ["REFERENCE", "population_log_prior", "reference_rows"]
