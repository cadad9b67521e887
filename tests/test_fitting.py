"""Fitting recovers known attributes through the differentiable digit engine; the batched optimiser is Algorithm 1."""

import re

import pytest
import torch
import torch.nn.functional as F

from scenefit.engines.digits import DigitEngine, paste_grid
from scenefit.fitting import (
    STRATEGIES,
    CodebookConfig,
    FitConfig,
    FitInputs,
    RestartsConfig,
    code_grid,
    codebook_starts,
    fit_candidates,
    fit_one_reference,
    fit_targets,
    sobol_starts,
)
from scenefit.mnist import DigitBank


pytestmark = pytest.mark.usefixtures("one_thread")


def pixels(x):
    return x.flatten(1)


def rot_err(a, b):
    return ((a - b + 180) % 360 - 180).abs()


@pytest.fixture(scope="module")
def setup(bank):
    eng = DigitEngine(bank, canvas=48, background="plain")
    tex = torch.tensor([3, 700, 1210, 2040, 2600, 3333, 4100, 4888])  # one texture per target
    true_rot = torch.tensor([-150.0, -95.0, -40.0, 5.0, 60.0, 100.0, 135.0, 170.0])
    attrs = torch.stack([true_rot, bank.labels[tex].float()], 1)
    targets = eng.render_seeded(attrs, torch.zeros(8, dtype=torch.int64), textures=tex)["image"]
    return eng, tex, attrs, targets


def engine_renderer(eng, tex, m):
    """Differentiable R with each candidate's target texture (m candidates per target, rows in target order)."""
    t = tex.repeat_interleave(m)
    return lambda a, soft: eng.render_seeded(a, torch.zeros(a.shape[0], dtype=torch.int64), textures=t[: a.shape[0]])["image"]


def one_texture(eng, t):
    return lambda a, soft: eng.render_seeded(a, torch.zeros(a.shape[0], dtype=torch.int64), textures=t.repeat(a.shape[0]))["image"]


def test_fitting_through_the_engine_recovers_rotations(setup):
    eng, tex, attrs, targets = setup
    # start 25 degrees off every target: gradient descent (Adam) through R
    starts = attrs.clone()
    starts[:, 0] = starts[:, 0] + 25.0
    res = fit_candidates(engine_renderer(eng, tex, 1), pixels, eng.space, pixels(targets), starts[:, None], [0], 80, 0.008,
                         progress=False)
    err = rot_err(res.attrs[:, 0], attrs[:, 0])
    assert err.max().item() < 1.0, err  # measured 0.24
    assert res.loss.max().item() < 1e-3
    assert torch.equal(res.attrs[:, 1], attrs[:, 1])  # the digit column is not free: it keeps its start
    assert res.losses.shape == (8, 1) and torch.equal(res.candidate, torch.zeros(8, dtype=torch.int64))


def test_codebook_then_refine_finds_global_rotation(setup):
    eng, tex, attrs, targets = setup
    codes = code_grid(eng.space, torch.zeros(2), [0], [], {0: 36}, 10_000, 0)
    assert codes.shape == (36, 2)
    # the codebook is rendered with one texture per target: search each target separately
    best = []
    for i in range(len(tex)):
        c = codes.clone()
        c[:, 1] = attrs[i, 1]
        s, loss = codebook_starts(one_texture(eng, tex[i]), pixels, eng.space, pixels(targets[i : i + 1]), c, [0], top=2, progress=False)
        assert rot_err(s[0, 0, 0], s[0, 1, 0]) > 0.08 * 360 - 1e-3  # distinct basins
        assert loss[0, 0] <= loss[0, 1]
        best.append(s[0])
    starts = torch.stack(best)  # (8, 2, 2)
    assert rot_err(starts[:, 0, 0], attrs[:, 0]).max() <= 5.0 + 1e-4  # 10-degree grid
    res = fit_candidates(engine_renderer(eng, tex, 2), pixels, eng.space, pixels(targets), starts, [0], 50, 0.003, progress=False)
    assert rot_err(res.attrs[:, 0], attrs[:, 0]).max().item() < 1.0


