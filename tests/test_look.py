"""The look rule: look attributes matched by the look statistics, every other attribute by the features."""

from __future__ import annotations

import re

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace, AttributeSpecError
from scenefit.fitting import codebook_starts, fit_candidates
from scenefit.fitting.look import look_codes, look_search, look_statistics, make_look_term, split_look

pytestmark = pytest.mark.usefixtures("one_thread")

# content: a blob's horizontal position x (px from the centre); look: a gain that scales the whole image
SPACE = AttributeSpace([Attribute("x", -6.0, 6.0, "px"), Attribute("gain", 0.4, 1.0, "rel", look=True)])
COLS = torch.arange(24, dtype=torch.float32) - 11.5


def render(attrs: torch.Tensor, soft=None) -> torch.Tensor:
    """(B, 2) -> (B, 1, 24, 24): a Gaussian blob (sigma 3 px) at (x, 0), times gain, on a 0.1 ground."""
    x, gain = attrs[:, 0, None, None], attrs[:, 1, None, None]
    blob = torch.exp(-((COLS[None, None, :] - x) ** 2 + COLS[None, :, None] ** 2) / 18.0)
    return (gain * (0.1 + 0.8 * blob))[:, None]


def features(images: torch.Tensor) -> torch.Tensor:
    """Look-invariant: the flattened image, whose cosine ignores any gain."""
    return images.flatten(1)


def _fit(look):
    truth = torch.tensor([[3.0, 0.5], [-2.0, 0.9], [0.5, 0.6]])
    starts = torch.tensor([[0.0, 0.7]]).repeat(3, 1)[:, None]
    return truth, fit_candidates(render, features, SPACE, features(render(truth)), starts, [0, 1], 150, 0.02, progress=False, look=look)


def test_look_statistics_in_closed_form():
    x = torch.zeros(1, 2, 8, 8)
    x[:, 0, :, 4:] = 1.0  # channel 0: right half bright
    s = look_statistics(x).view(2, 18)
    assert s[0, :16].tolist() == [0.0, 0.0, 1.0, 1.0] * 4 and s[0, 16].item() == pytest.approx(0.5)
    assert s[0, 17].item() == pytest.approx(0.5 * (1 / 56 * 8))  # one edge of 8 px among 8 x 7 horizontal pairs
    assert s[1].abs().sum() == 0
    with pytest.raises(ValueError, match=re.escape("look statistics need images (B, C, H, W) with H, W >= 2, got shape (3, 8, 8)")):
        look_statistics(torch.zeros(3, 8, 8))


def test_the_look_term_recovers_the_look_attribute_the_features_cannot_see():
    truth, without = _fit(None)
    # the cosine has no gradient in the gain but rounding noise, which Adam normalises into a random drift
    assert (without.attrs[:, 1] - truth[:, 1]).abs().mean() > 0.1
    assert (without.attrs[:, 0] - truth[:, 0]).abs().max() < 0.3
    look = make_look_term(SPACE, render(truth), weight=10.0)
    _, res = _fit(look)
    assert (res.attrs[:, 1] - truth[:, 1]).abs().max() < 0.03
    assert (res.attrs[:, 0] - truth[:, 0]).abs().max() < 0.3


def test_gradients_are_routed_each_term_to_its_own_attributes():
    look = make_look_term(SPACE, render(torch.tensor([[1.0, 0.5]])), weight=1.0)
    attrs = torch.tensor([[0.0, 0.8]], requires_grad=True)
    content, looks = split_look(attrs, look)
    (g_c,) = torch.autograd.grad(render(content).sum(), attrs)
    (g_l,) = torch.autograd.grad(render(looks).sum(), attrs)
    assert g_c[0, 1] == 0 and g_c[0, 0] != 0 and g_l[0, 0] == 0 and g_l[0, 1] != 0


