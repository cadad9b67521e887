"""Evaluation metrics: accuracy, confusion matrix / mIoU, Gaussian MMD, FID and KID.

Pure functions do the work; :class:`MeanIoU` only accumulates a confusion
matrix over batches. FID and KID go through torchmetrics with a feature
network we supply (:class:`FeatureAdapter`) -- never Inception, nothing is
downloaded. :func:`fid_from_features` is an independent scipy implementation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

FeatureFn = Callable[[Tensor], Tensor]


def accuracy(logits_or_preds: Tensor, target: Tensor, ignore_index: int | None = None) -> float:
    """Fraction in [0, 1] of elements where the prediction equals ``target``.

    ``logits_or_preds`` is either class scores ``(N, C, *)`` (argmax over dim 1)
    or predicted labels with the same shape as ``target`` ``(N, *)`` int.
    Elements whose target equals ``ignore_index`` are not counted.
    """
    shape, t_shape = logits_or_preds.shape, target.shape
    if len(shape) == len(t_shape) + 1 and shape[:1] + shape[2:] == t_shape:
        pred = logits_or_preds.argmax(dim=1)
    elif shape == t_shape:
        pred = logits_or_preds
    else:
        raise ValueError(
            f"accuracy: predictions of shape {tuple(shape)} fit neither target "
            f"{tuple(t_shape)} (labels) nor (N, C, *target.shape[1:]) (logits)"
        )
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    n = int(valid.sum())
    if n == 0:
        raise ValueError("accuracy: no elements to score (empty input or every target is ignore_index)")
    return int((pred.long() == target.long())[valid].sum()) / n


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Confusion matrix ``(C, C)`` int64, rows = target class, columns = predicted class.

    ``pred`` and ``target`` are integer label maps of the same shape, e.g. ``(N, H, W)``.
    Pixels whose target is ``ignore_index`` are skipped.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    valid = target != ignore_index
    p, t = pred[valid].long(), target[valid].long()
    for name, labels in (("target", t), ("pred", p)):
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise ValueError(
                f"{name} holds label {int(labels[bad][0])} outside [0, {num_classes}) at a non-ignored "
                f"pixel; fix num_classes or set ignore_index (now {ignore_index})"
            )
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def miou(conf: Tensor) -> tuple[float, Tensor]:
    """Mean IoU and per-class IoU ``(C,)`` float64 from a ``(C, C)`` confusion matrix.

    IoU_c = TP / (TP + FP + FN). A class absent from both prediction and target
    gets NaN and is left out of the mean (NaN if no class is present).
    """
    if conf.dim() != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"conf must be a square (C, C) matrix, got shape {tuple(conf.shape)}")
    conf = conf.double()
    tp = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - tp
    per_class = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    present = ~per_class.isnan()
    mean = float(per_class[present].mean()) if present.any() else math.nan
    return mean, per_class


class MeanIoU:
    """Accumulates a confusion matrix over batches of ``(N, H, W)`` label maps."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} is a valid class id; use a value outside [0, {num_classes})")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.reset()

    def reset(self) -> None:
        """Zero the (C, C) int64 confusion matrix."""
        self.conf = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of predicted and target label maps (N, H, W) int (target ``ignore_index`` pixels skipped)."""
        self.conf += confusion_matrix(pred.cpu(), target.cpu(), self.num_classes, self.ignore_index)

    def compute(self) -> tuple[float, Tensor]:
        """Mean IoU and per-class IoU (C,) float64 so far (NaN for classes never seen; see :func:`miou`)."""
        return miou(self.conf)


def _check_sets(x: Tensor, y: Tensor, min_n: int = 1) -> None:
    for name, s in (("x", x), ("y", y)):
        if s.dim() != 2:
            raise ValueError(f"{name} must be a 2-D (N, D) feature matrix, got shape {tuple(s.shape)}")
        if s.shape[0] < min_n:
            raise ValueError(f"{name} has {s.shape[0]} samples; this estimator needs at least {min_n}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dims differ: x has D={x.shape[1]}, y has D={y.shape[1]}")


def median_bandwidth(x: Tensor, y: Tensor, max_points: int = 2048) -> float:
    """Median heuristic: sigma = median Euclidean distance over distinct pairs of the pooled set.

    ``x`` ``(N, D)``, ``y`` ``(M, D)``; sigma is in feature units. If the pooled set
    has more than ``max_points`` rows, ``max_points`` evenly spaced rows are used
    (deterministic, no RNG) to keep the pair count at ~2M.
    """
    _check_sets(x, y)
    pooled = torch.cat([x, y]).double()  # (N + M, D)
    if pooled.shape[0] > max_points:
        pooled = pooled[torch.linspace(0, pooled.shape[0] - 1, max_points).round().long()]
    if pooled.shape[0] < 2:
        raise ValueError("median_bandwidth needs at least 2 pooled points")
    sigma = float(torch.quantile(torch.pdist(pooled), 0.5))  # linear interpolation, as np.median
    if sigma <= 0:
        raise ValueError("median pairwise distance is 0 (mostly identical points); pass a float bandwidth")
    return sigma


def _gaussian_kernel_sum(a: Tensor, b: Tensor, sigma: float, chunk_size: int) -> float:
    """Sum over all (i, j) of exp(-|a_i - b_j|^2 / (2 sigma^2)), in row blocks of a."""
    b_sq = b.square().sum(1)  # (M,)
    total = 0.0
    for start in range(0, a.shape[0], chunk_size):
        a_blk = a[start : start + chunk_size]  # (B, D)
        d2 = (a_blk.square().sum(1, keepdim=True) + b_sq - 2.0 * a_blk @ b.T).clamp_min(0)  # (B, M)
        total += float(torch.exp(-d2 / (2.0 * sigma**2)).sum())
    return total


def mmd2(
    x: Tensor,
    y: Tensor,
    bandwidth: float | Literal["median"] = "median",
    biased: bool = False,
    chunk_size: int = 1024,
) -> float:
    """Squared MMD between ``x`` ``(N, D)`` and ``y`` ``(M, D)`` with a Gaussian kernel.

    k(a, b) = exp(-|a - b|^2 / (2 sigma^2)), sigma = ``bandwidth`` in feature units,
    or :func:`median_bandwidth` for ``"median"``. Default is the unbiased
    U-statistic (can be slightly negative); ``biased=True`` gives the V-statistic
    (>= 0, exactly 0 for ``x is y``). Computed in float64 in row blocks of
    ``chunk_size`` so 10k x 10k sets need only ``chunk_size x 10k`` memory.
    """
    _check_sets(x, y, min_n=1 if biased else 2)
    if isinstance(bandwidth, str) and bandwidth == "median":
        sigma = median_bandwidth(x, y)
    elif isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and bandwidth > 0:
        sigma = float(bandwidth)
    else:
        raise ValueError(f"bandwidth must be a float > 0 or 'median', got {bandwidth!r}")
    n, m = x.shape[0], y.shape[0]
    x, y = x.double(), y.double()
    k_xx = _gaussian_kernel_sum(x, x, sigma, chunk_size)
    k_yy = _gaussian_kernel_sum(y, y, sigma, chunk_size)
    k_xy = _gaussian_kernel_sum(x, y, sigma, chunk_size)
    if biased:
        return k_xx / n**2 + k_yy / m**2 - 2.0 * k_xy / (n * m)
    # The diagonal k(a, a) = 1 exactly, so the U-statistic drops n (resp. m) from each sum.
    return (k_xx - n) / (n * (n - 1)) + (k_yy - m) / (m * (m - 1)) - 2.0 * k_xy / (n * m)


def fid_from_features(f1: Tensor, f2: Tensor) -> float:
    """Frechet distance between Gaussians fitted to ``f1`` ``(N, F)`` and ``f2`` ``(M, F)``.

    |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), covariances with ddof=1, in float64
    via ``scipy.linalg.sqrtm``; units are squared feature units.
    """
    _check_sets(f1, f2, min_n=2)
    a, b = f1.double().cpu().numpy(), f2.double().cpu().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


class FeatureAdapter(nn.Module):
    """Presents ``feature_fn: images (N, C, H, W) float [0, 1] -> (N, F)`` as a torchmetrics feature net.

    torchmetrics reads ``num_features`` at construction (without it, FID probes the
    net with a 3x299x299 image) and casts FID back to the feature dtype, so
    features are returned as float64. uint8 input is rescaled to [0, 1].
    """

    def __init__(self, feature_fn: FeatureFn, num_features: int) -> None:
        super().__init__()
        if not (isinstance(num_features, int) and num_features >= 1):
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        self.feature_fn = feature_fn  # registered as a submodule when it is an nn.Module
        self.num_features = num_features

    def forward(self, images: Tensor) -> Tensor:
        """Images (N, C, H, W), float in [0, 1] or uint8 -> features (N, num_features) float64."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        feats = self.feature_fn(images)
        if feats.dim() != 2 or feats.shape != (images.shape[0], self.num_features):
            raise ValueError(
                f"feature_fn returned shape {tuple(feats.shape)}, expected "
                f"({images.shape[0]}, {self.num_features}) = (N, num_features)"
            )
        return feats.double()


