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
from scenefit.fitting.config import AmortizedConfig
import scenefit.fitting.prior as prior_mod
from scenefit.fitting.prior import population_log_prior, reference_rows


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


def test_one_conditioned_em_step_in_closed_form():
    # three targets read at 0, 0.1 and 1.0 (bandwidth 0.1): target 0's prior is target 1's posterior weighted by
    # exp(-0.5), target 2's by exp(-50), plus one pseudo-count over the two bins
    log_p = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]).log()
    given = torch.tensor([[0.0], [0.1], [1.0]])
    w1, w2 = math.exp(-0.5), math.exp(-50.0)
    expect = [(w1 * 0.7 + w2 * 0.2 + 0.5) / (w1 + w2 + 1), (w1 * 0.3 + w2 * 0.8 + 0.5) / (w1 + w2 + 1)]
    assert population_log_prior(log_p, 1, given, bandwidth=0.1).exp()[0].tolist() == pytest.approx(expect, abs=1e-6)


def _clustered(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log-probabilities (n, 12), readings (n, 2) and true bins (n,): four position clusters, each with its own bin;
    20% of the rows split their mass between that bin and the one 6 bins away."""
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 4, (n,), generator=g)
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8]])
    given = (centres[cluster] + 0.05 * torch.randn(n, 2, generator=g)).clamp(0, 1)
    true = torch.tensor([1, 4, 7, 10])[cluster]
    logits = torch.full((n, 12), -4.0)
    logits[torch.arange(n), true] = 2.0
    split = torch.rand(n, generator=g) < 0.2
    logits[torch.arange(n)[split], (true[split] + 6) % 12] = 2.0 + 0.3 * torch.randn(int(split.sum()), generator=g)
    return torch.log_softmax(logits, 1), given, true


def test_many_targets_use_a_fixed_reference_sample_and_agree_with_the_exact_prior(monkeypatch):
    log_p, given, true = _clustered(600, seed=3)
    exact = population_log_prior(log_p, 20, given)  # 600 <= REFERENCE: every other target
    assert ((log_p + exact).argmax(1) == true).all() and (log_p.argmax(1) != true).sum() > 40
    monkeypatch.setattr(prior_mod, "REFERENCE", 100)
    ref = reference_rows(600)
    assert len(ref) == 100 and torch.equal(ref, reference_rows(600)) and bool((ref[1:] > ref[:-1]).all())
    assert torch.equal(reference_rows(80), torch.arange(80))
    sampled = population_log_prior(log_p, 20, given)
    assert ((log_p + sampled).argmax(1) == true).all()
    assert (sampled.exp() - exact.exp()).abs().max().item() < 0.02
    assert torch.allclose(sampled.exp().sum(1), torch.ones(600), atol=1e-5)


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
    # a prior peaked on bin 10, inside the same basin, does not pull the reading off E's own peak (bin 9)
    sharp = torch.full((1, bins), math.log(1e-3))
    sharp[0, 10] = math.log(0.9)
    assert (logits[0] + sharp[0]).argmax().item() == 10
    assert starts_from_outputs(space, bins, [logits], {}, {"rotation": sharp})[0][0, 0, 0].item() == pytest.approx(expect, abs=1e-3)


@pytest.mark.parametrize("kw, msg", [
    ({"prior_iters": -1}, "fit.amortized.prior_iters must be in [0, 1000], got -1"),
    ({"prior_iters": 5, "prior_bandwidth": 0.0}, "fit.amortized.prior_bandwidth must be a finite number > 0, got 0.0"),
])
def test_bad_prior_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        AmortizedConfig(**kw)


def test_bad_prior_names_are_refused(tmp_path):
    from scenefit.configio import load_config
    from scenefit.resolve import resolve

    small = {"setting": {"n_targets": 8, "n_test": 8}}
    for given, msg in ((["rotation"], "fit.amortized.prior_given: 'rotation' is periodic; the prior is conditioned on bounded "
                                      "continuous attributes only"),
                       (["digit"], "fit.amortized.prior_given: 'digit' is categorical; only continuous attributes can be listed here"),
                       (["tz"], "fit.amortized.prior_given names unknown attribute 'tz'; known: ['rotation', 'tx', 'ty', 'digit']")):
        cfg = load_config("trans-g4", {**small, "fit": {"amortized": {"prior_iters": 5, "prior_given": given}}})
        with pytest.raises(ConfigError, match=re.escape(msg)):
            resolve(cfg)


# ----------------------------------------------------------------------------------------- streamed scenefit fit
SETS = ["setting.n_targets=40", "setting.n_test=40", "task.epochs=1", "encoder.steps=300", "encoder.batch_size=32",
        "encoder.augment=none"]  # the smallest E whose readings differ between targets (20 steps read all alike)
N = 10  # targets: shards of 2 and 5, and one shard


def _cfg(*extra: str):
    from scenefit.configio import load_config, overrides_from_strings

    return load_config("rot-g2", overrides_from_strings([*SETS, *extra]))


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, one_thread):
    """A model store with F and E (``base``) and a folder ``tg`` of N digit renders, half near 45°, half near -135°."""
    import numpy as np
    from PIL import Image

    from scenefit.data import render_rows
    from scenefit.resolve import resolve
    from scenefit.workflows import train_models

    root = tmp_path_factory.mktemp("prior-shards")
    train_models(_cfg(), root / "base", stages=("task", "encoder"), progress=False, log=lambda m: None)
    res = resolve(_cfg(), labeled_targets=False)
    g = torch.Generator().manual_seed(0)
    rows = torch.stack([torch.where(torch.rand(N, generator=g) < 0.5, 45.0, -135.0) + 10 * torch.randn(N, generator=g),
                        torch.randint(0, 10, (N,), generator=g).float()], 1)
    images = render_rows(res.engine, rows, torch.arange(N))["image"]
    res.close()
    (root / "tg").mkdir()
    for i in range(N):
        Image.fromarray((images[i, 0].numpy() * 255).round().astype(np.uint8)).save(root / "tg" / f"d{i:03d}.png")
    return root


def _fit(root, name: str, shard_size: int, *extra: str, **kw) -> tuple[dict, list[str]]:
    """``fit_folder`` of ``root / "tg"`` into ``root / name``; returns ``fitted.parquet``'s columns and the log."""
    import pyarrow.parquet as pq

    from scenefit.workflows import fit_folder

    logs: list[str] = []
    fit_folder(_cfg(*extra), root / "tg", root / name, root / "base", progress=False, log=logs.append, shard_size=shard_size,
               threads=1, **kw)
    return pq.read_table(root / name / "fitted.parquet").to_pydict(), logs


def _readings(root, iters: int, first: int = 0, n: int = N):
    """E's outputs of targets ``first`` .. ``first + n`` of ``root / "tg"`` and their population priors among themselves."""
    from scenefit.fitting.amortized import population_priors
    from scenefit.models import Models
    from scenefit.resolve import resolve
    from scenefit.shardprior import encoder_readings
    from scenefit.workflows import model_store

    res = resolve(_cfg(f"fit.amortized.prior_iters={iters}"), labeled_targets=False)
    try:
        models = Models(res, model_store(root / "base"), False, lambda m: None, allowed=set())
        outs = encoder_readings(res, models, sorted((root / "tg").glob("*.png"))[first : first + n])
        return res.engine.space, res.cfg.encoder.bins, outs, population_priors(res.engine.space, outs, res.cfg.fit.amortized)
    finally:
        res.close()


def test_scenefit_fit_with_the_prior_gives_one_fits_rows_over_any_shards(streamed):
    from scenefit.fitting.amortized import prior_moved

    one, logs = _fit(streamed, "prior-one", N, "fit.amortized.prior_iters=1")
    assert "[scenefit] population prior over 10 targets: it moves the first start of 30.0% of them" in logs
    for size in (2, 5):
        rows, _ = _fit(streamed, f"prior-{size}", size, "fit.amortized.prior_iters=1")
        assert rows["target"] == one["target"] and rows["digit"] == one["digit"] and rows["candidate"] == [0] * N
        # E's logits differ by float rounding between batch sizes (as without the prior: tests/test_shards.py)
        assert rows["rotation"] == pytest.approx(one["rotation"], abs=1e-4)
        assert rows["fit_loss"] == pytest.approx(one["fit_loss"], abs=1e-5)
    # the test has teeth: a prior estimated within shards of 2 (what each shard would do alone) moves other targets
    local = [prior_moved(*_readings(streamed, 1, lo, 2)).tolist() for lo in range(0, N, 2)]
    assert prior_moved(*_readings(streamed, 1)).tolist() != sum(local, [])


def test_ray_with_the_prior_gives_the_local_dataset_to_the_byte(streamed):
    pytest.importorskip("ray")

    def tree(folder):
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name not in ("manifest.json", ".scenefit")}

    _fit(streamed, "prior-local-3", 3, "fit.amortized.prior_iters=1")
    _fit(streamed, "prior-ray-3", 3, "fit.amortized.prior_iters=1", backend="ray", workers=2)
    assert tree(streamed / "prior-ray-3") == tree(streamed / "prior-local-3")