def test_codebook_search_picks_the_look_by_the_look_term():
    codes = torch.cartesian_prod(torch.linspace(-6, 6, 13), torch.linspace(0.4, 1.0, 7))  # (91, 2)
    truth = torch.tensor([[2.0, 0.5], [-3.0, 0.9]])
    f_t = features(render(truth))
    plain, _ = codebook_starts(render, features, SPACE, f_t, codes, [0, 1], 1, progress=False)
    with_look, _ = codebook_starts(render, features, SPACE, f_t, codes, [0, 1], 1, progress=False,
                                   look=make_look_term(SPACE, render(truth), weight=10.0))
    assert torch.allclose(with_look[:, 0], truth)
    assert torch.allclose(plain[:, 0, 0], truth[:, 0]) and not torch.allclose(plain[:, 0, 1], truth[:, 1])


def test_look_attributes_are_continuous_and_only_named_in_the_identity_when_set():
    with pytest.raises(AttributeSpecError, match="^look attribute 'hue' must be continuous and not periodic$"):
        Attribute("hue", -180, 180, "deg", periodic=True, look=True)
    assert SPACE.look == (1,) and AttributeSpace.from_dict(SPACE.to_dict()).look == (1,)
    assert "look" not in AttributeSpace([Attribute("x")]).to_dict()[0]
    assert make_look_term(AttributeSpace([Attribute("x")]), torch.zeros(1, 1, 4, 4), 1.0) is None


def test_look_search_gives_each_start_the_look_of_its_target():
    truth = torch.tensor([[2.0, 0.5], [-3.0, 0.9], [0.0, 0.7]])
    look = make_look_term(SPACE, render(truth), weight=10.0)
    starts = torch.tensor([[[2.0, 1.0], [1.0, 1.0]], [[-3.0, 1.0], [-2.0, 0.4]], [[0.0, 0.4], [5.0, 0.4]]])  # (3, 2, 2)
    codes = look_codes(SPACE, [1], 25, torch.tensor([0.0, 0.7]), seed=0)
    assert codes.shape == (25, 1) and codes[0, 0] == 0.7 and ((codes >= 0.4) & (codes <= 1.0)).all()
    seen = []

    def rend(rows, start):
        seen.append(start.clone())
        return render(rows)

    out, loss = look_search(rend, look, starts, [1], codes, batch=16)
    assert torch.equal(out[..., 0], starts[..., 0])  # content columns untouched
    exact = [(codes[:, 0] - t).abs().min() for t in truth[:, 1]]
    for i in range(3):  # the start at the target's content gets the code nearest the true gain
        assert (out[i, 0, 1] - truth[i, 1]).abs() <= exact[i] + 1e-6
    assert loss.shape == (3, 2) and (loss[:, 0] <= loss[:, 1] + 1e-9).all()
    assert torch.cat(seen).tolist() == [s for s in range(6) for _ in range(25)]  # every start, its 25 looks in a row


def test_codebook_strategy_fits_content_by_features_and_the_look_by_its_search():
    from scenefit.fitting import CodebookConfig, FitConfig, FitInputs, fit_codebook

    truth = torch.tensor([[2.3, 0.55], [-3.1, 0.9], [0.4, 0.72]])
    images = render(truth)
    inputs = FitInputs(SPACE, features, features(images), torch.tensor([0.0, 0.7]), [0, 1], seed=0, surrogate=render,
                       progress=False, look=make_look_term(SPACE, images, weight=10.0))
    def fit(look_codes: int, steps: int) -> torch.Tensor:
        cfg = FitConfig(method="codebook", steps=steps, lr=0.02, codebook=CodebookConfig(grid_bounded=13, keep=1, look_codes=look_codes))
        return fit_codebook(inputs, cfg).attrs

    searched = fit(64, 0)  # no gradient step: the codes alone
    assert (searched[:, 0] - truth[:, 0]).abs().max() <= 0.5 + 1e-6  # the content grid's step is 1 px
    assert (searched[:, 1] - truth[:, 1]).abs().max() < 0.02
    assert (fit(1, 0)[:, 1] == 0.7).all()  # one look code: the centre's
    refined = fit(64, 60)
    assert (refined[:, 0] - truth[:, 0]).abs().max() < 0.3 and (refined[:, 1] - truth[:, 1]).abs().max() < 0.03
