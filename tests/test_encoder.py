"""The encoder E: learns rotation from engine renders, proposes distinct modes, starts the amortized fit, checkpoints."""

import math
import re

import pytest
import torch

from scenefit.attributes import wrap_angle
from scenefit.encoder import (
    AttributeEncoder,
    EncoderConfig,
    encoder_starts,
    load_encoder,
    save_encoder,
    train_encoder,
)
from scenefit.engines.digits import DigitEngine
from scenefit.fitting import AmortizedConfig, FitConfig, FitInputs, fit_targets


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(split):
    engine = DigitEngine(split[0], canvas=32, translate=False)
    calls = []
    enc, report = train_encoder(engine, EncoderConfig(steps=300, batch_size=32), seed=0, progress=False,
                                callback=lambda step, e: calls.append((step, e.training)), callback_every=120)
    return engine, enc, report, calls


@pytest.fixture(scope="module")
def held_out(split):
    engine = DigitEngine(split[1], canvas=32, translate=False)
    g = torch.Generator().manual_seed(5)
    attrs = engine.space.sample_uniform(300, g)
    return engine, attrs, engine.images(attrs, g)


def test_callback_runs_every_k_steps_and_after_the_last_in_eval_mode(trained):
    _, enc, report, calls = trained
    assert calls == [(120, False), (240, False), (300, False)]
    assert report["steps"] == 300 and math.isfinite(report["final_loss"])
    assert not enc.training


def test_encoder_learns_rotation_far_better_than_chance(trained, held_out):
    # uniform guesses are 90° off on average; 300 steps of E bring the median under 30° on unseen textures
    _, enc, _, _ = trained
    engine, attrs, images = held_out
    starts, logp = encoder_starts(enc, images, {"rotation": 2})
    assert starts.shape == (300, 2, engine.space.dim) and logp.shape == (300, 2)
    rot = engine.space.index("rotation")
    err = wrap_angle(starts[:, 0, rot] - attrs[:, rot]).abs()
    assert err.median() < 30.0, err.median()  # measured 19.6°
    # the second mode is a different angle bin, never the first one again, and no more probable than the first
    assert (wrap_angle(starts[:, 1, rot] - starts[:, 0, rot]).abs() > 1.0).all()
    assert (logp[:, 0] >= logp[:, 1]).all()
    # one start per target and class when only the class gets two modes
    both, _ = encoder_starts(enc, images[:5], {"rotation": 2, "digit": 3})
    assert both.shape == (5, 6, 2) and torch.equal(both[:, :, 1], both[:, :, 1].round())


def test_amortized_fit_takes_the_encoders_top_mode(trained, held_out):
    engine, enc, _, _ = trained
    _, attrs, images = held_out
    images, attrs = images[:64], attrs[:64]
    feats = lambda x: x.flatten(1)  # noqa: E731
    inputs = FitInputs(engine.space, feats, feats(images), torch.tensor([0.0, 0.0]), [0], seed=0, target_images=images,
                       engine=engine, encoder=enc, progress=False)
    res = fit_targets(inputs, FitConfig(method="amortized", steps=0))
    top, _ = encoder_starts(enc, images, {})
    assert torch.equal(res.attrs, top[:, 0]) and res.starts.shape == (64, 1, 2)
    # two angle modes per target: the fit keeps, per target, the one whose render is closer to it
    res2 = fit_targets(inputs, FitConfig(method="amortized", steps=0, amortized=AmortizedConfig(top_angles=2)))
    assert res2.starts.shape == (64, 2, 2) and torch.equal(res2.loss, res2.losses.min(1).values)
    assert set(res2.candidate.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match=re.escape("fit.method 'amortized' needs the target_images, which this fit was not given")):
        fit_targets(FitInputs(engine.space, feats, feats(images), torch.zeros(2), [0], seed=0, engine=engine,
                              encoder=enc, progress=False), FitConfig(method="amortized"))
    with pytest.raises(ValueError, match=re.escape("fit.method 'amortized with fit.steps > 0' needs the surrogate")):
        fit_targets(inputs, FitConfig(method="amortized", steps=2))


def test_amortized_fit_keeps_unfitted_columns_at_the_centre(split):
    engine = DigitEngine(split[0], canvas=32, translate=True, max_shift=4.0)
    enc = AttributeEncoder(engine.space, 1, 32, 32, EncoderConfig(width=4)).eval()  # untrained: any guess will do
    images = engine.images(engine.space.sample_uniform(6, torch.Generator().manual_seed(0)))
    feats = lambda x: x.flatten(1)  # noqa: E731
    centre = torch.tensor([10.0, 1.5, -2.5, 0.0])
    inputs = FitInputs(engine.space, feats, feats(images), centre, [0], seed=0, target_images=images,
                       engine=engine, encoder=enc, progress=False)
    res = fit_targets(inputs, FitConfig(method="amortized", steps=0))
    assert res.attrs[:, 1].tolist() == [1.5] * 6 and res.attrs[:, 2].tolist() == [-2.5] * 6  # tx, ty not in free