def test_batched_sgd_equals_per_image_reference(setup):
    eng, tex, attrs, targets = setup
    starts = attrs.clone()
    starts[:, 0] += torch.linspace(-8, 8, len(tex))
    steps, lr = 10, 0.001
    batched = fit_candidates(engine_renderer(eng, tex, 1), pixels, eng.space, pixels(targets), starts[:, None], [0], steps, lr,
                             optimizer="sgd", progress=False)
    moved = 0
    for i in range(len(tex)):
        a, loss = fit_one_reference(one_texture(eng, tex[i]), pixels, eng.space, targets[i], starts[i], [0], steps, lr)
        assert a[0].item() == pytest.approx(batched.attrs[i, 0].item(), abs=1e-3)
        assert loss == pytest.approx(batched.loss[i].item(), abs=1e-5)
        moved += abs(a[0].item() - starts[i, 0].item()) > 0.1
    assert moved == len(tex)  # the comparison is not between two starts that never moved


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_chunks_do_not_change_the_result(setup, optimizer):
    eng, tex, attrs, targets = setup
    # one texture for every row, so the renderer does not care which chunk a row is in
    targets = eng.render_seeded(attrs, torch.zeros(8, dtype=torch.int64), textures=tex[:1].repeat(8))["image"]
    starts = attrs[:, None].repeat(1, 2, 1)
    starts[:, :, 0] += torch.tensor([6.0, -6.0])
    runs = [fit_candidates(one_texture(eng, tex[0]), pixels, eng.space, pixels(targets), starts, [0], 5, 0.002, optimizer=optimizer,
                           chunk=chunk, progress=False) for chunk in (16, 3)]
    assert torch.allclose(runs[0].attrs, runs[1].attrs, atol=1e-4) and torch.allclose(runs[0].losses, runs[1].losses, atol=1e-6)
    assert (runs[0].attrs[:, 0] - starts[:, 0, 0]).abs().min() > 0.1  # the starts moved


def test_reference_loop_moves_toward_the_target(setup):
    eng, tex, attrs, targets = setup
    start = attrs[3].clone()
    start[0] += 8.0
    a, _ = fit_one_reference(one_texture(eng, tex[3]), pixels, eng.space, targets[3], start, [0], 10, 0.001)
    assert rot_err(a[0], attrs[3, 0]) < 8.0 * 0.5


def test_relaxed_category_search_picks_the_right_digit(bank):
    eng = DigitEngine(bank, canvas=48, background="plain")
    mean_digit = torch.stack([bank.images[bank.labels == c].mean(0) for c in range(10)])  # (10, 28, 28)

    def render(a, soft):
        # a toy differentiable "surrogate": class-mean textures blended by soft class weights
        w = soft[1] if soft else torch.nn.functional.one_hot(a[:, 1].long(), 10).float()
        return torch.nn.functional.pad((w @ mean_digit.flatten(1)).view(-1, 1, 28, 28), (10, 10, 10, 10))

    targets = render(torch.tensor([[0.0, 3.0], [0.0, 7.0]]), None)
    res = fit_candidates(render, pixels, eng.space, pixels(targets), torch.zeros(2, 1, 2), [], 60, 0.2, relax=[1], progress=False)
    assert res.attrs[:, 1].tolist() == [3.0, 7.0]


# -- the strategies, through a differentiable digit engine as G --------------------------------------------------

TRUTH = torch.tensor([[-150.0, 3], [-100, 7], [-40, 1], [10, 0], [70, 5], [120, 9], [165, 2], [-5, 8]])


@pytest.fixture(scope="module")
def ten(bank):
    """A bank of one texture per digit, so R is a fixed function of (rotation, digit); G is R with the digit's texture
    blended by soft class weights (differentiable in both)."""
    idx = torch.stack([torch.nonzero(bank.labels == c)[0, 0] for c in range(10)])
    eng = DigitEngine(DigitBank(bank.images[idx], bank.labels[idx]), canvas=32, background="plain")
    flat = eng.bank.images.flatten(1)  # (10, 784), row c = digit c

    def G(a, soft=None):
        w = soft[1] if soft else F.one_hot(a[:, 1].round().long(), 10).to(a)
        tex = (w @ flat).view(-1, 1, 28, 28)
        return F.grid_sample(tex, paste_grid(a[:, 0], a.new_zeros(a.shape[0], 2), 32, 32), align_corners=False)

    def feats(x):
        return F.avg_pool2d(x, 2).flatten(1)

    targets = eng.render(TRUTH, torch.Generator().manual_seed(3))["image"]
    return eng, G, feats, targets


def inputs(ten, **kw) -> FitInputs:
    eng, G, feats, targets = ten
    base = dict(space=eng.space, features=feats, target_features=feats(targets), centre=torch.tensor([0.0, 0.0]), free=[0], seed=0,
                surrogate=G, engine=eng, progress=False)
    return FitInputs(**{**base, **kw})


def test_the_blended_renderer_is_the_engine(ten):
    eng, G, _, targets = ten
    assert torch.allclose(G(TRUTH), targets, atol=1e-6)
    # any seeds: one texture per class and no background leave R nothing to draw
    assert torch.equal(eng.render(TRUTH, torch.Generator().manual_seed(99))["image"], targets)


