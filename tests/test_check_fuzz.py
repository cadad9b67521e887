"""Property test: ``scenefit check`` on random configs, ``--set`` values, image bytes and checkpoint files ends with
exit 0, or exit 2 and one line on stderr; never a traceback."""

from __future__ import annotations

import dataclasses
import shutil
import time
import typing
from pathlib import Path

import pytest
import yaml

from scenefit.cli import main
from scenefit.config import RunConfig
from scenefit.configio import preset_names

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

TINY = ["--set", "setting.n_targets=24", "--set", "setting.n_test=24", "--set", "surrogate.max_steps=10",
        "--set", "surrogate.holdout=32", "--set", "encoder.steps=5", "--set", "task.epochs=1", "--no-progress"]
COUNT = {"cases": 0, "seconds": 0.0}


def dotted_paths(cls=RunConfig, prefix: str = "") -> list[str]:
    """Every settable field of the config as a dotted path (nested sections recursed)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or ([tp] if dataclasses.is_dataclass(tp) else [])
        if inner:
            out += dotted_paths(inner[0], f"{prefix}{f.name}.")
        out.append(f"{prefix}{f.name}")
    return out


PATHS = dotted_paths()
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)
keys = st.one_of(st.sampled_from(PATHS), st.text(min_size=1, max_size=10).filter(lambda s: "=" not in s))


def nest(path: str, value) -> dict:
    node: dict = {}
    parts = path.split(".")
    cur = node
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return node


@st.composite
def config_files(draw) -> bytes:
    kind = draw(st.sampled_from(["yaml", "yaml", "yaml", "text", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "text":
        return draw(st.text(max_size=64)).encode("utf-8", "surrogatepass")
    d = {}
    if draw(st.booleans()):
        d["preset"] = draw(st.one_of(st.sampled_from(preset_names()), st.text(max_size=8)))
    for _ in range(draw(st.integers(0, 3))):
        path, v = draw(keys), draw(values)
        d.update(nest(path, v))
    try:
        return yaml.safe_dump(d, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, UnicodeEncodeError):
        return b"preset: rot-g2\n"


set_items = st.lists(st.builds(lambda k, v: f"{k}={v}", keys, st.text(max_size=12)), max_size=2)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzzbase") / "run"
    assert main(["run", "rot-g2", "--out", str(out), *TINY]) == 0
    return out


def check(args: list[str], capsys) -> None:
    t0 = time.time()
    code = main(["check", *args])
    COUNT["cases"] += 1
    COUNT["seconds"] += time.time() - t0
    err = capsys.readouterr().err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("scenefit: error: ") and err.count("\n") == 1, err


SETTINGS = hypothesis.settings(max_examples=60, deadline=None, derandomize=True,
                               suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow])


@SETTINGS
@hypothesis.given(content=config_files(), items=set_items)
def test_random_configs_and_sets(tmp_path, capsys, content, items):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    check([str(path), *[a for item in items for a in ("--set", item)]], capsys)


@SETTINGS
@hypothesis.given(files=st.lists(st.tuples(st.sampled_from([".png", ".jpg", ".tif", ".txt", ""]), st.binary(max_size=96)), min_size=1, max_size=3))
def test_random_image_bytes(tmp_path_factory, capsys, files):
    folder = tmp_path_factory.mktemp("targets")
    for i, (suffix, data) in enumerate(files):
        (folder / f"f{i}{suffix}").write_bytes(b"\x89PNG\r\n\x1a\n" + data if suffix == ".png" and i % 2 else data)
    check(["rot-g2", "--targets", str(folder), "--no-progress"], capsys)


@SETTINGS
@hypothesis.given(which=st.sampled_from(["task", "encoder"]), part=st.sampled_from(["model.safetensors", "model.json"]),
                  data=st.one_of(st.binary(max_size=200), st.builds(lambda v: yaml.safe_dump(v).encode(), values)))
def test_random_checkpoint_bytes(base, tmp_path_factory, capsys, which, part, data):
    models = tmp_path_factory.mktemp("models") / "models"
    shutil.copytree(base / "models", models)
    (next(Path(models).glob(f"{which}-*")) / part).write_bytes(data)
    check(["rot-g2", "--models", str(models), *TINY], capsys)


def test_report_the_count(capsys):
    """Not a check of its own: prints how many cases the property tests generated and how long they took."""
    with capsys.disabled():
        print(f"\n[fuzz] scenefit check ran on {COUNT['cases']} generated cases in {COUNT['seconds']:.1f}s")
    assert COUNT["cases"] >= 150 or COUNT["cases"] == 0
