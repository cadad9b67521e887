"""The engine contract R: attributes in, images and labels out, every row seeded on its own.

An engine is a small class with an :class:`~scenefit.attributes.AttributeSpace`, an
image size and a label table, and one method to write, :meth:`Engine.render_seeded`::

    out = engine.render(attrs, generator=g)   # attrs: (B, D) natural units
    out["image"]   # (B, C, H, W) float32 in [0, 1]
    out["label"]   # (B,) int64 class ids ("class" engines) or (B, H, W) int64 masks ("mask" engines)
    out["seed"]    # (B,) int64: row i is a function of (attrs[i], seed[i]) alone

:meth:`Engine.render` draws one seed per row from ``generator`` and calls
:meth:`Engine.render_seeded`; so any split of the rows into batches, shards or
workers renders the same images. The surrogate G and :class:`EngineRenderer`
share one call shape, ``(attrs, soft=None) -> images``, so fitting never cares
which one it differentiates through.

An engine whose look attributes (:mod:`scenefit.fitting.look`: a camera, a sensor) are a stage applied after
the rest of the render may also define the optional method ``render_look_parts``::

    frames, develop = engine.render_look_parts(attrs, seeds)   # attrs (B, D) natural units, seeds (B,) int64
    frames                  # (B, C, H, W): the render of row i with seed i, before the look stage
    develop(look, frames)   # look (B, L): the look columns, in the order of space.look, natural units
                            # -> images (B, C, H, W), differentiable in look

For the same rows and seeds, ``develop`` at the rows' own look columns gives :meth:`Engine.render_seeded`'s images
up to their final 8-bit quantization (which it may skip, or pass straight through). The codebook fits refine
looks through it (``fit.codebook.look_steps``, :mod:`scenefit.fitting.look_refine`); an engine without it
simply does not offer that refinement (:data:`LOOK_PARTS` names the method).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scenefit.attributes import AttributeSpace
from scenefit.seeding import draw_seeds

LABEL_KINDS = ("class", "mask")
LOOK_PARTS = "render_look_parts"
"""The optional engine method that splits a render at its look stage (module doc)."""
Develop = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``develop(look (B, L), frames (B, C, H, W)) -> images (B, C, H, W)`` of ``render_look_parts`` (module doc)."""


