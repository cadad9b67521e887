"""Look shifts: closed-form numbers per shift, per-row determinism, exact errors, and their wiring into X_t and T."""

import re

import pytest
import torch
from scipy.ndimage import gaussian_filter

from scenefit.config import ConfigError
from scenefit.configio import load_config
from scenefit.data import SHIFT_STREAM, render_rows, synthesize
from scenefit.engines.digits import digit_engine
from scenefit.experiments.shift import gap_closed, shift_markdown, shift_rows
from scenefit.models import MODEL_STAGES, Models
from scenefit.pipeline import Pipeline, synthesize_problem
from scenefit.resolve import resolve
from scenefit.runs import ModelStore, key_of
from scenefit.seeding import derive_seeds
from scenefit.shifts import LEVELS, SHIFTS, apply_shift, parse_shift, pixel_factor

pytestmark = pytest.mark.usefixtures("one_thread")
SEEDS1 = torch.zeros(1, dtype=torch.int64)
NAMES = ", ".join(SHIFTS)


def point(size: int = 48, at: int = 20) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[..., at, at] = 1.0
    return x


def shift(x: torch.Tensor, name: str, level: str) -> torch.Tensor:
    return apply_shift(x, name, level, torch.arange(x.shape[0]))


def test_dilation_of_a_point_is_a_cross_or_square_and_erosion_removes_it():
    strong = shift(point(), "thick", "strong")[0, 0]
    assert strong.sum() == 9 and strong[19:22, 19:22].min() == 1.0  # 3x3 square
    mild = shift(point(), "thick", "mild")[0, 0]
    assert mild.sum() == 5 and mild[19:22, 20].min() == 1.0 and mild[20, 19:22].min() == 1.0  # 3x3 cross
    for level in LEVELS:
        assert shift(point(), "thin", level).sum() == 0
    # images of 96 px and more scale the footprint: s = 2 doubles the radius
    assert pixel_factor(48, 64) == 1 and pixel_factor(95, 400) == 1 and pixel_factor(96, 96) == 2 and pixel_factor(256, 512) == 5
    assert shift(point(96, 40), "thick", "strong").sum() == 25 and shift(point(96, 40), "thick", "mild").sum() == 13


def test_thin_mild_is_a_cross_and_strong_a_square():
    plus = torch.zeros(1, 1, 16, 16)
    plus[..., 8, 7:10] = 1.0
    plus[..., 7:10, 8] = 1.0
    mild = shift(plus, "thin", "mild")[0, 0]
    assert mild.sum() == 1 and mild[8, 8] == 1  # only the centre has its four neighbours lit
    assert shift(plus, "thin", "strong").sum() == 0  # its diagonals are dark
    square = torch.zeros(1, 1, 16, 16)
    square[..., 4:9, 4:9] = 1.0
    assert shift(square, "thin", "strong").sum() == 9 and shift(square, "thin", "mild").sum() == 9


def test_blur_matches_scipy_and_keeps_a_constant():
    x = point(48, 24)
    for level, sigma in (("mild", 1.0), ("strong", 2.0)):
        ref = gaussian_filter(x[0, 0].double().numpy(), sigma, mode="mirror", truncate=3.0)
        assert torch.allclose(shift(x, "blur", level)[0, 0].double(), torch.from_numpy(ref), atol=1e-6)
        const = torch.full((2, 3, 20, 30), 0.3)
        assert torch.allclose(shift(const, "blur", level), const, atol=1e-6)


def test_lowres_keeps_a_constant_and_drops_fine_detail():
    const = torch.full((2, 1, 48, 48), 0.7)
    checker = ((torch.arange(48)[:, None] + torch.arange(48)[None]) % 2).float().expand(1, 1, 48, 48)
    for level in LEVELS:
        assert torch.allclose(shift(const, "lowres", level), const, atol=1e-6)
        y = shift(checker, "lowres", level)
        assert abs(y.mean().item() - 0.5) < 0.02 and y.std().item() < 0.1  # the 1-px checkerboard's std is 0.5


