"""resolve(): a whole config checked against its engine and task before anything runs; and the mixtures it reads."""

import math
import re

import pytest
import torch

import scenefit.resolve as resolve_mod
from scenefit.config import ConfigError
from scenefit.configio import load_config, overrides_from_strings
from scenefit.engines.digits import digit_space
from scenefit.resolve import resolve
from scenefit.scenarios import mixture_from_dict


def check(preset: str, *sets: str):
    res = resolve(load_config(preset, overrides_from_strings(list(sets))))
    res.close()
    return res


def fails(message: str, preset: str, *sets: str):
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        check(preset, *sets)


DIGIT_ARGS = "['canvas', 'translate', 'max_shift', 'background', 'contrast', 'source', 'idx_images', 'idx_labels', 'split', 'split_seed', 'textures']"


def test_a_valid_config_resolves_to_what_it_names():
    res = check("rottrans-g2", "fit.attributes=[tx, ty]", "fit.layer=fc1", "baselines.layer=conv2", "fit_divisor=2",
                "features.source=fit_net")
    assert res.free == [1, 2] and (res.content_layer, res.set_layer) == ("fc1", "conv2")
    assert (res.engine.height, res.fit_engine.height, res.fit_engine.width) == (64, 32, 32)
    assert res.initial_centre().tolist() == [0.0, 0.0, 0.0, 0.0]
    assert res.target_engine.describe()["textures"] != res.engine.describe()["textures"]
    assert res.test_engine.describe()["textures"]["count"] == 1250 and res.engine.describe()["textures"]["count"] == 2500


def test_unknown_engine_name():
    fails("engine: unknown engine 'blender'; known: ['digits', 'street'], or give 'package.module:Class'", "rot-g1",
          "engine.name=blender")


def test_bad_engine_args():
    fails(f"engine: engine 'digits' takes no argument(s) ['zoom'] in engine.args; it takes: {DIGIT_ARGS}", "rot-g1",
          "engine.args.zoom=2")
    fails("engine: engine 'digits' with engine.args {'canvas': 20, 'translate': False}: canvas must be an integer number of px "
          "in [28, 512], got 20", "rot-g1", "engine.args.canvas=20")
    fails("engine: engine 'digits' with engine.args {'canvas': 64, 'translate': True, 'max_shift': 0}: max_shift bounds tx/ty to "
          "[-max_shift, max_shift]: it must be a finite number > 0, got 0", "trans-g1", "engine.args.max_shift=0")
    fails("setting.target_engine: engine 'digits' with engine.args {'canvas': 48, 'translate': False, 'textures': 'train'}: "
          "textures must be one of ['engine', 'target', 'test'], got 'train'", "rot-g1", "setting.target_engine.textures=train")


def test_mixture_errors_name_the_component():
    fails("setting.target.components[0] names unknown attribute 'zoom'; known: ['rotation', 'digit']", "rot-g1",
          "setting.target={components: [{zoom: {mean: 1, std: 1}}]}")
    fails("setting.initial.components[1] names unknown attribute 'tx'; known: ['rotation', 'digit']", "rot-g1",
          "setting.initial={components: [{rotation: {mean: 0, std: 1}}, {tx: {mean: 1, std: 1}}]}")
    fails("setting.target.components[0].digit: 'digit' is categorical; give {probs: [10 values]}, not a mean and std", "rot-g1",
          "setting.target={components: [{digit: {mean: 3, std: 1}}]}")
    fails("setting.target.components[0].digit: 3 probs for 10 categories ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']", "rot-g1",
          "setting.target={components: [{digit: {probs: [1, 2, 3]}}]}")
    fails("setting.target.defaults.rotation: 'rotation' is continuous; give {mean: .., std: ..}, not probs", "rot-g1",
          "setting.target={components: [{}], defaults: {rotation: {probs: [0.5, 0.5]}}}")


def test_fit_attributes_must_be_known_and_continuous():
    fails("fit.attributes names unknown attribute 'tx'; known: ['rotation', 'digit']", "rot-g1", "fit.attributes=[tx]")
    fails("fit.attributes: 'digit' is categorical; only continuous attributes can be listed here", "rot-g1", "fit.attributes=[digit]")
    fails("fit.calibrate.attributes names unknown attribute 'sun'; known: ['rotation', 'digit']", "rot-g1",
          "fit.calibrate.attributes=[sun]")
    fails("baselines.metasim.attributes: 'digit' is categorical; only continuous attributes can be listed here", "rot-g1",
          "baselines.metasim.attributes=[digit]")


def test_layers_must_belong_to_the_task_network():
    fails("fit.layer: 'fc9' is not a layer of the classifier task network; choose one of ['conv1', 'conv2', 'fc1', 'fc2', 'logits']",
          "rot-g1", "fit.layer=fc9")
    fails("baselines.layer: 'aspp' is not a layer of the classifier task network; choose one of ['conv1', 'conv2', 'fc1', 'fc2', 'logits']",
          "rot-g1", "baselines.layer=aspp")
    fails("fit.layer: 'conv1' is not a layer of the segmenter task network; choose one of ['aspp', 'logits', 'probs']",
          "street-tiny", "fit.layer=conv1")


