"""Photometric augmentation: each factor in closed form, determinism, bounds, bad ranges."""

from __future__ import annotations

import pytest
import torch

from scenefit.augment import NuisanceAugment, PhotometricAugment, _scale_about_centroid, nuisance_augment, photometric_augment

IDENTITY = dict(brightness=(1.0, 1.0), contrast=(1.0, 1.0), saturation=(1.0, 1.0), gain=(1.0, 1.0), gamma=(1.0, 1.0),
                blur_prob=0.0, noise=0.0)


def _aug(x: torch.Tensor, **kw) -> torch.Tensor:
    return photometric_augment(x, torch.Generator().manual_seed(0), PhotometricAugment(**{**IDENTITY, **kw}))


def test_identity_ranges_return_the_input():
    x = torch.rand(3, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_aug(x), x, atol=1e-6)


def test_each_factor_in_closed_form():
    flat = torch.full((1, 3, 4, 4), 0.6)
    assert torch.allclose(_aug(flat, brightness=(0.5, 0.5)), torch.full_like(flat, 0.3))
    two = torch.full((1, 3, 4, 4), 0.4)
    two[..., 2:] = 0.6  # image mean 0.5
    out = _aug(two, contrast=(2.0, 2.0))
    assert torch.allclose(out[..., :2], torch.tensor(0.3)) and torch.allclose(out[..., 2:], torch.tensor(0.7))
    rgb = torch.tensor([0.2, 0.5, 0.8])[None, :, None, None].expand(1, 3, 2, 2).contiguous()
    assert torch.allclose(_aug(rgb, saturation=(1e-9, 1e-9)), torch.full_like(rgb, 0.5), atol=1e-6)  # every channel -> grey
    assert torch.allclose(_aug(flat, gamma=(2.0, 2.0)), torch.full_like(flat, 0.36))
    out = _aug(flat, gain=(0.5, 1.5))  # one factor per channel, within the range
    per = out[0, :, 0, 0] / 0.6
    assert ((per >= 0.5) & (per <= 1.5)).all() and torch.allclose(out, per[None, :, None, None].expand_as(out) * 0.6)


def test_blur_keeps_the_mean_and_noise_is_bounded():
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:] = 1.0
    out = _aug(x, blur_prob=1.0, blur_sigma=1.0)
    assert 0.0 < out[0, 0, 0, 7] < 0.5 < out[0, 0, 0, 8] < 1.0 and out.mean().item() == pytest.approx(0.5, abs=1e-6)
    grey = torch.full((4, 3, 32, 32), 0.5)
    noisy = _aug(grey, noise=0.03)
    assert 0.0 < (noisy - 0.5).std().item() < 0.03


def test_deterministic_in_bounds_and_drawn_per_image():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    a = photometric_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, photometric_augment(x, torch.Generator().manual_seed(3)))
    assert a.min() >= 0 and a.max() <= 1 and not torch.allclose(a, x)
    same = x[:1].expand(6, 3, 8, 8).contiguous()
    b = photometric_augment(same, torch.Generator().manual_seed(3))
    assert len({round(v, 4) for v in b.mean((1, 2, 3)).tolist()}) == 6  # six different draws