def test_gamma_and_contrast_in_closed_form():
    x = torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3)
    assert torch.allclose(shift(x, "gamma", "mild"), torch.tensor([0.0, 0.0625, 1.0]).view(1, 1, 1, 3))
    assert torch.allclose(shift(x, "gamma", "strong"), torch.tensor([0.0, 0.015625, 1.0]).view(1, 1, 1, 3))
    two = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2)  # mean 0.4
    assert torch.allclose(shift(two, "contrast", "mild"), torch.tensor([0.28, 0.52]).view(1, 1, 1, 2))
    assert torch.allclose(shift(two, "contrast", "strong"), torch.tensor([0.34, 0.46]).view(1, 1, 1, 2))
    const = torch.full((1, 3, 8, 8), 0.9)
    assert torch.allclose(shift(const, "contrast", "strong"), const)


def test_noise_has_its_sigma_and_follows_the_seed():
    grey = torch.full((2, 1, 64, 64), 0.5)
    for level, sigma in (("mild", 0.05), ("strong", 0.15)):
        d = shift(grey, "noise", level) - grey
        assert abs(d.std().item() - sigma) < 0.05 * sigma and abs(d.mean().item()) < 0.01
    y = apply_shift(grey, "noise", "mild", torch.tensor([3, 3]))
    assert torch.equal(y[0], y[1]) and not torch.equal(y[0], apply_shift(grey[:1], "noise", "mild", torch.tensor([4]))[0])
    assert shift(torch.ones(1, 1, 8, 8), "noise", "strong").max() == 1.0  # clamped


@pytest.mark.parametrize("name,level,factor", [("box_small", "mild", 0.8), ("box_small", "strong", 0.6),
                                               ("box_large", "mild", 1.25), ("box_large", "strong", 1.6)])
def test_box_scales_a_centred_square_about_the_centre(name, level, factor):
    x = torch.zeros(1, 1, 48, 48)
    x[..., 12:36, 12:36] = 1.0  # side 24, centred
    y = shift(x, name, level)[0, 0]
    assert abs(y.sum().item() ** 0.5 - 24 * factor) < 0.5  # the side within half a pixel
    ys, xs = torch.nonzero(y > 0.5, as_tuple=True)
    assert abs(ys.float().mean().item() - 23.5) < 0.01 and abs(xs.float().mean().item() - 23.5) < 0.01


def test_jpeg_changes_the_image_keeps_shape_and_range():
    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(2, c, 32, 40, generator=g)
        ys = {lv: shift(x, "jpeg", lv) for lv in LEVELS}
        for y in ys.values():
            assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and not torch.allclose(y, x, atol=0.02)
            assert torch.equal((y * 255).round() / 255, y)
        assert (ys["strong"] - x).abs().mean() > (ys["mild"] - x).abs().mean()
    with pytest.raises(ValueError, match=re.escape("the jpeg shift needs 1- or 3-channel images (B, C, H, W), got shape (1, 2, 8, 8)")):
        shift(torch.zeros(1, 2, 8, 8), "jpeg", "mild")


