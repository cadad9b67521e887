"""Configs: presets, YAML files and ``--set`` overrides, and the exact errors for bad input."""

import re

import pytest

import scenefit.configio as configio
from scenefit.config import ConfigError, RunConfig
from scenefit.configio import (
    config_from_dict,
    config_yaml,
    load_config,
    overrides_from_strings,
    preset,
    preset_names,
)
from scenefit.resolve import resolve

PAPER = ["rot-g1", "rot-g2", "rot-g3", "rot-g5", "rottrans-g1", "rottrans-g2", "rottrans-g4", "trans-g1", "trans-g2", "trans-g4"]


def test_preset_names_are_the_paper_settings_and_the_street_scales():
    assert preset_names() == sorted(PAPER + ["street", "street-paper", "street-quick", "street-tiny"])


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_resolves(name, monkeypatch):
    from scenefit.engines.street import StreetEngine

    def no_gl(self):
        raise AssertionError("resolve() must not create a GL context")

    monkeypatch.setattr(StreetEngine, "_context", no_gl)
    cfg = load_config(name)
    assert cfg.setting.name == name
    res = resolve(cfg)
    try:
        if name.startswith("street"):
            assert res.engine.name == "street" and res.engine.channels == 3 and res.task_name == "segmenter"
            assert (res.fit_engine.height, res.fit_engine.width) == (res.engine.height // 2, res.engine.width // 2)
            assert res.look == ("street-grade", {})
            # resolve builds the engines but renders nothing: no GL context is created
            assert res.engine._gl is None and res.fit_engine._gl is None
        else:
            assert res.engine.name == "digits" and res.engine.channels == 1 and res.task_name == "classifier"
            assert (res.content_layer, res.set_layer) == ("conv1", "fc2")
            assert res.fit_engine is res.engine and res.look is None
    finally:
        res.close()


def test_presets_match_the_paper_settings():
    rot5 = preset("rot-g5")
    assert rot5.engine.args == {"canvas": 48, "translate": False}
    assert len(rot5.setting.target.components) == 5
    assert [c.attrs["rotation"].mean for c in rot5.setting.target.components] == pytest.approx([45.0, 117.0, -171.0, -99.0, -27.0])
    assert rot5.setting.target_engine == {"textures": "target"} and rot5.setting.test_engine == {"textures": "test"}
    t4 = preset("trans-g4")
    assert t4.engine.args == {"canvas": 64, "translate": True, "max_shift": 20.0}
    assert (preset("rottrans-g2").setting.n_targets, preset("rottrans-g2").setting.n_test) == (4000, 2000)
    tiny = preset("street-tiny")
    assert tiny.engine.args == {"height": 64, "width": 160, "camera": True} and tiny.fit_divisor == 2
    assert tiny.fit.calibrate.attributes == ("sun_brightness", "sky_color") and tiny.fit.method == "codebook-verify"
    assert preset("street").to_dict() == {**preset("street-quick").to_dict(), "setting": {**preset("street-quick").to_dict()["setting"], "name": "street"}}


def test_saved_config_round_trips():
    cfg = preset("street-tiny")
    assert config_from_dict(configio.yaml.safe_load(config_yaml(cfg))) == cfg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="^unknown preset 'rot-g9'; available presets: rot-g1, rot-g2, rot-g3, rot-g5, rottrans-g1,"):
        load_config("rot-g9")


# -- --set overrides ----------------------------------------------------------------------------


def test_overrides_from_strings_nests_keys_and_parses_yaml_scalars():
    assert overrides_from_strings(["fit.steps=10", "fit.layer=fc1", "seed=3", "engine.args.split=[0.4, 0.3, 0.3]"]) == {
        "fit": {"steps": 10, "layer": "fc1"}, "seed": 3, "engine": {"args": {"split": [0.4, 0.3, 0.3]}}}
    with pytest.raises(ConfigError, match=r"^--set expects KEY=VALUE, got 'fit.steps'$"):
        overrides_from_strings(["fit.steps"])
    with pytest.raises(ConfigError, match=re.escape("--set 'fit..steps=3': the key must be dotted field names, e.g. fit.steps")):
        overrides_from_strings(["fit..steps=3"])
    with pytest.raises(ConfigError, match=re.escape("--set 'fit.steps.x=3': 'steps' was already set to a value")):
        overrides_from_strings(["fit.steps=2", "fit.steps.x=3"])


