"""``fit.method plain`` as the paper gives it: starts drawn from the initial distribution (the same in shards), and
the learning rate and step count chosen without labels by the engine's content loss."""

from __future__ import annotations

import re

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.config import ConfigError
from scenefit.fitting import (
    FitConfig,
    FitInputs,
    PlainConfig,
    fit_candidates,
    fit_targets,
)
from scenefit.fitting.plain import plain_starts
from scenefit.tasks.base import content_loss

pytestmark = pytest.mark.usefixtures("one_thread")

# a blob at (x, y) px from the centre, bright (class 0) or dark (class 1) on a grey ground; only x is fitted
SPACE = AttributeSpace([Attribute("x", -6.0, 6.0, "px"), Attribute("y", -6.0, 6.0, "px"),
                        Attribute("polarity", categories=("bright", "dark"))])
COLS = torch.arange(24, dtype=torch.float32) - 11.5
CENTRE = torch.tensor([0.0, 0.0, 0.0])
FREE = [0]
TRUTH = torch.tensor([[2.5, 0.0, 0.0], [3.0, 0.0, 1.0], [-3.5, 0.0, 0.0], [4.0, 0.0, 1.0], [-2.0, 0.0, 1.0], [1.5, 0.0, 0.0]])


def render(attrs: torch.Tensor, soft: dict | None = None, bias: float = 0.0) -> torch.Tensor:
    """(B, 3) -> (B, 1, 24, 24): a Gaussian blob (sigma 3 px) at (x + bias, y), differentiable in x and the class."""
    dark = soft[2][:, 1] if soft else attrs[:, 2]
    x, y = attrs[:, 0, None, None] + bias, attrs[:, 1, None, None]
    blob = torch.exp(-((COLS[None, None, :] - x) ** 2 + (COLS[None, :, None] - y) ** 2) / 18.0)
    return (0.5 + (0.4 - 0.8 * dark[:, None, None]) * blob)[:, None]


def surrogate(attrs: torch.Tensor, soft: dict | None = None) -> torch.Tensor:
    """G: R with a 1 px error, so that a loss read through G is not R's."""
    return render(attrs, soft, bias=1.0)


def features(images: torch.Tensor) -> torch.Tensor:
    return (images - 0.5).flatten(1)


