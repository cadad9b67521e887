"""One contract suite for every engine: the digit engine, the street engine and the example plug-in engine.

Each test runs on the three engines (small images, tiny batches). The contract is the one of
:mod:`scenefit.engines.base`: attributes in, images and labels out, row ``i`` a function of
``(attrs[i], seeds[i])`` alone.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from conftest import gl_ok
import torch
import torch.nn.functional as F

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import EngineRenderer, LabelTable, ResizedEngine, check_engine
from scenefit.engines.digits import digit_engine
from scenefit.engines.registry import make_engine
from scenefit.engines.street import StreetEngine
from scenefit.seeding import draw_seeds

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHAPES_DIR = ROOT / "examples" / "custom_engine"




@pytest.fixture(scope="module", params=["digits", "street", "street-camera", "shapes"])
def engine(request):
    """The engine under test, built once per module and closed at the end."""
    if request.param == "digits":
        eng = digit_engine(canvas=32)
    elif request.param.startswith("street"):
        if not gl_ok():
            pytest.skip("no headless OpenGL (EGL) context available for the street engine")
        eng = StreetEngine(height=32, width=96, camera=request.param == "street-camera")
    else:
        if not (SHAPES_DIR / "shapes_engine.py").is_file():
            pytest.skip(f"the example engine {SHAPES_DIR / 'shapes_engine.py'} does not exist yet")
        eng = make_engine("shapes_engine:ShapesEngine", {}, search_dirs=[str(SHAPES_DIR)])
    yield eng
    eng.close()


def _attrs(engine, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` rows: half from the engine's prior, half uniform over the attribute box."""
    g = torch.Generator().manual_seed(seed)
    k = n // 2
    return torch.cat([engine.sample_initial(k, g), engine.space.sample_uniform(n - k, g)])


def _check_out(engine, out: dict, b: int, h: int | None = None, w: int | None = None) -> None:
    h, w = h or engine.height, w or engine.width
    img, lab = out["image"], out["label"]
    assert img.shape == (b, engine.channels, h, w) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
    assert lab.dtype == torch.int64
    n = engine.labels.num_classes
    if engine.label_kind == "class":
        assert lab.shape == (b,)
        assert lab.min() >= 0 and lab.max() < n
    else:
        assert lab.shape == (b, h, w)
        ok = ((lab >= 0) & (lab < n)) | (lab == engine.labels.ignore_index)
        assert ok.all()


# --------------------------------------------------------------------------------------- static parts
def test_check_engine_passes_and_catches_breaks(engine):
    check_engine(engine)
    assert engine.label_kind in ("class", "mask") and isinstance(engine.labels, LabelTable)
    assert isinstance(engine.space, AttributeSpace) and engine.space.dim >= 1
    bad = copy.copy(engine)
    bad.height = 0
    with pytest.raises(ValueError, match=rf"^here: engine '{engine.name}'.height must be a positive int, got 0$"):
        check_engine(bad, "here")
    bad = copy.copy(engine)
    bad.label_kind = "boxes"
    with pytest.raises(ValueError, match=rf"^engine: engine '{engine.name}'.label_kind must be one of \['class', 'mask'\], got 'boxes'$"):
        check_engine(bad)


def test_label_table_and_attribute_space_round_trip(engine):
    table = LabelTable.from_dict(json.loads(json.dumps(engine.labels.to_dict())))
    assert table == engine.labels
    d = engine.space.to_dict()
    space = AttributeSpace.from_dict(json.loads(json.dumps(d)))
    assert space.attributes == engine.space.attributes and space.to_dict() == d
    x = _attrs(engine, 4)
    assert torch.equal(space.encode(x), engine.space.encode(x))