def test_the_prior_changes_exactly_the_rows_whose_first_start_it_moves(streamed):
    from scenefit.io import read_json
    from scenefit.encoder import starts_from_outputs
    from scenefit.fitting.amortized import prior_moved
    from scenefit.shardprior import PRIORS

    plain, logs = _fit(streamed, "plain-5", 5)
    assert not any("population prior" in m for m in logs)
    prior, _ = _fit(streamed, "prior-5b", 5, "fit.amortized.prior_iters=1")
    space, bins, outs, priors = _readings(streamed, 1)
    changed = prior_moved(space, bins, outs, priors).tolist()
    # which rows move depends on E's trained weights, whose last bits differ between CPUs; that some move and some
    # do not is what the checks below need
    assert 0 < sum(changed) < N
    alone, weighed = (starts_from_outputs(space, bins, outs, {}, p)[0][:, 0] for p in (None, priors))
    for i, a in enumerate(space):  # one start per target, so a row's value of an attribute moves iff its start does
        assert [p != q for p, q in zip(prior[a.name], plain[a.name])] == (alone[:, i] != weighed[:, i]).tolist(), a.name
    assert [p != q for p, q in zip(prior["fit_loss"], plain["fit_loss"])] == changed  # the loss of R's render of that row
    fit = read_json(streamed / "prior-5b" / "manifest.json")["fit"]
    assert fit["prior"] == {"iters": 1, "given": [], "targets": N, "changed": pytest.approx(sum(changed) / N)}
    assert "prior" not in read_json(streamed / "plain-5" / "manifest.json")["fit"]
    assert not (streamed / "prior-5b" / PRIORS).exists() and not (streamed / ".prior-5b.shards").exists()


