import math
import re

import pytest
import torch

from scenefit.attributes import wrap_angle
from scenefit.engines.digits import digit_space
from scenefit.scenarios import (
    Component,
    Gaussian,
    Mixture,
    initial_scenes,
    mixture_from_dict,
    paper_mixture,
    position_mean,
    rotation_mean,
)


def test_rotation_means_are_exact():
    assert [rotation_mean(j, 2) for j in range(2)] == [45.0, -135.0]
    assert [rotation_mean(j, 3) for j in range(3)] == pytest.approx([45.0, 165.0, -75.0])
    assert [rotation_mean(j, 5) for j in range(5)] == pytest.approx([45.0, 117.0, -171.0, -99.0, -27.0])


def test_position_means_on_circle_of_14px():
    for k in (1, 2, 4):
        for j in range(k):
            x, y = position_mean(j, k)
            assert math.hypot(x, y) == pytest.approx(14.0)
    x, y = position_mean(0, 1)
    assert (x, y) == pytest.approx((14 * math.cos(math.radians(30)), -14 * math.sin(math.radians(30))))
    assert position_mean(1, 2) == pytest.approx((-x, -y))


def test_rottrans_pairs_rotation_and_position_components():
    m = paper_mixture("rottrans", 2)
    space = digit_space(True, 20.0)
    attrs, comp = m.sample(space, 4000, torch.Generator().manual_seed(0))
    for j in range(2):
        sel = attrs[comp == j]
        mean_rot = math.degrees(math.atan2(torch.sin(torch.deg2rad(sel[:, 0])).mean(), torch.cos(torch.deg2rad(sel[:, 0])).mean()))
        assert mean_rot == pytest.approx(rotation_mean(j, 2), abs=1.0)
        assert sel[:, 1].mean().item() == pytest.approx(position_mean(j, 2)[0], abs=0.2)
        assert sel[:, 2].mean().item() == pytest.approx(position_mean(j, 2)[1], abs=0.2)
        assert sel[:, 1].std().item() == pytest.approx(2.0, abs=0.15)
    assert (comp == 0).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_initial_scenes_upright_centred():
    space = digit_space(True, 20.0)
    attrs, _ = initial_scenes(True).sample(space, 5000, torch.Generator().manual_seed(0))
    assert attrs[:, 0].std().item() == pytest.approx(10.0, rel=0.05)
    assert attrs[:, 1].abs().max().item() == 0.0 and attrs[:, 2].abs().max().item() == 0.0
    assert torch.bincount(attrs[:, 3].long(), minlength=10).min() > 400


def test_samples_are_wrapped_into_bounds():
    m = Mixture((Component({"rotation": Gaussian(178.0, 10.0)}),))
    attrs, _ = m.sample(digit_space(False, 20.0), 2000, torch.Generator().manual_seed(0))
    assert attrs[:, 0].min() > -180 and attrs[:, 0].max() <= 180
    assert torch.equal(wrap_angle(attrs[:, 0]), attrs[:, 0])


def test_mixture_from_dict_and_errors():
    m = mixture_from_dict({"components": [{"weight": 3, "rotation": {"mean": 10, "std": 1}}, {"weight": 1, "rotation": {"mean": -10}}]})
    assert m.weights.tolist() == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError, match=r"t.components\[0\].rotation: Gaussian std must be >= 0, got -1.0"):
        mixture_from_dict({"components": [{"rotation": {"mean": 0, "std": -1}}]}, "t")
    with pytest.raises(ValueError, match="names unknown attribute 'zoom'"):
        mixture_from_dict({"components": [{"zoom": {"mean": 1}}]}).sample(digit_space(False, 20), 2, torch.Generator())


@pytest.mark.parametrize("d, message", [
    ({"components": [{"digit": {"probs": [-1, 1]}}]},
     "t.components[0].digit: categorical probs must be finite, >= 0 and not all 0, got [-1.0, 1.0]"),
    ({"components": [{"digit": {"probs": [0, 0]}}]}, "t.components[0].digit: categorical probs must be finite, >= 0 and not all 0, got [0.0, 0.0]"),
    ({"components": [{"digit": {"probs": [0.5, "a"]}}]}, "t.components[0].digit.probs must be a number, got 'a'"),
    ({"components": [{"rotation": {"mean": 1, "sd": 2}}]},
     "t.components[0].rotation: expected {mean: .., std: ..} or {probs: [..]}, got {'mean': 1, 'sd': 2}"),
    ({"components": [{"weight": -1, "rotation": {"mean": 1}}]}, "t: mixture weights must be finite, >= 0 and not all 0, got [-1.0]"),
    ({"components": []}, "t: a mixture needs at least one component"),
    ({"components": [{}], "extra": 1}, "t: unknown key(s) ['extra']; expected 'components' and 'defaults'"),
])
def test_mixture_from_dict_errors_name_the_path(d, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        mixture_from_dict(d, "t")


def test_probs_mixture_round_trips_and_draws_only_listed_categories():
    m = mixture_from_dict({"components": [{"weight": 1, "rotation": {"mean": 90, "std": 0}, "digit": {"probs": [0] * 9 + [1]}}],
                           "defaults": {"rotation": {"mean": 0, "std": 1}}})
    assert mixture_from_dict(m.to_dict()) == m
    attrs, _ = m.sample(digit_space(False, 20.0), 500, torch.Generator().manual_seed(0))
    assert attrs[:, 1].unique().tolist() == [9.0] and attrs[:, 0].unique().tolist() == [90.0]
