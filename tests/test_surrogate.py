import pytest
import torch

from scenefit.engines.digits import DigitEngine
from scenefit.surrogate import SurrogateConfig, holdout_set, l1_error, load_surrogate, save_surrogate, train_surrogate


@pytest.fixture(scope="module")
def trained(split):
    # plain background: pixel L1 then measures the digit, not the unpredictable background noise
    eng = DigitEngine(split[0], canvas=32, background="plain")
    cfg = SurrogateConfig(base_channels=64, hidden=128, max_steps=300, eval_every=50, holdout=256, target_l1=0.09)
    model, report = train_surrogate(eng, cfg, seed=0, progress=False)
    return eng, model, report


def test_surrogate_reaches_heldout_l1_threshold(trained):
    eng, model, report = trained
    # threshold 0.09 on a 300-step budget (measured: 0.088 after 150 steps, 0.082 after 300)
    assert report["reached_target"], report["curve"]
    attrs, images = holdout_set(eng, 256, seed=123)
    l1 = l1_error(model, attrs, images)
    mean_image_l1 = (images - images.mean(0, keepdim=True)).abs().mean().item()
    assert l1 <= 0.09
    assert l1 < 0.85 * mean_image_l1, (l1, mean_image_l1)  # measured 0.110 for the mean image


def test_surrogate_follows_rotation(trained):
    eng, model, _ = trained
    # G's render at 90 degrees is closer to rot90 of its 0-degree render than to the 0-degree render itself
    a0 = torch.tensor([[0.0, 1.0]])
    a90 = torch.tensor([[90.0, 1.0]])
    with torch.no_grad():
        g0, g90 = model(a0), model(a90)
    assert (g90 - torch.rot90(g0, 1, dims=(-2, -1))).abs().mean() < 0.6 * (g90 - g0).abs().mean()


def test_checkpoint_roundtrip_and_engine_mismatch(trained, split, tmp_path):
    eng, model, report = trained
    path = tmp_path / "g.safetensors"
    save_surrogate(path, model, eng, report)
    assert (tmp_path / "g.json").exists()
    again = load_surrogate(path, eng)
    a = eng.space.sample_uniform(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(again(a), model(a))
    other = DigitEngine(split[0], canvas=64, translate=True)
    with pytest.raises(ValueError, match=r"checkpoint .*g.safetensors was made for another engine: height=32, but this run has height=64"):
        load_surrogate(path, other)


def test_surrogate_config_errors():
    with pytest.raises(ValueError, match=r"surrogate.lr must be a finite number > 0, got inf"):
        SurrogateConfig(lr=float("inf"))
    with pytest.raises(ValueError, match=r"surrogate.max_steps must be > 0, got 0"):
        SurrogateConfig(max_steps=0)
