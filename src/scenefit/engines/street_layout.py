"""Street layout: attribute rows -> a :class:`~scenefit.engines.street_scene.Scenes` batch, vectorized.

Objects sit in slots along the road arc (frontage slots for buildings, regular
slots for trees, bushes, poles, people, cars and lane dashes). The number of
slots of each kind is fixed by :class:`LayoutConfig`, never by the attributes,
so every frame consumes the same sequence of random draws; attributes only
decide which slots are kept and where they land. All frames of a batch are
built with array operations over ``(B, slots)``; no Python loop over objects.
"""

from __future__ import annotations

import numpy as np

from scenefit.engines.street_scene import (
    BUILDING,
    CAR,
    KERB_Y,
    PERSON,
    POLE,
    ROAD,
    ROAD_Y,
    SIDEWALK,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    VEGETATION,
    Boxes,
    LayoutConfig,
    Ribbons,
    Scenes,
    arc_point,
)


def lane_centers(road_width: np.ndarray, lanes: np.ndarray, max_lanes: int = 4) -> np.ndarray:
    """Lateral offsets (m) of lane centres, left to right: (B, max_lanes); unused lanes are NaN."""
    w = road_width / lanes
    centers = -road_width / 2 + w * (np.arange(max_lanes) + 0.5)
    return np.where(np.arange(max_lanes) < lanes, centers, np.nan)


class _Draws:
    """Uniform draws in blocks: each call gives (B, *shape), row i from ``rngs[i]`` only."""

    def __init__(self, rngs: list[np.random.Generator]) -> None:
        self.rngs = rngs

    def __call__(self, *shape: int) -> np.ndarray:
        return np.stack([r.random(shape) for r in self.rngs])


class _Objects:
    """Collects candidate boxes as (B, n) arrays with a keep mask; :meth:`boxes` compacts them."""

    def __init__(self, batch: int) -> None:
        self.b = batch
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in ("keep", "s", "d", "y", "w", "h", "l", "yaw", "color", "label")}

    def add(self, label_id: int, keep, s, d, y, w, h, l, color, yaw=0.0) -> None:
        """Candidates of one kind; every argument broadcasts to ``keep``'s (B, ...) shape, colours to (B, ..., 3)."""
        shape = np.broadcast_shapes(np.shape(keep), np.shape(s))
        for k, val in (("keep", keep), ("s", s), ("d", d), ("y", y), ("w", w), ("h", h), ("l", l), ("yaw", yaw)):
            self.cols[k].append(np.broadcast_to(val, shape).reshape(self.b, -1))
        self.cols["color"].append(np.broadcast_to(np.asarray(color, dtype=np.float64), shape + (3,)).reshape(self.b, -1, 3))
        self.cols["label"].append(np.full(self.cols["s"][-1].shape, label_id, dtype=np.int64))

    def boxes(self, kappa: np.ndarray) -> Boxes:
        """Kept candidates as world :class:`Boxes`, frame-major; ``kappa`` (B,) places them on each frame's arc."""
        c = {k: np.concatenate(v, axis=1) for k, v in self.cols.items()}
        keep = c["keep"].astype(bool)
        frame = np.nonzero(keep)[0]
        x, z, phi = arc_point(kappa[frame], c["s"][keep], c["d"][keep])
        base = np.stack([x, c["y"][keep], z], axis=1)
        size = np.stack([c["w"][keep], c["h"][keep], c["l"][keep]], axis=1)
        return Boxes(frame, base, size, phi + c["yaw"][keep], np.clip(c["color"][keep], 0.0, 1.0), c["label"][keep])


_FACADES = np.array([[0.72, 0.66, 0.55], [0.60, 0.36, 0.28], [0.55, 0.55, 0.56], [0.85, 0.83, 0.78], [0.80, 0.72, 0.50], [0.45, 0.42, 0.40]])
_CAR_PAINT = np.array([[0.9, 0.9, 0.9], [0.08, 0.08, 0.09], [0.6, 0.61, 0.63], [0.35, 0.36, 0.38], [0.6, 0.1, 0.08], [0.12, 0.22, 0.5]])


