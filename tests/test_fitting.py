import pytest
import torch

from scenefit.engines.digits import DigitEngine
from scenefit.fitting import FitConfig, code_grid, codebook_starts, fit_candidates, fit_one_reference


def pixels(x):
    return x.flatten(1)


@pytest.fixture(scope="module")
def setup(bank):
    eng = DigitEngine(bank, canvas=48, background="plain")
    tex = torch.tensor([3, 700, 1210, 2040, 2600, 3333, 4100, 4888])  # one texture per target
    true_rot = torch.tensor([-150.0, -95.0, -40.0, 5.0, 60.0, 100.0, 135.0, 170.0])
    attrs = torch.stack([true_rot, bank.labels[tex].float()], 1)
    targets = eng.render(attrs, textures=tex)["image"]
    return eng, tex, attrs, targets


def engine_renderer(eng, tex, m):
    """Differentiable R with each candidate's target texture (m candidates per target)."""
    t = tex.repeat_interleave(m)
    return lambda a, soft: eng.render(a, textures=t[: a.shape[0]])["image"]


def rot_err(a, b):
    return ((a - b + 180) % 360 - 180).abs()


def test_fitting_through_the_engine_recovers_rotations(setup):
    eng, tex, attrs, targets = setup
    # start 25 degrees off every target: plain gradient descent (Adam) through R
    starts = attrs.clone()
    starts[:, 0] = starts[:, 0] + 25.0
    res = fit_candidates(engine_renderer(eng, tex, 1), pixels, eng.space, pixels(targets), starts[:, None], [0],
                         FitConfig(method="plain", steps=150, lr=0.005), progress=False)
    err = rot_err(res.attrs[:, 0], attrs[:, 0])
    assert err.max().item() < 1.0, err
    assert res.loss.max().item() < 1e-3


def test_codebook_then_refine_finds_global_rotation(setup):
    eng, tex, attrs, targets = setup
    codes = code_grid(eng.space, torch.zeros(2), [0], [], {0: 36}, 10_000, 0)
    assert codes.shape == (36, 2)
    # the codebook is rendered with one texture per target: search each target separately
    best = []
    for i in range(len(tex)):
        c = codes.clone()
        c[:, 1] = attrs[i, 1]
        r = lambda a, soft, t=tex[i]: eng.render(a, textures=t.repeat(a.shape[0]))["image"]  # noqa: E731
        s, loss = codebook_starts(r, pixels, eng.space, pixels(targets[i : i + 1]), c, [0], top=2, progress=False)
        assert rot_err(s[0, 0, 0], s[0, 1, 0]) > 0.08 * 360 - 1e-3  # distinct basins
        best.append(s[0])
    starts = torch.stack(best)  # (8, 2, 2)
    assert rot_err(starts[:, 0, 0], attrs[:, 0]).max() <= 5.0 + 1e-4  # 10-degree grid
    res = fit_candidates(engine_renderer(eng, tex, 2), pixels, eng.space, pixels(targets), starts, [0],
                         FitConfig(method="codebook", steps=100, lr=0.003), progress=False)
    assert rot_err(res.attrs[:, 0], attrs[:, 0]).max().item() < 1.0


def test_batched_sgd_equals_per_image_reference(setup):
    eng, tex, attrs, targets = setup
    starts = attrs.clone()
    starts[:, 0] += torch.linspace(-8, 8, len(tex))
    cfg = FitConfig(method="plain", steps=10, lr=0.001, optimizer="sgd")
    batched = fit_candidates(engine_renderer(eng, tex, 1), pixels, eng.space, pixels(targets), starts[:, None], [0], cfg, progress=False)
    for i in range(len(tex)):
        r = lambda a, soft, t=tex[i]: eng.render(a, textures=t.repeat(a.shape[0]))["image"]  # noqa: E731
        a, loss = fit_one_reference(r, pixels, eng.space, targets[i], starts[i], [0], cfg.steps, cfg.lr)
        assert a[0].item() == pytest.approx(batched.attrs[i, 0].item(), abs=1e-3)
        assert loss == pytest.approx(batched.loss[i].item(), abs=1e-5)


def test_relaxed_category_search_picks_the_right_digit(bank):
    eng = DigitEngine(bank, canvas=48, background="plain")
    mean_digit = torch.stack([bank.images[bank.labels == c].mean(0) for c in range(10)])  # (10, 28, 28)

    def render(a, soft):
        # a toy differentiable "surrogate": class-mean textures blended by soft class weights
        w = soft[1] if soft else torch.nn.functional.one_hot(a[:, 1].long(), 10).float()
        return torch.nn.functional.pad((w @ mean_digit.flatten(1)).view(-1, 1, 28, 28), (10, 10, 10, 10))

    targets = render(torch.tensor([[0.0, 3.0], [0.0, 7.0]]), None)
    res = fit_candidates(render, pixels, eng.space, pixels(targets), torch.zeros(2, 1, 2), [], FitConfig(method="plain", steps=60, lr=0.2),
                         relax=[1], progress=False)
    assert res.attrs[:, 1].tolist() == [3.0, 7.0]


def test_fit_config_errors():
    with pytest.raises(ValueError, match=r"fit.lr must be a finite number > 0, got nan"):
        FitConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=r"fit.keep must be > 0, got 0"):
        FitConfig(keep=0)


def test_reference_loop_moves_toward_the_target(setup):
    eng, tex, attrs, targets = setup
    r = lambda a, soft: eng.render(a, textures=tex[3:4].repeat(a.shape[0]))["image"]  # noqa: E731
    start = attrs[3].clone()
    start[0] += 8.0
    a, loss = fit_one_reference(r, pixels, eng.space, targets[3], start, [0], 10, 0.001)
    assert rot_err(a[0], attrs[3, 0]) < 8.0 * 0.5
