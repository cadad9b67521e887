"""Street scenes as plain data: the attribute table, the camera, roads, boxes (no OpenGL here).

A :class:`Scenes` batch is numpy data that knows nothing about the renderer: per
frame a pinhole :class:`Camera`, ground :class:`Ribbons` (road, kerbs, sidewalks)
that follow the road's arc, :class:`Boxes` (buildings, trees, poles, signs,
people, cars, lane dashes), and sky/terrain/sun colours.
:func:`~scenefit.engines.street_layout.layout_scenes` builds a batch from
attribute rows; :mod:`~scenefit.engines.street_mesh` turns it into triangles.

World frame (metres): ``x`` to the right, ``y`` up, ``z`` forward along the road
at the camera. The road centreline is a circular arc of signed curvature
``kappa`` (1/m, positive bends right) through the origin with heading ``+z``; a
point at arc length ``s`` and lateral offset ``d`` (positive right) is
``c(s) + d * r(s)`` with heading ``phi = kappa * s`` and right normal
``r = (cos phi, 0, -sin phi)``. Right-hand traffic: the camera drives in the
rightmost lane, heading ``+z``.

Attributes (natural units; categorical values are indices, ``lane_count`` index
``k`` means ``k + 1`` lanes):

=====================  =======  =======  ======  ==============================================
name                   low      high     unit    meaning
=====================  =======  =======  ======  ==============================================
camera_height          1.2      2.6      m       camera above the road surface
camera_pitch           -3       8        deg     downward tilt (positive looks down)
road_width             5        20       m       kerb to kerb
lane_count             "1".."4"          cat     lanes across the road, all same direction
sidewalk_width_left    0        6        m       raised sidewalk, left side
sidewalk_width_right   0        6        m       raised sidewalk, right side
building_height_left   3        40       m       mean facade height (each x U(0.6, 1.4))
building_height_right  3        40       m
building_density_left  0        1        prob    chance that a frontage slot holds a building
building_density_right 0        1        prob
building_setback_left  0        20       m       sidewalk outer edge to facade
building_setback_right 0        20       m
vegetation_density     0        1        prob    chance per tree slot (bushes at half of it)
car_density            0        1        prob    chance per car slot in every lane
car_offset             0        10       m       shift of the car slots along the lanes
pole_spacing           8        60       m       distance between poles on each side
person_density         0        1        prob    chance per pedestrian slot (x 0.6)
road_curvature         -0.008   0.008    1/m     signed curvature, positive bends right
sun_brightness         0        1        rel     0 overcast (flat light) .. 1 full sun
sky_color              0        1        rel     0 overcast grey .. 1 clear blue
=====================  =======  =======  ======  ==============================================

Per-frame randomness (exact positions, sizes, colours, sun direction) comes only
from that frame's ``numpy.random.Generator`` passed to ``layout_scenes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from scenefit.attributes import Attribute
from scenefit.engines.labels import label

STREET_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("camera_height", 1.2, 2.6, "m"),
    Attribute("camera_pitch", -3.0, 8.0, "deg"),
    Attribute("road_width", 5.0, 20.0, "m"),
    Attribute("lane_count", unit="lanes", categories=("1", "2", "3", "4")),
    Attribute("sidewalk_width_left", 0.0, 6.0, "m"),
    Attribute("sidewalk_width_right", 0.0, 6.0, "m"),
    Attribute("building_height_left", 3.0, 40.0, "m"),
    Attribute("building_height_right", 3.0, 40.0, "m"),
    Attribute("building_density_left", 0.0, 1.0, "prob"),
    Attribute("building_density_right", 0.0, 1.0, "prob"),
    Attribute("building_setback_left", 0.0, 20.0, "m"),
    Attribute("building_setback_right", 0.0, 20.0, "m"),
    Attribute("vegetation_density", 0.0, 1.0, "prob"),
    Attribute("car_density", 0.0, 1.0, "prob"),
    Attribute("car_offset", 0.0, 10.0, "m"),
    Attribute("pole_spacing", 8.0, 60.0, "m"),
    Attribute("person_density", 0.0, 1.0, "prob"),
    Attribute("road_curvature", -0.008, 0.008, "1/m"),
    Attribute("sun_brightness", 0.0, 1.0, "rel"),
    Attribute("sky_color", 0.0, 1.0, "rel"),
)

ROAD = label("road").id
SIDEWALK = label("sidewalk").id
BUILDING = label("building").id
POLE = label("pole").id
TRAFFIC_LIGHT = label("traffic light").id
TRAFFIC_SIGN = label("traffic sign").id
VEGETATION = label("vegetation").id
TERRAIN = label("terrain").id
SKY = label("sky").id
PERSON = label("person").id
CAR = label("car").id

ROAD_Y = 0.03  # road surface above the terrain plane (m); keeps the depth test decisive
KERB_Y = 0.18  # sidewalk top (m)


@dataclass(frozen=True)
class LayoutConfig:
    """Fixed geometry of the street generator (metres unless stated)."""

    road_length: float = 400.0  # arc length of road drawn ahead
    object_range: float = 150.0  # objects are placed up to this arc length
    road_samples: int = 33  # arc samples of the ground ribbons
    car_spacing: float = 10.0  # slot period along a lane
    tree_spacing: float = 8.0
    person_spacing: float = 3.0
    sky_radius: float = 1500.0
    terrain_radius: float = 1450.0


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at ``(x, height_m, 0)`` looking along ``+z``, pitched down by ``pitch_deg``.

    Pixel coordinates: ``u`` from the left edge, ``v`` from the top edge; pixel
    ``(row, col)`` covers ``[col, col+1) x [row, row+1)``. Principal point at the
    image centre, square pixels of focal length ``focal_px``.
    """

    height_m: float
    pitch_deg: float
    focal_px: float
    image_height: int
    image_width: int
    x: float = 0.0
    near: float = 0.3
    far: float = 4000.0

    @property
    def position(self) -> np.ndarray:
        """(3,) camera centre in world metres."""
        return np.array([self.x, self.height_m, 0.0])

    def horizon_row(self) -> float:
        """Image ``v`` (px from the top) of the horizon of the ground plane: ``H/2 - f tan(pitch)``."""
        return self.image_height / 2 - self.focal_px * math.tan(math.radians(self.pitch_deg))

    def view_matrix(self) -> np.ndarray:
        """(4, 4) world -> camera (x right, y up, z backward, OpenGL convention)."""
        p = math.radians(self.pitch_deg)
        right = np.array([1.0, 0.0, 0.0])
        up = np.array([0.0, math.cos(p), math.sin(p)])
        fwd = np.array([0.0, -math.sin(p), math.cos(p)])
        c = self.position
        view = np.eye(4)
        view[0, :3], view[0, 3] = right, -right @ c
        view[1, :3], view[1, 3] = up, -up @ c
        view[2, :3], view[2, 3] = -fwd, fwd @ c
        return view

    def projection_matrix(self) -> np.ndarray:
        """(4, 4) camera -> clip for the intrinsics, near/far planes in metres."""
        f, n, fa = self.focal_px, self.near, self.far
        proj = np.zeros((4, 4))
        proj[0, 0] = 2 * f / self.image_width
        proj[1, 1] = 2 * f / self.image_height
        proj[2, 2] = -(fa + n) / (fa - n)
        proj[2, 3] = -2 * fa * n / (fa - n)
        proj[3, 2] = -1.0
        return proj

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project world points (N, 3) m to pixels (N, 2) ``(u, v)``; points must be in front of the camera."""
        pc = (self.view_matrix() @ np.c_[points, np.ones(len(points))].T).T
        depth = -pc[:, 2]
        u = self.image_width / 2 + self.focal_px * pc[:, 0] / depth
        v = self.image_height / 2 - self.focal_px * pc[:, 1] / depth
        return np.stack([u, v], axis=1)


@dataclass(frozen=True)
class Boxes:
    """N oriented boxes standing on their base, sorted by frame.

    frame (N,) int: index of the frame in its :class:`Scenes`; base (N, 3) m:
    bottom-face centre; size (N, 3) m: (width across, height, length along the
    heading); yaw (N,) rad: heading, 0 = ``+z``, positive turns right; color (N, 3)
    float in [0, 1]: albedo; label_id (N,) int: Cityscapes id.
    """

    frame: np.ndarray
    base: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    color: np.ndarray
    label_id: np.ndarray

    def __len__(self) -> int:
        return len(self.yaw)

    @staticmethod
    def empty() -> "Boxes":
        """No boxes."""
        z3 = np.zeros((0, 3))
        return Boxes(np.zeros(0, dtype=np.int64), z3, z3, np.zeros(0), z3, np.zeros(0, dtype=np.int64))

    def select(self, keep: np.ndarray) -> "Boxes":
        """Boxes where the (N,) boolean mask ``keep`` is true (order kept)."""
        return Boxes(*(getattr(self, k)[keep] for k in _BOX_FIELDS))

    def corners(self) -> np.ndarray:
        """(N, 8, 3) world corners: bottom face (4) then top face (4), same order."""
        sx = np.array([-0.5, 0.5, 0.5, -0.5] * 2)[None]
        sz = np.array([-0.5, -0.5, 0.5, 0.5] * 2)[None]
        sy = np.array([0.0] * 4 + [1.0] * 4)[None]
        lx, ly, lz = sx * self.size[:, :1], sy * self.size[:, 1:2], sz * self.size[:, 2:3]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        x = self.base[:, :1] + lx * c + lz * s
        z = self.base[:, 2:3] - lx * s + lz * c
        return np.stack([x, self.base[:, 1:2] + ly, z], axis=-1)


_BOX_FIELDS = ("frame", "base", "size", "yaw", "color", "label_id")


@dataclass(frozen=True)
class Ribbons:
    """R ground strips per frame following the road arc: lateral offsets d0..d1 (m) at heights y0..y1 (m).

    Arrays (B, R); color (B, R, 3) float in [0, 1]; label_id (B, R) int. A strip
    with ``d0 == d1`` and ``y0 != y1`` is a vertical face (a kerb).
    """

    d0: np.ndarray
    d1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    color: np.ndarray
    label_id: np.ndarray


@dataclass(frozen=True)
class Scenes:
    """B street frames as plain numpy data (everything a renderer needs).

    Per-frame arrays have a leading B axis: camera_height (m), camera_pitch (deg),
    camera_x (m), curvature (1/m), lanes (count), s (B, S) arc samples (m) of the
    ribbons, colours (B, 3) in [0, 1], sun_dir (B, 3) unit vectors towards the
    sun, sun_brightness in [0, 1]. ``boxes`` holds the objects of every frame.
    """

    focal_px: float
    image_height: int
    image_width: int
    camera_height: np.ndarray
    camera_pitch: np.ndarray
    camera_x: np.ndarray
    curvature: np.ndarray
    lanes: np.ndarray
    s: np.ndarray
    ribbons: Ribbons
    boxes: Boxes
    terrain_color: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    sun_dir: np.ndarray
    sun_brightness: np.ndarray

    def __len__(self) -> int:
        return len(self.camera_height)

    def camera(self, i: int) -> Camera:
        """The :class:`Camera` of frame ``i``."""
        return Camera(float(self.camera_height[i]), float(self.camera_pitch[i]), self.focal_px, self.image_height,
                      self.image_width, x=float(self.camera_x[i]))

    def frames(self, lo: int, hi: int) -> "Scenes":
        """Frames ``lo .. hi-1`` as a new batch (box frame indices renumbered from 0)."""
        a, b = np.searchsorted(self.boxes.frame, [lo, hi])
        boxes = Boxes(*(getattr(self.boxes, k)[a:b] for k in _BOX_FIELDS))
        boxes = replace(boxes, frame=boxes.frame - lo)
        ribbons = Ribbons(*(getattr(self.ribbons, f.name)[lo:hi] for f in fields(Ribbons)))
        per_frame = {f.name: getattr(self, f.name)[lo:hi] for f in fields(self)
                     if f.name not in ("focal_px", "image_height", "image_width", "ribbons", "boxes")}
        return replace(self, ribbons=ribbons, boxes=boxes, **per_frame)


def arc_point(kappa: float | np.ndarray, s: np.ndarray, d: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ``(x, z, heading)`` of arc length ``s`` (m) and lateral offset ``d`` (m) on the road arc.

    ``kappa`` (1/m), ``s`` and ``d`` broadcast; sinc forms keep ``kappa = 0`` exact.
    """
    s = np.asarray(s, dtype=np.float64)
    phi = kappa * s
    cx = 0.5 * kappa * s * s * np.sinc(phi / (2 * np.pi)) ** 2  # (1 - cos phi) / kappa
    cz = s * np.sinc(phi / np.pi)  # sin phi / kappa
    return cx + d * np.cos(phi), cz - d * np.sin(phi), phi