@dataclass(frozen=True)
class LabelTable:
    """The label values an engine emits.

    names: one name per class, indexed by class id ``0 .. n-1`` (the value in ``out["label"]``).
    colors: optional RGB (0..255) per class, for mask overlays and dataset cards.
    ignore_index: a mask value that marks unlabeled pixels (e.g. 255), or None.
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "colors", tuple(tuple(int(v) for v in c) for c in self.colors))
        if len(self.names) < 2:
            raise ValueError(f"a label table needs at least 2 classes, got {len(self.names)}")
        if self.colors and len(self.colors) != len(self.names):
            raise ValueError(f"label table: {len(self.names)} names but {len(self.colors)} colours")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.colors):
            raise ValueError("label table colours must be RGB triples in 0..255")
        if self.ignore_index is not None and 0 <= self.ignore_index < len(self.names):
            raise ValueError(f"label table ignore_index {self.ignore_index} is a class id (0..{len(self.names) - 1})")

    @property
    def num_classes(self) -> int:
        """Number of classes ``n``."""
        return len(self.names)

    def to_dict(self) -> dict:
        """JSON-ready form: ``{"names", "colors", "ignore_index"}`` (inverse of :meth:`from_dict`)."""
        return {"names": list(self.names), "colors": [list(c) for c in self.colors], "ignore_index": self.ignore_index}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelTable":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["names"]), tuple(tuple(c) for c in d.get("colors", ())), d.get("ignore_index"))


class Engine(ABC):
    """Base class of rendering engines.

    Subclasses set :attr:`space`, :attr:`channels`, :attr:`height`, :attr:`width`,
    :attr:`label_kind` (``"class"`` or ``"mask"``) and :attr:`labels`, and implement
    :meth:`render_seeded`. They may override :meth:`sample_initial` (the user's prior
    over scenes; uniform by default), :meth:`describe` (add everything else that
    changes a render, e.g. a texture bank's hash) and :meth:`resized`, and may define
    the optional ``render_look_parts`` (module doc).
    """

    name: str = "engine"
    differentiable: bool = False
    label_kind: str = "class"
    labels: LabelTable
    space: AttributeSpace
    channels: int
    height: int
    width: int
    spec: dict | None = None  # set by make_engine: the name and args this engine was built from

    @abstractmethod
    def render_seeded(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render ``attrs`` (B, D) in natural units; row ``i`` depends only on ``(attrs[i], seeds[i])``.

        Returns:
            ``"image"`` (B, C, H, W) float32 in [0, 1] and ``"label"`` (B,) or (B, H, W) int64, on ``attrs.device``.
        """

    def render(self, attrs: torch.Tensor, generator: torch.Generator | None = None, seeds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Render ``attrs`` (B, D) with one seed per row: ``seeds`` (B,) int64, or drawn from ``generator``.

        ``generator=None`` means a generator seeded with 0, so the engine is then a fixed function of ``attrs``.
        Returns :meth:`render_seeded`'s dict plus ``"seed"`` (B,) int64.
        """
        if seeds is None:
            seeds = draw_seeds(attrs.shape[0], generator)
        elif seeds.shape != (attrs.shape[0],):
            raise ValueError(f"seeds must have shape ({attrs.shape[0]},) for {attrs.shape[0]} rows, got {tuple(seeds.shape)}")
        out = self.render_seeded(attrs, seeds)
        out["seed"] = seeds.to(torch.int64).clone()
        return out

    def images(self, attrs: torch.Tensor, generator: torch.Generator | None = None, seeds: torch.Tensor | None = None) -> torch.Tensor:
        """Image-only view of :meth:`render`: (B, D) -> (B, C, H, W)."""
        return self.render(attrs, generator, seeds)["image"]

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The engine's initial scene distribution (the user's prior): (n, D) natural units. Uniform by default."""
        return self.space.sample_uniform(n, generator if generator is not None else torch.Generator().manual_seed(0))

    def initial_centre(self) -> torch.Tensor:
        """Centre of :meth:`sample_initial` (D,): circular mean for periodic, mean for bounded, mode for categorical.

        The base class estimates it from 4,096 seeded draws; engines with a known centre override it.
        """
        x = self.sample_initial(4096, torch.Generator().manual_seed(12345)).double()
        out = []
        for i, a in enumerate(self.space):
            col = x[:, i]
            if a.categorical:
                out.append(float(torch.bincount(col.round().long(), minlength=a.num_categories).argmax()))
            elif a.periodic:
                phase = (col - a.low) / a.span * 2 * math.pi
                mean = torch.atan2(phase.sin().mean(), phase.cos().mean()) % (2 * math.pi)
                out.append(float(a.low + mean / (2 * math.pi) * a.span))
            else:
                out.append(float(col.mean()))
        return self.space.clamp(torch.tensor([out], dtype=torch.float32))[0]

    def describe(self) -> dict:
        """JSON-ready identity, compared as a whole to check that a checkpoint fits this engine.

        Holds the class, the spec it was built from, the image size, the label table and the attributes;
        subclasses add whatever else changes a render.
        """
        cls = type(self)
        return {
            "engine": self.name,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "spec": self.spec,
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "label_kind": self.label_kind,
            "labels": self.labels.to_dict(),
            "attributes": self.space.to_dict(),
        }

    def resized(self, height: int, width: int) -> "Engine":
        """This engine rendering at ``height`` × ``width``: by default, full renders area-resized (masks: nearest)."""
        if (height, width) == (self.height, self.width):
            return self
        return ResizedEngine(self, height, width)

    def close(self) -> None:
        """Release held resources (a GL context...); the next render may recreate them."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ResizedEngine(Engine):
    """``inner`` rendered at its own size, then resized to ``height`` × ``width`` (images by area, masks by nearest).

    Where ``inner`` has the optional look stage (``render_look_parts``, module doc), so does this engine: the frames
    are ``inner``'s, at its own size, and ``develop`` is ``inner``'s followed by the images' resize (differentiable),
    so it gives this engine's images. Where ``inner`` has none, neither has this engine.
    """

    def __init__(self, inner: Engine, height: int, width: int) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"resized engine size must be positive, got {height}x{width}")
        self.inner = inner
        self.name, self.differentiable, self.label_kind = inner.name, inner.differentiable, inner.label_kind
        self.labels, self.space, self.channels = inner.labels, inner.space, inner.channels
        self.height, self.width, self.spec = height, width, inner.spec
        if hasattr(inner, LOOK_PARTS):  # the method is optional: offered only when there is a look stage to pass on
            setattr(self, LOOK_PARTS, self._render_look_parts)

    def _resize_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H_inner, W_inner) -> (B, C, height, width) by area, differentiable."""
        return F.interpolate(images, size=(self.height, self.width), mode="area")

    def render_seeded(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """``inner``'s render of ``attrs`` (B, D), then ``"image"`` area-resized to (B, C, height, width) in [0, 1] and a
        (B, H, W) ``"label"`` mask nearest-resized to (B, height, width); (B,) labels pass as they are."""
        out = dict(self.inner.render_seeded(attrs, seeds))
        out["image"] = self._resize_images(out["image"])
        if out["label"].dim() == 3:
            out["label"] = F.interpolate(out["label"][:, None].float(), size=(self.height, self.width), mode="nearest")[:, 0].long()
        return out

    def _render_look_parts(self, attrs: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, Develop]:
        """``render_look_parts`` (module doc) when ``inner`` has it: ``inner``'s frames (B, C, H_inner, W_inner) and
        ``develop(look (B, L), frames) -> images (B, C, height, width)``, ``inner``'s develop then the images' resize."""
        frames, develop = getattr(self.inner, LOOK_PARTS)(attrs, seeds)

        def develop_resized(look: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
            return self._resize_images(develop(look, frames))

        return frames, develop_resized

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``inner``'s initial scenes (n, D) in natural units (the size does not change them)."""
        return self.inner.sample_initial(n, generator)

    def initial_centre(self) -> torch.Tensor:
        """``inner``'s initial centre (D,) in natural units."""
        return self.inner.initial_centre()

    def describe(self) -> dict:
        """``inner``'s identity with this ``height`` and ``width`` and ``resized_from`` ([H_inner, W_inner])."""
        return {**self.inner.describe(), "height": self.height, "width": self.width, "resized_from": [self.inner.height, self.inner.width]}

    def close(self) -> None:
        """Close ``inner``."""
        self.inner.close()


class EngineRenderer:
    """R with the surrogate's call shape: ``(attrs (B, D), soft=None) -> images (B, C, H, W)`` on ``device``.

    Every call draws fresh row seeds from ``generator`` (seeded with 0 when None); with ``fixed_seed`` every call
    uses the same seeds instead (common random numbers: row i always gets the same nuisance). A non-differentiable
    engine gets detached CPU rows; a differentiable one keeps the caller's graph and device.
    """

    def __init__(self, engine: Engine, generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                 fixed_seed: int | None = None) -> None:
        self.engine = engine
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.device = torch.device(device)
        self.fixed_seed = fixed_seed

    def __call__(self, attrs: torch.Tensor, soft: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        if soft:
            raise ValueError(f"engine '{self.engine.name}' renders categories, not probabilities: fit with categorical columns fixed")
        g = torch.Generator().manual_seed(self.fixed_seed) if self.fixed_seed is not None else self.generator
        seeds = draw_seeds(attrs.shape[0], g)
        if self.engine.differentiable:
            return self.engine.render_seeded(attrs, seeds)["image"].to(self.device)
        return self.engine.render_seeded(attrs.detach().cpu(), seeds)["image"].to(self.device)


def check_engine(engine: Engine, where: str = "engine") -> None:
    """Raise ``ValueError`` naming ``where`` if ``engine`` breaks the contract's static parts (no render needed)."""
    if not isinstance(engine, Engine):
        raise ValueError(f"{where}: {type(engine).__name__} is not a scenefit.Engine subclass")
    if not isinstance(getattr(engine, "space", None), AttributeSpace):
        raise ValueError(f"{where}: engine '{engine.name}' has no AttributeSpace in .space")
    for attr in ("channels", "height", "width"):
        v = getattr(engine, attr, None)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where}: engine '{engine.name}'.{attr} must be a positive int, got {v!r}")
    if engine.label_kind not in LABEL_KINDS:
        raise ValueError(f"{where}: engine '{engine.name}'.label_kind must be one of {list(LABEL_KINDS)}, got {engine.label_kind!r}")
    if not isinstance(getattr(engine, "labels", None), LabelTable):
        raise ValueError(f"{where}: engine '{engine.name}' has no LabelTable in .labels")
