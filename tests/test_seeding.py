"""Per-row randomness: counter-based draws that depend on a row's own seed only."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from scenefit.seeding import SEED_HIGH, derive_seeds, draw_seeds, row_bits, row_generator_seeds, row_normal, row_uniform


def test_draw_seeds_range_and_determinism():
    s = draw_seeds(1000, torch.Generator().manual_seed(3))
    assert s.shape == (1000,) and s.dtype == torch.int64
    assert s.min() >= 0 and s.max() < SEED_HIGH == 2**62 and s.unique().numel() == 1000
    assert torch.equal(s, draw_seeds(1000, torch.Generator().manual_seed(3)))
    assert torch.equal(draw_seeds(5), draw_seeds(5, torch.Generator().manual_seed(0)))  # None == seed 0
    assert not torch.equal(draw_seeds(5, torch.Generator().manual_seed(1)), draw_seeds(5))


def test_row_uniform_range_shape_and_resolution():
    seeds = torch.arange(2000)
    u = row_uniform(seeds, 7)
    assert u.shape == (2000, 7) and u.dtype == torch.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    assert torch.equal(u * 2**24, (u * 2**24).round())  # 24-bit values
    assert u.mean().item() == pytest.approx(0.5, abs=0.01)  # 14,000 draws: std of the mean 0.0024
    assert u.var().item() == pytest.approx(1 / 12, abs=0.005)
    # columns and streams are not copies of each other
    assert abs(np.corrcoef(u[:, 0].numpy(), u[:, 1].numpy())[0, 1]) < 0.1
    assert not torch.equal(row_uniform(seeds, 7, stream=1), u)


def test_row_uniform_does_not_depend_on_the_batch():
    seeds = torch.tensor([5, 2**61 + 3, 0, 12345678901234, 7])
    u = row_uniform(seeds, 4, stream=2)
    for i in range(5):
        assert torch.equal(row_uniform(seeds[i : i + 1], 4, stream=2)[0], u[i])
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.equal(row_uniform(seeds[perm], 4, stream=2), u[perm])
    # more columns extend a row without changing its first ones (counter-based)
    assert torch.equal(row_uniform(seeds, 9, stream=2)[:, :4], u)
    # equal seeds give equal rows; int32 seeds give the draws of the same int64 values
    assert torch.equal(row_uniform(torch.tensor([7, 7]), 3)[0], row_uniform(torch.tensor([7, 7]), 3)[1])
    assert torch.equal(row_uniform(torch.tensor([7], dtype=torch.int32), 3), row_uniform(torch.tensor([7]), 3))
    assert row_bits(seeds, 3).dtype == np.uint64 and row_bits(seeds, 3).shape == (5, 3)


def test_row_normal_moments():
    """200,000 draws: mean within 0.01 (5 standard errors) of 0, std within 0.01 of 1, tails as N(0, 1)."""
    z = row_normal(torch.arange(20000), 10, stream=3)
    assert z.shape == (20000, 10) and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert abs(z.mean().item()) < 0.01
    assert z.std().item() == pytest.approx(1.0, abs=0.01)
    assert (z.abs() > 1.96).float().mean().item() == pytest.approx(0.05, abs=0.003)
    assert torch.equal(row_normal(torch.arange(3), 10, stream=3), z[:3])


def test_derive_seeds_are_new_and_deterministic():
    seeds = draw_seeds(500, torch.Generator().manual_seed(0))
    d = derive_seeds(seeds, 7)
    assert d.shape == (500,) and d.dtype == torch.int64 and d.min() >= 0 and d.max() < SEED_HIGH
    assert not (d == seeds).any() and d.unique().numel() == 500
    assert torch.equal(d, derive_seeds(seeds, 7))
    assert not (derive_seeds(seeds, 8) == d).any()  # another stream, other seeds
    assert torch.equal(derive_seeds(seeds[10:20], 7), d[10:20])
    # draws from derived seeds do not repeat the originals' draws
    assert not torch.equal(row_uniform(d, 3), row_uniform(seeds, 3))
    g = row_generator_seeds(seeds[:4])
    assert len(g) == 4 and all(isinstance(v, int) and 0 <= v < 2**62 for v in g)


def test_bad_seeds_raise():
    with pytest.raises(ValueError, match=r"^seeds must be a 1-D int64 tensor \(B,\), got shape \(2, 2\)$"):
        row_uniform(torch.zeros(2, 2, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match=r"^seeds must be integers, got dtype torch.float32$"):
        row_uniform(torch.zeros(2), 3)
