"""Scenes -> one triangle soup for the rasterizer (pure numpy, no OpenGL).

Vertices are 16 bytes: world position (3 float32) and RGBA bytes holding the
albedo and the Cityscapes id, so one upload carries both the image and the
label pass. Boxes outside a frame's view frustum are dropped here.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from scenefit.engines.street_scene import SKY, TERRAIN, LayoutConfig, Scenes, arc_point

FLAT_HEIGHT = 0.01  # boxes at most this tall (m) are drawn as their top face only

# Unit box faces as quads of Boxes.corners indices, all wound the same way seen from outside
# (tests check this), so back faces can be culled; the bottom face is needed under raised boxes.
_QUADS = np.array([[4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7], [0, 3, 2, 1]])
_BOX_TRIS = np.concatenate([_QUADS[:, [0, 1, 2]], _QUADS[:, [0, 2, 3]]], axis=1).reshape(-1)  # (36,)
_VPB = len(_BOX_TRIS)  # vertices per box


@lru_cache(maxsize=8)
def _env_template(cfg: LayoutConfig, k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Sky cylinder + terrain disc around the origin.

    Returns positions (E, 3) m and a per-vertex code (E,): sky gradient weight in
    [0, 1] (0 horizon colour, 1 zenith colour), or -1 for terrain.
    """
    a = 2 * np.pi * np.arange(k + 1) / k
    ring = np.stack([np.sin(a), np.zeros_like(a), np.cos(a)], axis=1)  # (k+1, 3)
    r = cfg.sky_radius
    levels = [(-50.0, 0.0), (0.0, 0.0), (r * math.tan(math.radians(35)), 1.0)]
    pos, code = [], []
    for (y0, w0), (y1, w1) in zip(levels[:-1], levels[1:]):
        p0, p1 = ring * r + [0, y0, 0], ring * r + [0, y1, 0]
        quad = np.stack([p0[:-1], p0[1:], p1[1:], p0[:-1], p1[1:], p1[:-1]], axis=1).reshape(-1, 3)
        pos.append(quad)
        code.append(np.tile([w0, w0, w1, w0, w1, w1], k))
    top = levels[-1][0]
    fan = np.stack([ring[:-1] * r + [0, top, 0], ring[1:] * r + [0, top, 0], np.tile([[0.0, 2 * top, 0.0]], (k, 1))], 1)
    pos.append(fan.reshape(-1, 3))
    code.append(np.ones(3 * k))
    disc = np.stack([ring[:-1] * cfg.terrain_radius, ring[1:] * cfg.terrain_radius, np.zeros((k, 3))], 1)
    pos.append(disc.reshape(-1, 3))
    code.append(-np.ones(3 * k))
    return np.concatenate(pos), np.concatenate(code)


def _rgba(color: np.ndarray, label_id: np.ndarray) -> np.ndarray:
    """Colours (N, 3) in [0, 1] and ids (N,) -> (N, 4) uint8."""
    out = np.empty((len(label_id), 4), dtype=np.uint8)
    out[:, :3] = np.rint(np.clip(color, 0.0, 1.0) * 255.0)
    out[:, 3] = label_id
    return out


def visible_boxes(scenes: Scenes) -> np.ndarray:
    """(N,) bool: boxes not entirely outside one plane of their frame's view frustum (behind, left, right, above, below)."""
    bx = scenes.boxes
    if len(bx) == 0:
        return np.zeros(0, dtype=bool)
    f = bx.frame
    p = np.radians(scenes.camera_pitch)[f][:, None]
    c = bx.corners()  # (N, 8, 3)
    rx = c[..., 0] - scenes.camera_x[f][:, None]
    ry = c[..., 1] - scenes.camera_height[f][:, None]
    depth = -np.sin(p) * ry + np.cos(p) * c[..., 2]
    up = np.cos(p) * ry + np.sin(p) * c[..., 2]
    fx, hw, hh = scenes.focal_px, scenes.image_width / 2, scenes.image_height / 2
    outside = (
        (depth < 0.3).all(1)
        | (fx * rx > hw * depth).all(1) | (-fx * rx > hw * depth).all(1)
        | (fx * up > hh * depth).all(1) | (-fx * up > hh * depth).all(1)
    )
    return ~outside