def test_a_resumed_fit_reads_the_prior_back_and_another_job_estimates_its_own(streamed):
    from scenefit.io import read_json
    from scenefit.fitting.amortized import prior_moved
    from scenefit.shardprior import PRIORS, shard_priors

    def stop(record, actors):
        raise KeyboardInterrupt  # Ctrl-C after the first shard

    work = streamed / ".resumed.shards"
    with pytest.raises(KeyboardInterrupt):
        _fit(streamed, "resumed", 2, "fit.amortized.prior_iters=1", on_done=stop)
    key = read_json(work / "job.json")["key"]
    rows = shard_priors(work, key, 2, 3)  # the second shard's rows and one more
    _, _, _, global_ = _readings(streamed, 1)
    assert {k: v.shape for k, v in rows.items()} == {"rotation": (3, 36), "digit": (3, 10)}
    assert all(torch.equal(rows[k], global_[k][2:5]) for k in rows)
    with pytest.raises(ValueError, match=re.escape("holds 10 targets; a shard asks for rows 8 to 11")):
        shard_priors(work, key, 8, 3)
    with pytest.raises(ValueError, match=re.escape("the population prior of this job (key other) is missing")):
        shard_priors(work, "other", 0, 2)
    resumed, logs = _fit(streamed, "resumed", 2, "fit.amortized.prior_iters=1")
    assert f"[scenefit] {streamed / 'resumed'}: resuming, 1 of 5 shards are done" in logs
    assert not any("population prior over" in m for m in logs)  # read back, not estimated again
    assert not work.exists() and not (streamed / "resumed" / PRIORS).exists()
    one, _ = _fit(streamed, "resumed-one", N, "fit.amortized.prior_iters=1")
    assert resumed["digit"] == one["digit"] and resumed["rotation"] == pytest.approx(one["rotation"], abs=1e-4)
    # another job (more EM iterations) in an interrupted job's work folder starts afresh and estimates its own prior
    with pytest.raises(KeyboardInterrupt):
        _fit(streamed, "other", 5, "fit.amortized.prior_iters=1", on_done=stop)
    assert (streamed / ".other.shards" / PRIORS).is_file()
    other, logs = _fit(streamed, "other", 5, "fit.amortized.prior_iters=5")
    assert not any("resuming" in m for m in logs)
    share = prior_moved(*_readings(streamed, 5)).float().mean().item()
    assert f"[scenefit] population prior over 10 targets: it moves the first start of {share:.1%} of them" in logs


def test_a_given_prior_of_the_wrong_shape_is_refused():
    from scenefit.fitting.amortized import checked_priors

    space = AttributeSpace([Attribute("rotation", -180.0, 180.0, periodic=True), Attribute("tx", 0.0, 1.0)])
    outs = [torch.zeros(4, 36), torch.zeros(4)]
    ok = {"rotation": torch.zeros(4, 36)}
    assert checked_priors(space, outs, ok) is ok
    with pytest.raises(ValueError, match=re.escape("the given population prior has shapes {'rotation': (3, 36)}; E's "
                                                   "categorical and periodic heads here have {'rotation': (4, 36)}")):
        checked_priors(space, outs, {"rotation": torch.zeros(3, 36)})


# measured before the population prior existed (commit bfba38b): fits made then resume without a refit
KEYS = {(): "8492370a68b27c81", ("fit.method=codebook",): "a45fcf827769923c"}


def test_fit_keys_are_unchanged_without_the_prior(tmp_path):
    from scenefit.configio import load_config, overrides_from_strings
    from scenefit.pipeline import Pipeline

    def key(*items: str) -> str:
        cfg = load_config("trans-g4", overrides_from_strings(["setting.n_targets=8", "setting.n_test=8", *items]))
        return Pipeline(cfg, tmp_path / "run", progress=False, log=lambda m: None).fit_key()

    off = "fit.amortized.prior_iters=0"
    assert key(off) == KEYS[()]  # the preset's prior_given is then unused
    assert key(off, "fit.amortized.prior_bandwidth=0.3") == KEYS[()]  # unused without iterations
    # the translation presets weigh E's readings by the prior (20 iterations, given tx and ty): another key
    default = key()
    assert default != KEYS[()] and key("fit.amortized.prior_given=[]") not in (default, KEYS[()])
    # another method does not read the prior: the preset's prior leaves its key as it was
    assert key("fit.method=codebook") == KEYS[("fit.method=codebook",)]