# --------------------------------------------------------------------------------------------- render
def test_render_shapes_dtypes_and_seeds(engine):
    attrs = _attrs(engine, 3)
    out = engine.render(attrs, generator=torch.Generator().manual_seed(4))
    _check_out(engine, out, 3)
    assert out["seed"].dtype == torch.int64 and torch.equal(out["seed"], draw_seeds(3, torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match=r"^seeds must have shape \(3,\) for 3 rows, got \(2,\)$"):
        engine.render(attrs, seeds=torch.tensor([1, 2]))


def test_same_generator_seed_same_render_other_seed_other_images(engine):
    attrs = _attrs(engine, 3, seed=1)
    a = engine.render(attrs, generator=torch.Generator().manual_seed(5))
    b = engine.render(attrs, generator=torch.Generator().manual_seed(5))
    c = engine.render(attrs, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"]) and torch.equal(a["seed"], b["seed"])
    assert torch.equal(engine.render(attrs)["image"], engine.render(attrs, torch.Generator().manual_seed(0))["image"])
    # every engine here has nuisance (textures and backgrounds, street layouts, noise and brightness): each row changes
    for i in range(3):
        assert not torch.equal(a["image"][i], c["image"][i]), i


def test_rows_split_into_batches_render_the_same(engine):
    attrs = _attrs(engine, 5, seed=2)
    seeds = draw_seeds(5, torch.Generator().manual_seed(9))
    whole = engine.render(attrs, seeds=seeds)
    parts = [engine.render(attrs[i:j], seeds=seeds[i:j]) for i, j in ((0, 2), (2, 5))]
    assert torch.equal(torch.cat([p["image"] for p in parts]), whole["image"])
    assert torch.equal(torch.cat([p["label"] for p in parts]), whole["label"])
    assert torch.equal(torch.cat([p["seed"] for p in parts]), seeds)
    perm = torch.tensor([4, 2, 0, 3, 1])
    shuffled = engine.render_seeded(attrs[perm], seeds[perm])
    assert torch.equal(shuffled["image"], whole["image"][perm]) and torch.equal(shuffled["label"], whole["label"][perm])


# ------------------------------------------------------------------------------------ distributions
def test_sample_initial_in_bounds_and_deterministic(engine):
    x = engine.sample_initial(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, engine.space.dim) and x.dtype == torch.float32
    engine.space.check(x)
    for i in engine.space.categorical:
        assert torch.equal(x[:, i], x[:, i].round())
    assert torch.equal(x, engine.sample_initial(64, torch.Generator().manual_seed(0)))
    assert not torch.equal(x, engine.sample_initial(64, torch.Generator().manual_seed(1)))


def test_initial_centre_shape_bounds_and_agreement_with_samples(engine):
    c = engine.initial_centre()
    assert c.shape == (engine.space.dim,)
    engine.space.check(c[None])
    x = engine.sample_initial(512, torch.Generator().manual_seed(3)).double()
    for i, a in enumerate(engine.space):
        if a.categorical:
            assert float(c[i]) == round(float(c[i])) and 0 <= c[i] < a.num_categories
        elif a.periodic:
            phase = (x[:, i] - a.low) / a.span * 2 * math.pi
            mean = math.atan2(phase.sin().mean().item(), phase.cos().mean().item())
            centre = (float(c[i]) - a.low) / a.span * 2 * math.pi
            gap = abs((mean - centre + math.pi) % (2 * math.pi) - math.pi)
            assert gap < 0.05 * 2 * math.pi, a.name
        else:
            assert abs(x[:, i].mean().item() - float(c[i])) < 0.05 * a.span, a.name


# ------------------------------------------------------------------------------------------ identity
def test_describe_is_json_and_round_trips(engine):
    d = engine.describe()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back == d
    assert (d["channels"], d["height"], d["width"]) == (engine.channels, engine.height, engine.width)
    assert d["label_kind"] == engine.label_kind and d["labels"] == engine.labels.to_dict()
    assert d["attributes"] == engine.space.to_dict() and "spec" in d
    cls = type(engine)
    assert d["class"] == f"{cls.__module__}:{cls.__qualname__}"
    if engine.spec is not None:  # built by make_engine
        assert d["spec"]["name"] and isinstance(d["spec"]["args"], dict)


def test_resized_renders_at_that_size(engine):
    assert engine.resized(engine.height, engine.width) is engine
    small = engine.resized(16, 48)
    assert (small.height, small.width) == (16, 48) and small.label_kind == engine.label_kind
    check_engine(small)
    attrs = _attrs(engine, 3, seed=4)
    seeds = draw_seeds(3, torch.Generator().manual_seed(1))
    out = small.render(attrs, seeds=seeds)
    _check_out(small, out, 3, 16, 48)
    d = small.describe()
    assert (d["height"], d["width"]) == (16, 48) and json.loads(json.dumps(d)) == d and d != engine.describe()
    full = engine.render(attrs, seeds=seeds)
    if engine.label_kind == "class":
        assert torch.equal(out["label"], full["label"])  # the same scenes
    if isinstance(small, ResizedEngine):  # the full render, area-resized
        assert torch.allclose(out["image"], F.interpolate(full["image"], size=(16, 48), mode="area"), atol=1e-6)
    assert torch.equal(small.sample_initial(4, torch.Generator().manual_seed(2)), engine.sample_initial(4, torch.Generator().manual_seed(2)))
    assert torch.equal(small.initial_centre(), engine.initial_centre())


def test_engine_renderer_has_the_surrogate_call_shape(engine):
    attrs = _attrs(engine, 3, seed=5)
    render = EngineRenderer(engine, torch.Generator().manual_seed(7))
    first = render(attrs)
    assert first.shape == (3, engine.channels, engine.height, engine.width) and first.device == torch.device("cpu")
    assert torch.equal(first, engine.render(attrs, generator=torch.Generator().manual_seed(7))["image"])
    assert not torch.equal(render(attrs), first)  # every call draws fresh seeds
    with pytest.raises(ValueError, match=rf"^engine '{engine.name}' renders categories, not probabilities: fit with categorical columns fixed$"):
        render(attrs, soft={engine.space.dim - 1: torch.full((3, 2), 0.5)})
    leaf = attrs.clone().requires_grad_(True)
    images = EngineRenderer(engine)(leaf)
    assert images.requires_grad == engine.differentiable
