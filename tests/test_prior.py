"""The population prior (``fit.amortized.prior_iters``): closed-form EM steps, the conditioned prior, the modes it
picks, and its refusals."""

from __future__ import annotations

import math
import re

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.config import ConfigError
from scenefit.encoder import starts_from_outputs
from scenefit.fitting.config import AmortizedConfig, FitConfig
from scenefit.fitting.prior import population_log_prior


def _rows(confident: int, ambiguous: int, bin_: int = 0) -> torch.Tensor:
    """log-probabilities (N, 2): ``confident`` rows 0.99 on ``bin_``, ``ambiguous`` rows 0.5 / 0.5."""
    sure = torch.tensor([0.99, 0.01]) if bin_ == 0 else torch.tensor([0.01, 0.99])
    return torch.cat([sure.repeat(confident, 1), torch.full((ambiguous, 2), 0.5)]).log()


def test_one_em_step_in_closed_form():
    # a confident row sees 89 other confident rows and 10 ambiguous ones, plus one pseudo-count spread over 2 bins:
    # ((89 * 0.99 + 10 * 0.5 + 0.5) / 100, (89 * 0.01 + 10 * 0.5 + 0.5) / 100)
    prior = population_log_prior(_rows(90, 10), iters=1).exp()
    assert prior[0].tolist() == pytest.approx([0.9361, 0.0639], abs=1e-6)
    # an ambiguous row sees 90 confident rows and 9 ambiguous ones
    assert prior[-1].tolist() == pytest.approx([(90 * 0.99 + 4.5 + 0.5) / 100, (90 * 0.01 + 4.5 + 0.5) / 100], abs=1e-6)
    assert torch.allclose(prior.sum(1), torch.ones(100))


def test_a_lone_target_gets_a_uniform_prior():
    # leave-one-out: nobody else, so only the pseudo-count
    assert population_log_prior(torch.tensor([[0.9, 0.05, 0.05]]).log(), iters=5).exp()[0].tolist() == pytest.approx([1 / 3] * 3)


def test_em_pulls_ambiguous_targets_to_the_population_mode():
    log_p = _rows(90, 10)
    post = log_p + population_log_prior(log_p, iters=20)
    assert (post.argmax(1) == 0).all()
    # an ambiguous row's prior on bin 0: (90 * 0.99 + 9 * 0.5 + 0.5) / 100 after one step, sharper after more
    p1, p20 = (population_log_prior(log_p, iters=k).exp()[-1, 0].item() for k in (1, 20))
    assert p1 == pytest.approx(0.941, abs=1e-6) and p1 < p20 < 1.0


def test_the_prior_conditioned_on_a_reading_follows_each_group():
    # group A (reading 0.2) stands in bin 0, group B (reading 0.8) in bin 1; each has ambiguous members
    log_p = torch.cat([_rows(40, 10, 0), _rows(40, 10, 1)])
    given = torch.cat([torch.full((50, 1), 0.2), torch.full((50, 1), 0.8)])
    cond = (log_p + population_log_prior(log_p, 20, given, bandwidth=0.1)).argmax(1)
    assert (cond[:50] == 0).all() and (cond[50:] == 1).all()
    # without the reading both groups share one prior, and the ambiguous rows of the two groups get the same bin
    shared = population_log_prior(log_p, 20)
    assert torch.allclose(shared[40], shared[90], atol=1e-6)
    assert (log_p + shared).argmax(1)[40] == (log_p + shared).argmax(1)[90]


