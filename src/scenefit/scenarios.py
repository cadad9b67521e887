"""Attribute distributions: initial scenes, target mixtures ``Gk`` and the paper's presets.

A :class:`Mixture` is an equal- or custom-weight mixture of axis-aligned
Gaussians over the continuous attributes of a space; a component may give a
categorical attribute its own probabilities (``{probs: [...]}``), otherwise it is
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
class Categorical:
    """Probabilities of a categorical attribute's categories (normalised when drawn)."""

    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        p = tuple(float(x) for x in self.probs)
        object.__setattr__(self, "probs", p)
        if not p or any(not math.isfinite(x) or x < 0 for x in p) or sum(p) <= 0:
            raise ValueError(f"categorical probs must be finite, >= 0 and not all 0, got {list(p)}")


@dataclass(frozen=True)
class Component:
    """One mixture component: a Gaussian per named continuous attribute, optional probs per categorical one.

    Attributes missing here fall back to the mixture's ``defaults`` (continuous: a point at 0 if none;
    categorical: uniform).
    """

    attrs: dict[str, Gaussian | Categorical]
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
        g = self.components[k].attrs.get(name, self.defaults.get(name, Gaussian(0.0, 0.0)))
        return g if isinstance(g, Gaussian) else Gaussian(0.0, 0.0)

    def categorical(self, k: int, name: str, n: int) -> torch.Tensor:
        """(n,) normalised probabilities of categorical ``name`` in component ``k`` (uniform unless given)."""
        c = self.components[k].attrs.get(name, self.defaults.get(name))
        p = torch.tensor(c.probs, dtype=torch.float64) if isinstance(c, Categorical) else torch.ones(n, dtype=torch.float64)
        return p / p.sum()

    def _names(self, name: str) -> bool:
        return name in self.defaults or any(name in c.attrs for c in self.components)

    def _has_probs(self, name: str) -> bool:
        return any(isinstance(c.attrs.get(name, self.defaults.get(name)), Categorical) for c in self.components)

    def check(self, space: AttributeSpace, where: str = "mixture") -> None:
        """Raise ``ValueError`` naming ``where`` if a component names an attribute the space lacks, gives a
        Gaussian to a categorical attribute, probs to a continuous one, or the wrong number of probs."""
        for k, comp in [(k, c.attrs) for k, c in enumerate(self.components)] + [("defaults", self.defaults)]:
            at = f"{where}.components[{k}]" if k != "defaults" else f"{where}.defaults"
            for name, law in comp.items():
                if name not in space.names:
                    raise ValueError(f"{at} names unknown attribute '{name}'; known: {list(space.names)}")
                a = space[name]
                if a.categorical and not isinstance(law, Categorical):
                    raise ValueError(f"{at}.{name}: '{name}' is categorical; give {{probs: [{a.num_categories} values]}}, "
                                     f"not a mean and std")
                if not a.categorical and isinstance(law, Categorical):
                    raise ValueError(f"{at}.{name}: '{name}' is continuous; give {{mean: .., std: ..}}, not probs")
                if isinstance(law, Categorical) and len(law.probs) != a.num_categories:
                    raise ValueError(f"{at}.{name}: {len(law.probs)} probs for {a.num_categories} categories {list(a.categories)}")

    def centre(self, space: AttributeSpace) -> torch.Tensor:
        """(D,) centre in natural units: weighted mean of the component means (circular for periodic attributes),
        the most probable category for categorical ones."""
        self.check(space)
        w = self.weights.double()
        out = []
        for a in space:
            if a.categorical:
                p = sum(w[k] * self.categorical(k, a.name, a.num_categories) for k in range(len(self.components)))
                out.append(float(torch.as_tensor(p).argmax()))
                continue
            m = torch.tensor([self.gaussian(k, a.name).mean for k in range(len(self.components))], dtype=torch.float64)
            if a.periodic:
                phase = (m - a.low) / a.span * 2 * math.pi
                mean = torch.atan2((w * phase.sin()).sum(), (w * phase.cos()).sum()) % (2 * math.pi)
                out.append(float(a.low + mean / (2 * math.pi) * a.span) if len(m) > 1 else float(m[0]))
            else:
                out.append(float((w * m).sum()))
        return space.clamp(torch.tensor([out], dtype=torch.float32))[0]

    def sample(self, space: AttributeSpace, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` attribute vectors. A look attribute (camera, sensor) that the mixture does not name sits at 0
        and draws nothing, so adding a camera to an engine leaves the draws of its scenes as they were.

        Returns:
            attrs (n, D) natural units (wrapped/clamped into bounds) and the
            component index of each row (n,) int64.
        """
        self.check(space)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        cols = []
        for i, a in enumerate(space):
            if a.categorical and self._has_probs(a.name):
                cdf = torch.stack([self.categorical(k, a.name, a.num_categories) for k in range(len(self.components))]).cumsum(1)
                cdf = cdf / cdf[:, -1:]  # ends at exactly 1, and so does every entry after the last non-zero prob
                u = torch.rand(n, generator=generator, dtype=torch.float64)
                # inverse CDF: category k holds u in [cdf[k-1], cdf[k]), empty for a zero prob
                cols.append((u[:, None] >= cdf[comp]).sum(1).clamp(max=a.num_categories - 1).float())
                continue
            if a.categorical:
                cols.append(torch.randint(a.num_categories, (n,), generator=generator).float())
                continue
            if a.look and not self._names(a.name):
                cols.append(torch.zeros(n))
                continue
            mean = torch.tensor([self.gaussian(k, a.name).mean for k in range(len(self.components))])[comp]
            std = torch.tensor([self.gaussian(k, a.name).std for k in range(len(self.components))])[comp]
            cols.append(mean + std * torch.randn(n, generator=generator))
        attrs = torch.stack(cols, dim=1)
        return space.clamp(attrs), comp

    def to_dict(self) -> dict:
        """JSON/YAML-ready form (inverse of :func:`mixture_from_dict`)."""
        return {
            "components": [{"weight": c.weight, **{n: _law_dict(g) for n, g in c.attrs.items()}} for c in self.components],
            "defaults": {n: _law_dict(g) for n, g in self.defaults.items()},
        }


def _law_dict(law: Gaussian | Categorical) -> dict:
    return {"probs": list(law.probs)} if isinstance(law, Categorical) else {"mean": law.mean, "std": law.std}


def _number(v, at: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{at} must be a number, got {v!r}")
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{at} must be a number, got {v!r}") from None


def mixture_from_dict(d: dict, where: str = "mixture") -> Mixture:
    """Build a mixture from ``{"components": [{"weight": w, "rotation": {"mean": m, "std": s}}, ...]}``.

    A categorical attribute takes ``{"probs": [p0, p1, ...]}``. Errors name the path inside ``where``.
    """
    if not isinstance(d, dict) or "components" not in d:
        raise ValueError(f"{where}: expected a mapping with a 'components' list, got {d!r}")
    if set(d) - {"components", "defaults"}:
        raise ValueError(f"{where}: unknown key(s) {sorted(set(d) - {'components', 'defaults'})}; expected 'components' and 'defaults'")

    def law(v, at: str) -> Gaussian | Categorical:
        if isinstance(v, dict) and set(v) == {"probs"} and isinstance(v["probs"], (list, tuple)):
            try:
                return Categorical(tuple(_number(x, f"{at}.probs") for x in v["probs"]))
            except ValueError as e:
                raise ValueError(f"{at}: {e}" if not str(e).startswith(at) else str(e)) from None
        if not isinstance(v, dict) or set(v) - {"mean", "std"} or "mean" not in v:
            raise ValueError(f"{at}: expected {{mean: .., std: ..}} or {{probs: [..]}}, got {v!r}")
        try:
            return Gaussian(_number(v["mean"], f"{at}.mean"), _number(v.get("std", 0.0), f"{at}.std"))
        except ValueError as e:
            raise ValueError(f"{at}: {e}" if not str(e).startswith(at) else str(e)) from None

    if not isinstance(d["components"], (list, tuple)):
        raise ValueError(f"{where}.components must be a list, got {d['components']!r}")
    comps = []
    for k, c in enumerate(d["components"]):
        if not isinstance(c, dict):
            raise ValueError(f"{where}.components[{k}] must be a mapping, got {c!r}")
        c = dict(c)
        weight = _number(c.pop("weight", 1.0), f"{where}.components[{k}].weight")
        comps.append(Component({str(n): law(v, f"{where}.components[{k}].{n}") for n, v in c.items()}, weight))
    defaults = d.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"{where}.defaults must be a mapping, got {defaults!r}")
    defaults = {str(n): law(v, f"{where}.defaults.{n}") for n, v in defaults.items()}
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
