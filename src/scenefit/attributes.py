"""Named scene attributes: bounds, units, periodicity, and the unit-cube mapping.

An :class:`AttributeSpace` is the contract between scenarios, engines, the
surrogate and fitting. Attribute values travel as a float tensor ``(B, D)`` in
natural units (degrees, pixels, counts...), columns in the space's order.
Categorical attributes hold integer category indices ``0 .. n-1`` stored as floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


class AttributeSpecError(ValueError):
    """Invalid attribute definition or value."""


@dataclass(frozen=True)
class Attribute:
    """One engine attribute.

    Attributes:
        name: identifier, e.g. ``"rotation"``.
        low, high: bounds in ``unit`` (inclusive). For a periodic attribute the
            interval ``(low, high]`` is one period, e.g. ``(-180, 180]`` degrees.
        unit: human-readable unit (``"deg"``, ``"px"``...).
        periodic: values wrap around (angles).
        categories: names of the categories for a categorical attribute; empty
            for continuous ones. A categorical value is an index ``0..n-1``.
        look: the engine renders it as look, not content (camera and sensor settings:
            exposure, blur, noise...). The fit matches look attributes with a look-sensitive
            term and every other attribute with its (look-invariant) features
            (:mod:`scenefit.fitting.look`).
    """

    name: str
    low: float = 0.0
    high: float = 1.0
    unit: str = ""
    periodic: bool = False
    categories: tuple[str, ...] = field(default_factory=tuple)
    look: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise AttributeSpecError("attribute name must be a non-empty string")
        if self.look and (self.categorical or self.periodic):
            raise AttributeSpecError(f"look attribute '{self.name}' must be continuous and not periodic")
        if self.categorical:
            if len(self.categories) < 2:
                raise AttributeSpecError(
                    f"categorical attribute '{self.name}' needs at least 2 categories, got {len(self.categories)}"
                )
            return
        for bound in (self.low, self.high):
            if not math.isfinite(bound):
                raise AttributeSpecError(f"attribute '{self.name}': bound {bound} is not finite")
        if self.low >= self.high:
            raise AttributeSpecError(
                f"attribute '{self.name}': low ({self.low}) must be < high ({self.high})"
            )

    @property
    def categorical(self) -> bool:
        """True when the attribute takes one of ``len(categories)`` values."""
        return len(self.categories) > 0

    @property
    def num_categories(self) -> int:
        """Number of categories (0 for continuous attributes)."""
        return len(self.categories)

    @property
    def span(self) -> float:
        """``high - low`` in the attribute's unit (one period if periodic)."""
        return float(self.high - self.low)


def wrap_angle(deg: torch.Tensor, low: float = -180.0, high: float = 180.0) -> torch.Tensor:
    """Wrap values into the half-open period ``(low, high]``.

    Args:
        deg: any-shaped tensor, same unit as ``low``/``high``.
    Returns:
        tensor of the same shape with values in ``(low, high]``.
    """
    period = high - low
    wrapped = torch.remainder(deg - low, period) + low  # [low, high)
    return torch.where(wrapped <= low, wrapped + period, wrapped)


def circular_mean_std(values: torch.Tensor, low: float = -180.0, high: float = 180.0) -> tuple[float, float]:
    """Circular mean and circular standard deviation of periodic values.

    Args:
        values: (N,) values of one period ``[low, high)`` (e.g. degrees), N >= 1.
    Returns:
        (mean in ``(low, high]``, std) in the values' unit; std is ``sqrt(-2 ln R)`` scaled to the period, where R is
        the mean resultant length (0 for identical values; large when the values spread round the circle).
    """
    period = high - low
    phase = (values.double().reshape(-1) - low) / period * 2 * math.pi
    c, s = float(phase.cos().mean()), float(phase.sin().mean())
    mean = float(wrap_angle(torch.tensor(low + math.atan2(s, c) / (2 * math.pi) * period, dtype=torch.float64), low, high))
    r = min(math.hypot(c, s), 1.0)
    return mean, math.sqrt(max(-2.0 * math.log(max(r, 1e-12)), 0.0)) / (2 * math.pi) * period