def test_task_must_fit_the_labels():
    fails("task.name 'segmenter' predicts 'mask' labels but the engine's labels are 'class'", "rot-g1", "task.name=segmenter")
    fails("task: the classifier takes no task.args, got ['widths']", "rot-g1", "task.args={widths: [8]}")


def test_looks():
    fails("setting.look.name: unknown look 'sepia'; known looks: ['street-grade']", "rot-g1", "setting.look.name=sepia")
    # street-grade is an RGB look; the digit engine renders 1 channel
    fails("setting.look: 'street-grade' cannot be applied to the engine's 1-channel images (checked on a 16x16 probe): "
          "street-grade needs RGB images (B, 3, H, W), got shape (1, 1, 16, 16)", "rot-g1", "setting.look.name=street-grade")
    fails("setting.look: 'street-grade' cannot be applied to the engine's 3-channel images (checked on a 16x16 probe): "
          "street_grade() got an unexpected keyword argument 'strength'", "street-tiny", "setting.look.args={strength: 2}")


def test_fit_divisor_must_divide_the_image_size():
    fails("fit_divisor 5 must divide the engine's image size 48x48", "rot-g1", "fit_divisor=5")
    fails("fit_divisor 3 must divide the engine's image size 64x160", "street-tiny", "fit_divisor=3")
    # divides, but leaves a 12 px canvas the surrogate cannot upsample to
    fails("surrogate: canvas 12x12 must be divisible by 8 for the surrogate's upsampling", "rot-g1", "fit_divisor=4")


def test_task_features_at_a_lower_fitting_resolution():
    # F (trained at 48 px) cannot read the 24 px fitting resolution at fc1; FN (features.source fit_net) can
    with pytest.raises(ConfigError, match=re.escape("fit.layer: the classifier network trained at 64x64 cannot read the fitting "
                                                    "resolution 32x32 (fit_divisor 2): mat1 and mat2 shapes cannot be multiplied") +
                       r".*" + re.escape("; use fit_divisor 1 or features.source fit_net") + "$"):
        check("trans-g1", "fit_divisor=2", "fit.layer=fc1", "baselines.layer=conv1")
    # with baselines.features task the set distances read F itself whatever the fit's features are: FN does not help
    with pytest.raises(ConfigError, match=r"^baselines.layer: the classifier network trained at 64x64 cannot read the fitting "
                                          r"resolution 32x32 \(fit_divisor 2\): .*; use fit_divisor 1 or a baselines.layer that "
                                          r"reads any image size, or baselines.features probe$"):
        check("trans-g1", "fit_divisor=2", "fit.layer=fc1", "features.source=fit_net", "baselines.features=task")
    check("trans-g1", "fit_divisor=2", "fit.layer=fc1", "features.source=fit_net", "baselines.features=task", "baselines.layer=conv1")
    # the probe P is trained at the fitting resolution, so it reads it whatever F's layers are
    check("trans-g1", "fit_divisor=2", "fit.layer=fc1", "features.source=fit_net")


def test_memory_cap(monkeypatch):
    monkeypatch.setattr(resolve_mod, "MAX_SET_GB", 0.05)
    # (4000 * (1 + 2 * 1) + 2000) images of 1 x 48 x 48 float32: 0.120 GiB
    fails("setting.n_targets 4000 and setting.n_test 2000 with export.per_target 1 need about 0.12 GiB of images in memory, over "
          "the 0.05 GiB cap; lower them, or raise the cap with the environment variable SCENEFIT_MAX_SET_GB", "rot-g1")
    check("rot-g1", "setting.n_targets=1000", "setting.n_test=500")  # 0.031 GiB
    monkeypatch.setattr(resolve_mod, "MAX_SET_GB", 16.0)
    # (100000 * (1 + 2 * 10) + 200) images of 3 x 96 x 320 float32: 721 GiB
    fails("setting.n_targets 100000 and setting.n_test 200 with export.per_target 10 need about 721 GiB of images in memory, over "
          "the 16 GiB cap; lower them, or raise the cap with the environment variable SCENEFIT_MAX_SET_GB", "street-paper",
          "setting.n_targets=100000")


def test_device_cuda_when_unavailable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fails("device 'cuda' was asked for, but torch sees no CUDA device", "rot-g1", "device=cuda")
    fails("device 'cuda:1' was asked for, but torch sees no CUDA device", "rot-g1", "device=cuda:1")


# -- mixtures -----------------------------------------------------------------------------------


