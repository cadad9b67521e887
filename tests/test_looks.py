"""Looks: Gaussian blur, the street-grade target look (was street_targets.target_appearance), the look registry."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from scenefit.looks import LOOKS, apply_look, gaussian_blur, register_look, street_grade, street_grade_draws


def _img(b: int = 4, h: int = 24, w: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------- blur
def test_blur_keeps_a_constant_image():
    x = torch.full((3, 2, 16, 20), 0.37)
    out = gaussian_blur(x, torch.tensor([0.5, 1.0, 2.5]))
    assert out.shape == x.shape and torch.allclose(out, x, atol=1e-6)
    assert out.mean().item() == pytest.approx(0.37, abs=1e-6)


def test_blur_of_an_impulse_is_the_normalised_gaussian():
    x = torch.zeros(2, 1, 21, 21)
    x[:, 0, 10, 10] = 1.0
    sigma = torch.tensor([1.0, 2.0])
    out = gaussian_blur(x, sigma, radius=6)
    for i, s in enumerate(sigma.tolist()):
        k = torch.exp(-0.5 * (torch.arange(-6, 7.0) / s) ** 2)
        k = k / k.sum()
        assert torch.allclose(out[i, 0, 4:17, 4:17], k[:, None] * k[None, :], atol=1e-7)
        assert out[i].sum().item() == pytest.approx(1.0, abs=1e-6)  # away from the border: mass kept
    # the default radius ceil(3 max sigma) = 6 here: the same result
    assert torch.allclose(gaussian_blur(x, sigma), out)


def test_blur_rows_with_a_fixed_radius_do_not_depend_on_each_other():
    x = _img(3)
    sigma = torch.tensor([0.6, 1.1, 0.9])
    whole = gaussian_blur(x, sigma, radius=4)
    assert torch.allclose(gaussian_blur(x[1:2], sigma[1:2], radius=4), whole[1:2], atol=1e-7)


# ------------------------------------------------------------------------------------- street-grade
def test_street_grade_is_quantised_in_range_and_different():
    img = _img(2, 24, 80)
    seeds = torch.tensor([1, 2])
    a = street_grade(img, seeds)
    assert a.shape == img.shape and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal((a * 255).round(), a * 255)  # multiples of 1/255 (8-bit)
    assert torch.equal(a, street_grade(img, seeds))
    assert (a - img).abs().mean() > 0.05
    assert not torch.equal(street_grade(img, torch.tensor([3, 4])), a)


def test_street_grade_vignetting_and_warm_grading():
    flat = street_grade(torch.full((1, 3, 24, 80), 0.5), torch.tensor([2]))
    assert flat[0, :, 12, 40].mean() > flat[0, :, 0, 0].mean() + 0.03  # vignetting darkens the corners
    # the grading matrix warms grey: red above blue, whatever the per-image gains (0.92..1.08)
    centre = street_grade(torch.full((16, 3, 24, 80), 0.5), torch.arange(16))[:, :, 8:16, 30:50].mean((2, 3))
    assert (centre[:, 0] > centre[:, 2]).all()


def test_street_grade_rows_are_independent_of_the_batch():
    img = _img(5, 20, 36, seed=1)
    seeds = torch.tensor([10, 20, 30, 40, 50])
    whole = street_grade(img, seeds)
    parts = torch.cat([street_grade(img[:2], seeds[:2]), street_grade(img[2:], seeds[2:])])
    assert torch.equal(parts, whole)
    assert torch.equal(street_grade(img.flip(0), seeds.flip(0)), whole.flip(0))
    # the same image with the same seed in another batch: the same output
    assert torch.equal(street_grade(img[3:4].expand(2, 3, 20, 36), torch.tensor([40, 99]))[0], whole[3])


def test_street_grade_sensor_noise_level():
    """Read noise 0.012 plus shot noise 0.02 sqrt(x), then 8-bit rounding: on a flat 0.5 image, the local spread
    after removing the smooth parts is about sqrt(0.012^2 + 0.02^2 * x) for the graded level x."""
    out = street_grade(torch.full((4, 3, 48, 96), 0.5), torch.arange(4))
    centre = out[:, :, 16:32, 32:64]
    resid = centre - centre.mean((2, 3), keepdim=True)
    level = centre.mean().item()
    expected = math.sqrt(0.012**2 + 0.02**2 * level)
    # the blur runs before the noise, so the noise is white: its std, plus 8-bit rounding (1/255/sqrt(12))
    total = math.sqrt(expected**2 + (1 / 255) ** 2 / 12)
    assert resid.std().item() == pytest.approx(total, rel=0.15)


def test_street_grade_needs_rgb():
    with pytest.raises(ValueError, match=r"^street-grade needs RGB images \(B, 3, H, W\), got shape \(2, 1, 8, 8\)$"):
        street_grade(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------- registry
def test_apply_look_by_name_and_errors():
    img, seeds = _img(2), torch.tensor([4, 5])
    assert torch.equal(apply_look("street-grade", img, seeds), street_grade(img, seeds))
    assert torch.equal(apply_look("street-grade", img, seeds, {}), street_grade(img, seeds))
    with pytest.raises(ValueError, match=r"^unknown look 'sepia'; known looks: \['street-grade'\]$"):
        apply_look("sepia", img, seeds)
    with pytest.raises(ValueError, match=r"^a look needs one seed per image: 2 images, seeds of shape \(3,\)$"):
        apply_look("street-grade", img, torch.tensor([1, 2, 3]))


def test_register_look_adds_a_named_look():
    try:
        @register_look("test-dim")
        def dim(images, seeds, factor=0.5):
            return images * factor

        img = _img(2)
        assert LOOKS["test-dim"] is dim
        assert torch.equal(apply_look("test-dim", img, torch.tensor([0, 1]), {"factor": 0.25}), img * 0.25)
    finally:
        LOOKS.pop("test-dim", None)


def test_street_grade_output_is_unchanged_and_its_draws_are_returned():
    """The built-in targets' look must stay bit-identical (issue 18): this digest was computed with the look as it
    was before the street camera existed (commit 7972f9d)."""
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (6, 3, 24, 80), generator=g).float() / 255
    seeds = torch.tensor([1, 2, 3, 40, 99, 12345])
    out = street_grade(img, seeds)
    assert hashlib.sha256(out.numpy().tobytes()).hexdigest() == "b7b6e4f8867e8daa9663afc0f3c6096a7b1b90ee6ce95d1f07fd146da3804f9c"
    d = street_grade_draws(seeds)
    assert d["gains"].shape == (6, 3) and ((d["gains"] >= 0.92) & (d["gains"] <= 1.08)).all()
    assert ((d["blur_sigma"] >= 0.5) & (d["blur_sigma"] <= 1.1)).all() and ((d["vignetting"] >= 0.2) & (d["vignetting"] <= 0.45)).all()