def _adapter_for(images: Tensor, feature_fn: FeatureFn) -> FeatureAdapter:
    num_features = feature_fn(images[:1]).shape[-1]  # (1, F) probe on a real image
    return FeatureAdapter(feature_fn, int(num_features))


def _check_images(real: Tensor, fake: Tensor, min_n: int) -> None:
    for name, imgs in (("real", real), ("fake", fake)):
        if imgs.dim() != 4:
            raise ValueError(f"{name} images must be (N, C, H, W), got shape {tuple(imgs.shape)}")
        if imgs.shape[0] < min_n:
            raise ValueError(f"{name} set has {imgs.shape[0]} images; need at least {min_n}")
    if not (real.is_floating_point() and fake.is_floating_point()):
        raise ValueError(f"images must be float in [0, 1], got {real.dtype} and {fake.dtype}")


@torch.no_grad()
def fid(real_images: Tensor, fake_images: Tensor, feature_fn: FeatureFn, batch_size: int = 64) -> float:
    """FID (squared feature units) between two image sets via torchmetrics and ``feature_fn``.

    Images are ``(N, C, H, W)`` float in [0, 1]; ``feature_fn`` maps them to ``(N, F)``.
    """
    _check_images(real_images, fake_images, min_n=2)
    from torchmetrics.image.fid import FrechetInceptionDistance  # lazy: torchmetrics takes seconds to import
    metric = FrechetInceptionDistance(feature=_adapter_for(real_images, feature_fn), normalize=True)
    for imgs, is_real in ((real_images, True), (fake_images, False)):
        for batch in imgs.split(batch_size):
            metric.update(batch, real=is_real)
    return float(metric.compute())