class AttributeSpace:
    """An ordered set of attributes with tensor helpers.

    Example::

        space = AttributeSpace([Attribute("rotation", -180, 180, "deg", periodic=True)])
        u = space.normalize(torch.tensor([[90.0]]))   # (1, 1) in [0, 1]
    """

    def __init__(self, attributes: list[Attribute] | tuple[Attribute, ...]) -> None:
        names = [a.name for a in attributes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise AttributeSpecError(f"duplicate attribute names: {sorted(dup)}")
        if not attributes:
            raise AttributeSpecError("an attribute space needs at least one attribute")
        self.attributes: tuple[Attribute, ...] = tuple(attributes)

    def __repr__(self) -> str:
        return f"AttributeSpace({[a.name for a in self.attributes]})"

    def __len__(self) -> int:
        return len(self.attributes)

    def __iter__(self):
        return iter(self.attributes)

    def __getitem__(self, name: str) -> Attribute:
        return self.attributes[self.index(name)]

    @property
    def names(self) -> tuple[str, ...]:
        """Attribute names in column order."""
        return tuple(a.name for a in self.attributes)

    @property
    def dim(self) -> int:
        """Number of columns ``D`` of an attribute tensor."""
        return len(self.attributes)

    def index(self, name: str) -> int:
        """Column of attribute ``name``; raises with the known names if absent."""
        for i, a in enumerate(self.attributes):
            if a.name == name:
                return i
        raise KeyError(f"unknown attribute '{name}'; known: {list(self.names)}")

    @property
    def continuous(self) -> tuple[int, ...]:
        """Columns of continuous attributes."""
        return tuple(i for i, a in enumerate(self.attributes) if not a.categorical)

    @property
    def categorical(self) -> tuple[int, ...]:
        """Columns of categorical attributes."""
        return tuple(i for i, a in enumerate(self.attributes) if a.categorical)

    @property
    def look(self) -> tuple[int, ...]:
        """Columns of look attributes (:attr:`Attribute.look`)."""
        return tuple(i for i, a in enumerate(self.attributes) if a.look)

    def _bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = torch.tensor(
            [0.0 if a.categorical else a.low for a in self.attributes], dtype=like.dtype, device=like.device
        )
        high = torch.tensor(
            [float(a.num_categories - 1) if a.categorical else a.high for a in self.attributes],
            dtype=like.dtype,
            device=like.device,
        )
        return low, high

    def check(self, values: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the attribute if ``values`` (B, D) is malformed or out of bounds."""
        if values.ndim != 2 or values.shape[1] != self.dim:
            raise ValueError(f"attribute tensor must have shape (B, {self.dim}) for {list(self.names)}, got {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            bad = (~torch.isfinite(values)).any(0).nonzero().flatten().tolist()
            raise ValueError(f"non-finite values for attributes {[self.names[i] for i in bad]}")
        low, high = self._bounds(values)
        eps = 1e-4
        out = ((values < low - eps) | (values > high + eps)).any(0)
        for i in out.nonzero().flatten().tolist():
            a = self.attributes[i]
            col = values[:, i]
            raise ValueError(
                f"attribute '{a.name}' out of bounds [{low[i].item()}, {high[i].item()}]: "
                f"min {col.min().item():.4g}, max {col.max().item():.4g}"
            )

    def clamp(self, values: torch.Tensor) -> torch.Tensor:
        """Project (B, D) values into bounds: wrap periodic, clamp continuous, round categorical."""
        low, high = self._bounds(values)
        out = torch.maximum(torch.minimum(values, high), low)
        cols = []
        for i, a in enumerate(self.attributes):
            if a.periodic:
                cols.append(wrap_angle(values[:, i], a.low, a.high))
            elif a.categorical:
                cols.append(out[:, i].round())
            else:
                cols.append(out[:, i])
        return torch.stack(cols, dim=1)

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        """Map natural units (B, D) to the unit cube [0, 1]^D (categorical: index / (n-1))."""
        low, high = self._bounds(values)
        return (values - low) / (high - low)

    def denormalize(self, unit: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: unit cube (B, D) to natural units (no clamping)."""
        low, high = self._bounds(unit)
        return low + unit * (high - low)

    def sample_uniform(self, n: int, generator: torch.Generator, device: str | torch.device = "cpu") -> torch.Tensor:
        """Draw ``n`` attribute vectors uniformly over the bounds.

        Returns:
            (n, D) float tensor in natural units; categorical columns hold integer indices.
        """
        u = torch.rand(n, self.dim, generator=generator)
        cols = []
        for i, a in enumerate(self.attributes):
            if a.categorical:
                cols.append(torch.randint(a.num_categories, (n,), generator=generator).float())
            else:
                cols.append(a.low + u[:, i] * a.span)
        return torch.stack(cols, dim=1).to(device)

    def encode(self, values: torch.Tensor, soft: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Network input features for (B, D) values.

        Continuous attributes become ``2u - 1`` in [-1, 1]; periodic ones become
        ``(sin, cos)`` of their phase; categorical ones become one-hot vectors,
        or the given probability rows ``soft[col]`` (B, n) for a relaxed search.

        Returns:
            (B, :attr:`encoded_dim`) float tensor.
        """
        feats = []
        for i, a in enumerate(self.attributes):
            col = values[:, i]
            if a.categorical:
                if soft is not None and i in soft:
                    feats.append(soft[i])
                else:
                    idx = col.round().long().clamp(0, a.num_categories - 1)
                    feats.append(torch.nn.functional.one_hot(idx, a.num_categories).to(values.dtype))
            elif a.periodic:
                phase = (col - a.low) / a.span * (2 * math.pi)
                feats.append(torch.stack([torch.sin(phase), torch.cos(phase)], dim=1))
            else:
                feats.append((2 * (col - a.low) / a.span - 1).unsqueeze(1))
        return torch.cat(feats, dim=1)

    @property
    def encoded_dim(self) -> int:
        """Width of :meth:`encode`'s output."""
        return sum(a.num_categories if a.categorical else (2 if a.periodic else 1) for a in self.attributes)

    def to_dict(self) -> list[dict]:
        """JSON-ready description (used in checkpoints to refuse a mismatched engine)."""
        # ``look`` only when set, so that the identity (and model-store keys) of engines without look attributes is unchanged
        return [
            {"name": a.name, "low": a.low, "high": a.high, "unit": a.unit, "periodic": a.periodic, "categories": list(a.categories),
             **({"look": True} if a.look else {})}
            for a in self.attributes
        ]

    @classmethod
    def from_dict(cls, rows: list[dict]) -> AttributeSpace:
        """Inverse of :meth:`to_dict`."""
        return cls([Attribute(r["name"], r["low"], r["high"], r["unit"], r["periodic"], tuple(r["categories"]), bool(r.get("look", False)))
                    for r in rows])
