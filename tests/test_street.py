"""Street engine: closed-form camera checks, label/image agreement, determinism, per-row seeding, the built-in
target mixture, loaders. (The street-grade look is tested in test_looks.py, the generic contract in
test_engine_contract.py.)"""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
from conftest import gl_ok
import torch
from PIL import Image

from scenefit.configio import preset
from scenefit.engines.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, colorize, id_to_train_id, label
from scenefit.engines.registry import EngineSpecError, make_engine
from scenefit.engines.street import INITIAL_SCENE, KITTI_FOCAL_FRACTION as KITTI, StreetEngine
from scenefit.engines.street_mesh import _QUADS, visible_boxes
from scenefit.engines.street_scene import CAR, SKY, Boxes
from scenefit.street_targets import load_cityscapes, load_kitti_semantics

torch.set_num_threads(1)

EMPTY = dict(building_density_left=0.0, building_density_right=0.0, vegetation_density=0.0, car_density=0.0,
             person_density=0.0, road_curvature=0.0, lane_count=0.0)




needs_gl = pytest.mark.skipif(not gl_ok(), reason="no headless OpenGL (EGL) context available")


@pytest.fixture(scope="module")
def flat() -> StreetEngine:
    """Unlit engine: every pixel shows its surface's albedo exactly."""
    with StreetEngine(lighting=False) as engine:
        yield engine


def attrs_row(engine: StreetEngine, **values: float) -> torch.Tensor:
    """(1, D) attributes: the initial-scene centre with ``values`` overridden."""
    row = {**INITIAL_SCENE, **values}
    return torch.tensor([[row[n] for n in engine.space.names]], dtype=torch.float32)


def empty_scene(engine: StreetEngine, **values: float):
    """Road, sidewalks, terrain and sky only (every box removed, poles included)."""
    scenes = engine.scenes(attrs_row(engine, **{**EMPTY, **values}), torch.tensor([7]))
    return replace(scenes, boxes=Boxes.empty())


# ------------------------------------------------------------------------------------------- labels
def test_label_table_matches_cityscapes():
    assert NUM_CLASSES == len(CLASS_NAMES) == 19
    expected = {"road": (7, 0), "sidewalk": (8, 1), "building": (11, 2), "wall": (12, 3), "fence": (13, 4), "pole": (17, 5),
                "traffic light": (19, 6), "traffic sign": (20, 7), "vegetation": (21, 8), "terrain": (22, 9), "sky": (23, 10),
                "person": (24, 11), "rider": (25, 12), "car": (26, 13), "truck": (27, 14), "bus": (28, 15), "train": (31, 16),
                "motorcycle": (32, 17), "bicycle": (33, 18), "unlabeled": (0, 255)}
    for name, (id_, train) in expected.items():
        assert (label(name).id, label(name).train_id) == (id_, train)
    ids = torch.tensor([[0, 7, 26, 6, 255]])
    assert id_to_train_id(ids).tolist() == [[255, 0, 13, 255, 255]]
    rgb = colorize(torch.tensor([[[0, 13, 255]]]))
    assert rgb.shape == (1, 3, 1, 3)
    assert (rgb[0, :, 0, 0] * 255).round().tolist() == [128, 64, 128]
    assert rgb[0, :, 0, 2].tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------------- engine
def test_attribute_space_and_registry():
    engine = make_engine("street", {"height": 24, "width": 80})
    assert isinstance(engine, StreetEngine) and engine.space.dim == 20 and not engine.differentiable
    assert engine.space["lane_count"].categories == ("1", "2", "3", "4")
    assert engine.label_kind == "mask" and engine.labels.names == CLASS_NAMES and engine.labels.ignore_index == IGNORE_INDEX
    assert engine.labels.colors[CLASS_NAMES.index("road")] == (128, 64, 128)
    d = engine.describe()
    assert (d["height"], d["width"]) == (24, 80) and d["spec"] == {"name": "street", "args": {"height": 24, "width": 80}}
    assert "frames_per_pass" not in d["config"] and d["config"]["lighting"] is True
    with pytest.raises(EngineSpecError, match=r"^engine 'street' with engine.args \{'fov': 90\}: StreetEngine got unknown options \['fov'\]"):
        make_engine("street", {"fov": 90})
    with pytest.raises(ValueError, match=r"StreetConfig.height must be a positive int, got 0"):
        StreetEngine(height=0)
    with pytest.raises(TypeError, match=r"unknown options \['fov'\]"):
        StreetEngine(fov=90)