@torch.no_grad()
def kid(
    real_images: Tensor,
    fake_images: Tensor,
    feature_fn: FeatureFn,
    subset_size: int,
    subsets: int = 100,
    seed: int | torch.Generator = 0,
    batch_size: int = 64,
) -> tuple[float, float]:
    """KID (mean, std over ``subsets``) via torchmetrics: unbiased MMD^2, kernel (x.y / F + 1)^3.

    Images are ``(N, C, H, W)`` float in [0, 1]. torchmetrics draws subsets with the
    global RNG, so we fork it and seed it from ``seed`` (an int or a generator).
    """
    _check_images(real_images, fake_images, min_n=2)
    smallest = min(real_images.shape[0], fake_images.shape[0])
    if not (isinstance(subset_size, int) and 2 <= subset_size <= smallest):
        raise ValueError(
            f"subset_size={subset_size!r} must be an int in [2, {smallest}] (the smaller set has {smallest} images)"
        )
    if not (isinstance(subsets, int) and subsets >= 1):
        raise ValueError(f"subsets must be an int >= 1, got {subsets!r}")
    with warnings.catch_warnings():  # torchmetrics warns that it buffers all features; we know
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        from torchmetrics.image.kid import KernelInceptionDistance  # lazy: torchmetrics takes seconds to import
        metric = KernelInceptionDistance(
            feature=_adapter_for(real_images, feature_fn), subsets=subsets, subset_size=subset_size, normalize=True
        )
    for imgs, is_real in ((real_images, True), (fake_images, False)):
        for batch in imgs.split(batch_size):
            metric.update(batch, real=is_real)
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
