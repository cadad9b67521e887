"""Attribute distributions: initial scenes, target mixtures ``Gk`` and the paper's presets.

A :class:`Mixture` is an equal- or custom-weight mixture of axis-aligned
Gaussians over the continuous attributes of a space; categorical attributes are
drawn uniformly. Periodic samples are wrapped, bounded ones clamped.

The paper's ten settings (§4.1), defined exactly so: rotation component j of
Gk (j = 0..k-1) has mean 45° + 360°·j/k wrapped into (-180°, 180°] and std 10°;
position component j has its mean on the circle of radius 14 px around the
canvas centre at angle 30° + 360°·j/k (counter-clockwise on screen, so
``tx = 14 cos a``, ``ty = -14 sin a`` with y down), std 2 px per axis; in
Rot.&Trans. component j pairs rotation mean j with position mean j; Trans.
settings keep rotation ~ N(0°, 10°).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from scenefit.attributes import AttributeSpace, wrap_angle


@dataclass(frozen=True)
class Gaussian:
    """A 1-D normal: mean and standard deviation in the attribute's unit."""

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std)):
            raise ValueError(f"Gaussian mean/std must be finite, got mean={self.mean}, std={self.std}")
        if self.std < 0:
            raise ValueError(f"Gaussian std must be >= 0, got {self.std}")


@dataclass(frozen=True)
class Component:
    """One mixture component: a Gaussian per named continuous attribute.

    Attributes missing here fall back to the mixture's ``defaults``.
    """

    attrs: dict[str, Gaussian]
    weight: float = 1.0


@dataclass(frozen=True)
class Mixture:
    """Mixture of axis-aligned Gaussians over an attribute space."""

    components: tuple[Component, ...]
    defaults: dict[str, Gaussian] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("a mixture needs at least one component")
        w = [c.weight for c in self.components]
        if any((not math.isfinite(x)) or x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"mixture weights must be finite, >= 0 and not all 0, got {w}")

    @property
    def weights(self) -> torch.Tensor:
        """(K,) normalized component weights."""
        w = torch.tensor([c.weight for c in self.components], dtype=torch.float64)
        return (w / w.sum()).float()

    def gaussian(self, k: int, name: str) -> Gaussian:
        """The normal of attribute ``name`` in component ``k`` (or the default, else a point at 0)."""
        return self.components[k].attrs.get(name, self.defaults.get(name, Gaussian(0.0, 0.0)))

    def check(self, space: AttributeSpace) -> None:
        """Raise if a component names an attribute the space lacks or a categorical one."""
        for k, comp in enumerate(self.components):
            for name in list(comp.attrs) + list(self.defaults):
                if name not in space.names:
                    raise ValueError(f"mixture component {k} names unknown attribute '{name}'; known: {list(space.names)}")
                if space[name].categorical:
                    raise ValueError(f"mixture component {k}: categorical attribute '{name}' is drawn uniformly, give no Gaussian")

    def sample(self, space: AttributeSpace, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` attribute vectors.

        Returns:
            attrs (n, D) natural units (wrapped/clamped into bounds) and the
            component index of each row (n,) int64.
        """
        self.check(space)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        cols = []
        for i, a in enumerate(space):
            if a.categorical:
                cols.append(torch.randint(a.num_categories, (n,), generator=generator).float())
                continue
            mean = torch.tensor([self.gaussian(k, a.name).mean for k in range(len(self.components))])[comp]
            std = torch.tensor([self.gaussian(k, a.name).std for k in range(len(self.components))])[comp]
            cols.append(mean + std * torch.randn(n, generator=generator))
        attrs = torch.stack(cols, dim=1)
        return space.clamp(attrs), comp

    def to_dict(self) -> dict:
        """JSON/YAML-ready form (inverse of :func:`mixture_from_dict`)."""
        return {
            "components": [
                {"weight": c.weight, **{n: {"mean": g.mean, "std": g.std} for n, g in c.attrs.items()}} for c in self.components
            ],
            "defaults": {n: {"mean": g.mean, "std": g.std} for n, g in self.defaults.items()},
        }


def mixture_from_dict(d: dict, where: str = "mixture") -> Mixture:
    """Build a mixture from ``{"components": [{"weight": w, "rotation": {"mean": m, "std": s}}, ...]}``."""
    if not isinstance(d, dict) or "components" not in d:
        raise ValueError(f"{where}: expected a mapping with a 'components' list, got {d!r}")

    def gauss(v, at: str) -> Gaussian:
        if not isinstance(v, dict) or set(v) - {"mean", "std"} or "mean" not in v:
            raise ValueError(f"{at}: expected {{mean: .., std: ..}}, got {v!r}")
        try:
            return Gaussian(float(v["mean"]), float(v.get("std", 0.0)))
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None

    comps = []
    for k, c in enumerate(d["components"]):
        c = dict(c)
        weight = float(c.pop("weight", 1.0))
        comps.append(Component({n: gauss(v, f"{where}.components[{k}].{n}") for n, v in c.items()}, weight))
    defaults = {n: gauss(v, f"{where}.defaults.{n}") for n, v in (d.get("defaults") or {}).items()}
    try:
        return Mixture(tuple(comps), defaults)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


ROT_STD = 10.0
POS_STD = 2.0
POS_RADIUS = 14.0


def initial_scenes(translate: bool) -> Mixture:
    """Upright and centred digits: rotation ~ N(0°, 10°), tx = ty = 0 (when the space has them)."""
    pos = {"tx": Gaussian(0.0, 0.0), "ty": Gaussian(0.0, 0.0)} if translate else {}
    return Mixture((Component({"rotation": Gaussian(0.0, ROT_STD), **pos}),))


def rotation_mean(j: int, k: int) -> float:
    """Mean rotation of component j of Gk: 45° + 360°·j/k wrapped into (-180°, 180°]."""
    return float(wrap_angle(torch.tensor(45.0 + 360.0 * j / k)).item())


def position_mean(j: int, k: int) -> tuple[float, float]:
    """Mean (tx, ty) px of component j of Gk: radius 14 at angle 30° + 360°·j/k (y down)."""
    a = math.radians(30.0 + 360.0 * j / k)
    return POS_RADIUS * math.cos(a), -POS_RADIUS * math.sin(a)


def paper_mixture(kind: str, k: int) -> Mixture:
    """Target mixture of the paper's setting ``kind`` in {"rot", "trans", "rottrans"} with k modes."""
    comps = []
    for j in range(k):
        rot = Gaussian(rotation_mean(j, k), ROT_STD) if kind in ("rot", "rottrans") else Gaussian(0.0, ROT_STD)
        if kind in ("trans", "rottrans"):
            mx, my = position_mean(j, k)
            pos = {"tx": Gaussian(mx, POS_STD), "ty": Gaussian(my, POS_STD)}
        else:
            pos = {}
        comps.append(Component({"rotation": rot, **pos}))
    return Mixture(tuple(comps))


PAPER_SETTINGS: dict[str, tuple[str, int]] = {
    "rot-g1": ("rot", 1),
    "rot-g2": ("rot", 2),
    "rot-g3": ("rot", 3),
    "rot-g5": ("rot", 5),
    "trans-g1": ("trans", 1),
    "trans-g2": ("trans", 2),
    "trans-g4": ("trans", 4),
    "rottrans-g1": ("rottrans", 1),
    "rottrans-g2": ("rottrans", 2),
    "rottrans-g4": ("rottrans", 4),
}
