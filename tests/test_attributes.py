import math

import pytest
import torch

from scenefit.attributes import (
    Attribute,
    AttributeSpace,
    AttributeSpecError,
    circular_mean_std,
    wrap_angle,
)


def space():
    return AttributeSpace([
        Attribute("rotation", -180, 180, "deg", periodic=True),
        Attribute("tx", -10, 10, "px"),
        Attribute("digit", categories=tuple("0123456789")),
    ])


def test_wrap_angle_half_open_interval():
    x = torch.tensor([-180.0, 180.0, 190.0, -190.0, 540.0, 0.0])
    assert wrap_angle(x).tolist() == [180.0, 180.0, -170.0, 170.0, 180.0, 0.0]


def test_normalize_roundtrip_and_values():
    s = space()
    x = torch.tensor([[90.0, 5.0, 9.0], [-180.0, -10.0, 0.0]])
    u = s.normalize(x)
    assert torch.allclose(u, torch.tensor([[0.75, 0.75, 1.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(s.denormalize(u), x)


def test_clamp_wraps_rounds_and_clamps():
    s = space()
    out = s.clamp(torch.tensor([[200.0, 12.0, 3.4]]))
    assert out.tolist() == [[-160.0, 10.0, 3.0]]


def test_encode_sin_cos_and_one_hot():
    s = space()
    e = s.encode(torch.tensor([[90.0, 0.0, 2.0]]))
    assert e.shape == (1, s.encoded_dim) == (1, 13)
    # phase of 90 deg measured from -180: 270 deg
    assert e[0, 0].item() == pytest.approx(math.sin(math.radians(270)), abs=1e-6)
    assert e[0, 1].item() == pytest.approx(math.cos(math.radians(270)), abs=1e-6)
    assert e[0, 2].item() == 0.0
    assert e[0, 3:].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def test_sample_uniform_in_bounds_and_seeded():
    s = space()
    a = s.sample_uniform(2000, torch.Generator().manual_seed(1))
    b = s.sample_uniform(2000, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    s.check(a)
    assert a[:, 2].unique().numel() == 10
    assert abs(a[:, 1].mean().item()) < 0.5


def test_bad_bounds_and_names():
    with pytest.raises(AttributeSpecError, match=r"attribute 'tx': low \(3.0\) must be < high \(3.0\)"):
        Attribute("tx", 3.0, 3.0)
    with pytest.raises(AttributeSpecError, match=r"attribute 'tx': bound nan is not finite"):
        Attribute("tx", float("nan"), 3.0)
    with pytest.raises(AttributeSpecError, match=r"duplicate attribute names: \['a'\]"):
        AttributeSpace([Attribute("a"), Attribute("a")])


def test_check_names_out_of_bounds_attribute():
    with pytest.raises(ValueError, match=r"attribute 'tx' out of bounds \[-10.0, 10.0\]: min 0, max 11"):
        space().check(torch.tensor([[0.0, 11.0, 1.0], [0.0, 0.0, 1.0]]))


def test_check_shape_and_non_finite():
    with pytest.raises(ValueError, match=r"^attribute tensor must have shape \(B, 3\) for \['rotation', 'tx', 'digit'\], got \(2, 2\)$"):
        space().check(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"^non-finite values for attributes \['tx'\]$"):
        space().check(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"attribute 'digit' out of bounds \[0.0, 9.0\]: min 10, max 10"):
        space().check(torch.tensor([[0.0, 0.0, 10.0]]))
    space().check(torch.tensor([[180.0, -10.0, 9.0]]))  # bounds are inclusive


def test_to_dict_from_dict_round_trip_through_json():
    import json

    s = space()
    d = s.to_dict()
    assert d[0] == {"name": "rotation", "low": -180, "high": 180, "unit": "deg", "periodic": True, "categories": []}
    back = AttributeSpace.from_dict(json.loads(json.dumps(d)))
    assert back.attributes == s.attributes and back.to_dict() == d
    x = torch.tensor([[90.0, 5.0, 2.0]])
    assert torch.equal(back.encode(x), s.encode(x))
    assert back.index("digit") == 2 and back["digit"].num_categories == 10
    with pytest.raises(KeyError, match=r"unknown attribute 'ty'; known: \['rotation', 'tx', 'digit'\]"):
        back.index("ty")


def test_circular_mean_std_across_the_seam():
    # 170 and -170 deg: linear mean 0, circular mean 180; R = cos(10 deg), std = sqrt(-2 ln R) rad in degrees
    mean, std = circular_mean_std(torch.tensor([170.0, -170.0]))
    assert mean == pytest.approx(180.0) and std == pytest.approx(math.degrees(math.sqrt(-2 * math.log(math.cos(math.radians(10))))))
    # identical values: their value, std 0; a period other than degrees (hours of a day)
    assert circular_mean_std(torch.tensor([-45.0, -45.0])) == (pytest.approx(-45.0), pytest.approx(0.0, abs=1e-6))
    assert circular_mean_std(torch.tensor([23.0, 3.0]), 0.0, 24.0)[0] == pytest.approx(1.0)
    # small spread: circular std close to the linear (population) std
    v = torch.tensor([40.0, 45.0, 50.0])
    assert circular_mean_std(v)[0] == pytest.approx(45.0) and circular_mean_std(v)[1] == pytest.approx(float(v.std(unbiased=False)), rel=1e-2)
