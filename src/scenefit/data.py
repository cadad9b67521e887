"""The sets a run works on: targets X_t, test images T, and the initial scenes, from a config or a folder.

``scenefit run`` synthesises X_t and T from the config's target distribution (rendered by
the target and test engine variants, then given the configured look and shift) and the initial
scenes from the initial distribution; every set is a pure function of the config and the
seed, so it is regenerated rather than stored. ``scenefit fit`` takes X_t from a folder
(no labels, no T). Only labels and true attributes of synthesised sets are known; they
are used for evaluation, never for fitting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Engine
from scenefit.looks import apply_look
from scenefit.scenarios import Mixture
from scenefit.seeding import derive_seeds, draw_seeds
from scenefit.shifts import apply_shift

LOOK_STREAM = 7  # derive_seeds stream of a look applied after a render
SHIFT_STREAM = 8  # ... and of a look shift applied after the look


@dataclass
class ImageSet:
    """Images with whatever is known about them.

    image: (N, C, H, W) float32 in [0, 1]. label: (N,) or (N, H, W) int64, or None (unlabeled).
    attrs: (N, D) true attributes in natural units, or None. names: one name per image (file names for folders).
    seeds: (N,) int64 render seeds of rendered sets, or None.
    """

    image: torch.Tensor
    label: torch.Tensor | None = None
    attrs: torch.Tensor | None = None
    names: list[str] = field(default_factory=list)
    seeds: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [f"target_{i:06d}" for i in range(self.image.shape[0])]

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def sha256(self) -> str:
        """Fingerprint of the 8-bit pixels and the labels (identical sets give identical digests)."""
        h = hashlib.sha256()
        h.update((self.image.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes())
        if self.label is not None:
            h.update(self.label.to(torch.int64).numpy().tobytes())
        return h.hexdigest()


@dataclass
class Problem:
    """What a run fits and evaluates: ``targets`` (X_t) and, when labeled, ``test`` (T); ``source`` describes them."""

    targets: ImageSet
    test: ImageSet | None
    source: dict

    def key_parts(self) -> dict:
        """What identifies the problem: the source description and the sets' digests."""
        return {"source": self.source, "targets": self.targets.sha256(), "test": self.test.sha256() if self.test is not None else None}


def render_rows(engine: Engine, attrs: torch.Tensor, seeds: torch.Tensor, look: tuple[str, dict] | None = None,
                chunk: int = 512, shift: tuple[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Render rows ``attrs`` (N, D) with per-row ``seeds`` (N,) in chunks, then apply ``look`` = (name, args), then
    ``shift`` = (name, level) (:mod:`scenefit.shifts`).

    Returns ``image`` (N, C, H, W) and ``label``; every row depends only on its own attributes and seed.
    """
    images, labels = [], []
    with torch.no_grad():
        for lo in range(0, attrs.shape[0], chunk):
            s = seeds[lo : lo + chunk]
            out = engine.render_seeded(attrs[lo : lo + chunk], s)
            img = out["image"]
            if look is not None:
                img = apply_look(look[0], img, derive_seeds(s, LOOK_STREAM), look[1])
            if shift is not None:
                img = apply_shift(img, shift[0], shift[1], derive_seeds(s, SHIFT_STREAM))
            images.append(img)
            labels.append(out["label"])
    return {"image": torch.cat(images), "label": torch.cat(labels)}


def sample_rows(space: AttributeSpace, dist: Mixture | None, engine: Engine, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` attribute rows (n, D) from mixture ``dist``, or the engine's ``sample_initial`` when it is None."""
    if dist is None:
        return engine.sample_initial(n, generator)
    return dist.sample(space, n, generator)[0]


def synthesize(engine: Engine, dist: Mixture | None, n: int, seed: int, look: tuple[str, dict] | None = None,
               shift: tuple[str, str] | None = None) -> ImageSet:
    """``n`` scenes drawn from ``dist`` (seeded) and rendered by ``engine`` (one seed per row), with ``look`` then
    ``shift``; the attributes and seeds do not depend on either."""
    g = torch.Generator().manual_seed(seed)
    attrs = sample_rows(engine.space, dist, engine, n, g)
    seeds = draw_seeds(n, g)
    out = render_rows(engine, attrs, seeds, look, shift=shift)
    return ImageSet(out["image"], out["label"], attrs, seeds=seeds)