def _side(obj: _Objects, u: _Draws, v: dict[str, np.ndarray], side: int, s_max: np.ndarray, cfg: LayoutConfig) -> None:
    """Buildings, trees, bushes, poles (+ signs, lights) and people on one side (-1 left, +1 right). Columns (B, 1)."""
    key = "left" if side < 0 else "right"
    half, sw, setback = v["road_width"] / 2, v[f"sidewalk_width_{key}"], v[f"building_setback_{key}"]
    rng_max = cfg.object_range

    # Buildings: consecutive frontage slots, each kept with probability = density.
    n = int(rng_max / 8.0) + 2
    r = u(n, 10)
    length, gap = 8.0 + 14.0 * r[..., 0], 0.5 + 2.5 * r[..., 1]
    start = -12.0 + 6.0 * r[:, :1, 9] + np.concatenate([np.zeros((len(r), 1)), np.cumsum(length + gap, axis=1)[:, :-1]], axis=1)
    keep = (r[..., 2] < v[f"building_density_{key}"]) & (start < s_max)
    depth = 8.0 + 8.0 * r[..., 3]
    height = np.maximum(3.0, v[f"building_height_{key}"] * (0.6 + 0.8 * r[..., 4]))
    color = _FACADES[(r[..., 5] * len(_FACADES)).astype(int)] + 0.12 * (r[..., 6:9] - 0.5)
    obj.add(BUILDING, keep, start + length / 2, side * (half + sw + setback + depth / 2), 0.0, depth, height, length, color)

    # Trees between sidewalk and facade (at the sidewalk's outer edge when the setback is small).
    n = int(rng_max / cfg.tree_spacing) + 2
    r = u(n, 11)
    s = -5.0 + cfg.tree_spacing * np.arange(n) + 4.0 * (r[..., 0] - 0.5)
    keep = (r[..., 1] < v["vegetation_density"]) & (s < s_max)
    d = side * (half + sw + np.maximum(setback, 1.5) * (0.3 + 0.4 * r[..., 2]))
    trunk_h, crown_w = 1.8 + 1.2 * r[..., 3], 2.5 + 2.0 * r[..., 4]
    trunk_c = np.array([0.33, 0.24, 0.16]) * (0.8 + 0.4 * r[..., 7:8])
    obj.add(VEGETATION, keep, s, d, 0.0, 0.3, trunk_h + 0.5, 0.3, trunk_c)
    crown_c = np.array([0.22, 0.40, 0.14]) + 0.14 * (r[..., 8:11] - 0.5)
    obj.add(VEGETATION, keep, s, d, trunk_h, crown_w, 2.5 + 2.5 * r[..., 5], crown_w, crown_c, yaw=r[..., 6] * np.pi / 2)

    # Bushes just in front of the facade line.
    n = int(rng_max / 5.0) + 2
    r = u(n, 8)
    s = -5.0 + 5.0 * np.arange(n) + 2.0 * (r[..., 0] - 0.5)
    keep = (r[..., 1] < 0.5 * v["vegetation_density"]) & (s < s_max)
    bush_c = np.array([0.25, 0.38, 0.15]) + 0.12 * (r[..., 5:8] - 0.5)
    obj.add(VEGETATION, keep, s, side * (half + sw + np.maximum(setback - 1.0, 0.8)), 0.0,
            1.5 + 2.0 * r[..., 2], 0.6 + 0.9 * r[..., 3], 2.0 + 2.0 * r[..., 4], bush_c)

    # Poles at the kerb every pole_spacing m; some carry a traffic sign or a traffic light.
    n = int(rng_max / 8.0) + 1
    r = u(n, 6)
    spacing = v["pole_spacing"]
    s = spacing * (r[:, :1, 0] + np.arange(n))
    keep = s < s_max
    d = side * (half + np.minimum(0.5, np.maximum(sw, 0.6) / 2))
    pole_h = 6.0 + 3.0 * r[..., 1]
    obj.add(POLE, keep, s, d, 0.0, 0.18, pole_h, 0.18, np.array([0.45, 0.45, 0.47]) * (0.85 + 0.3 * r[..., 2:3]))
    kind = r[..., 3]
    sign_c = np.array([0.75, 0.75, 0.8]) * (0.6 + 0.6 * r[..., 4:5])
    obj.add(TRAFFIC_SIGN, keep & (kind < 0.35), s, d, 2.0 + 0.8 * r[..., 5], 0.7, 0.7, 0.06, sign_c)
    obj.add(TRAFFIC_LIGHT, keep & (kind > 0.85), s, d - side * 0.25, pole_h - 1.2, 0.32, 0.9, 0.3, [0.1, 0.1, 0.1])

    # People on the sidewalk: legs and upper body.
    n = int(rng_max / cfg.person_spacing) + 2
    r = u(n, 9)
    s = cfg.person_spacing * np.arange(n) + 2.0 * (r[..., 0] - 0.5)
    keep = (r[..., 1] < 0.6 * v["person_density"]) & (s < s_max)
    d = side * (half + 0.3 + np.maximum(sw - 0.6, 0.0) * r[..., 2])
    y0 = np.where(sw > 0, KERB_Y, 0.0)
    k = 0.85 + 0.25 * r[..., 3]
    yaw = 2 * np.pi * (r[..., 4] - 0.5)
    obj.add(PERSON, keep, s, d, y0, 0.35 * k, 0.85 * k, 0.25, np.array([0.2, 0.2, 0.25]) * (0.5 + r[..., 5:6]), yaw)
    obj.add(PERSON, keep, s, d, y0 + 0.85 * k, 0.42 * k, 0.85 * k, 0.27, 0.1 + 0.8 * r[..., 6:9], yaw)