def test_camera_horizon_closed_form():
    engine = StreetEngine()
    cam = empty_scene(engine, camera_pitch=5.0).camera(0)
    f = 721.5377 / 1242.0 * 320
    assert cam.horizon_row() == pytest.approx(48 - f * math.tan(math.radians(5.0)), abs=1e-9)
    far = cam.project(np.array([[cam.x, 0.0, 1e7]]))  # a ground point near infinity straight ahead
    assert far[0, 0] == pytest.approx(160.0, abs=1e-6)
    assert far[0, 1] == pytest.approx(cam.horizon_row(), abs=1e-3)


@needs_gl
@pytest.mark.parametrize("pitch", [0.0, 4.0, -2.5])
def test_sky_above_and_road_below_horizon(flat, pitch):
    scenes = empty_scene(flat, camera_pitch=pitch, camera_height=1.65)
    out = flat.render_scenes(scenes)
    lab = out["label"][0]
    v_h = scenes.camera(0).horizon_row()
    rows = torch.arange(flat.height) + 0.5  # pixel-centre v
    assert (lab[rows < v_h - 0.5] == 10).all()  # sky: every column above the horizon
    centre = lab[:, flat.width // 2]
    assert (centre[rows > v_h + 1.5] == 0).all()  # road straight ahead below it
    if pitch == 0.0:
        # Ground ends at the terrain disc (R = 1450 m): rows flip exactly where f h / z crosses the pixel centre.
        u = torch.arange(flat.width) + 0.5 - flat.width / 2
        z = 1450.0 / torch.sqrt(1 + (u / flat.focal_px) ** 2)
        edge = flat.height / 2 + flat.focal_px * 1.65 / z  # (W,) v of the visible ground edge
        first_ground = torch.ceil(edge - 0.5).long()  # first row whose centre lies below the edge
        sky_rows = (lab == 10).sum(0)
        assert torch.equal(sky_rows, first_ground)


@needs_gl
def test_car_label_box_matches_projection(flat):
    scenes = empty_scene(flat, camera_pitch=0.0)
    cam = scenes.camera(0)
    car = Boxes(frame=np.array([0]), base=np.array([[cam.x, 0.0, 20.0]]), size=np.array([[1.8, 1.5, 4.3]]),
                yaw=np.array([0.0]), color=np.array([[0.8, 0.1, 0.1]]), label_id=np.array([CAR]))
    out = flat.render_scenes(replace(scenes, boxes=car))
    mask = out["label"][0] == 13
    uv = cam.project(car.corners()[0])
    (u0, v0), (u1, v1) = uv.min(0), uv.max(0)
    rows, cols = mask.nonzero(as_tuple=True)
    # The label box is the projected box, to the pixel.
    assert rows.min().item() == math.ceil(v0 - 0.5) and rows.max().item() == math.ceil(v1 - 0.5) - 1
    assert cols.min().item() == math.ceil(u0 - 0.5) and cols.max().item() == math.ceil(u1 - 0.5) - 1
    # The rear face (nearest, a screen-aligned rectangle at pitch 0) is entirely car.
    rear = cam.project(car.corners()[0, [0, 1, 4, 5]])
    r0, r1 = math.ceil(rear[:, 1].min() - 0.5), math.ceil(rear[:, 1].max() - 0.5)
    c0, c1 = math.ceil(rear[:, 0].min() - 0.5), math.ceil(rear[:, 0].max() - 0.5)
    assert mask[r0:r1, c0:c1].all() and (r1 - r0) * (c1 - c0) > 100
    # Image pass, unlit: exactly the car albedo under the car label.
    colour = (out["image"][0][:, mask] * 255).round()
    assert (colour == torch.tensor([[204.0], [26.0], [26.0]])).all()


@needs_gl
def test_unlit_image_shows_albedo_of_labelled_surface(flat):
    g = torch.Generator().manual_seed(3)
    attrs = flat.space.sample_uniform(4, g)
    seeds = torch.tensor([11, 12, 13, 14])
    scenes = flat.scenes(attrs, seeds)
    out = flat.render_seeded(attrs, seeds)
    q = lambda c: np.rint(np.clip(c, 0, 1) * 255).astype(np.int64)  # noqa: E731
    for i in range(4):
        img = (out["image"][i] * 255).round().long().permute(1, 2, 0).reshape(-1, 3).numpy()
        lab = out["label_id"][i].reshape(-1).numpy()
        b = scenes.boxes.select(scenes.boxes.frame == i)
        allowed_lab = np.concatenate([b.label_id, scenes.ribbons.label_id[i], [label("terrain").id]])
        allowed_col = np.concatenate([q(b.color), q(scenes.ribbons.color[i]), q(scenes.terrain_color[i:i + 1])])
        key = lambda lab_, col: ((lab_ * 256 + col[:, 0]) * 256 + col[:, 1]) * 256 + col[:, 2]  # noqa: E731
        solid = lab != SKY
        assert np.isin(key(lab[solid], img[solid]), key(allowed_lab, allowed_col)).all()
        # Sky pixels lie on the horizon -> zenith gradient.
        hor, zen = q(scenes.sky_horizon[i]).astype(float), q(scenes.sky_zenith[i]).astype(float)
        sky = img[~solid].astype(float)
        t = np.clip((sky - hor) @ (zen - hor) / max((zen - hor) @ (zen - hor), 1e-9), 0, 1)
        assert np.abs(sky - (hor + t[:, None] * (zen - hor))).max() <= 1.5
        assert solid.sum() > 0 and (~solid).sum() > 0


@needs_gl
def test_lit_render_contract_and_determinism():
    with StreetEngine(height=48, width=160) as engine:
        attrs = engine.space.sample_uniform(3, torch.Generator().manual_seed(0))
        a = engine.render(attrs, generator=torch.Generator().manual_seed(5))
        b = engine.render(attrs, generator=torch.Generator().manual_seed(5))
        c = engine.render(attrs, generator=torch.Generator().manual_seed(6))
        assert a["image"].shape == (3, 3, 48, 160) and a["image"].dtype == torch.float32
        assert a["label"].shape == a["label_id"].shape == (3, 48, 160) and a["label"].dtype == torch.int64
        assert 0.0 <= a["image"].min() and a["image"].max() <= 1.0
        assert torch.equal(a["label"], id_to_train_id(a["label_id"]))
        assert set(a["label"].unique().tolist()) <= set(range(19)) | {255}
        for k in ("image", "label", "label_id", "seed"):
            assert torch.equal(a[k], b[k])
        assert not torch.equal(a["image"], c["image"]) and not torch.equal(a["label"], c["label"])
        # A row depends only on its own attributes and seed, not on the batch around it.
        alone = engine.render_seeded(attrs[1:2], a["seed"][1:2])
        assert torch.equal(alone["image"][0], a["image"][1]) and torch.equal(alone["label"][0], a["label"][1])
        # Lighting changes the image, never the label.
        with StreetEngine(height=48, width=160, lighting=False) as unlit:
            d = unlit.render_seeded(attrs, a["seed"])
        assert torch.equal(d["label"], a["label"]) and not torch.equal(d["image"], a["image"])
        empty = engine.render(attrs[:0])
        assert empty["image"].shape == (0, 3, 48, 160) and empty["label"].dtype == torch.int64
        # Picklable (drops the GL context) and re-creatable after close().
        clone = pickle.loads(pickle.dumps(engine))
        assert clone._gl is None
        engine.close()
        assert torch.equal(engine.render(attrs, generator=torch.Generator().manual_seed(5))["image"], a["image"])
        clone.close()
        with pytest.raises(ValueError, match=r"attribute 'road_width' out of bounds"):
            bad = attrs.clone()
            bad[0, engine.space.index("road_width")] = 99.0
            engine.render(bad)


@needs_gl
def test_a_row_renders_the_same_in_any_batch_position_and_pass_size():
    """Frames are drawn at one framebuffer origin: no pixel depends on the batch, the pass size or earlier batches."""
    g = torch.Generator().manual_seed(1)
    with StreetEngine(height=32, width=96) as big, StreetEngine(height=32, width=96, frames_per_pass=2) as small:
        attrs = big.sample_initial(5, g)
        seeds = torch.randint(0, 2**62, (5,), generator=g)
        ref = big.render_seeded(attrs, seeds)
        for engine in (big, small):
            parts = [engine.render_seeded(attrs[i:j], seeds[i:j]) for i, j in ((0, 1), (1, 4), (4, 5))]
            assert torch.equal(torch.cat([p["image"] for p in parts]), ref["image"])
            assert torch.equal(torch.cat([p["label"] for p in parts]), ref["label"])
            rev = engine.render_seeded(attrs.flip(0), seeds.flip(0))
            assert torch.equal(rev["image"], ref["image"].flip(0)) and torch.equal(rev["label_id"], ref["label_id"].flip(0))


def test_resized_engine_is_the_same_camera_at_another_size():
    engine = StreetEngine(height=96, width=320)
    half = engine.resized(48, 160)
    assert isinstance(half, StreetEngine) and (half.height, half.width) == (48, 160) and engine.resized(96, 320) is engine
    assert half.config.focal_fraction == engine.config.focal_fraction and half.focal_px == engine.focal_px / 2
    row = attrs_row(engine, camera_pitch=3.0)
    full_cam = engine.scenes(row, torch.tensor([5])).camera(0)
    half_cam = half.scenes(row, torch.tensor([5])).camera(0)
    assert half_cam.horizon_row() == pytest.approx(full_cam.horizon_row() / 2, abs=1e-9)
    assert half_cam.horizon_row() == pytest.approx(24 - 160 * KITTI * math.tan(math.radians(3.0)), abs=1e-9)
    assert half.describe()["config"] == {**engine.describe()["config"], "height": 48, "width": 160}


@needs_gl
def test_positive_curvature_bends_right(flat):
    out = flat.render_scenes(empty_scene(flat, road_curvature=0.008, camera_pitch=0.0))
    band = out["label"][0, 50:54]  # a few rows just below the horizon: far road
    cols = (band == 0).nonzero(as_tuple=True)[1].float()
    assert cols.mean() > flat.width / 2 + 20


def test_box_faces_share_one_winding_and_culling():
    sx = np.array([-0.5, 0.5, 0.5, -0.5] * 2)
    sz = np.array([-0.5, -0.5, 0.5, 0.5] * 2)
    sy = np.array([0.0] * 4 + [1.0] * 4)
    p = np.stack([sx, sy, sz], axis=1)
    signs = {np.sign(np.cross(p[b] - p[a], p[c] - p[a]) @ (p[[a, b, c]].mean(0) - p.mean(0))) for a, b, c, _ in _QUADS}
    assert signs == {-1.0}
    engine = StreetEngine()
    scenes = empty_scene(engine, camera_pitch=0.0)
    cam_x = scenes.camera(0).x
    boxes = Boxes(frame=np.zeros(3, dtype=np.int64), base=np.array([[cam_x, 0, 20.0], [cam_x, 0, -20.0], [cam_x + 500, 0, 20.0]]),
                  size=np.ones((3, 3)), yaw=np.zeros(3), color=np.ones((3, 3)), label_id=np.full(3, CAR))
    assert visible_boxes(replace(scenes, boxes=boxes)).tolist() == [True, False, False]


# ------------------------------------------------------------------------------- distributions
def test_initial_distribution_is_a_plain_street_within_bounds():
    engine = StreetEngine()
    x = engine.sample_initial(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 20)
    engine.space.check(x)
    assert (x[:, engine.space.index("lane_count")] == 1).all()
    centre = torch.tensor([INITIAL_SCENE[n] for n in engine.space.names])
    assert torch.equal(engine.initial_centre(), centre)
    span = torch.tensor([a.span for a in engine.space])
    assert ((x.mean(0) - centre).abs() / span).max() < 0.02
    # 5% of the span: the std of an unclamped attribute (camera height: 1.65 +- 0.0x, far from its bounds)
    h = engine.space.index("camera_height")
    assert x[:, h].std().item() == pytest.approx(0.05 * engine.space["camera_height"].span, rel=0.1)
    assert torch.equal(engine.sample_initial(7), engine.sample_initial(7, torch.Generator().manual_seed(0)))


def test_target_mixture_of_the_street_presets_is_bimodal_within_bounds():
    engine = StreetEngine()
    target = preset("street").setting.target
    x, mode = target.sample(engine.space, 2000, torch.Generator().manual_seed(0))
    engine.space.check(x)
    assert 0.45 < mode.float().mean() < 0.55
    h = engine.space.index("building_height_left")
    assert x[mode == 0, h].mean() > 20 and x[mode == 1, h].mean() < 9
    lanes = x[:, engine.space.index("lane_count")]
    assert torch.equal(lanes, lanes.round()) and (lanes[mode == 1] <= 1).all()
    # lane_count probs [0.05, 0.45, 0.4, 0.1] in the urban mode
    freq = torch.bincount(lanes[mode == 0].long(), minlength=4).float() / (mode == 0).sum()
    assert torch.allclose(freq, torch.tensor([0.05, 0.45, 0.4, 0.1]), atol=0.05)


# ------------------------------------------------------------------------------------------ loaders
def _write_pair(img_path, lab_path, size=(124, 40), ids=None):
    img_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), (200, 100, 50), dtype=np.uint8)).save(img_path)
    if lab_path is not None:
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        lab = np.full((size[1], size[0]), 7, dtype=np.uint8)  # road
        lab[: size[1] // 2] = 23  # sky
        lab[:, : size[0] // 4] = 26 if ids is None else ids  # car
        Image.fromarray(lab).save(lab_path)


def test_kitti_loader(tmp_path):
    for i in range(2):
        _write_pair(tmp_path / "image_2" / f"00000{i}_10.png", tmp_path / "semantic" / f"00000{i}_10.png")
    out = load_kitti_semantics(tmp_path, height=10, width=31)
    assert out["image"].shape == (2, 3, 10, 31) and out["label"].shape == (2, 10, 31)
    assert torch.allclose(out["image"][0, :, 5, 15] * 255, torch.tensor([200.0, 100.0, 50.0]), atol=0.5)
    assert set(out["label"].unique().tolist()) == {0, 10, 13}  # road, sky, car train ids
    assert (out["label"][0, :4, 20] == 10).all() and (out["label"][0, 6:, 20] == 0).all()
    assert out["names"] == ["000000_10.png", "000001_10.png"]
    only = load_kitti_semantics(tmp_path, height=10, width=31, labels=False, limit=1)
    assert "label" not in only and only["image"].shape[0] == 1


def test_kitti_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"KITTI image folder not found: .*image_2"):
        load_kitti_semantics(tmp_path / "nowhere")
    (tmp_path / "image_2").mkdir()
    with pytest.raises(FileNotFoundError, match=r"KITTI image folder .*image_2 holds no files matching '\*\.png'"):
        load_kitti_semantics(tmp_path)
    _write_pair(tmp_path / "image_2" / "000000_10.png", tmp_path / "semantic" / "000000_10.png")
    _write_pair(tmp_path / "image_2" / "000001_10.png", None)
    with pytest.raises(FileNotFoundError, match=r"no label for image .*000001_10\.png: expected .*semantic/000001_10\.png"):
        load_kitti_semantics(tmp_path)
    Image.fromarray(np.zeros((40, 124, 3), dtype=np.uint8)).save(tmp_path / "semantic" / "000001_10.png")
    with pytest.raises(ValueError, match=r"has mode RGB; expected a single-channel PNG of Cityscapes ids"):
        load_kitti_semantics(tmp_path)


def test_cityscapes_loader(tmp_path):
    for city in ("aachen", "bonn"):
        stem = f"{city}_000000_000019"
        _write_pair(tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png",
                    tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", size=(128, 64), ids=4)
    out = load_cityscapes(tmp_path, split="val", height=12, width=40)
    assert out["image"].shape == (2, 3, 12, 40)
    assert set(out["label_id"].unique().tolist()) == {4, 7, 23}
    assert set(out["label"].unique().tolist()) == {0, 10, 255}  # id 4 ("static") is ignored
    assert out["names"][0].startswith("aachen")
    with pytest.raises(FileNotFoundError, match=r"Cityscapes 'train' image folder not found: .*leftImg8bit/train"):
        load_cityscapes(tmp_path, split="train")
