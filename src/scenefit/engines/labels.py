"""Cityscapes label table (also used by KITTI semantics), frozen.

Ids are the official Cityscapes ``labelIds`` (what ``*_gtFine_labelIds.png`` and
KITTI ``semantic/*.png`` store); train ids are the 19 evaluated classes
(``0 .. 18``) with ``255`` = ignore. Values follow cityscapesScripts
``helpers/labels.py``.

Example::

    train = id_to_train_id(label_ids)         # (B, H, W) int64, 255 = ignore
    rgb = colorize(train)                     # (B, 3, H, W) float32 in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = 255
NUM_CLASSES = 19


@dataclass(frozen=True)
class Label:
    """One Cityscapes label: ``name``, ``id`` (labelIds value), ``train_id`` (0..18 or 255), ``color`` (RGB 0..255)."""

    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, (0, 0, 0)),
    Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)),
    Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)),
    Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)),
    Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
)

_BY_NAME = {lab.name: lab for lab in LABELS}

# Names of the 19 evaluated classes, indexed by train id.
CLASS_NAMES: tuple[str, ...] = tuple(
    lab.name for lab in sorted((x for x in LABELS if x.train_id != IGNORE_INDEX), key=lambda x: x.train_id)
)
assert len(CLASS_NAMES) == NUM_CLASSES


def label(name: str) -> Label:
    """The :class:`Label` called ``name`` (e.g. ``"car"``); raises with the known names."""
    if name not in _BY_NAME:
        raise KeyError(f"unknown Cityscapes label '{name}'; known: {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def id_to_train_id_table() -> torch.Tensor:
    """Lookup table (256,) int64: Cityscapes id -> train id; every id outside the table maps to 255."""
    table = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
    for lab in LABELS:
        table[lab.id] = lab.train_id
    return table


def id_to_train_id(ids: torch.Tensor) -> torch.Tensor:
    """Map Cityscapes ids (any shape, integer 0..255) to train ids (same shape, int64, 255 = ignore)."""
    return id_to_train_id_table().to(ids.device)[ids.long()]


def train_id_palette() -> torch.Tensor:
    """Overlay colours (256, 3) uint8 indexed by train id; 255 (ignore) and unused rows are black."""
    pal = torch.zeros((256, 3), dtype=torch.uint8)
    for lab in LABELS:
        if lab.train_id != IGNORE_INDEX:
            pal[lab.train_id] = torch.tensor(lab.color, dtype=torch.uint8)
    return pal


def colorize(train_ids: torch.Tensor) -> torch.Tensor:
    """Colour a train-id map (B, H, W) int into (B, 3, H, W) float32 in [0, 1] with the Cityscapes colours."""
    rgb = train_id_palette().to(train_ids.device)[train_ids.long().clamp(0, 255)]  # (B, H, W, 3)
    return rgb.permute(0, 3, 1, 2).float() / 255.0