def test_bad_ranges_and_shapes():
    with pytest.raises(ValueError, match=r"^augment\.gamma must be a range 0 < lo <= hi, got \(1\.2, 0\.8\)$"):
        PhotometricAugment(gamma=(1.2, 0.8))
    with pytest.raises(ValueError, match=r"^augment\.blur_prob must be in \[0, 1\], got 2\.0$"):
        PhotometricAugment(blur_prob=2.0)
    with pytest.raises(ValueError, match=r"^images must be \(B, 1, H, W\) or \(B, 3, H, W\), got shape \(3, 8, 8\)$"):
        photometric_augment(torch.zeros(3, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match=r"^images must be \(B, 1, H, W\) or \(B, 3, H, W\), got shape \(2, 2, 8, 8\)$"):
        photometric_augment(torch.zeros(2, 2, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match=r"^augment\.blur_sigma and augment\.noise must be >= 0, got 1\.2, -0\.1$"):
        PhotometricAugment(noise=-0.1)


def test_grey_images_closed_form():
    flat = torch.full((2, 1, 4, 4), 0.6)
    assert torch.allclose(_aug(flat, brightness=(0.5, 0.5)), torch.full_like(flat, 0.3))
    assert torch.allclose(_aug(flat, gamma=(2.0, 2.0)), torch.full_like(flat, 0.36))
    # saturation and gain are RGB-only: a grey image ignores them
    assert torch.allclose(_aug(flat, saturation=(0.1, 0.1), gain=(0.5, 0.5)), flat)


def test_grey_images_get_the_draws_of_rgb_ones():
    """Saturation and gain are drawn for any C: a one-channel batch gets the same brightness, contrast, gamma and
    blur draws as the same batch as grey RGB (noise off: its draws are shaped by C)."""
    grey = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    cfg = PhotometricAugment(noise=0.0, blur_prob=0.5)
    one = photometric_augment(grey, torch.Generator().manual_seed(9), cfg)
    three = photometric_augment(grey.expand(5, 3, 12, 12).contiguous(), torch.Generator().manual_seed(9),
                                PhotometricAugment(noise=0.0, blur_prob=0.5, gain=(1.0, 1.0)))
    assert one.shape == (5, 1, 12, 12)
    assert torch.allclose(three, one.expand(5, 3, 12, 12), atol=1e-6)
    assert not torch.allclose(one, grey, atol=1e-3)


NO_PHOTO = PhotometricAugment(**IDENTITY)


def _nuisance(x: torch.Tensor, seed: int = 0, **kw) -> torch.Tensor:
    cfg = NuisanceAugment(**{**dict(stroke_prob=0.0, scale=(1.0, 1.0), lowres_prob=0.0, photometric=NO_PHOTO), **kw})
    return nuisance_augment(x, torch.Generator().manual_seed(seed), cfg)


def test_nuisance_identity_ranges_return_the_input():
    x = torch.rand(3, 1, 12, 10, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_nuisance(x), x, atol=1e-5)


def test_nuisance_stroke_is_a_cross_dilation_or_erosion_per_image():
    x = torch.zeros(8, 1, 9, 9)
    x[:, :, 3:6, 3:6] = 1.0  # a 3x3 square: dilated by the cross, 21 px; eroded, 1 px
    out = _nuisance(x, stroke_prob=1.0)
    assert sorted({int(v) for v in out.sum((1, 2, 3)).round().tolist()}) == [1, 21]


def test_scale_about_the_centroid_keeps_the_centroid_and_scales_the_mass():
    x = torch.zeros(2, 1, 48, 48)
    x[0, 0, 10:14, 30:34] = 1.0  # 16 px about (11.5, 31.5)
    x[1, 0, 20:28, 20:28] = 1.0  # 64 px about (23.5, 23.5)
    out = _scale_about_centroid(x, torch.tensor([2.0, 0.5]))
    ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    for i, (cy, cx, mass) in enumerate([(11.5, 31.5, 64.0), (23.5, 23.5, 16.0)]):
        m = out[i, 0]
        assert m.sum().item() == pytest.approx(mass, rel=1e-4)
        assert (m * ys).sum().item() / m.sum().item() == pytest.approx(cy, abs=1e-3)
        assert (m * xs).sum().item() / m.sum().item() == pytest.approx(cx, abs=1e-3)


def test_nuisance_lowres_keeps_the_mean_and_the_default_is_deterministic_and_bounded():
    x = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    low = _nuisance(x, lowres_prob=1.0, lowres_factor=(3.0, 3.0))
    assert not torch.allclose(low, x) and low.mean().item() == pytest.approx(x.mean().item(), abs=0.02)
    a = nuisance_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, nuisance_augment(x, torch.Generator().manual_seed(5)))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_nuisance_bad_ranges_and_shapes():
    with pytest.raises(ValueError, match=r"^augment\.scale must be a range 0 < lo <= hi, got \(1\.5, 0\.5\)$"):
        NuisanceAugment(scale=(1.5, 0.5))
    with pytest.raises(ValueError, match=r"^augment\.lowres_prob must be in \[0, 1\], got 2$"):
        NuisanceAugment(lowres_prob=2)
    with pytest.raises(ValueError, match=r"^images must be \(B, 1, H, W\) or \(B, 3, H, W\), got shape \(2, 2, 4, 4\)$"):
        nuisance_augment(torch.zeros(2, 2, 4, 4), torch.Generator())
