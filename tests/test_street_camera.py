"""The street engine's camera (look attributes): neutral renders bit for bit as before, each step in closed form,
per-row independence, resolution-relative blur and noise, and the built-in targets unchanged by it."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch
from conftest import gl_ok

import scenefit.engines.street_camera as camera_module
from scenefit.configio import preset
from scenefit.data import synthesize
from scenefit.engines.street import StreetEngine
from scenefit.engines.street_camera import CAMERA_ATTRIBUTES, CAMERA_NAMES, apply_camera

torch.set_num_threads(1)
needs_gl = pytest.mark.skipif(not gl_ok(), reason="no headless OpenGL (EGL) context available")


def cam(**values: float) -> torch.Tensor:
    """(1, 10) camera row: neutral except ``values``."""
    return torch.tensor([[values.get(n, 0.0) for n in CAMERA_NAMES]])


def flat_image(value: float, h: int = 24, w: int = 64, b: int = 1) -> torch.Tensor:
    return torch.full((b, 3, h, w), value)


def test_camera_attributes_are_look_and_neutral_at_zero():
    assert len(CAMERA_ATTRIBUTES) == 10
    for a in CAMERA_ATTRIBUTES:
        assert a.look and not a.categorical and not a.periodic
        assert a.low <= 0.0 <= a.high, a.name


def test_neutral_camera_returns_the_frame_itself():
    x = torch.randint(0, 256, (3, 3, 20, 30)).float() / 255
    assert apply_camera(x, torch.zeros(3, 10), torch.arange(3)) is x


def test_each_step_in_closed_form():
    seeds = torch.tensor([5])
    # exposure +1 EV doubles a mid grey (8-bit quantised)
    out = apply_camera(flat_image(64 / 255), cam(exposure=1.0), seeds)
    assert torch.allclose(out, torch.full_like(out, 128 / 255))
    # white balance: R * 2^0.25, B * 2^-0.25, G * 2^-0.15 (tint 1)
    out = apply_camera(flat_image(0.4), cam(wb_temperature=1.0, wb_tint=1.0), seeds)[0, :, 0, 0]
    want = torch.tensor([0.4 * 2**0.25, 0.4 * 2**-0.15, 0.4 * 2**-0.25])
    assert torch.allclose(out, (want * 255).round() / 255)
    # haze 0.5 halves the way to the airlight; contrast keeps the 0.5 pivot; saturation leaves grey alone
    out = apply_camera(flat_image(0.2), cam(haze=0.5), seeds)[0, :, 0, 0]
    assert torch.allclose(out, ((0.5 * 0.2 + 0.5 * torch.tensor([0.78, 0.80, 0.84])) * 255).round() / 255)
    assert torch.allclose(apply_camera(flat_image(0.5), cam(contrast=1.0), seeds), flat_image(128 / 255))
    out = apply_camera(flat_image(0.35), cam(contrast=1.0), seeds)
    assert torch.allclose(out, flat_image(round((0.5 + 2 * (0.35 - 0.5)) * 255) / 255))
    assert torch.allclose(apply_camera(flat_image(0.3), cam(saturation=1.0), seeds), flat_image(round(0.3 * 255) / 255))
    # gamma: x^(2^g)
    out = apply_camera(flat_image(0.25), cam(gamma=1.0), seeds)
    assert torch.allclose(out, flat_image(round(0.0625 * 255) / 255))
    # blur keeps a flat frame flat; vignetting darkens the corners by 1 / (1 + v r^2)^2, not the centre
    assert torch.allclose(apply_camera(flat_image(0.6), cam(lens_blur=6.0), seeds), flat_image(round(0.6 * 255) / 255))
    h, w = 40, 80
    out = apply_camera(flat_image(0.8, h, w), cam(vignetting=0.5), seeds)[0, 0]
    r2 = ((0.5 - w / 2) / (w / 2)) ** 2 / 2 + ((0.5 - h / 2) / (h / 2)) ** 2 / 2
    assert out[0, 0].item() == pytest.approx(round(0.8 / (1 + 0.5 * r2) ** 2 * 255) / 255, abs=1e-6)
    assert out[h // 2, w // 2].item() == pytest.approx(round(0.8 * 255) / 255, abs=1.5 / 255)


def test_saturation_moves_colour_away_from_luma_only():
    x = torch.tensor([0.6, 0.3, 0.2])[None, :, None, None].expand(1, 3, 4, 4).contiguous()
    out = apply_camera(x, cam(saturation=-1.5), torch.tensor([0]))[0, :, 0, 0]  # 2^-1.5 of the chroma
    luma = 0.299 * 0.6 + 0.587 * 0.3 + 0.114 * 0.2
    want = luma + 2**-1.5 * (torch.tensor([0.6, 0.3, 0.2]) - luma)
    assert torch.allclose(out, (want * 255).round() / 255)


def test_blur_sigma_is_relative_to_the_frame_width():
    """A vertical edge blurred at 64 and at 128 px wide: the 10-90% rise spans the same fraction of the width."""
    def rise(w: int) -> float:
        x = torch.zeros(1, 3, 8, w)
        x[..., w // 2:] = 1.0
        row = apply_camera(x, cam(lens_blur=6.0), torch.tensor([0]))[0, 0, 4]
        return float(((row > 0.1) & (row < 0.9)).sum()) / w

    assert rise(64) == pytest.approx(rise(128), abs=1.5 / 64)
    assert rise(128) == pytest.approx(2 * 1.2816 * 6e-3, abs=1.5 / 128)  # 10-90% of a Gaussian: 2.56 sigma


def test_sensor_noise_std_and_its_resolution_scaling():
    for w, scale in ((320, 1.0), (160, 0.5)):
        out = apply_camera(flat_image(0.4, 96, w), cam(sensor_noise=0.05), torch.tensor([3]))
        assert out.std().item() == pytest.approx(0.05 * scale * (0.4 + 0.1) ** 0.5, rel=0.06)
        assert out.mean().item() == pytest.approx(0.4, abs=2e-3)


def test_rows_do_not_depend_on_the_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 16, 40, generator=g)
    c = torch.stack([torch.empty(5).uniform_(a.low, a.high, generator=g) for a in CAMERA_ATTRIBUTES], 1)
    c[2] = 0.0  # a neutral row among the others
    seeds = torch.arange(10, 15)
    whole = apply_camera(x, c, seeds)
    for i in range(5):
        assert torch.equal(apply_camera(x[i:i + 1], c[i:i + 1], seeds[i:i + 1]), whole[i:i + 1])
    assert torch.equal(whole[2], x[2])


def test_camera_checks_its_input():
    with pytest.raises(ValueError, match=r"the camera needs rows of shape \(2, 10\), got \(2, 9\)"):
        apply_camera(torch.zeros(2, 3, 4, 4), torch.zeros(2, 9), torch.arange(2))
    with pytest.raises(ValueError, match=r"the camera needs RGB frames \(B, 3, H, W\), got shape \(2, 1, 4, 4\)"):
        apply_camera(torch.zeros(2, 1, 4, 4), torch.zeros(2, 10), torch.arange(2))


def test_camera_code_does_not_import_the_target_generator():
    tree = ast.parse(inspect.getsource(camera_module))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
               {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("looks" in m or "street_targets" in m for m in imported), imported


def test_engine_without_camera_keeps_its_identity():
    plain, with_cam = StreetEngine(), StreetEngine(camera=True)
    assert "camera" not in plain.describe()["config"] and plain.space.dim == 20 and plain.space.look == ()
    assert with_cam.describe()["config"]["camera"] is True
    assert with_cam.space.names[20:] == CAMERA_NAMES and with_cam.space.look == tuple(range(20, 30))
    with pytest.raises(ValueError, match="StreetConfig.camera must be true or false, got 'yes'"):
        StreetEngine(camera="yes")


def test_initial_scenes_keep_the_neutral_camera_and_their_draws():
    a = StreetEngine().sample_initial(50, torch.Generator().manual_seed(3))
    b = StreetEngine(camera=True).sample_initial(50, torch.Generator().manual_seed(3))
    assert torch.equal(b[:, :20], a) and torch.equal(b[:, 20:], torch.zeros(50, 10))


@needs_gl
def test_neutral_camera_renders_todays_frames_bit_for_bit():
    with StreetEngine(height=48, width=160) as plain, StreetEngine(height=48, width=160, camera=True) as withcam:
        rows = plain.space.sample_uniform(6, torch.Generator().manual_seed(1))
        seeds = torch.arange(6) * 7 + 1
        before = plain.render_seeded(rows, seeds)
        after = withcam.render_seeded(torch.cat([rows, torch.zeros(6, 10)], 1), seeds)
        assert torch.equal(before["image"], after["image"]) and torch.equal(before["label"], after["label"])
        moved = withcam.render_seeded(torch.cat([rows, cam(exposure=0.5, lens_blur=3.0).expand(6, 10)], 1), seeds)
        assert torch.equal(moved["label"], before["label"])  # the camera changes the look, never the labels
        assert (moved["image"] - before["image"]).abs().mean() > 0.03


@needs_gl
def test_builtin_targets_are_bit_identical_with_the_camera():
    cfg = preset("street-tiny")
    target, look = cfg.setting.target, (cfg.setting.look.name, cfg.setting.look.args)
    with StreetEngine(height=48, width=160) as plain, StreetEngine(height=48, width=160, camera=True) as withcam:
        before = synthesize(plain, target, 6, seed=11, look=look)
        after = synthesize(withcam, target, 6, seed=11, look=look)
    assert torch.equal(before.image, after.image) and torch.equal(before.label, after.label)
    assert torch.equal(after.attrs[:, :20], before.attrs) and torch.equal(after.attrs[:, 20:], torch.zeros(6, 10))


def test_attribute_errors_leave_out_a_camera_without_truth():
    from scenefit.evaluate import attribute_errors

    space = StreetEngine(camera=True).space
    g = torch.Generator().manual_seed(4)
    true, fitted = space.sample_uniform(20, g), space.sample_uniform(20, g)
    out = attribute_errors(space, fitted, true, skip=CAMERA_NAMES)
    assert not any(k.startswith(CAMERA_NAMES) for k in out) and "camera_height_median_abs" in out
    cols = [i for i in space.continuous if i < 20]
    want = ((fitted[:, cols] - true[:, cols]).abs() / torch.tensor([space.attributes[i].span for i in cols])).mean()
    assert out["unit_mae"] == pytest.approx(want.item(), rel=1e-5)
    assert "exposure_median_abs" in attribute_errors(space, fitted, true)


def test_chart_measures_in_closed_form():
    from scenefit.experiments.driving_camera import chain_measures

    w = 320
    neutral = chain_measures(lambda x, r: x, 2, 96, w)
    assert neutral["level"].tolist() == [0.5, 0.5] and neutral["red_blue"].tolist() == [1.0, 1.0]
    assert neutral["corner"].tolist() == [1.0, 1.0] and neutral["noise"].tolist() == [0.0, 0.0]
    assert neutral["tone_step"].tolist() == [1.0, 1.0]
    assert neutral["edge_10_90"][0].item() == pytest.approx(1000 * 0.8 / w, rel=1e-4)  # a sharp edge: 0.8 px between two pixels
    row = cam(exposure=-1.0, wb_temperature=1.0)
    out = chain_measures(lambda x, r: apply_camera(x, row.expand(x.shape[0], 10), torch.arange(x.shape[0])), 1, 96, w)
    assert out["level"].item() == pytest.approx(0.25 * (2**0.25 + 1 + 2**-0.25) / 3, abs=2 / 255)
    assert out["red_blue"].item() == pytest.approx(2**0.5, rel=0.02)
    blur = chain_measures(lambda x, r: apply_camera(x, cam(lens_blur=6.0).expand(x.shape[0], 10), torch.arange(x.shape[0])), 1, 96, w)
    assert blur["edge_10_90"].item() == pytest.approx(2.5631 * 6.0, rel=0.05)  # 10-90% of a Gaussian edge: 2.563 sigma