def test_the_prior_picks_the_basin_and_e_the_angle_within_it():
    space = AttributeSpace([Attribute("rotation", -180.0, 180.0, periodic=True)])
    bins = 36
    logits = torch.full((1, bins), -10.0)
    logits[0, 9], logits[0, 10] = 1.0, 0.0   # E's smaller peak: bins 9 and 10 (mass centre nearer bin 9)
    logits[0, 27] = 1.5                       # E's larger peak, 180 degrees away
    alone = starts_from_outputs(space, bins, [logits], {})[0][0, 0, 0].item()
    assert abs(alone - ((27 + 0.5) * 10 - 180)) < 0.5
    prior = torch.full((1, bins), math.log(1e-3))
    prior[0, 5:15] = math.log(0.1)
    picked = starts_from_outputs(space, bins, [logits], {}, {"rotation": prior})[0][0, 0, 0].item()
    own = torch.softmax(logits[0, 8:11], 0)  # E's own weights on bins 8, 9, 10 (not the prior's)
    ang = (torch.arange(8, 11).float() + 0.5) / bins * 2 * math.pi
    expect = math.degrees(math.atan2((own * ang.sin()).sum(), (own * ang.cos()).sum())) % 360 - 180
    assert picked == pytest.approx(expect, abs=1e-3)


@pytest.mark.parametrize("kw, msg", [
    ({"prior_iters": -1}, "fit.amortized.prior_iters must be in [0, 1000], got -1"),
    ({"prior_iters": 5, "prior_bandwidth": 0.0}, "fit.amortized.prior_bandwidth must be a finite number > 0, got 0.0"),
    ({"prior_given": ("tx",)}, "fit.amortized.prior_given ['tx'] needs fit.amortized.prior_iters > 0"),
])
def test_bad_prior_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        AmortizedConfig(**kw)


def test_prior_with_another_method_and_bad_names_are_refused(tmp_path):
    from scenefit.configio import load_config
    from scenefit.resolve import resolve

    with pytest.raises(ValueError, match=re.escape("fit.amortized.prior_iters weighs the encoder E's readings: it needs "
                                                   "fit.method amortized, got 'codebook'")):
        FitConfig(method="codebook", amortized=AmortizedConfig(prior_iters=5))
    small = {"setting": {"n_targets": 8, "n_test": 8}}
    for given, msg in ((["rotation"], "fit.amortized.prior_given: 'rotation' is periodic; the prior is conditioned on bounded "
                                      "continuous attributes only"),
                       (["digit"], "fit.amortized.prior_given: 'digit' is categorical; only continuous attributes can be listed here"),
                       (["tz"], "fit.amortized.prior_given names unknown attribute 'tz'; known: ['rotation', 'tx', 'ty', 'digit']")):
        cfg = load_config("trans-g4", {**small, "fit": {"amortized": {"prior_iters": 5, "prior_given": given}}})
        with pytest.raises(ConfigError, match=re.escape(msg)):
            resolve(cfg)


def test_scenefit_fit_refuses_a_prior_over_several_shards(tmp_path):
    from PIL import Image

    from scenefit.configio import load_config
    from scenefit.workflows import fit_folder

    (tmp_path / "targets").mkdir()
    for i in range(3):
        Image.new("L", (64, 64)).save(tmp_path / "targets" / f"{i}.png")
    cfg = load_config("trans-g4", {"fit": {"amortized": {"prior_iters": 5}}})
    msg = (f"fit.amortized.prior_iters weighs E's readings by a prior estimated from all targets at once; {tmp_path / 'targets'} "
           f"holds 3 targets and --shard-size is 2: use --shard-size 3 or more (one shard), or scenefit run")
    with pytest.raises(ConfigError, match=re.escape(msg)):
        fit_folder(cfg, tmp_path / "targets", tmp_path / "out", shard_size=2, progress=False, log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_fit_keys_are_unchanged_without_the_prior(tmp_path):
    from scenefit.configio import load_config, overrides_from_strings
    from scenefit.pipeline import Pipeline

    def key(*items: str) -> str:
        cfg = load_config("trans-g4", overrides_from_strings(["setting.n_targets=8", "setting.n_test=8", *items]))
        return Pipeline(cfg, tmp_path / "run", progress=False, log=lambda m: None).fit_key()

    plain = key()
    assert key("fit.amortized.prior_bandwidth=0.3") == plain  # unused without iterations
    with_prior = key("fit.amortized.prior_iters=20")
    assert with_prior != plain and key("fit.amortized.prior_iters=20", "fit.amortized.prior_given=[tx,ty]") != with_prior
