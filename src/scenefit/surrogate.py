"""The surrogate G: a network that imitates the engine R on raw pixels (paper §3.4).

``G(attrs) ≈ R(attrs)["image"]``, trained with L1 on attributes drawn uniformly
over their bounds. Same call shape as an engine: (B, D) natural units in,
(B, C, H, W) in [0, 1] out, so fitting can differentiate through either.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Engine
from scenefit.guards import check_loss, check_model
from scenefit.io import load_model_for_engine, save_model_for_engine


SURROGATE_CAPS = {"hidden": 65536, "base_channels": 4096, "num_upsamples": 12, "batch_size": 65536, "holdout": 1_000_000}


@dataclass(frozen=True)
class SurrogateConfig:
    """Architecture and training budget of G.

    ``num_upsamples`` transposed convolutions (4 for digits, 8 for street scenes
    in the paper; each doubles the resolution, or keeps it with stride 1 once the
    canvas is reached). Training stops when the held-out L1 (mean absolute pixel
    error, pixels in [0, 1]) reaches ``target_l1`` or after ``max_steps``. The
    default target is 0 (budget only): on a mostly-background canvas the mean image
    alone scores a low L1, so a loose target stops G before it draws anything
    (figures: docs/RESULTS.md). The report puts G's L1 beside the mean image's and
    the engine's own render-to-render noise floor.
    """

    hidden: int = 256
    base_channels: int = 128
    num_upsamples: int = 4
    lr: float = 0.002
    batch_size: int = 64
    max_steps: int = 3000
    target_l1: float = 0.0
    eval_every: int = 250
    holdout: int = 1024

    def __post_init__(self) -> None:
        for name in ("hidden", "base_channels", "num_upsamples", "batch_size", "max_steps", "eval_every", "holdout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"surrogate.{name} must be > 0, got {getattr(self, name)}")
        for name, cap in SURROGATE_CAPS.items():  # sane sizes: a typo must not ask for gigabytes of weights
            if getattr(self, name) > cap:
                raise ValueError(f"surrogate.{name} must be <= {cap}, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"surrogate.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.target_l1) and self.target_l1 >= 0):
            raise ValueError(f"surrogate.target_l1 must be a finite number >= 0, got {self.target_l1}")


class Surrogate(nn.Module):
    """2 fully connected layers, then transposed convolutions up to the canvas.

    Input: ``space.encode(attrs)`` (angles as sin/cos, categorical one-hot).
    Output: (B, C, H, W) in [0, 1] (sigmoid).
    """

    def __init__(self, space: AttributeSpace, channels: int, height: int, width: int, cfg: SurrogateConfig) -> None:
        super().__init__()
        self.space, self.channels, self.height, self.width, self.cfg = space, channels, height, width, cfg
        n_double = min(cfg.num_upsamples, 4 if min(height, width) >= 32 else 3)
        scale = 2**n_double
        if height % scale or width % scale:
            raise ValueError(f"canvas {height}x{width} must be divisible by {scale} for the surrogate's upsampling")
        self.h0, self.w0 = height // scale, width // scale
        c0 = cfg.base_channels
        self.fc = nn.Sequential(
            nn.Linear(space.encoded_dim, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, c0 * self.h0 * self.w0),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c = c0
        for i in range(cfg.num_upsamples):
            last = i == cfg.num_upsamples - 1
            c_out = channels if last else max(c // 2, 16)
            if i < n_double:
                layers.append(nn.ConvTranspose2d(c, c_out, kernel_size=4, stride=2, padding=1))
            else:
                layers.append(nn.ConvTranspose2d(c, c_out, kernel_size=3, stride=1, padding=1))
            if not last:
                layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
            c = c_out
        self.deconv = nn.Sequential(*layers)

    def forward(self, attrs: torch.Tensor, soft: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, D) natural-unit attributes -> (B, C, H, W) images in [0, 1].

        ``soft`` maps a categorical column to (B, n) probabilities (relaxed search).
        """
        dev = self.fc[0].weight.device
        soft = {c: p.to(dev) for c, p in soft.items()} if soft else soft
        z = self.fc(self.space.encode(attrs.to(dev), soft))
        z = z.view(-1, self.cfg.base_channels, self.h0, self.w0)  # (B, C0, h0, w0)
        return torch.sigmoid(self.deconv(z))


