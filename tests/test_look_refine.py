"""Look refinement through the engine's own look stage: the street camera's develop is its render, gradient steps
recover a known camera, the codebook fits keep the refined look away from G's drift, and the settings are checked
and stay out of the keys of fits made without them."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import gl_ok

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.config import ConfigError
from scenefit.configio import load_config, overrides_from_strings
from scenefit.engines.street import StreetEngine
from scenefit.fitting import (
    CodebookConfig,
    FitConfig,
    FitInputs,
    fit_codebook,
    fit_codebook_verify,
)
from scenefit.fitting.look import make_look_term
from scenefit.fitting.look_refine import look_refine
from scenefit.resolve import resolve

pytestmark = pytest.mark.usefixtures("one_thread")
needs_gl = pytest.mark.skipif(not gl_ok(), reason="no headless OpenGL (EGL) context available")

# -- the street camera ---------------------------------------------------------------------------------------------


@needs_gl
def test_develop_is_the_engines_render_and_the_identity_at_the_neutral_camera():
    with StreetEngine(height=48, width=160, camera=True) as e:
        rows = e.space.sample_uniform(4, torch.Generator().manual_seed(1))
        rows[0, 20:] = 0.0  # a neutral row among the others
        seeds = torch.arange(4) * 7 + 2
        look = list(e.space.look)
        want = e.render_seeded(rows, seeds)["image"]
        frames, develop = e.render_look_parts(rows, seeds)
        assert (develop(rows[:, look], frames) - want).abs().max() <= 1 / 255  # measured: 0 (the same 8-bit values)
        assert torch.equal(develop(torch.zeros(4, 10), frames), frames)
        assert torch.equal(frames[0], want[0])  # the frames are the render before the camera
        cam = rows[:, look].clone().requires_grad_(True)
        develop(cam, frames).mean().backward()
        assert torch.isfinite(cam.grad).all() and (cam.grad[:, 0] > 0).all()  # brighter with exposure
        with pytest.raises(ValueError, match=re.escape("develop needs look rows of shape (4, 10), got (4, 9)")):
            develop(torch.zeros(4, 9), frames)


CAMERA = {"exposure": 0.6, "wb_temperature": 0.5, "contrast": 0.3}


@needs_gl
def test_look_refine_recovers_a_known_camera_through_the_engine():
    """Targets rendered at a known camera (the others at 0), refined from the neutral camera with their own scenes
    and seeds. The three set columns alone: measured errors 0.001 EV, 0.009, 0.018 after 100 steps (Adam's last
    steps at lr 0.02 jitter by about one step), so 0.05 (at most 2.5% of a span). All ten columns: the look term
    falls from 0.39-0.46 to at most 1.1e-4 per row, but the look statistics do not tell exposure, contrast and gamma
    fully apart (measured errors 0.11 EV, 0.22 contrast, 0.17 gamma): only the white balance is held to 0.1
    (measured 0.045)."""
    with StreetEngine(height=48, width=160, camera=True) as e:
        rows = e.sample_initial(4, torch.Generator().manual_seed(2))  # the neutral camera
        seeds = torch.arange(4) * 5 + 3
        truth = rows.clone()
        for name, v in CAMERA.items():
            truth[:, e.space.index(name)] = v
        look = make_look_term(e.space, e.render_seeded(truth, seeds)["image"], weight=10.0)

        def refine(cols: list[int]):
            return look_refine(lambda r, i: e.render_look_parts(r, seeds[i]), look, rows[:, None], cols, e.space, 100, 0.02)

        three = refine([e.space.index(n) for n in CAMERA])
        assert (three.starts[:, 0] - truth).abs().max() < 0.05
        assert torch.equal(three.starts[:, 0, :20], rows[:, :20])  # the scene untouched, bit for bit
        assert (three.loss < three.loss_before).all() and three.loss_before.min() > 0.3 and three.loss.max() < 1e-4
        ten = refine(list(e.space.look))
        assert (ten.loss < ten.loss_before).all() and ten.loss.max() < 1e-3
        wb = e.space.index("wb_temperature")
        assert (ten.starts[:, 0, wb] - truth[:, wb]).abs().max() < 0.1


# -- the codebook fits, on a toy engine (no GL) ------------------------------------------------------------------

# content: a blob's position x (px); look: a gain on the whole image, applied after the blob is drawn
SPACE = AttributeSpace([Attribute("x", -6.0, 6.0, "px"), Attribute("gain", 0.4, 1.0, "rel", look=True)])
COLS = torch.arange(24, dtype=torch.float32) - 11.5
TRUTH = torch.tensor([[2.3, 0.55], [-3.1, 0.9], [0.4, 0.72]])


def frame(x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 24, 24): a Gaussian blob (sigma 3 px) at (x, 0) on a 0.1 ground, before the gain."""
    blob = torch.exp(-((COLS[None, None, :] - x[:, None, None]) ** 2 + COLS[None, :, None] ** 2) / 18.0)
    return (0.1 + 0.8 * blob)[:, None]