def test_set_reaches_nested_fields():
    sets = ["engine.args.canvas=64", "fit.codebook.keep=3", "baselines.metasim.iterations=5", "task.args={widths: [8, 16]}",
            "fit.attributes=[rotation]", "setting.look.name=street-grade", "fit.lr=1e-3"]
    cfg = load_config("rot-g2", overrides_from_strings(sets))
    assert cfg.engine.args == {"canvas": 64, "translate": False}  # merged into the preset's args, not replacing them
    assert cfg.fit.codebook.keep == 3 and cfg.fit.codebook.grid_periodic == 72  # siblings keep their values
    assert cfg.baselines.metasim.iterations == 5 and cfg.task.args == {"widths": [8, 16]}
    assert cfg.fit.attributes == ("rotation",) and cfg.setting.look.name == "street-grade" and cfg.fit.lr == 0.001
    assert cfg.setting.name == "rot-g2" and len(cfg.setting.target.components) == 2


@pytest.mark.parametrize("item, message", [
    ("fit.stepz=3", "--set: unknown config key 'fit.stepz'; known keys here: ['amortized', 'attributes', 'calibrate', 'chunk', "
                    "'codebook', 'layer', 'look_weight', 'lr', 'method', 'optimizer', 'plain', 'restarts', 'steps', 'verify']"),
    ("fit.codebook.kep=3", "--set: unknown config key 'fit.codebook.kep'; known keys here: ['grid_bounded', 'grid_periodic', "
                           "'keep', 'look_codes', 'look_lr', 'look_steps', 'max_codes', 'radius']"),
    ("setting.name=[1, 2]", "--set: 'setting.name' must be a string, got [1, 2]"),
    ("task.hflip=1", "--set: 'task.hflip' must be true or false, got 1"),
    ("fit.steps=2.5", "--set: 'fit.steps' must be an integer, got 2.5"),
    ("fit.steps=true", "--set: 'fit.steps' must be a number, got True"),
    ("fit.steps=1000000000000000000000000000000", "--set: 'fit.steps': 1000000000000000000000000000000 is too large (the limit is 2**62)"),
    ("seed=4611686018427387904", "--set: 'seed': 4611686018427387904 is too large (the limit is 2**62)"),
    ("seed=-1", "--set: seed must be an integer in [0, 2**40), got -1"),
    ("fit.lr=.nan", "--set: fit.lr: value nan is not a finite number"),
    ("fit.lr=inf", "--set: fit.lr: value inf is not a finite number"),
    ("fit.steps=-.inf", "--set: fit.steps: value -inf is not a finite number"),
    ("setting.look=3", "--set: 'setting.look' must be a mapping, got 3"),
    ("fit.method=magic", "--set: fit.method must be one of ['plain', 'restarts', 'codebook', 'codebook-verify', 'amortized'], got 'magic'"),
    ("fit.codebook.keep=0", "--set: fit.codebook.keep must be > 0, got 0"),
    ("evaluate.task_seed=2", "--set: unknown config key 'evaluate.task_seed'; known keys here: ['kid_subset', 'sensitivity_targets', 'task_seeds']"),
    ("evaluate.task_seeds=0", "--set: evaluate.task_seeds must be >= 1 (task networks trained per training set), got 0"),
])
def test_bad_set_values_name_the_field(item, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        load_config("rot-g2", overrides_from_strings([item]))


def test_set_value_that_is_not_yaml():
    with pytest.raises(ConfigError, match=r"^--set 'fit.steps=\[1,': the value is not valid YAML: while parsing a flow node"):
        overrides_from_strings(["fit.steps=[1,"])


# -- files --------------------------------------------------------------------------------------


def test_yaml_file_starting_from_a_preset(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "preset: rot-g2\nseed: 3\nsetting:\n  n_targets: 10\n  target:\n    components:\n"
        "      - {weight: 2, rotation: {mean: 90, std: 5}}\n      - {rotation: {mean: -90, std: 5}}\n"
        "fit: {method: restarts, restarts: {count: 12}}\n"
    )
    cfg = load_config(str(p), {"fit": {"restarts": {"count": 4}}})
    assert cfg.seed == 3 and cfg.setting.n_targets == 10 and cfg.setting.n_test == 2000
    assert cfg.engine.args == {"canvas": 48, "translate": False} and cfg.setting.name == "rot-g2"
    assert cfg.fit.method == "restarts" and cfg.fit.restarts.count == 4  # the override beats the file
    assert cfg.setting.target.weights.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert [c.attrs["rotation"].mean for c in cfg.setting.target.components] == [90.0, -90.0]
    assert cfg.plugin_path == (str(tmp_path.resolve()),)


def test_config_beside_a_module_adds_its_folder_to_plugin_path(tmp_path):
    (tmp_path / "sf_cfgtest_engine.py").write_text(
        "import torch\n"
        "from scenefit.attributes import Attribute, AttributeSpace\n"
        "from scenefit.engines.base import Engine, LabelTable\n"
        "class Bars(Engine):\n"
        "    name, channels, height, width, label_kind = 'bars', 1, 32, 32, 'class'\n"
        "    labels = LabelTable(('a', 'b'))\n"
        "    def __init__(self, level=0.5):\n"
        "        self.level = level\n"
        "        self.space = AttributeSpace([Attribute('x', 0.0, 1.0), Attribute('k', categories=('a', 'b'))])\n"
        "    def render_seeded(self, attrs, seeds):\n"
        "        img = attrs[:, 0, None, None, None].expand(-1, 1, 32, 32) * self.level\n"
        "        return {'image': img, 'label': attrs[:, 1].long()}\n"
    )
    p = tmp_path / "run.yaml"
    p.write_text("engine: {name: 'sf_cfgtest_engine:Bars', args: {level: 0.25}}\nsetting: {n_targets: 4, n_test: 2}\n")
    cfg = load_config(str(p))
    assert cfg.plugin_path == (str(tmp_path.resolve()),)
    res = resolve(cfg)
    assert type(res.engine).__name__ == "Bars" and res.engine.level == 0.25 and res.free == [0]
    assert res.engine.spec == {"name": "sf_cfgtest_engine:Bars", "args": {"level": 0.25}}
    # loading the same file twice does not add the folder twice
    assert load_config(str(p), {"plugin_path": [str(tmp_path.resolve())]}).plugin_path == (str(tmp_path.resolve()),)


def test_nan_in_a_file_names_the_file_and_field(tmp_path):
    p = tmp_path / "nan.yaml"
    p.write_text("preset: rot-g1\nfit:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(p))}: fit.lr: value nan is not a finite number$"):
        load_config(str(p))


def test_unknown_key_in_a_file(tmp_path):
    p = tmp_path / "k.yaml"
    p.write_text("preset: rot-g1\nfit: {stepz: 3}\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(p))}: unknown config key 'fit.stepz'; known keys here: \\['amortized',"):
        load_config(str(p))
    p.write_text("preset: rot-g1\nsettings: {n_test: 3}\n")
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'settings'; known keys here: ['baselines', 'device', 'encoder', "
                                                    "'engine', 'evaluate', 'export', 'features', 'fit', 'fit_divisor', 'plugin_path', "
                                                    "'probe', 'seed', 'setting', 'surrogate', 'task']")):
        load_config(str(p))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="^config file not found: .*nope.yaml$"):
        load_config(str(tmp_path / "nope.yaml"))
    empty = tmp_path / "empty.yaml"
    empty.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(empty))}: the file is empty; a config needs at least 'preset: NAME'"):
        load_config(str(empty))
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"seed: 1\n\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(binary))}: not a UTF-8 text file \\(byte 8\\); expected a YAML config$"):
        load_config(str(binary))
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: rot-g1\nfit: {steps: [1,\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(bad))}: invalid YAML: "):
        load_config(str(bad))
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(listing))}: expected a mapping at the top level, got list$"):
        load_config(str(listing))
    badpreset = tmp_path / "p.yaml"
    badpreset.write_text("preset: [rot-g1]\n")
    with pytest.raises(ConfigError, match=re.escape(f"{badpreset}: 'preset' must be a preset name, got ['rot-g1']")):
        load_config(str(badpreset))


def test_a_preset_that_includes_itself(tmp_path, monkeypatch):
    (tmp_path / "sfloop-self.yaml").write_text("preset: sfloop-self\nseed: 1\n")
    (tmp_path / "sfloop-a.yaml").write_text("preset: sfloop-b\n")
    (tmp_path / "sfloop-b.yaml").write_text("preset: sfloop-a\n")
    monkeypatch.setattr(configio, "PRESET_DIR", tmp_path)
    configio._preset_data.cache_clear()
    try:
        with pytest.raises(ConfigError, match=f"^{re.escape(str(tmp_path / 'sfloop-self.yaml'))}: preset 'sfloop-self' includes itself "
                                              r"\(sfloop-self -> sfloop-self\)$"):
            load_config("sfloop-self")
        with pytest.raises(ConfigError, match=r"preset 'sfloop-a' includes itself \(sfloop-a -> sfloop-b -> sfloop-a\)$"):
            load_config("sfloop-a")
    finally:
        configio._preset_data.cache_clear()


def test_defaults_are_a_valid_config():
    cfg = RunConfig()
    assert cfg.engine.name == "digits" and cfg.fit.method == "amortized" and cfg.device == "cpu"
    assert config_from_dict({}) == cfg