def scene_triangles(scenes: Scenes, cfg: LayoutConfig) -> tuple[np.ndarray, np.ndarray]:
    """Triangle soup of a batch of B frames, grouped for drawing front to back.

    Returns:
        vertices: (V, 4) float32 rows ``(x, y, z, rgba)`` in world metres; the last
            float's four bytes hold albedo RGB (uint8) and the Cityscapes id.
        ranges: (B, 4, 2) int ``(first, count)`` vertex ranges per frame: solid
            boxes (closed, same winding: cull back faces), flat boxes (top face
            only), ground ribbons, sky + terrain; drawn in this order.
    """
    b = len(scenes)
    env_pos, env_code = _env_template(cfg)
    e = len(env_pos)
    # Sky + terrain: (B, E) vertices centred under each camera.
    pos_env = env_pos[None] + np.stack([scenes.camera_x, np.zeros(b), np.zeros(b)], 1)[:, None]
    w = np.clip(env_code, 0, 1)[None, :, None]
    sky = (1 - w) * scenes.sky_horizon[:, None] + w * scenes.sky_zenith[:, None]
    col_env = np.where(env_code[None, :, None] < 0, scenes.terrain_color[:, None], sky)
    lab_env = np.tile(np.where(env_code < 0, TERRAIN, SKY), b)

    # Ribbons: quads between consecutive arc samples, (B, R, S-1, 6) vertices.
    rb = scenes.ribbons
    kap, s = scenes.curvature[:, None, None], scenes.s[:, None, :]
    x0, z0, _ = arc_point(kap, s, rb.d0[..., None])
    x1, z1, _ = arc_point(kap, s, rb.d1[..., None])
    inner = np.stack([x0, np.broadcast_to(rb.y0[..., None], x0.shape), z0], -1)  # (B, R, S, 3)
    outer = np.stack([x1, np.broadcast_to(rb.y1[..., None], x1.shape), z1], -1)
    quad = np.stack([inner[:, :, :-1], outer[:, :, :-1], outer[:, :, 1:], inner[:, :, :-1], outer[:, :, 1:], inner[:, :, 1:]], 3)
    per_rib = quad.shape[2] * 6
    rib_rgba = _rgba(rb.color.reshape(-1, 3), rb.label_id.reshape(-1))

    boxes = scenes.boxes.select(visible_boxes(scenes))
    flat = boxes.size[:, 1] <= FLAT_HEIGHT  # lane dashes: only the top face
    solid, flats = boxes.select(~flat), boxes.select(flat)
    pos_box = solid.corners()[:, _BOX_TRIS]  # (N, 36, 3)
    pos_flat = flats.corners()[:, _BOX_TRIS[:6]]  # (M, 6, 3) top face
    box_counts = _VPB * np.bincount(solid.frame, minlength=b)
    flat_counts = 6 * np.bincount(flats.frame, minlength=b)

    pos = np.concatenate([pos_box.reshape(-1, 3), pos_flat.reshape(-1, 3), quad.reshape(-1, 3), pos_env.reshape(-1, 3)])
    rgba = np.concatenate([
        np.repeat(_rgba(solid.color, solid.label_id), _VPB, axis=0),
        np.repeat(_rgba(flats.color, flats.label_id), 6, axis=0),
        np.repeat(rib_rgba, per_rib, axis=0),
        _rgba(col_env.reshape(-1, 3), lab_env),
    ])
    verts = np.empty((len(pos), 4), dtype=np.float32)
    verts[:, :3] = pos
    verts.view(np.uint8)[:, 12:16] = rgba

    ranges = np.empty((b, 4, 2), dtype=np.int64)
    counts = [box_counts, flat_counts, np.full(b, rb.d0.shape[1] * per_rib), np.full(b, e)]
    offset = 0
    for k, count in enumerate(counts):
        ranges[:, k, 0] = offset + np.cumsum(count) - count
        ranges[:, k, 1] = count
        offset += int(count.sum())
    return verts, ranges