def holdout_set(engine: Engine, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed held-out set: uniform attributes (n, D) and their engine images (n, C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    attrs = engine.space.sample_uniform(n, g)
    with torch.no_grad():
        return attrs, engine.images(attrs, g)


@torch.no_grad()
def l1_error(model: Surrogate, attrs: torch.Tensor, images: torch.Tensor, batch: int = 512) -> float:
    """Mean absolute pixel error of ``model`` against ``images`` (pixels in [0, 1])."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    tot = 0.0
    for i in range(0, attrs.shape[0], batch):
        tot += (model(attrs[i : i + batch].to(dev)) - images[i : i + batch].to(dev)).abs().sum().item()
    model.train(was)
    return tot / images.numel()


@torch.no_grad()
def noise_floor(engine: Engine, n: int, seed: int) -> float:
    """L1 between two renders of the same attributes with different nuisance draws.

    No attribute-only model can beat roughly half of this (texture and background
    are not attributes), so it puts G's held-out L1 in context.
    """
    g = torch.Generator().manual_seed(seed)
    attrs = engine.space.sample_uniform(n, g)
    a, b = engine.images(attrs, g), engine.images(attrs, g)
    return (a - b).abs().mean().item()


def train_surrogate(
    engine: Engine, cfg: SurrogateConfig, seed: int, device: str = "cpu", progress: bool = True
) -> tuple[Surrogate, dict]:
    """Train G on fresh engine samples (uniform attributes) until the held-out L1 target or the step budget.

    Returns:
        the trained model (eval mode) and a report dict with ``heldout_l1``,
        ``steps``, ``seconds``, ``reached_target`` and the L1 curve.
    """
    torch.manual_seed(seed)  # parameter init; data randomness uses its own generator
    model = Surrogate(engine.space, engine.channels, engine.height, engine.width, cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed + 1)
    hold_attrs, hold_images = holdout_set(engine, cfg.holdout, seed + 2)
    curve: list[tuple[int, float]] = []
    t0 = time.time()
    reached = False
    bar = tqdm(range(1, cfg.max_steps + 1), desc="surrogate", disable=not progress, leave=False)
    for step in bar:
        attrs = engine.space.sample_uniform(cfg.batch_size, g)
        with torch.no_grad():
            target = engine.images(attrs, g)
        loss = (model(attrs.to(device)) - target.to(device)).abs().mean()
        check_loss(loss, "surrogate G", "surrogate.lr", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            l1 = l1_error(model, hold_attrs, hold_images)
            curve.append((step, l1))
            bar.set_postfix(heldout_l1=f"{l1:.4f}")
            if l1 <= cfg.target_l1:
                reached = True
                break
    model.eval()
    check_model(model, "surrogate G", "surrogate.lr")
    report = {
        "heldout_l1": curve[-1][1],
        "steps": curve[-1][0],
        "seconds": time.time() - t0,
        "reached_target": reached,
        "target_l1": cfg.target_l1,
        "curve": curve,
    }
    return model, report


@torch.no_grad()
def surrogate_report(model: Surrogate, engine: Engine, n: int, seed: int) -> dict:
    """G's held-out L1 on ``n`` fresh uniform renders beside two references (pixels in [0, 1]): the L1 of the
    mean image (what G scores if it ignores the attributes) and R's own noise floor (:func:`noise_floor`)."""
    attrs, images = holdout_set(engine, n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mean = engine.images(engine.space.sample_uniform(max(n, 64), g), g).mean(0, keepdim=True)
    return {"heldout_l1": l1_error(model, attrs, images), "mean_image_l1": (images - mean).abs().mean().item(),
            "noise_floor": noise_floor(engine, n, seed + 2), "holdout": n, "resolution": [engine.height, engine.width]}


def save_surrogate(path: str | Path, model: Surrogate, engine: Engine, report: dict | None = None) -> None:
    """Checkpoint G as safetensors + JSON (architecture config and engine identity)."""
    save_model_for_engine(path, model, "surrogate", engine.describe(), report)


def load_surrogate(path: str | Path, engine: Engine, device: str = "cpu") -> Surrogate:
    """Load G for ``engine``; raises ``ValueError`` if it was trained for another engine or canvas."""
    return load_model_for_engine(
        path, "surrogate", engine.describe(),
        lambda c: Surrogate(engine.space, engine.channels, engine.height, engine.width, SurrogateConfig(**c)), device,
    )