def render(attrs: torch.Tensor, soft=None) -> torch.Tensor:
    return attrs[:, 1, None, None, None] * frame(attrs[:, 0])


def surrogate(attrs: torch.Tensor, soft=None) -> torch.Tensor:
    """G with a camera 10% too dark: gradient steps through it drift the gain up."""
    return 0.9 * render(attrs)


def features(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1)  # gain-invariant under the cosine


class Toy:
    """R: the toy without randomness; ``with_parts`` adds its look stage."""

    name, differentiable, space = "toy", False, SPACE

    def render_seeded(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": render(attrs)}


class ToyWithParts(Toy):
    def render_look_parts(self, attrs: torch.Tensor, seeds: torch.Tensor):
        return frame(attrs[:, 0]), lambda look, frames: look[:, 0, None, None, None] * frames


def toy_inputs(engine) -> FitInputs:
    images = render(TRUTH)
    return FitInputs(SPACE, features, features(images), torch.tensor([0.0, 0.7]), [0, 1], seed=0, surrogate=surrogate,
                     engine=engine, progress=False, look=make_look_term(SPACE, images, weight=10.0))


def toy_config(look_steps: int) -> FitConfig:
    return FitConfig(method="codebook", steps=60, lr=0.02, codebook=CodebookConfig(grid_bounded=13, keep=1, look_codes=8,
                                                                                    look_steps=look_steps))


@pytest.mark.parametrize("fit", [fit_codebook, fit_codebook_verify])
def test_the_look_refined_through_the_engine_is_kept_from_gs_drift(fit):
    """Measured gain errors: 0.10 (codebook) and 0.079 (codebook-verify) when G moves the gain, 0.0015 when the
    refinement through R fixes it (the blob is still 0.3 px off when the look is refined)."""
    drifted = fit(toy_inputs(ToyWithParts()), toy_config(0))
    assert (drifted.attrs[:, 1] - TRUTH[:, 1]).abs().max() > 0.05 and not any("look_term" in k for k in drifted.info)
    res = fit(toy_inputs(ToyWithParts()), toy_config(100))
    assert (res.attrs[:, 1] - TRUTH[:, 1]).abs().max() < 0.005
    assert (res.attrs[:, 0] - TRUTH[:, 0]).abs().max() < 0.05
    assert 0 < res.info["mean_look_term_refined"] < res.info["mean_look_term_searched"]


class Counting(ToyWithParts):
    """The toy with its look stage, counting the rows each method renders."""

    def __init__(self) -> None:
        self.rows = {"render_seeded": 0, "render_look_parts": 0}

    def render_seeded(self, attrs, seeds):
        self.rows["render_seeded"] += attrs.shape[0]
        return super().render_seeded(attrs, seeds)

    def render_look_parts(self, attrs, seeds):
        self.rows["render_look_parts"] += attrs.shape[0]
        return super().render_look_parts(attrs, seeds)


def test_codebook_verify_searches_looks_through_the_look_stage_with_the_same_result():
    """With a look stage each kept code is rendered once, not once per look (8 here); where develop is the render the
    fit is the same, bit for bit. ``codebook`` keeps searching looks through G and asks nothing of R."""
    full = fit_codebook_verify(toy_inputs(Toy()), toy_config(0))
    engine = Counting()
    staged = fit_codebook_verify(toy_inputs(engine), toy_config(0))
    for name in ("attrs", "loss", "candidate", "losses", "starts"):
        assert torch.equal(getattr(full, name), getattr(staged, name)), name
    assert full.info == staged.info
    searched = 3 * 1  # targets x keep
    assert engine.rows["render_look_parts"] == searched
    codes = 13  # the content grid: rendered by R in full, like the verification's candidates
    verified = 3 * (1 + 1) * toy_config(0).verify.seeds
    assert engine.rows["render_seeded"] == codes + verified
    plain = Counting()
    assert torch.equal(fit_codebook(toy_inputs(plain), toy_config(0)).attrs, fit_codebook(toy_inputs(Toy()), toy_config(0)).attrs)
    assert plain.rows == {"render_seeded": 0, "render_look_parts": 0}


def test_an_engine_without_a_look_stage_is_refused():
    with pytest.raises(ValueError, match="^" + re.escape(
            "fit.codebook.look_steps 100: engine 'toy' has no render_look_parts (the optional look stage of "
            "scenefit.engines.base), so its looks cannot be refined through it; set fit.codebook.look_steps 0") + "$"):
        fit_codebook_verify(toy_inputs(Toy()), toy_config(100))
    with pytest.raises(ValueError, match="^" + re.escape(
            "fit.codebook.look_steps 100 refines looks through the engine R, which this fit (fit.method 'codebook') was "
            "not given; give it the engine or set fit.codebook.look_steps 0") + "$"):
        fit_codebook(toy_inputs(None), toy_config(100))
    assert fit_codebook(toy_inputs(None), toy_config(0)).attrs.shape == (3, 2)  # without steps nothing is asked of R


def test_resolve_refuses_look_steps_for_an_engine_without_a_look_stage(monkeypatch):
    cfg = load_config("street-tiny", overrides_from_strings(["fit.codebook.look_steps=5"]))
    monkeypatch.delattr(StreetEngine, "render_look_parts")
    with pytest.raises(ConfigError, match="^" + re.escape(
            "fit.codebook.look_steps 5: engine 'street' has no render_look_parts (the optional look stage of "
            "scenefit.engines.base), so its looks cannot be refined through it; set fit.codebook.look_steps 0") + "$"):
        resolve(cfg)


# -- settings and keys ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    ({"look_steps": -1}, "fit.codebook.look_steps must be >= 0, got -1"),
    ({"look_lr": 0.0}, "fit.codebook.look_lr must be a finite number > 0, got 0.0"),
    ({"look_lr": float("nan")}, "fit.codebook.look_lr must be a finite number > 0, got nan"),
    ({"look_lr": float("inf")}, "fit.codebook.look_lr must be a finite number > 0, got inf"),
])
def test_look_refinement_settings_are_checked(kw, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        CodebookConfig(**kw)


# measured before fit.codebook.look_steps existed (commit 20cf2c7): runs fitted then resume without a refit. The problem
# key is held fixed: it holds the SHA-256 of the target images, and the street targets' hash differed between the CPU
# that pinned the full keys and a later one (an AVX-512/AMX Xeon), while every other part of the fit key agreed.
KEYS = {("street-tiny",): "d612944322b9cfc6", ("street-tiny", "fit.method=codebook"): "512bf357e247aa7e",
        ("street-quick", "setting.n_targets=8", "setting.n_test=8"): "4dd30c49e83dabab",
        ("street-paper", "setting.n_targets=8", "setting.n_test=8"): "85c1ce3f7ba285cf",
        ("rot-g2", "setting.n_targets=8", "setting.n_test=8", "fit.method=codebook-verify"): "cb1efe83a52f825a"}


def test_fit_keys_are_unchanged_without_look_steps(tmp_path, monkeypatch):
    from scenefit.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "problem_key", lambda self: "problem")

    def key(preset: str, *items: str) -> str:
        cfg = load_config(preset, overrides_from_strings(list(items)))
        return Pipeline(cfg, tmp_path / "run", progress=False, log=lambda m: None).fit_key()

    assert {k: key(*k) for k in KEYS} == KEYS
    tiny = ("street-tiny",)
    assert key(*tiny, "fit.codebook.look_lr=0.1") == KEYS[tiny]  # unused without steps
    stepped = key(*tiny, "fit.codebook.look_steps=5")
    assert stepped != KEYS[tiny] and key(*tiny, "fit.codebook.look_steps=5", "fit.codebook.look_lr=0.1") != stepped
    digits = ("rot-g2", "setting.n_targets=8", "setting.n_test=8", "fit.method=codebook-verify")
    assert key(*digits, "fit.codebook.look_steps=5") == KEYS[digits]  # no look attribute: nothing to refine
