"""An engine's look stage (``render_look_parts``) used without re-rendering: the look search renders each start once
and develops its looks, with the same result as rendering every look in full; and a resized engine passes the look
stage of the engine it wraps on, resized like its renders."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from conftest import gl_ok

from scenefit.engines.base import LOOK_PARTS, ResizedEngine
from scenefit.engines.digits import digit_engine
from scenefit.engines.street import StreetEngine
from scenefit.fitting.look import (
    look_codes,
    look_search,
    look_search_parts,
    make_look_term,
)
from scenefit.fitting.look_refine import engine_look_parts

pytestmark = pytest.mark.usefixtures("one_thread")
needs_gl = pytest.mark.skipif(not gl_ok(), reason="no headless OpenGL (EGL) context available")

SEARCHED = ("exposure", "contrast", "gamma", "lens_blur", "sensor_noise")


@pytest.fixture(scope="module")
def street():
    with StreetEngine(height=48, width=160, camera=True) as e:
        yield e


def _problem(e: StreetEngine, n: int = 3, k: int = 2, j: int = 12):
    """Targets at random cameras; per target k starts (its own scene, then another), each with a random camera in the
    columns not searched; j codes over the searched columns. Returns (look term, starts (n, k, D), cols, codes,
    seeds (n * k,))."""
    g = torch.Generator().manual_seed(4)
    truth = e.space.sample_uniform(n, g)
    look = make_look_term(e.space, e.render_seeded(truth, torch.arange(n) + 100)["image"], weight=10.0)
    starts = torch.stack([truth, e.space.sample_uniform(n, g)], 1)[:, :k].clone()  # (n, k, D)
    cols = [e.space.index(name) for name in SEARCHED]
    codes = look_codes(e.space, cols, j, e.initial_centre(), seed=5)
    return look, starts, cols, codes, torch.arange(n * k) * 13 + 7


@needs_gl
def test_the_parts_search_is_the_full_render_search_with_one_render_per_start(street, monkeypatch):
    """Bit for bit the same starts and look terms as rendering each of the 6 starts' 12 looks in full (72 renders),
    from 6 rasterized frames."""
    look, starts, cols, codes, seeds = _problem(street)
    want, want_loss = look_search(lambda rows, i: street.render_seeded(rows, seeds[i])["image"], look, starts, cols, codes, batch=10)
    frames = []
    raster = street.render_scenes
    monkeypatch.setattr(street, "render_scenes", lambda scenes: frames.append(len(scenes)) or raster(scenes))
    got, got_loss = look_search_parts(lambda rows, i: street.render_look_parts(rows, seeds[i]), look, starts, cols, codes,
                                      street.space, batch=4)
    assert frames == [4, 2]  # each start rasterized once, in batches of 4
    assert torch.equal(got, want) and torch.equal(got_loss, want_loss)
    assert torch.equal(got[..., :20], starts[..., :20])  # only the searched look columns move
    others = [c for c in street.space.look if c not in cols]
    assert torch.equal(got[..., others], starts[..., others])
    assert len(set(map(tuple, got[..., cols].reshape(-1, len(cols)).tolist()))) > 1  # not one code for all


# -- a resized engine ----------------------------------------------------------------------------------------------


@needs_gl
def test_a_resized_engine_develops_its_own_images(street):
    """A street camera wrapped in the generic resize (the street resizes natively, so only an explicit wrap takes
    this path): develop then resize equals the resized render, measured max difference 0."""
    small = ResizedEngine(street, 24, 80)
    rows = street.space.sample_uniform(4, torch.Generator().manual_seed(6))
    seeds = torch.arange(4) * 3 + 1
    frames, develop = small.render_look_parts(rows, seeds)
    assert frames.shape == (4, 3, 48, 160)  # the inner engine's frames
    assert torch.equal(frames, street.render_look_parts(rows, seeds)[0])
    look = list(street.space.look)
    want = small.render_seeded(rows, seeds)["image"]
    got = develop(rows[:, look], frames)
    assert got.shape == want.shape == (4, 3, 24, 80)
    assert torch.equal(got, want)  # the same 8-bit values, area-resized alike
    cam = rows[:, look].clone().requires_grad_(True)
    develop(cam, frames).mean().backward()
    assert torch.isfinite(cam.grad).all() and (cam.grad[:, 0] > 0).all()  # brighter with exposure, through the resize
    assert engine_look_parts(small, 5, "codebook-verify") is not None
    again = pickle.loads(pickle.dumps(small))  # engines travel to workers
    assert torch.equal(getattr(again, LOOK_PARTS)(rows, seeds)[1](rows[:, look], frames), want)
    again.close()


def test_a_resized_engine_without_a_look_stage_offers_none():
    small = digit_engine(canvas=32).resized(16, 16)
    assert isinstance(small, ResizedEngine) and not hasattr(small, LOOK_PARTS)
    with pytest.raises(ValueError, match="^" + re.escape(
            "fit.codebook.look_steps 5: engine 'digits' has no render_look_parts (the optional look stage of "
            "scenefit.engines.base), so its looks cannot be refined through it; set fit.codebook.look_steps 0") + "$"):
        engine_look_parts(small, 5, "codebook-verify")
