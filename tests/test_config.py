import pytest

from scenefit.config import ConfigError, load_config, preset


def test_presets_match_the_paper_settings():
    assert preset("rot-g5").setting.canvas == 48 and not preset("rot-g5").setting.translate
    assert len(preset("rot-g5").setting.target.components) == 5
    assert preset("trans-g4").setting.canvas == 64 and preset("trans-g4").setting.translate
    assert preset("rottrans-g2").setting.n_targets == 4000 and preset("rottrans-g2").setting.n_test == 2000


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'rot-g9'; available presets: rot-g1, rot-g2"):
        load_config("rot-g9")


def test_yaml_overrides_and_custom_mixture(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "preset: rot-g2\nseed: 3\nsetting:\n  n_targets: 10\n  target:\n    components:\n"
        "      - {weight: 2, rotation: {mean: 90, std: 5}}\n      - {rotation: {mean: -90, std: 5}}\nfit: {method: restarts}\n"
    )
    cfg = load_config(str(p), {"fit": {"restarts": 4}})
    assert cfg.seed == 3 and cfg.setting.n_targets == 10 and cfg.setting.canvas == 48
    assert cfg.fit.method == "restarts" and cfg.fit.restarts == 4
    assert cfg.setting.target.weights.tolist() == pytest.approx([2 / 3, 1 / 3])


def test_nan_in_config(tmp_path):
    p = tmp_path / "nan.yaml"
    p.write_text("preset: rot-g1\nfit:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=r"nan.yaml: fit.lr: value nan is not a finite number"):
        load_config(str(p))


def test_bounds_low_not_below_high(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("preset: trans-g1\nsetting: {max_shift: 0}\n")
    with pytest.raises(ConfigError, match=r"low \(-0.0\) must be < high \(0.0\)"):
        load_config(str(p))


def test_unknown_key_and_missing_file(tmp_path):
    p = tmp_path / "k.yaml"
    p.write_text("preset: rot-g1\nfit: {stepz: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'fit.stepz'"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_bad_method_value():
    with pytest.raises(ConfigError, match=r"fit.method must be one of \['plain', 'restarts', 'codebook', 'amortized'\], got 'magic'"):
        load_config("rot-g1", {"fit": {"method": "magic"}})


def test_overrides_from_strings_nests_keys_and_parses_yaml_scalars():
    from scenefit.config import overrides_from_strings

    assert overrides_from_strings(["fit.steps=10", "fit.layer=fc1", "seed=3", "data.split=[0.4, 0.3, 0.3]"]) == {
        "fit": {"steps": 10, "layer": "fc1"}, "seed": 3, "data": {"split": [0.4, 0.3, 0.3]}}
    with pytest.raises(ConfigError, match=r"^--set expects KEY=VALUE, got 'fit.steps'$"):
        overrides_from_strings(["fit.steps"])