def test_checkpoint_round_trip_and_engine_mismatch(trained, tmp_path):
    engine, enc, _, _ = trained
    save_encoder(tmp_path / "e.safetensors", enc, engine)
    back = load_encoder(tmp_path / "e.safetensors", engine)
    x = torch.rand(4, 1, 32, 32)
    for a, b in zip(enc(x), back(x)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"checkpoint .*e.safetensors was made for another engine: height=32, but this run has height=48$"):
        load_encoder(tmp_path / "e.safetensors", DigitEngine(engine.bank, canvas=48))
    with pytest.raises(ValueError, match=r"was made for another engine: attributes=\[\{'name': 'rotation', .*\], but this run has "
                                         r"attributes=\[\{'name': 'rotation', .*'name': 'tx'"):
        load_encoder(tmp_path / "e.safetensors", DigitEngine(engine.bank, canvas=32, translate=True))


def test_encoder_config_errors():
    with pytest.raises(ValueError, match=r"encoder.bins must be > 0, got 0"):
        EncoderConfig(bins=0)
    with pytest.raises(ValueError, match=r"encoder.lr must be a finite number > 0, got nan"):
        EncoderConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=re.escape("encoder.augment must be one of ['none', 'photometric', 'nuisance'], got 'colour'")):
        EncoderConfig(augment="colour")


def test_photometric_augment_helps_e_read_targets_of_another_look(trained, held_out, split):
    """E trained with encoder.augment=photometric (same steps, seed) against the clean E, on held-out targets clean
    and with their contrast halved about the mean and blurred: the augmented E loses less on the shifted ones."""
    from scenefit.shifts import apply_shift

    _, clean, _, _ = trained
    engine, attrs, images = held_out
    aug, _ = train_encoder(DigitEngine(split[0], canvas=32, translate=False), EncoderConfig(steps=300, batch_size=32,
                           augment="photometric"), seed=0, progress=False)
    seeds = torch.arange(len(images))
    shifted = apply_shift(apply_shift(images, "contrast", "mild", seeds), "blur", "mild", seeds)
    rot = engine.space.index("rotation")

    def err(enc, x):
        return wrap_angle(encoder_starts(enc, x, {})[0][:, 0, rot] - attrs[:, rot]).abs().median().item()

    e = {(n, k): err(enc, x) for n, enc in (("clean", clean), ("aug", aug)) for k, x in (("clean", images), ("shifted", shifted))}
    assert e[("aug", "clean")] < 30.0  # measured 13.8° (clean E: 11.2°)
    assert e[("aug", "shifted")] < 0.6 * e[("clean", "shifted")]  # measured 15.6° against 37.5°


def test_nuisance_augment_helps_e_read_every_strong_look_shift(trained, held_out, split):
    """E trained with encoder.augment=nuisance (same steps, seed) against the clean E, on held-out targets under each
    of the ten look shifts at the strong level: its median rotation error, averaged over the shifts, is lower."""
    from scenefit.shifts import SHIFTS, apply_shift

    _, clean, _, _ = trained
    engine, attrs, images = held_out
    nui, _ = train_encoder(DigitEngine(split[0], canvas=32, translate=False), EncoderConfig(steps=300, batch_size=32,
                           augment="nuisance"), seed=0, progress=False)
    seeds = torch.arange(len(images))
    rot = engine.space.index("rotation")

    def err(enc, x):
        return wrap_angle(encoder_starts(enc, x, {})[0][:, 0, rot] - attrs[:, rot]).abs().median().item()

    def mean_shifted(enc):
        return sum(err(enc, apply_shift(images, s, "strong", seeds)) for s in SHIFTS) / len(SHIFTS)

    assert err(nui, images) < 25.0  # measured 16.2° (clean E: 11.2°)
    assert mean_shifted(nui) < 0.8 * mean_shifted(clean)  # measured 22.0° against 34.6°


def test_augment_prob_is_checked_and_keys_the_encoder_only_where_it_matters(tmp_path):
    from scenefit.configio import load_config
    from scenefit.models import Models
    from scenefit.resolve import resolve
    from scenefit.runs import ModelStore

    with pytest.raises(ValueError, match=re.escape("encoder.augment_prob must be in [0, 1], got 1.5")):
        EncoderConfig(augment_prob=1.5)
    store = ModelStore(tmp_path)
    keys = {}
    for aug, prob in (("none", 1.0), ("none", 0.5), ("nuisance", 1.0), ("nuisance", 0.5)):
        res = resolve(load_config("rot-g2", {"setting": {"n_targets": 8, "n_test": 8}, "encoder": {"augment": aug, "augment_prob": prob}}))
        keys[aug, prob] = Models(res, store).key("encoder")
        res.close()
    assert keys["none", 1.0] == keys["none", 0.5] and len({keys["none", 1.0], keys["nuisance", 1.0], keys["nuisance", 0.5]}) == 3
