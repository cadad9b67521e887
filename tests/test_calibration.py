"""Set-level calibration: a shared shift is recovered from a closed-form toy renderer; bad input is refused."""

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.calibration import apply_shift, set_level_shift

SPACE = AttributeSpace([
    Attribute("light", 0.0, 2.0, "rel"), Attribute("size", 0.0, 10.0, "px"), Attribute("kind", unit="class", categories=("a", "b")),
])


def toy_render(rows: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """(B, 3) rows -> (B, 1, 8, 8): a square of side ``size`` px at brightness ``light / 2``, plus seeded noise."""
    b = rows.shape[0]
    noise = torch.stack([torch.randn(8, 8, generator=torch.Generator().manual_seed(int(s) % 2**31)) for s in seeds])
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    side = (rows[:, 1] * 0.8)[:, None, None]
    mask = ((yy < side) & (xx < side)).float()
    return (rows[:, 0, None, None] / 2 * (0.5 + 0.5 * mask) + 0.01 * noise)[:, None].expand(b, 1, 8, 8)


def feats(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1)


def test_recovers_a_known_shift():
    g = torch.Generator().manual_seed(0)
    rows = SPACE.clamp(torch.stack([0.3 + 0.8 * torch.rand(64, generator=g), 10 * torch.rand(64, generator=g),
                                    torch.randint(0, 2, (64,), generator=g).float()], 1))
    truth = apply_shift(SPACE, rows, {"light": 0.25})  # brighter by a quarter of the range
    f_t = feats(toy_render(truth, torch.arange(64) + 10_000))
    res = set_level_shift(toy_render, feats, SPACE, rows, f_t, ["light"], points=9, rounds=1, seed=3)
    # first grid in steps of 0.25 contains the truth; the finer round (steps of 1/16) keeps it
    assert res.delta == {"light": pytest.approx(0.25, abs=1e-6)}
    assert res.mmd2_best < res.mmd2_start
    assert torch.allclose(res.attrs, truth)
    assert len(res.evaluated) == 1 + 8 + 6  # delta 0, the other 8 coarse points, the fine grid less 0, 0.25, 0.5 (seen)
    # the other columns are untouched, and the shifted column is clamped to its bounds
    far = apply_shift(SPACE, rows, {"light": 1.0})
    assert torch.equal(far[:, 1:], rows[:, 1:]) and far[:, 0].max() == 2.0


def test_two_attributes_grid_size():
    rows = torch.tensor([[1.0, 5.0, 0.0], [0.5, 2.0, 1.0], [1.5, 8.0, 0.0]])
    f_t = feats(toy_render(rows, torch.arange(3)))
    res = set_level_shift(toy_render, feats, SPACE, rows, f_t, ("light", "size"), points=3, rounds=0)
    assert len(res.evaluated) == 9 and set(res.delta) == {"light", "size"}
    assert all(v in (-1.0, 0.0, 1.0) for v in res.delta.values())


def test_bad_input():
    rows = torch.tensor([[1.0, 5.0, 0.0], [0.5, 2.0, 1.0]])
    f_t = torch.zeros(2, 64)
    with pytest.raises(ValueError, match="attribute 'kind' is categorical; a set-level shift needs a continuous attribute"):
        set_level_shift(toy_render, feats, SPACE, rows, f_t, ["kind"])
    with pytest.raises(KeyError, match=r"unknown attribute 'fog'; known: \['light', 'size', 'kind'\]"):
        set_level_shift(toy_render, feats, SPACE, rows, f_t, ["fog"])
    with pytest.raises(ValueError, match="points must be >= 2, got 1"):
        set_level_shift(toy_render, feats, SPACE, rows, f_t, ["light"], points=1)
    with pytest.raises(ValueError, match="needs at least one attribute name"):
        set_level_shift(toy_render, feats, SPACE, rows, f_t, [])
