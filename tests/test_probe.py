"""The probe network P (set-distance features) and the feature-distance-against-offset measure."""

import re

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.engines.digits import DigitEngine
from scenefit.experiments.set_features import feature_shift_distance
from scenefit.probe import (
    ProbeConfig,
    ProbeFeatures,
    load_probe,
    probe_errors,
    save_probe,
    train_probe,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def engine(split):
    return DigitEngine(split[0], canvas=32, translate=True, max_shift=8.0)


@pytest.fixture(scope="module")
def trained(engine):
    return train_probe(engine, ProbeConfig(steps=250, batch_size=32), seed=0, progress=False)


def test_probe_reads_position_far_better_than_a_constant_guess(engine, trained):
    net, report = trained
    untrained = train_probe(engine, ProbeConfig(steps=1, batch_size=2, lr=1e-9), seed=0, progress=False)[0]
    before, after = probe_errors(untrained, engine, 400, 7), report["heldout_error"]
    # a constant guess at the centre of U(-8, 8) errs by 4 px on average
    assert after["tx"] < 2.0 and after["ty"] < 2.0, after
    assert after["tx"] < 0.6 * before["tx"] and after["ty"] < 0.6 * before["ty"], (before, after)
    assert set(after) == {"rotation", "tx", "ty", "digit"}


def test_probe_features_move_with_tx_more_than_between_rows_at_large_shifts(engine, trained):
    net, _ = trained
    feats = ProbeFeatures(net, (32, 32))
    g = torch.Generator().manual_seed(3)
    attrs = engine.space.sample_uniform(64, g)
    attrs[:, engine.space.index("tx")] = -6.0
    render = lambda a: engine.render_seeded(a, torch.arange(a.shape[0]))["image"]
    d = feature_shift_distance(render, feats.batched, engine.space, attrs, "tx", torch.tensor([0.0, 2.0, 12.0]))
    assert d[0].item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < d[1] < d[2], d


def test_probe_features_shape_device_and_resize(trained):
    net, _ = trained
    feats = ProbeFeatures(net, (32, 32))
    big = torch.rand(5, 1, 64, 64)
    out = feats.batched(big, batch=2)
    assert out.shape == (5, 128) and out.device.type == "cpu"
    assert torch.allclose(out, feats(torch.nn.functional.interpolate(big, size=(32, 32), mode="area")), atol=1e-6)


def test_checkpoint_round_trip_and_engine_mismatch(engine, trained, split, tmp_path):
    net, report = trained
    save_probe(tmp_path / "p.safetensors", net, engine, report)
    back = load_probe(tmp_path / "p.safetensors", engine)
    x = torch.rand(3, 1, 32, 32)
    assert torch.equal(back.features(x), net.features(x))
    with pytest.raises(ValueError):
        load_probe(tmp_path / "p.safetensors", DigitEngine(split[0], canvas=48, translate=True, max_shift=8.0))


def test_probe_config_errors():
    with pytest.raises(ValueError, match=re.escape("probe.steps must be an int in [1, 10000000], got 0")):
        ProbeConfig(steps=0)
    with pytest.raises(ValueError, match=re.escape("probe.lr must be a finite number > 0, got nan")):
        ProbeConfig(lr=float("nan"))


def test_feature_shift_distance_in_closed_form():
    space = AttributeSpace([Attribute("tx", -10.0, 10.0, "px"), Attribute("rotation", -180.0, 180.0, "deg", periodic=True)])
    attrs = torch.tensor([[0.0, 0.0], [2.0, 90.0], [4.0, 0.0]])

    def render(a: torch.Tensor) -> torch.Tensor:  # an image that is the tx value itself
        return a[:, :1, None, None]

    # feature = tx: a shift δ moves every row by |δ|; the rows' mean distance to the next (rolled) row is (2 + 2 + 4) / 3
    d = feature_shift_distance(render, lambda x: x.flatten(1), space, attrs, "tx", torch.tensor([-1.0, 0.0, 3.0, 8.0]))
    scale = 8.0 / 3.0
    # +8 clamps at 10: rows move by 8, 8 and 6
    assert d.tolist() == pytest.approx([1.0 / scale, 0.0, 3.0 / scale, (22.0 / 3.0) / scale], rel=1e-6)
    # a feature blind to rotation does not move with it
    assert feature_shift_distance(render, lambda x: x.flatten(1), space, attrs, "rotation", torch.tensor([90.0])).tolist() == [0.0]
    with pytest.raises(ValueError, match="at least 2 rows, got 1"):
        feature_shift_distance(render, lambda x: x.flatten(1), space, attrs[:1], "tx", torch.tensor([1.0]))
