"""P, the probe network: position-aware features for set distances that no fit of ours reads.

The dataset-level baselines (Meta-Sim, Attribute Descent) and the experiments' MMD, FID and KID compare *sets*
of images in a feature space. The task network F, trained on the initial scenes, is a poor one: F's ``fc2``
hardly responds to where a digit is when F only ever saw centred digits. The published baselines used Inception
features, which do. P stands in for them without downloaded weights:

- trained on renders drawn **uniformly from the whole attribute box** of the fitting engine (every pose,
  position and class it can draw), fresh samples every step;
- to **regress every attribute**: ``(sin, cos)`` of each periodic one, the unit-cube value of each bounded one
  (mean squared error), the class of each categorical one (cross-entropy);
- its features are the ``dim``-wide layer before the heads (:meth:`ProbeNet.features`), taken after a 4×4
  average pool of the last convolution, so they keep where things are.

P is trained with its own seed, architecture and data, and **no fit strategy reads it**: ours fits with F or FN
(content loss) and E (amortized starts); P only measures sets. It shares E's kind of objective (attributes from
renders), so a set whose attributes match X_t's is near X_t in P's space whichever method made it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Engine
from scenefit.guards import check_loss, check_model
from scenefit.io import load_model_for_engine, save_model_for_engine


@dataclass(frozen=True)
class ProbeConfig:
    """Size and training budget of P (trained on fresh uniform renders of the fitting engine)."""

    width: int = 16
    dim: int = 128
    lr: float = 0.002
    batch_size: int = 64
    steps: int = 2000

    def __post_init__(self) -> None:
        for name, cap in (("width", 1024), ("dim", 4096), ("batch_size", 65536), ("steps", 10**7)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cap:
                raise ValueError(f"probe.{name} must be an int in [1, {cap}], got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"probe.lr must be a finite number > 0, got {self.lr!r}")


class ProbeNet(nn.Module):
    """CNN: images (B, C, H, W) in [0, 1] -> attribute predictions; :meth:`features` gives (B, dim)."""

    def __init__(self, space: AttributeSpace, channels: int, height: int, width: int, cfg: ProbeConfig) -> None:
        super().__init__()
        self.space, self.cfg = space, cfg
        w = cfg.width

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU()]

        self.body = nn.Sequential(
            *block(channels, w), nn.AvgPool2d(2), *block(w, 2 * w), nn.AvgPool2d(2), *block(2 * w, 4 * w), nn.AvgPool2d(2),
            *block(4 * w, 4 * w), nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten(), nn.Linear(4 * w * 16, cfg.dim), nn.SiLU(),
        )
        self.sizes = [a.num_categories if a.categorical else (2 if a.periodic else 1) for a in space]
        self.head = nn.Linear(cfg.dim, sum(self.sizes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Set-distance features (B, dim) of images (B, C, H, W)."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute: class logits (B, n), a (sin, cos) pair (B, 2), or a unit value (B, 1)."""
        return list(self.head(self.features(images)).split(self.sizes, dim=1))

    def loss(self, images: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """Sum over attributes: cross-entropy on classes, MSE on (sin, cos) and on unit-cube values. attrs (B, D)."""
        unit = self.space.normalize(attrs)
        total = images.new_zeros(())
        for i, (a, out) in enumerate(zip(self.space, self(images))):
            if a.categorical:
                total = total + F.cross_entropy(out, attrs[:, i].round().long())
            elif a.periodic:
                phase = 2 * math.pi * unit[:, i]
                total = total + F.mse_loss(out, torch.stack([phase.sin(), phase.cos()], dim=1))
            else:
                total = total + F.mse_loss(out[:, 0], unit[:, i])
        return total


class ProbeFeatures:
    """P's features on images area-resized to ``size`` = (h, w): (B, C, H, W) -> (B, dim) on the CPU.

    The callable the baselines and the set metrics take, like :class:`scenefit.tasks.TaskFeatures`."""

    def __init__(self, net: ProbeNet, size: tuple[int, int]) -> None:
        self.net, self.size = net, tuple(size)
        self.device = next(net.parameters()).device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        x = x.to(self.device)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="area")
        return self.net.features(x).cpu()

    @torch.no_grad()
    def batched(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Features of many images (N, C, H, W) -> (N, dim), on the CPU."""
        return torch.cat([self(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def probe_errors(net: ProbeNet, engine: Engine, n: int, seed: int) -> dict[str, float]:
    """P's held-out error per attribute on ``n`` fresh uniform renders: degrees or the attribute's unit for
    continuous ones (periodic: circular), the share of wrong classes for categorical ones."""
    net.eval()
    g = torch.Generator().manual_seed(seed)
    attrs = engine.space.sample_uniform(n, g)
    outs = net(engine.images(attrs, g).to(next(net.parameters()).device))
    unit = engine.space.normalize(attrs)
    errors = {}
    for i, (a, out) in enumerate(zip(engine.space, outs)):
        out = out.cpu()
        if a.categorical:
            errors[a.name] = (out.argmax(1) != attrs[:, i].round().long()).float().mean().item()
        elif a.periodic:
            guess = torch.atan2(out[:, 0], out[:, 1]) / (2 * math.pi)
            diff = torch.remainder(guess - unit[:, i] + 0.5, 1.0) - 0.5
            errors[a.name] = (diff.abs() * a.span).mean().item()
        else:
            errors[a.name] = ((out[:, 0].clamp(0, 1) - unit[:, i]).abs() * a.span).mean().item()
    return errors


def train_probe(engine: Engine, cfg: ProbeConfig, seed: int, device: str = "cpu", progress: bool = True) -> tuple[ProbeNet, dict]:
    """Train P on fresh uniform renders of ``engine``; returns (P in eval mode, report with held-out errors)."""
    torch.manual_seed(seed)
    net = ProbeNet(engine.space, engine.channels, engine.height, engine.width, cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    g = torch.Generator().manual_seed(seed + 1)
    t0, losses = time.time(), []
    for step in tqdm(range(1, cfg.steps + 1), desc="probe P", disable=not progress, leave=False):
        attrs = engine.space.sample_uniform(cfg.batch_size, g)
        with torch.no_grad():
            images = engine.images(attrs, g)
        loss = net.loss(images.to(device), attrs.to(device))
        check_loss(loss, "probe P", "probe.lr", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    check_model(net, "probe P", "probe.lr")
    tail = losses[-50:]
    return net, {"steps": cfg.steps, "seconds": time.time() - t0, "final_loss": sum(tail) / len(tail),
                 "heldout_error": probe_errors(net, engine, 512, seed + 2)}


def save_probe(path: str | Path, net: ProbeNet, engine: Engine, report: dict | None = None) -> None:
    """Checkpoint P as safetensors + JSON."""
    save_model_for_engine(path, net, "probe", engine.describe(), report)


def load_probe(path: str | Path, engine: Engine, device: str = "cpu") -> ProbeNet:
    """Load P for ``engine``; raises ``ValueError`` if it was made for another engine or canvas."""
    return load_model_for_engine(
        path, "probe", engine.describe(),
        lambda c: ProbeNet(engine.space, engine.channels, engine.height, engine.width, ProbeConfig(**c)), device,
    )