@pytest.mark.parametrize("name", SHIFTS)
def test_rows_do_not_depend_on_the_batch(name):
    x = torch.rand(8, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    seeds = torch.arange(100, 108)
    for level in LEVELS:
        whole = apply_shift(x, name, level, seeds)
        halves = torch.cat([apply_shift(x[:4], name, level, seeds[:4]), apply_shift(x[4:], name, level, seeds[4:])])
        assert whole.shape == x.shape and torch.allclose(whole, halves, atol=1e-6, rtol=0)
        assert torch.equal(whole, apply_shift(x, name, level, seeds))


def test_names_and_errors():
    assert parse_shift("blur:strong") == ("blur", "strong") and parse_shift("box_small:mild") == ("box_small", "mild")
    with pytest.raises(ValueError, match=re.escape(f"unknown shift 'blurr'; known shifts: {NAMES}")):
        parse_shift("blurr:strong")
    with pytest.raises(ValueError, match=re.escape("unknown shift level 'hard' (shift 'blur'); known levels: mild, strong")):
        parse_shift("blur:hard")
    with pytest.raises(ValueError, match=re.escape(f"shift 'blur' must be NAME:LEVEL, e.g. 'blur:strong', with NAME one of {NAMES} "
                                                   "and LEVEL one of mild, strong")):
        parse_shift("blur")
    with pytest.raises(ValueError, match=re.escape("a shift needs one seed per image: 2 images, seeds of shape (1,)")):
        apply_shift(torch.zeros(2, 1, 8, 8), "noise", "mild", SEEDS1)
    with pytest.raises(ConfigError, match="^" + re.escape(f"--set: setting.shift: unknown shift 'sepia'; known shifts: {NAMES}") + "$"):
        load_config("rot-g2", {"setting": {"shift": "sepia:mild"}})
    assert load_config("rot-g2", {"setting": {"shift": "jpeg:strong"}}).setting.shift == "jpeg:strong"
    assert shift_rows(["jpeg", "blur"], ["strong"]) == ["clean", "blur:strong", "jpeg:strong"]
    with pytest.raises(ValueError, match=re.escape(f"unknown shift 'fog'; choose from: {NAMES}")):
        shift_rows(["fog"])


def test_gap_closed_and_its_table_cell():
    assert gap_closed(0.1, 0.5, 0.9) == pytest.approx(0.5) and gap_closed(0.5, 0.6, 0.52) is None
    row = {"row": "clean", "accuracy": {"initial": 0.5, "ours": 0.6, "ceiling": 0.52, "oracle": 0.9}, "gap_closed": None,
           "attribute_error": {"rotation_median_abs": 3.25, "digit_accuracy": 0.875}}
    cfg = load_config("rot-g2").to_dict()
    md = shift_markdown({"setting": "rot-g2", "scale": "tiny", "seed": 0, "config": cfg, "rows": [row]}, translates=False)
    assert "| clean | 50.0 | 60.0 | 52.0 | 90.0 | n/a (ceiling within 3 pts) | 3.2 | 0.88 |" in md


def test_synthesised_targets_are_shifted_after_the_render():
    engine = digit_engine(canvas=48, textures="target")
    clean = synthesize(engine, None, 6, seed=5)
    shifted = synthesize(engine, None, 6, seed=5, shift=("noise", "strong"))
    assert torch.equal(clean.attrs, shifted.attrs) and torch.equal(clean.label, shifted.label)
    assert torch.equal(shifted.image, apply_shift(clean.image, "noise", "strong", derive_seeds(clean.seeds, SHIFT_STREAM)))
    chunked = render_rows(engine, clean.attrs, clean.seeds, chunk=4, shift=("noise", "strong"))["image"]
    assert torch.equal(chunked, shifted.image)


def test_shift_changes_the_problem_not_the_models(tmp_path):
    small = {"setting": {"n_targets": 8, "n_test": 8}}
    res = {s: resolve(load_config("rot-g2", {"setting": {**small["setting"], "shift": s}})) for s in ("", "thick:mild")}
    try:
        probs = {s: synthesize_problem(r) for s, r in res.items()}
        assert "shift" not in probs[""].source and probs["thick:mild"].source["shift"] == "thick:mild"
        assert torch.equal(probs[""].targets.attrs, probs["thick:mild"].targets.attrs)
        assert key_of(probs[""].key_parts()) != key_of(probs["thick:mild"].key_parts())
        assert probs["thick:mild"].test.image.mean() > probs[""].test.image.mean()  # dilation brightens T too
        store = ModelStore(tmp_path)
        keys = {s: [Models(r, store).key(m) for m in MODEL_STAGES] for s, r in res.items()}
        assert keys[""] == keys["thick:mild"]
        # the ceiling: the engine's own textures, unshifted, at the targets' true attributes (ours' seeds)
        pipe = Pipeline(res["thick:mild"], tmp_path / "run", problem=probs["thick:mild"], store=store, progress=False)
        ceiling, targets = pipe.ceiling(), probs["thick:mild"].targets
        assert torch.equal(ceiling.attrs, targets.attrs) and torch.equal(ceiling.label, targets.label)
        assert torch.equal(ceiling.image, res[""].engine.render_seeded(targets.attrs, ceiling.seeds)["image"])
    finally:
        for r in res.values():
            r.close()
