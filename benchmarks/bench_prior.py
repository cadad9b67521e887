"""Time the population prior (``scenefit.fitting.prior``) conditioned on two readings, and compare the reference
sample with every-target-against-every-other on clustered synthetic heads.

    python benchmarks/bench_prior.py --sizes 20000,100000 --threads 1
    python benchmarks/bench_prior.py --agree 12000

``--sizes``: seconds for ``--iters`` EM iterations of one 36-bin head (random log-probabilities, uniform readings)
at each size. ``--agree N``: N targets in four position clusters, each with its own bin and 15% of the rows split
with the bin 180° away; prints the largest prior difference and the argmax changes between the sample of
``REFERENCE`` targets and all N, and how many rows each leaves off their cluster's bin (E alone: the split rows).
"""

from __future__ import annotations

import argparse
import time

import torch

import scenefit.fitting.prior as prior


def clustered(n: int, bins: int = 36, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log-probabilities (n, bins), readings (n, 2) in the unit cube, true bins (n,)."""
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 4, (n,), generator=g)
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8]])
    given = (centres[cluster] + 0.05 * torch.randn(n, 2, generator=g)).clamp(0, 1)
    true = (torch.arange(4) * bins // 4 + bins // 12)[cluster]
    logits = torch.full((n, bins), -4.0) + 0.3 * torch.randn(n, bins, generator=g)
    logits[torch.arange(n), true] = 2.0
    split = torch.rand(n, generator=g) < 0.15
    logits[torch.arange(n)[split], (true[split] + bins // 2) % bins] = 2.0 + 0.4 * torch.randn(int(split.sum()), generator=g)
    return torch.log_softmax(logits, 1), given, true


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000", help="comma-separated target counts to time")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--agree", type=int, default=0, help="targets for the sample-against-all check (0: skip)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"REFERENCE = {prior.REFERENCE}, {a.threads} torch thread(s), {a.iters} EM iterations, one 36-bin head")
    for n in [int(s) for s in a.sizes.split(",") if s]:
        g = torch.Generator().manual_seed(0)
        log_p = torch.log_softmax(torch.randn(n, 36, generator=g), 1)
        t0 = time.perf_counter()
        prior.population_log_prior(log_p, a.iters, torch.rand(n, 2, generator=g))
        print(f"{n:>8} targets: {time.perf_counter() - t0:7.1f} s")
    if a.agree:
        log_p, given, true = clustered(a.agree)
        sampled = prior.population_log_prior(log_p, a.iters, given)
        reference, prior.REFERENCE = prior.REFERENCE, a.agree
        t0 = time.perf_counter()
        exact = prior.population_log_prior(log_p, a.iters, given)
        took = time.perf_counter() - t0
        prior.REFERENCE = reference
        pick_s, pick_e = (log_p + sampled).argmax(1), (log_p + exact).argmax(1)
        print(f"{a.agree} clustered targets: every target against every other {took:.1f} s; "
              f"largest prior difference {(sampled.exp() - exact.exp()).abs().max().item():.2e}, "
              f"argmax changes {(pick_s != pick_e).sum().item()}; off their bin: E alone {(log_p.argmax(1) != true).sum().item()}, "
              f"sample {(pick_s != true).sum().item()}, all {(pick_e != true).sum().item()}")


if __name__ == "__main__":
    main()
