import math
import re

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist, pdist
from torch import nn

from scenefit.metrics import (
    FeatureAdapter,
    MeanIoU,
    accuracy,
    confusion_matrix,
    fid,
    fid_from_features,
    kid,
    median_bandwidth,
    miou,
    mmd2,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _projection(in_shape=(3, 8, 8), num_features: int = 8, seed: int = 0) -> nn.Module:
    """Fixed random-projection feature net: (N, 3, 8, 8) -> (N, F)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), num_features))
    g = _gen(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return net.eval()


def _images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return (torch.rand(n, 3, 8, 8, generator=_gen(seed)) * 0.8 + shift).clamp(0, 1)  # (N, 3, 8, 8)


# -- accuracy / confusion / mIoU ------------------------------------------------------------


def test_accuracy_from_logits_and_labels():
    target = torch.tensor([0, 1, 2, 1])
    logits = torch.tensor([[2.0, 0, 0], [0, 3, 0], [1, 0, 0], [0, 1, 0]])  # argmax 0, 1, 0, 1
    assert accuracy(logits, target) == pytest.approx(0.75)
    assert accuracy(torch.tensor([0, 1, 2, 2]), target) == pytest.approx(0.75)
    assert accuracy(torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 255, 1]), ignore_index=255) == 1.0


def test_confusion_and_miou_hand_computed():
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])  # (1, 2, 3)
    pred = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
    conf = confusion_matrix(pred, target, num_classes=4)
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert conf.dtype == torch.int64 and torch.equal(conf, expected)
    mean, per_class = miou(conf)
    np.testing.assert_allclose(per_class[:3].numpy(), [1 / 3, 2 / 3, 0.0])
    assert math.isnan(per_class[3])  # class 3 absent from pred and target
    assert mean == pytest.approx(1 / 3)


def test_confusion_and_miou_match_numpy_reference():
    g, C = _gen(1), 5
    target = torch.randint(0, C, (3, 16, 16), generator=g)
    target[:, :2] = 255
    pred = torch.randint(0, C, (3, 16, 16), generator=g)
    t, p = target.numpy().ravel(), pred.numpy().ravel()
    ref = np.zeros((C, C), dtype=np.int64)
    keep = t != 255
    np.add.at(ref, (t[keep], p[keep]), 1)
    np.testing.assert_array_equal(confusion_matrix(pred, target, C).numpy(), ref)
    ref_iou = np.diag(ref) / (ref.sum(0) + ref.sum(1) - np.diag(ref))
    mean, per_class = miou(torch.from_numpy(ref))
    np.testing.assert_allclose(per_class.numpy(), ref_iou, rtol=1e-12)
    assert mean == pytest.approx(np.nanmean(ref_iou), rel=1e-12)

    metric = MeanIoU(num_classes=C)  # accumulating two halves equals one call
    metric.update(pred[:1], target[:1])
    metric.update(pred[1:], target[1:])
    assert torch.equal(metric.conf, torch.from_numpy(ref))


# -- MMD ------------------------------------------------------------------------------------


def _mmd2_reference(x: np.ndarray, y: np.ndarray, sigma: float, biased: bool) -> float:
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if biased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )


@pytest.mark.parametrize("biased", [False, True])
def test_mmd2_matches_scipy_reference(biased):
    g = _gen(2)
    x, y = torch.randn(60, 5, generator=g, dtype=torch.float64), torch.randn(45, 5, generator=g, dtype=torch.float64)
    y = y + 0.3
    for bandwidth in (0.7, 2.5):
        ref = _mmd2_reference(x.numpy(), y.numpy(), bandwidth, biased)
        assert mmd2(x, y, bandwidth, biased=biased, chunk_size=7) == pytest.approx(ref, abs=1e-5, rel=1e-5)
    sigma = float(np.median(pdist(np.concatenate([x.numpy(), y.numpy()]))))
    assert median_bandwidth(x, y) == pytest.approx(sigma, rel=1e-10)
    ref = _mmd2_reference(x.numpy(), y.numpy(), sigma, biased)
    assert mmd2(x, y, "median", biased=biased) == pytest.approx(ref, abs=1e-5, rel=1e-5)


def test_mmd2_self_is_zero_and_grows_with_shift():
    g = _gen(3)
    x = torch.randn(400, 4, generator=g)
    assert abs(mmd2(x, x, 1.0, biased=True)) < 1e-6
    assert abs(mmd2(x, x, "median", biased=True)) < 1e-6
    same = mmd2(x, torch.randn(400, 4, generator=g), 1.0)
    assert abs(same) < 5e-3  # null std of the U-statistic is O(1/n)
    y = torch.randn(400, 4, generator=g)
    shifted = [mmd2(x, y + s, 1.0) for s in (0.25, 0.5, 1.0, 2.0)]
    assert shifted[0] > 10 * abs(same)
    assert all(a < b for a, b in zip(shifted, shifted[1:]))


# -- FID / KID ------------------------------------------------------------------------------


def test_fid_from_features_closed_forms():
    f = torch.randn(200, 6, generator=_gen(4), dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0], dtype=torch.float64)
    assert abs(fid_from_features(f, f)) < 1e-6
    # Same covariance, mean moved by c: FID = |c|^2.
    assert fid_from_features(f, f + c) == pytest.approx(float(c.square().sum()), rel=1e-6)
    # f2 = 2 f: sqrtm(S * 4S) = 2S, so FID = |mu|^2 + tr(S).
    mu, cov = f.mean(0).numpy(), np.cov(f.numpy(), rowvar=False)
    assert fid_from_features(f, 2 * f) == pytest.approx(mu @ mu + np.trace(cov), rel=1e-6)


def test_torchmetrics_fid_matches_scipy_reference():
    net = _projection()
    real, fake = _images(300, seed=5), _images(250, seed=6, shift=0.15)
    with torch.no_grad():
        ref = fid_from_features(net(real), net(fake))
    assert ref > 0.1
    assert fid(real, fake, net, batch_size=64) == pytest.approx(ref, rel=1e-3)
    assert abs(fid(real, real, net)) < 1e-6


def _kid_reference(fr: np.ndarray, ff: np.ndarray) -> float:
    """Unbiased poly-kernel MMD^2 as in KID: k(x, y) = (x.y / d + 1)^3, equal-size sets."""
    d, m = fr.shape[1], len(fr)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(fr, fr), k(ff, ff), k(fr, ff)
    return (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2


def test_kid_matches_numpy_reference_on_full_set():
    net = _projection()
    real, fake = _images(80, seed=7), _images(80, seed=8, shift=0.1)
    with torch.no_grad():
        ref = _kid_reference(net(real).double().numpy(), net(fake).double().numpy())
    mean, std = kid(real, fake, net, subset_size=80, subsets=1)
    assert mean == pytest.approx(ref, rel=1e-6)
    assert std == 0.0


def test_kid_same_vs_shifted_and_seeding():
    net = _projection()
    real, other = _images(200, seed=9), _images(200, seed=10)
    rng_before = torch.random.get_rng_state()
    same, _ = kid(real, other, net, subset_size=50, subsets=20, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    shifted, _ = kid(real, _images(200, seed=10, shift=0.2), net, subset_size=50, subsets=20, seed=0)
    assert shifted > 0.05 and abs(same) < 0.05 * shifted
    self_kid, _ = kid(real, real, net, subset_size=50, subsets=20, seed=0)
    assert abs(self_kid) < 0.05 * shifted
    assert kid(real, other, net, 50, 5, seed=_gen(1)) == kid(real, other, net, 50, 5, seed=_gen(1))
    assert kid(real, other, net, 50, 5, seed=1) != kid(real, other, net, 50, 5, seed=2)


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_messages():
    x, net = torch.randn(10, 3), _projection()
    with pytest.raises(ValueError, match=re.escape("feature dims differ: x has D=3, y has D=4")):
        mmd2(x, torch.randn(10, 4), 1.0)
    with pytest.raises(ValueError, match=re.escape("feature dims differ: x has D=3, y has D=4")):
        fid_from_features(x, torch.randn(10, 4))
    with pytest.raises(ValueError, match=re.escape("y has 0 samples; this estimator needs at least 2")):
        mmd2(x, torch.randn(0, 3), 1.0)
    for bad in (0.0, -1.5, "mean"):
        with pytest.raises(ValueError, match=re.escape(f"bandwidth must be a float > 0 or 'median', got {bad!r}")):
            mmd2(x, x, bad)
    with pytest.raises(ValueError, match=re.escape("subset_size=50 must be an int in [2, 40]")):
        kid(_images(40, 0), _images(60, 1), net, subset_size=50)
    with pytest.raises(ValueError, match=re.escape("real set has 0 images; need at least 2")):
        fid(_images(0, 0), _images(5, 1), net)
    with pytest.raises(ValueError, match=re.escape("feature_fn returned shape (2, 8), expected (2, 9)")):
        FeatureAdapter(net, num_features=9)(_images(2, 0))
    with pytest.raises(ValueError, match=re.escape("num_classes must be an int >= 1, got 0")):
        MeanIoU(num_classes=0)
    with pytest.raises(ValueError, match=re.escape("ignore_index=2 is a valid class id")):
        MeanIoU(num_classes=3, ignore_index=2)
    with pytest.raises(ValueError, match=re.escape("pred holds label 7 outside [0, 3)")):
        confusion_matrix(torch.tensor([7]), torch.tensor([1]), num_classes=3)
    with pytest.raises(ValueError, match=re.escape("accuracy: predictions of shape (4, 2)")):
        accuracy(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