class Engine:
    """R at the fitting resolution: the blob itself (no randomness, so every seed renders the same)."""

    space = SPACE

    def render_seeded(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": render(attrs)}


def sample_initial(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3) uniform positions and classes."""
    xy = torch.rand(n, 2, generator=generator) * 12 - 6
    return torch.cat([xy, torch.randint(0, 2, (n, 1), generator=generator).float()], 1)


def inputs(rows: slice = slice(None), **kw) -> FitInputs:
    f_t = features(render(TRUTH[rows]))
    first = rows.start or 0
    return FitInputs(SPACE, features, f_t, CENTRE, FREE, seed=5, surrogate=surrogate, engine=Engine(), progress=False,
                     first_target=first, sample_initial=sample_initial, **kw)


def engine_loss(rows: torch.Tensor) -> float:
    """The selection's criterion, computed here directly: mean 1 - cos of R's renders against the targets."""
    return content_loss(features(render(rows)), features(render(TRUTH))).mean().item()


# -- starts -----------------------------------------------------------------------------------------------------

def test_initial_starts_are_per_target_draws_that_shards_reproduce():
    whole = plain_starts(inputs(), "initial")[:, 0]
    assert whole.shape == (6, 3)
    assert torch.equal(whole, plain_starts(inputs(), "initial")[:, 0])  # reproducible
    shards = torch.cat([plain_starts(inputs(slice(0, 2)), "initial"), plain_starts(inputs(slice(2, 6)), "initial")])[:, 0]
    assert torch.equal(whole, shards)  # a target's draw depends on its global index, not its batch
    assert len(set(whole[:, 0].tolist())) == 6 and whole[:, 0].abs().max() <= 6  # x: six distinct draws in the box
    assert torch.equal(whole[:, 1], torch.zeros(6))  # y is not fitted: it stays at the centre
    assert set(whole[:, 2].tolist()) <= {0.0, 1.0}  # the draw's class
    other = FitInputs(SPACE, features, inputs().target_features, CENTRE, FREE, seed=6, sample_initial=sample_initial)
    assert not torch.equal(plain_starts(other, "initial"), plain_starts(inputs(), "initial"))  # the seed matters
    assert torch.equal(plain_starts(inputs(), "centre")[:, 0], CENTRE.repeat(6, 1))


def test_plain_from_initial_draws_fits_the_same_in_shards():
    cfg = FitConfig(method="plain", steps=20, lr=0.05, plain=PlainConfig(start="initial"))
    whole = fit_targets(inputs(), cfg)
    parts = [fit_targets(inputs(s), cfg) for s in (slice(0, 3), slice(3, 6))]
    assert torch.allclose(whole.attrs, torch.cat([p.attrs for p in parts]), atol=1e-5)
    assert torch.equal(whole.starts, plain_starts(inputs(), "initial"))
    centre = fit_targets(inputs(), FitConfig(method="plain", steps=20, lr=0.05))
    assert torch.equal(centre.starts[:, 0], CENTRE.repeat(6, 1)) and not torch.allclose(centre.attrs, whole.attrs)


def test_initial_starts_need_the_sampler():
    bare = FitInputs(SPACE, features, inputs().target_features, CENTRE, FREE, seed=5, surrogate=surrogate, progress=False)
    with pytest.raises(ValueError, match=re.escape("fit.method 'plain with fit.plain.start initial' needs the sample_initial")):
        fit_targets(bare, FitConfig(method="plain", plain=PlainConfig(start="initial")))


# -- snapshots --------------------------------------------------------------------------------------------------

def test_snapshots_equal_separate_runs_of_that_many_steps():
    starts = CENTRE.repeat(6, 1)[:, None]
    f_t = features(render(TRUTH))

    def run(steps: int, snapshots: tuple[int, ...] = ()):
        return fit_candidates(surrogate, features, SPACE, f_t, starts, FREE, steps, 0.05, relax=[2], progress=False, snapshots=snapshots)

    res = run(30, (0, 7, 30, 7))
    assert res.snapshots.shape == (4, 6, 1, 3)
    for k, s in enumerate((0, 7, 30, 7)):
        assert torch.allclose(res.snapshots[k, :, 0], run(s).attrs, atol=1e-6), s
    assert torch.equal(res.snapshots[0, :, 0, :2], starts[:, 0, :2]) and torch.equal(res.snapshots[2, :, 0], res.attrs)
    assert torch.equal(run(30).attrs, res.attrs) and run(30).snapshots is None  # snapshots change nothing else
    with pytest.raises(ValueError, match=re.escape("snapshots must lie in [0, steps=5], got [6]")):
        run(5, (6,))


# -- choosing lr and steps --------------------------------------------------------------------------------------

SELECT = PlainConfig(select_lrs=(1e-4, 0.05), select_steps=(5, 60), select_targets=4)


def test_selection_picks_the_pair_with_the_lowest_engine_loss():
    res = fit_targets(inputs(), FitConfig(method="plain", steps=1, lr=0.3, plain=SELECT))
    rec = res.info["plain_select"]
    assert rec["criterion"] == "engine content loss" and rec["targets"] == 4
    assert [(lr, s) for lr, s, _ in rec["grid"]] == [(1e-4, 5), (1e-4, 60), (0.05, 5), (0.05, 60)]
    # every grid loss is R's loss of a separate fit of the first 4 targets with that pair (G has a 1 px error, so a
    # loss read through G would differ)
    sub = TRUTH[:4]
    for lr, steps, loss in rec["grid"]:
        rows = fit_candidates(surrogate, features, SPACE, features(render(sub)), CENTRE.repeat(4, 1)[:, None], FREE, steps, lr,
                              relax=[2], progress=False).attrs
        expected = content_loss(features(render(rows)), features(render(sub))).mean().item()
        assert loss == pytest.approx(expected, abs=1e-6), (lr, steps)
        if lr == 1e-4:  # too small to move x in 60 steps (Adam's step is ~lr unit-cube units: 60 * 1e-4 * 12 px)
            assert rows[:, 0].abs().max() < 0.08
    # measured: 0.256, 0.248 (lr 1e-4) and 0.049, 0.024 (lr 0.05) after 5 and 60 steps
    assert (rec["lr"], rec["steps"]) == (0.05, 60) and rec["grid"][3][2] == min(r[2] for r in rec["grid"])
    assert rec["grid"][3][2] < 0.5 * rec["grid"][1][2]
    # then every target is fitted with the chosen pair
    chosen = fit_targets(inputs(), FitConfig(method="plain", steps=60, lr=0.05))
    assert torch.equal(res.attrs, chosen.attrs) and chosen.info == {}
    assert engine_loss(res.attrs) < engine_loss(CENTRE.repeat(6, 1))


def test_selection_needs_the_engine():
    bare = FitInputs(SPACE, features, inputs().target_features, CENTRE, FREE, seed=5, surrogate=surrogate, progress=False)
    with pytest.raises(ValueError, match=re.escape("fit.method 'plain with fit.plain.select_lrs' needs the engine")):
        fit_targets(bare, FitConfig(method="plain", plain=SELECT))


# -- config -----------------------------------------------------------------------------------------------------

BOTH = "fit.plain.select_lrs and fit.plain.select_steps must both be given (to choose fit.lr and fit.steps) or both be empty, got "


@pytest.mark.parametrize("kw, msg", [
    ({"start": "x"}, "fit.plain.start must be 'centre' or 'initial', got 'x'"),
    ({"select_lrs": (0.1, 0.0), "select_steps": (5,)}, "fit.plain.select_lrs must hold finite numbers > 0, got [0.1, 0.0]"),
    ({"select_lrs": (float("nan"),), "select_steps": (5,)}, "fit.plain.select_lrs must hold finite numbers > 0, got [nan]"),
    ({"select_lrs": (0.1,), "select_steps": (5, -1)}, "fit.plain.select_steps must hold step counts >= 0, got [5, -1]"),
    ({"select_lrs": (0.1,)}, BOTH + "[0.1] and []"),
    ({"select_steps": (5,)}, BOTH + "[] and [5]"),
    ({"select_targets": 0}, "fit.plain.select_targets must be > 0, got 0"),
])
def test_plain_config_errors(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        PlainConfig(**kw)


def test_plain_settings_with_another_method_are_refused():
    with pytest.raises(ValueError, match=re.escape("fit.plain.select_lrs and fit.plain.select_steps choose the learning rate of "
                                                   "fit.method 'plain', got fit.method 'codebook': leave them empty or use fit.method plain")):
        FitConfig(method="codebook", plain=SELECT)
    with pytest.raises(ValueError, match=re.escape("fit.plain.start 'initial' is for fit.method 'plain', got fit.method 'amortized': "
                                                   "leave it 'centre' or use fit.method plain")):
        FitConfig(plain=PlainConfig(start="initial"))
    from scenefit.configio import load_config

    with pytest.raises(ConfigError, match=re.escape("fit.plain.start must be 'centre' or 'initial', got 'random'")):
        load_config("rot-g2", {"fit": {"method": "plain", "plain": {"start": "random"}}})
    cfg = load_config("rot-g2", {"fit": {"method": "plain", "plain": {"select_lrs": [0.01, 0.1], "select_steps": [20]}}})
    assert cfg.fit.plain.select_lrs == (0.01, 0.1) and cfg.fit.plain.select_steps == (20,) and cfg.fit.plain.selects


def test_streamed_fit_refuses_selection(tmp_path):
    from scenefit.configio import load_config
    from scenefit.workflows import fit_folder

    cfg = load_config("rot-g2", {"fit": {"method": "plain", "plain": {"select_lrs": [0.01], "select_steps": [20]}}})
    with pytest.raises(ConfigError, match=re.escape("scenefit fit streams shards, each of which would choose its own")):
        fit_folder(cfg, tmp_path / "targets", tmp_path / "out", progress=False, log=lambda m: None)
    assert not (tmp_path / "out").exists()


# -- keys -------------------------------------------------------------------------------------------------------

# measured before fit.plain existed (commit 01d7c2d): runs fitted then resume without a refit
KEYS = {(): "8659b3cba0beea26", ("fit.method=plain", "fit.steps=5", "fit.lr=0.05"): "5640feedc93bfcd2",
        ("fit.method=codebook", "fit.steps=3"): "643c1b2934ac1b94"}


def test_fit_keys_are_unchanged_at_the_plain_defaults(tmp_path):
    from scenefit.configio import load_config, overrides_from_strings
    from scenefit.pipeline import Pipeline

    def key(*items: str) -> str:
        cfg = load_config("rot-g2", overrides_from_strings(["setting.n_targets=8", "setting.n_test=8", *items]))
        return Pipeline(cfg, tmp_path / "run", progress=False, log=lambda m: None).fit_key()

    assert {k: key(*k) for k in KEYS} == KEYS
    plain = ("fit.method=plain", "fit.steps=5", "fit.lr=0.05")
    assert key(*plain, "fit.plain.start=initial") != KEYS[plain]
    assert key(*plain, "fit.plain.select_lrs=[0.01]", "fit.plain.select_steps=[5]") != KEYS[plain]
