"""Divergence guards: a training stage that produces a non-finite loss or weight stops, naming what to change.

scenefit never exports from a model that diverged: :class:`Diverged` ends the command with exit code 2 and a
message naming the stage and the config field to change, before anything is written from it.
"""

from __future__ import annotations

import torch


class Diverged(ValueError):
    """A training stage produced a non-finite loss, weight or result."""

    def __init__(self, stage: str, what: str, field: str) -> None:
        super().__init__(f"{stage} diverged ({what}); nothing was exported from it. Lower {field} (or check the inputs) and rerun")
        self.stage, self.field = stage, field


def check_loss(loss: torch.Tensor, stage: str, field: str, step: int | None = None) -> None:
    """Raise :class:`Diverged` if the scalar ``loss`` is NaN or infinite."""
    if not bool(torch.isfinite(loss.detach()).all()):
        at = f" at step {step}" if step is not None else ""
        raise Diverged(stage, f"loss {loss.detach().float().mean().item()}{at}", field)


def check_model(model: torch.nn.Module, stage: str, field: str) -> None:
    """Raise :class:`Diverged` if any floating-point parameter or buffer of ``model`` is not finite."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise Diverged(stage, f"non-finite weights in '{name}'", field)


def check_values(x: torch.Tensor, stage: str, field: str, what: str = "values") -> None:
    """Raise :class:`Diverged` if tensor ``x`` holds NaN or infinite entries."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).sum()) if x.dim() else 1
        raise Diverged(stage, f"{bad} non-finite {what}", field)
