"""SDR's options: joint attribute groups, per-image episodes, the recorded policy curve (on a toy plane engine)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from scenefit.attributes import Attribute, AttributeSpace
from scenefit.baselines import SDRConfig, make_baseline
from scenefit.engines.base import Engine, LabelTable

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- SDR: joint groups, per-image episodes, the recorded policy curve ---------------------------


class PlaneEngine(Engine):
    """1×3 images whose pixels are the unit values of rotation, tx and ty; the label is the category."""

    name, channels, height, width, label_kind = "plane", 1, 1, 3, "class"
    labels = LabelTable(("a", "b"))

    def __init__(self) -> None:
        self.space = AttributeSpace([Attribute("rotation", -180.0, 180.0, "deg", periodic=True), Attribute("tx", -20.0, 20.0, "px"),
                                     Attribute("ty", -20.0, 20.0, "px"), Attribute("kind", categories=("a", "b"))])

    def render_seeded(self, attrs, seeds):
        return {"image": self.space.normalize(attrs)[:, None, None, :3].clamp(0, 1).float(), "label": attrs[:, 3].long()}


PLANTED = (9, 3)  # the (tx, ty) bins of the targets of trans-g1: tx in [10, 13.3) px, ty in [-10, -6.7) px


def plane_cells(images: torch.Tensor) -> torch.Tensor:
    """(N, 3) bins (of 12) of rotation, tx and ty read off PlaneEngine images."""
    return (images[:, 0, 0, :] * 12).long().clamp(0, 11)


def fit_plane(seed: int = 0, **overrides):
    """SDR at tiny scale on PlaneEngine; the reward is the share of an episode's images in the planted (tx, ty) cell."""
    engine, cells = PlaneEngine(), []

    def initial(n, g):  # upright (rotation ~ N(0, 10°)), centred
        return engine.space.clamp(torch.stack([10 * torch.randn(n, generator=g), torch.zeros(n), torch.zeros(n),
                                               torch.randint(2, (n,), generator=g).float()], 1))

    def score(x, y, val_x, val_y) -> float:
        b = plane_cells(x)
        cells.append(len(set(map(tuple, b.tolist()))))
        return float(((b[:, 1] == PLANTED[0]) & (b[:, 2] == PLANTED[1])).float().mean())

    target = engine.render(torch.zeros(8, 4), _gen(0))
    method = make_baseline("sdr", "tiny", **overrides)
    report = method.fit(engine, initial, target["image"], lambda im: im.flatten(1), _gen(seed),
                        validation=(target["image"], target["label"]), score_fn=score)
    planted = plane_cells(engine.render(method.sample(400, _gen(2)), _gen(1))["image"])
    share = float(((planted[:, 1] == PLANTED[0]) & (planted[:, 2] == PLANTED[1])).float().mean())
    return method, report, share, cells


def test_sdr_default_config_is_unchanged_on_a_plane():
    """Pinned from the code before groups/episode existed (same seeds): the default must give the same policy."""
    method, report, _, cells = fit_plane(3)
    assert report["policy"]["tx"] == pytest.approx(
        [0.0523277708, 0.0632097498, 0.0884974897, 0.0416386686, 0.0386690982, 0.0549875833, 0.0421423092, 0.0343214497, 0.0616597012,
         0.4096693695, 0.0636838824, 0.0491928011], abs=1e-6)
    assert report["policy"]["ty"] == pytest.approx(
        [0.0991154462, 0.0522769243, 0.0467697121, 0.3721082807, 0.0578086226, 0.0577030592, 0.0494628660, 0.0559881218, 0.0526707470,
         0.0515955128, 0.0338344872, 0.0706663057], abs=1e-6)
    assert report["policy"]["rotation"][3] == pytest.approx(0.3418782055, abs=1e-6)  # irrelevant here: moved by reward noise
    assert [i for i, r in enumerate(report["curve"]) if r] == [20, 33, 39, 43, 49] and max(report["curve"]) == 0.25
    assert method.sample(4, _gen(2))[0].tolist() == [pytest.approx(171.59225, abs=1e-3), pytest.approx(14.36021, abs=1e-4),
                                                     pytest.approx(1.29747, abs=1e-4), 0.0]
    assert set(cells) == {1} and report["factors"] == [["rotation"], ["tx"], ["ty"]] and report["joint_policy"] == {}


def test_sdr_groups_recover_a_planted_joint_bin():
    method, report, share, cells = fit_plane(0, groups=(("tx", "ty"),), iterations=150, episodes=8)
    assert report["factors"] == [["rotation"], ["tx", "ty"]]
    assert method.logits.shape == (2, 144) and torch.isinf(method.logits[0, 12:]).all()  # rotation: 12 of 144 entries
    joint = torch.tensor(report["joint_policy"]["tx+ty"])
    assert joint.shape == (12, 12) and float(joint.sum()) == pytest.approx(1.0, abs=1e-5)
    assert report["policy"]["tx"] == pytest.approx(joint.sum(1).tolist(), abs=1e-6)
    assert report["policy"]["ty"] == pytest.approx(joint.sum(0).tolist(), abs=1e-6)
    assert float(joint[PLANTED]) > 0.9 and share > 0.9  # measured 0.99 and 0.98
    assert len(report["entropy"]) == 150 and report["entropy"][0] > report["entropy"][-1] + 0.5
    assert report["top_prob"]["tx"][-1] > 0.9 and len(report["top_prob"]["rotation"]) == 150
    assert len(report["rewards"]) == 150 and len(report["actions"][0]) == 8 and set(cells) == {1}
    json.dumps(report)


def test_sdr_sample_episodes_recover_a_planted_bin():
    _, report, share, cells = fit_plane(0, episode="sample", iterations=120)
    assert report["policy"]["tx"][PLANTED[0]] > 0.9 and report["policy"]["ty"][PLANTED[1]] > 0.9 and share > 0.9  # measured 0.98
    assert min(cells) > 1 and report["actions"] == []  # every image draws its own bins
    assert report["config"]["episode"] == "sample"


@pytest.mark.parametrize("build, message", [
    (lambda: SDRConfig(groups=(("tx", "ty"), ("ty", "rotation"))), "sdr.groups names 'ty' in more than one group"),
    (lambda: SDRConfig(groups=(("tx", "tx"),)), "sdr.groups names 'tx' twice in one group"),
    (lambda: SDRConfig(groups=((),)), "sdr.groups: every group must be a non-empty list of attribute names, got []"),
    (lambda: SDRConfig(groups=("tx",)), "sdr.groups must be a list of attribute-name lists, e.g. [['tx', 'ty']], got ('tx',)"),
    (lambda: SDRConfig(groups=(tuple("abcde"),)), "sdr.groups: group ['a', 'b', 'c', 'd', 'e'] has 12**5 = 248832 joint bins; at most 50000"),
    (lambda: SDRConfig(episode="image"), "sdr.episode must be one of ['bin', 'sample'], got 'image'"),
    (lambda: fit_plane(groups=(("tx", "tz"),)), "sdr.groups names unknown attribute 'tz'; known: ['rotation', 'tx', 'ty', 'kind']"),
    (lambda: fit_plane(groups=(("tx", "kind"),)), "sdr.groups: 'kind' is categorical; only continuous attributes are learned"),
    (lambda: fit_plane(attributes=("tx", "ty"), groups=(("rotation", "tx"),)), "sdr.groups: 'rotation' is not learned (sdr.attributes: ['tx', 'ty'])"),
])
def test_sdr_bad_options_raise(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()
    assert SDRConfig(groups=[["tx", "ty"]]).groups == (("tx", "ty"),)  # lists (YAML) become tuples