def test_centre_of_a_two_mode_periodic_mixture_is_the_circular_mean():
    space = digit_space(False, 20.0)
    m = mixture_from_dict({"components": [{"weight": 3, "rotation": {"mean": 170, "std": 5}},
                                          {"weight": 1, "rotation": {"mean": -170, "std": 5}}]})
    # on the circle the modes are 20° apart across ±180°: the weighted circular mean is near 175°, the linear one 85°
    s = 0.75 * math.sin(math.radians(170)) + 0.25 * math.sin(math.radians(190))
    c = 0.75 * math.cos(math.radians(170)) + 0.25 * math.cos(math.radians(190))
    expected = math.degrees(math.atan2(s, c))
    assert expected == pytest.approx(174.96, abs=0.01)
    centre = m.centre(space)
    assert centre[0].item() == pytest.approx(expected, abs=1e-3) and centre[1].item() == 0.0
    eq = mixture_from_dict({"components": [{"rotation": {"mean": 170}}, {"rotation": {"mean": -170}}]}).centre(space)
    assert eq[0].item() == pytest.approx(180.0, abs=1e-3)
    lin = mixture_from_dict({"components": [{"weight": 3, "tx": {"mean": 10}}, {"weight": 1, "tx": {"mean": -2}}]})
    assert lin.centre(digit_space(True, 20.0)).tolist() == pytest.approx([0.0, 7.0, 0.0, 0.0])
    # the most probable category of the mixed probs
    cat = mixture_from_dict({"components": [{"weight": 1, "digit": {"probs": [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]}},
                                            {"weight": 3, "digit": {"probs": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]}}]})
    assert cat.centre(space)[1].item() == 7.0


def test_categorical_probs_sampling_frequencies():
    space = digit_space(False, 20.0)
    probs = [0.05, 0.0, 0.3, 0.15, 0.0, 0.0, 0.2, 0.1, 0.2, 0.0]
    m = mixture_from_dict({"components": [{"rotation": {"mean": 0, "std": 1}, "digit": {"probs": probs}}]})
    n = 20_000
    attrs, _ = m.sample(space, n, torch.Generator().manual_seed(0))
    freq = torch.bincount(attrs[:, 1].long(), minlength=10).double() / n
    # binomial std is at most sqrt(0.25 / 20000) = 0.0035: 0.015 is over 4 of them
    assert freq.tolist() == pytest.approx(probs, abs=0.015)
    assert freq[[1, 4, 5, 9]].sum().item() == 0.0  # zero-probability digits never drawn
    # two components with their own probs (unnormalised): frequencies are the weighted mixture
    m2 = mixture_from_dict({"components": [{"weight": 1, "digit": {"probs": [2, 2] + [0] * 8}},
                                           {"weight": 3, "digit": {"probs": [0] * 9 + [5]}}]})
    attrs, comp = m2.sample(space, n, torch.Generator().manual_seed(1))
    freq = torch.bincount(attrs[:, 1].long(), minlength=10).double() / n
    assert freq.tolist() == pytest.approx([0.125, 0.125] + [0.0] * 7 + [0.75], abs=0.015)
    assert torch.equal(attrs[comp == 1, 1], torch.full_like(attrs[comp == 1, 1], 9.0))
    # a round trip through to_dict keeps the probs
    assert mixture_from_dict(m2.to_dict()) == m2


GLOW = '''
import torch
import scenefit
from scenefit import Attribute, AttributeSpace, LabelTable


class Glow(scenefit.Engine):
    """A 16 px blob at x with a look attribute: the gain of the whole image."""

    name, channels, label_kind, labels = "glow", 1, "class", LabelTable(("left", "right"))

    def __init__(self):
        self.height = self.width = 16
        self.space = AttributeSpace([Attribute("x", -4.0, 4.0, "px"), Attribute("gain", 0.5, 1.0, "rel", look=True)])

    def render_seeded(self, attrs, seeds):
        c = torch.arange(16.0) - 7.5
        blob = torch.exp(-((c[None, None, :] - attrs[:, 0, None, None]) ** 2 + c[None, :, None] ** 2) / 8.0)
        return {"image": (attrs[:, 1, None, None] * blob)[:, None], "label": (attrs[:, 0] > 0).long()}
'''


def test_an_encoder_augmentation_that_would_hide_look_attributes_is_refused(tmp_path):
    (tmp_path / "glow_engine.py").write_text(GLOW)
    (tmp_path / "glow.yaml").write_text("engine: {name: 'glow_engine:Glow'}\nsetting: {name: glow, target: {components: [{weight: 1.0}]}}\n")
    cfg = str(tmp_path / "glow.yaml")
    res = check(cfg)
    assert res.engine.space.look == (1,) and res.cfg.encoder.augment == "none"
    fails("encoder.augment 'nuisance' would hide from E the look attributes it must read (['gain']): the engine renders its "
          "own look variation, so use encoder.augment none, or a fit.method that matches them by the look term",
          cfg, "encoder.augment=nuisance")
    check(cfg, "encoder.augment=nuisance", "fit.method=codebook-verify")