def test_plain_only_recovers_targets_near_the_centre(ten):
    res = fit_targets(inputs(ten), FitConfig(method="plain", steps=40, lr=0.01))
    err = rot_err(res.attrs[:, 0], TRUTH[:, 0])
    near = TRUTH[:, 0].abs() <= 40
    # measured: 0.1-3.0 degrees near 0, 128-179 degrees for the far targets (local minima, the paper's failure case)
    assert err[near].max() < 4.0 and err[~near].min() > 90.0, err
    assert torch.equal(res.attrs[near, 1], TRUTH[near, 1])  # the relaxed digit search finds the class too
    assert res.starts.shape == (8, 1, 2) and torch.equal(res.starts[:, 0], torch.zeros(8, 2))


def test_restarts_recover_every_rotation_and_digit(ten):
    res = fit_targets(inputs(ten), FitConfig(method="restarts", steps=40, lr=0.01, restarts=RestartsConfig(count=8)))
    assert res.starts.shape == (8, 8, 2) and res.losses.shape == (8, 8)
    # measured: at most 4.9 degrees
    assert rot_err(res.attrs[:, 0], TRUTH[:, 0]).max() < 6.0
    assert torch.equal(res.attrs[:, 1], TRUTH[:, 1])
    assert torch.equal(res.loss, res.losses.min(1).values)


@pytest.mark.parametrize("method", ["codebook", "codebook-verify"])
def test_codebooks_recover_every_rotation_and_digit(ten, method):
    cfg = FitConfig(method=method, steps=40, lr=0.01, codebook=CodebookConfig(grid_periodic=24, keep=2))
    res = fit_targets(inputs(ten), cfg)
    # measured: at most 0.46 degrees; the 24 x 10 codes hold each target's digit
    assert rot_err(res.attrs[:, 0], TRUTH[:, 0]).max() < 1.0
    assert torch.equal(res.attrs[:, 1], TRUTH[:, 1])
    if method == "codebook-verify":
        # candidates: 2 codes + the refined point; a target on the 15-degree grid (-150, 120, 165) is matched by a code exactly
        assert res.starts.shape == (8, 3, 2) and res.info["chosen_codebook"] + res.info["chosen_refined"] == 8
        on_grid = (TRUTH[:, 0] % 15 == 0)
        assert torch.equal(rot_err(res.attrs[on_grid, 0], TRUTH[on_grid, 0]), torch.zeros(3))
        assert res.info["chosen_codebook"] >= 3


def test_strategies_say_what_they_need(ten):
    assert set(STRATEGIES) == {"plain", "restarts", "codebook", "codebook-verify", "amortized"}
    with pytest.raises(ValueError, match=re.escape("fit.method 'plain' needs the surrogate, which this fit was not given")):
        fit_targets(inputs(ten, surrogate=None), FitConfig(method="plain"))
    with pytest.raises(ValueError, match=re.escape("fit.method 'codebook-verify' needs the engine, which this fit was not given")):
        fit_targets(inputs(ten, engine=None), FitConfig(method="codebook-verify"))
    with pytest.raises(ValueError, match=re.escape("fit.method 'amortized' needs the encoder, which this fit was not given")):
        fit_targets(inputs(ten), FitConfig(method="amortized"))


def test_code_grid_and_sobol_starts(ten):
    space = ten[0].space
    grid = code_grid(space, torch.tensor([0.0, 0.0]), [0], [1], {0: 4}, 100, 0)
    assert grid.shape == (40, 2)
    assert sorted(set(grid[:, 0].tolist())) == [-90.0, 0.0, 90.0, 180.0]  # -180 wraps to 180
    assert sorted(set(grid[:, 1].tolist())) == [float(c) for c in range(10)]
    sob = code_grid(space, torch.tensor([0.0, 0.0]), [0], [1], {0: 4}, 16, 0)  # 40 > 16: Sobol points instead
    assert sob.shape == (16, 2) and torch.equal(sob[:, 1], sob[:, 1].round())
    starts = sobol_starts(space, torch.tensor([[0.0, 4.0], [30.0, 6.0]]), [0], 8, seed=1)
    assert starts.shape == (2, 8, 2)
    assert torch.equal(starts[0, :, 0], starts[1, :, 0])  # the same spread for every target
    assert starts[:, :, 1].tolist() == [[4.0] * 8, [6.0] * 8]  # columns not spread keep the base
    # 8 scrambled Sobol points cover the circle: one in each 45-degree sector
    sectors = torch.floor((starts[0, :, 0] + 180) / 45).long() % 8
    assert sorted(sectors.tolist()) == list(range(8))


def test_fit_config_errors():
    with pytest.raises(ValueError, match=r"fit.lr must be a finite number > 0, got nan"):
        FitConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=r"fit.codebook.keep must be > 0, got 0"):
        CodebookConfig(keep=0)
    with pytest.raises(ValueError, match=r"fit.restarts.count must be > 0, got 0"):
        RestartsConfig(count=0)
    with pytest.raises(ValueError, match=re.escape("fit.optimizer must be 'adam' or 'sgd', got 'lbfgs'")):
        FitConfig(optimizer="lbfgs")
