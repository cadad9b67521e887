"""The density over fitted rows (amplification): a proper density in the box, wraps, truncates, categories,
held-out log-likelihood against closed forms."""

from __future__ import annotations

import math
import re

import pytest
import torch

from scenefit.amplify import AttributeDensity, held_out_log_likelihood, select_density
from scenefit.attributes import Attribute, AttributeSpace

ROT = Attribute("rotation", -180.0, 180.0, "deg", periodic=True)
X = Attribute("x", 0.0, 10.0, "px")
CAT = Attribute("digit", categories=("0", "1", "2", "3"))


def test_the_density_integrates_to_one_over_the_box():
    bounded = AttributeDensity(AttributeSpace([X]), torch.tensor([[0.1], [0.2], [5.0], [9.9]]))
    xs = torch.linspace(0, 10, 40001)[:, None]
    assert (bounded.log_prob(xs).exp().mean()).item() == pytest.approx(1.0, abs=2e-3)  # relative to uniform: mean 1
    periodic = AttributeDensity(AttributeSpace([ROT]), torch.tensor([[179.0], [-178.0], [170.0]]))
    xs = torch.linspace(-180, 180, 40001)[:, None]
    assert (periodic.log_prob(xs).exp().mean()).item() == pytest.approx(1.0, abs=2e-3)


def test_samples_wrap_periodic_columns_and_stay_inside_bounds():
    g = torch.Generator().manual_seed(0)
    rot = AttributeDensity(AttributeSpace([ROT]), torch.tensor([178.0, -179.0, 176.0, -176.0] * 25)[:, None]).sample(5000, g)[:, 0]
    assert (rot.abs() > 160).all()  # around the ±180 seam, never pulled to 0
    assert (rot.abs() == 180).sum() <= 1 and (rot > 179).sum() > 100 and (rot < -179).sum() > 100  # wrapped, not clamped
    x = torch.tensor([0.05, 0.1, 9.95, 9.9] * 25)[:, None]
    s = AttributeDensity(AttributeSpace([X]), x, bandwidth=0.1).sample(5000, g)[:, 0]  # Scott's rule would merge the modes
    assert (s >= 0).all() and (s <= 10).all() and ((s < 1) | (s > 9)).all()
    assert (s == 0).sum() == 0 and (s == 10).sum() == 0  # truncated by rejection, nothing piled on a bound


def test_categories_keep_their_row_with_probability_one_minus_lam():
    g = torch.Generator().manual_seed(1)
    rows = torch.tensor([[0.0]] * 90 + [[2.0]] * 10)
    dens = AttributeDensity(AttributeSpace([CAT]), rows, lam=0.3)
    counts = torch.bincount(dens.sample(40000, g)[:, 0].long(), minlength=4).double() / 40000
    want = torch.tensor([0.9 * 0.7 + 0.1 * 0.1, 0.1, 0.9 * 0.1 + 0.1 * 0.7, 0.1], dtype=torch.float64)
    assert torch.allclose(counts, want, atol=0.01)
    lp = dens.log_prob(torch.tensor([[0.0], [1.0]]))
    assert lp[0].item() == pytest.approx(math.log(0.9 * 0.7 + 0.1 * 0.1) + math.log(4))
    assert lp[1].item() == pytest.approx(math.log(0.1) + math.log(4))


def test_columns_without_spread_are_copied():
    rows = torch.tensor([[0.0, 3.0], [90.0, 3.0], [-90.0, 3.0]])
    dens = AttributeDensity(AttributeSpace([ROT, X]), rows)
    assert dens.cont == [0] and (dens.sample(50, torch.Generator().manual_seed(0))[:, 1] == 3.0).all()


def test_held_out_log_likelihood_against_closed_forms():
    g = torch.Generator().manual_seed(2)
    space = AttributeSpace([X])
    narrow = (5.0 + 0.5 * torch.randn(2000, generator=g)).clamp(0, 10)[:, None]  # sd 0.05 of the box
    want = -0.5 - math.log(0.05 * math.sqrt(2 * math.pi))  # expected log density of N(., 0.05) in the unit box
    assert held_out_log_likelihood(space, narrow, g) == pytest.approx(want, abs=0.1)
    flat = 10 * torch.rand(2000, 1, generator=g)
    assert held_out_log_likelihood(space, flat, g) == pytest.approx(0.0, abs=0.1)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=re.escape("a density needs at least 2 fitted rows, got 1")):
        AttributeDensity(AttributeSpace([X]), torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match=re.escape("bandwidth must be > 0 and lam in [0, 1), got 0.0, 0.05")):
        AttributeDensity(AttributeSpace([X]), torch.tensor([[1.0], [2.0]]), bandwidth=0.0)


def test_cross_validation_narrows_scotts_bandwidth_on_two_modes():
    g = torch.Generator().manual_seed(3)
    two = torch.cat([45 + 5 * torch.randn(300, generator=g), -135 + 5 * torch.randn(300, generator=g)])[:, None]
    two = (two + 180) % 360 - 180
    space = AttributeSpace([ROT])
    chosen = select_density(space, two, torch.Generator().manual_seed(0))
    assert chosen.factor < 1.0
    scott = held_out_log_likelihood(space, two, torch.Generator().manual_seed(1), bandwidth=1.0)
    cv = held_out_log_likelihood(space, two, torch.Generator().manual_seed(1))
    want = math.log(180) - 0.5 - math.log(5 * math.sqrt(2 * math.pi))  # two N(., 5 deg) modes of half the mass each
    assert cv > scott + 0.3 and cv == pytest.approx(want, abs=0.15)