def layout_scenes(values: np.ndarray, names: tuple[str, ...], rngs: list[np.random.Generator], focal_px: float,
                  image_height: int, image_width: int, cfg: LayoutConfig = LayoutConfig()) -> Scenes:
    """Lay out B frames from attribute rows ``values`` (B, D) (columns named ``names``, natural units).

    Frame ``i`` draws its randomness only from ``rngs[i]``, so it depends on
    ``(values[i], rngs[i])`` alone, never on the rest of the batch.
    """
    b = len(values)
    v = {name: values[:, i:i + 1].astype(np.float64) for i, name in enumerate(names)}  # (B, 1) columns
    u = _Draws(rngs)
    kappa = v["road_curvature"][:, 0]
    safe = np.maximum(np.abs(kappa), 1e-12)
    s_end = np.minimum(cfg.road_length, 1.4 / safe)[:, None]  # (B, 1)
    s_max = np.minimum(cfg.object_range, s_end)
    lanes = np.rint(v["lane_count"]).astype(int) + 1  # (B, 1)
    road_w, half = v["road_width"], v["road_width"] / 2
    centers = lane_centers(road_w, lanes)  # (B, 4)
    lane_w = road_w / lanes
    cam_x = np.take_along_axis(centers, lanes - 1, axis=1)[:, 0]  # rightmost lane

    obj = _Objects(b)
    _side(obj, u, v, -1, s_max, cfg)
    _side(obj, u, v, +1, s_max, cfg)

    # Cars: slots every car_spacing m in each lane, shifted by car_offset; the ego lane starts ahead of the camera.
    n = int(cfg.object_range / cfg.car_spacing) + 2
    r = u(4, n, 6)
    lane = np.arange(4)[None, :, None]
    slot = v["car_offset"][:, :, None] + cfg.car_spacing * (np.arange(n) + (0.37 * lane) % 1.0) - 6.0
    s = slot + 1.6 * (r[..., 0] - 0.5)  # (B, 4, n)
    ego = lane == (lanes - 1)[:, :, None]
    keep = (r[..., 1] < v["car_density"][:, :, None]) & (s < s_max[:, :, None]) & (lane < lanes[:, :, None])
    keep &= s > np.where(ego, 9.0, 3.0)
    d = np.nan_to_num(centers)[:, :, None] + (r[..., 2] - 0.5) * 0.5 * np.minimum(1.0, lane_w / 3.5)[:, :, None]
    paint = _CAR_PAINT[(r[..., 3] * len(_CAR_PAINT)).astype(int)] * (0.9 + 0.2 * r[..., 4:5])
    width = np.minimum(1.8, 0.85 * lane_w)[:, :, None]
    obj.add(CAR, keep, s, d, 0.25, width, 0.8, 4.3, paint)  # body
    obj.add(CAR, keep, s - 0.3, d, 1.05, 0.9 * width, 0.6, 2.3, 0.35 * paint + 0.05)  # cabin: darker glass

    # Dashed lane lines between lanes: flat boxes on the road surface.
    m = int(cfg.object_range / 9.0) + 2
    line = np.arange(3)[None, :, None]
    s = np.broadcast_to(9.0 * (np.arange(m) - 1.0), (b, 3, m))
    keep = (line < (lanes - 1)[:, :, None]) & (s < s_max[:, :, None])
    d = np.nan_to_num(centers[:, :3])[:, :, None] + lane_w[:, :, None] / 2
    obj.add(ROAD, keep, s, d, ROAD_Y, 0.15, 0.005, 3.0, [0.85, 0.85, 0.82])
    boxes = obj.boxes(kappa)

    # Ground strips: road, left sidewalk + kerb face, right sidewalk + kerb face.
    g = u(20)
    sl, sr = v["sidewalk_width_left"], v["sidewalk_width_right"]
    road_c = (0.22 + 0.18 * g[:, :1]) + 0.03 * (g[:, 1:4] - 0.5)
    walk_c = (0.50 + 0.18 * g[:, 4:5]) + np.array([0.02, 0.01, -0.01]) + 0.04 * (g[:, 5:8] - 0.5)
    kerb_l, kerb_r = np.where(sl > 0, KERB_Y, ROAD_Y), np.where(sr > 0, KERB_Y, ROAD_Y)
    ones = np.ones((b, 1))
    ribbons = Ribbons(
        d0=np.hstack([-half, -half - sl, -half, half, half]),
        d1=np.hstack([half, -half, -half, half + sr, half]),
        y0=np.hstack([ROAD_Y * ones, KERB_Y * ones, ROAD_Y * ones, KERB_Y * ones, ROAD_Y * ones]),
        y1=np.hstack([ROAD_Y * ones, KERB_Y * ones, kerb_l, KERB_Y * ones, kerb_r]),
        color=np.clip(np.stack([road_c, walk_c, 0.85 * walk_c, walk_c, 0.85 * walk_c], axis=1), 0.0, 1.0),
        label_id=np.tile([ROAD, SIDEWALK, SIDEWALK, SIDEWALK, SIDEWALK], (b, 1)),
    )
    t = np.linspace(0.0, 1.0, cfg.road_samples)
    s = -8.0 + (s_end + 8.0) * t**1.7  # (B, S), dense near the camera

    sky = v["sky_color"]
    horizon = (1 - sky) * np.array([0.80, 0.81, 0.83]) + sky * np.array([0.72, 0.83, 0.95]) + 0.06 * (g[:, 8:11] - 0.5)
    zenith = (1 - sky) * np.array([0.66, 0.68, 0.72]) + sky * np.array([0.22, 0.45, 0.85]) + 0.06 * (g[:, 11:14] - 0.5)
    az, el = 2 * np.pi * g[:, 14], np.radians(20.0 + 45.0 * g[:, 15])
    sun = np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=1)
    terrain = np.array([0.36, 0.42, 0.22]) + 0.12 * (g[:, 16:19] - 0.5)
    return Scenes(
        focal_px=float(focal_px), image_height=int(image_height), image_width=int(image_width),
        camera_height=v["camera_height"][:, 0], camera_pitch=v["camera_pitch"][:, 0], camera_x=cam_x,
        curvature=kappa, lanes=lanes[:, 0], s=s, ribbons=ribbons, boxes=boxes,
        terrain_color=np.clip(terrain, 0, 1), sky_horizon=np.clip(horizon, 0, 1), sky_zenith=np.clip(zenith, 0, 1),
        sun_dir=sun, sun_brightness=v["sun_brightness"][:, 0],
    )
