"""The worked example examples/custom_engine/: the engine itself, the README walkthrough through the real CLI at a
tiny scale, and the same engine installed as a plug-in found through its entry point."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from scenefit.cli import main
from scenefit.engines.registry import registered_engines

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_engine"
CONFIG = EXAMPLE / "shapes.yaml"
TINY = ["setting.n_targets=24", "setting.n_test=24", "surrogate.max_steps=10", "surrogate.holdout=32", "encoder.steps=5", "task.epochs=1"]
SETS = [a for s in TINY for a in ("--set", s)]
ACCURACY = re.compile(r"^accuracy on T: initial \d+\.\d%  ours \d+\.\d%  oracle \d+\.\d%$", re.MULTILINE)


@pytest.fixture
def shapes(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import shapes_engine

    return shapes_engine


def test_engine_renders_rows_from_their_own_seeds(shapes):
    e = shapes.ShapesEngine()
    assert (e.channels, e.height, e.width, e.label_kind) == (3, 32, 32, "class")
    assert e.space.names == ("x", "y", "size", "hue", "shape") and e.labels.names == ("circle", "square", "triangle")
    g = torch.Generator().manual_seed(3)
    attrs = e.space.sample_uniform(10, g)
    out = e.render(attrs, g)
    split = torch.cat([e.render_seeded(attrs[:3], out["seed"][:3])["image"], e.render_seeded(attrs[3:], out["seed"][3:])["image"]])
    assert torch.equal(split, out["image"]) and out["image"].shape == (10, 3, 32, 32)
    assert torch.equal(out["label"], attrs[:, 4].long())
    # hue 120 deg at the canvas centre: pure green scaled by the brightness jitter (|1 - factor| <= 0.1)
    quiet = shapes.ShapesEngine(noise=0.0)
    px = quiet.images(torch.tensor([[0.0, 0.0, 8.0, 120.0, 0.0]]))[0, :, 16, 16]
    assert px[0].item() < 1e-4 and px[2].item() < 1e-4 and 0.9 <= px[1].item() <= 1.0
    # background far from a small shape at the corner: grey 0.15 within noise and jitter
    bg = quiet.images(torch.tensor([[-8.0, -8.0, 4.0, 0.0, 1.0]]))[0, :, 31, 31]
    assert torch.allclose(bg, torch.full((3,), bg[0].item())) and 0.135 <= bg[0].item() <= 0.165
    # the prior differs from the uniform default: centred, medium, red
    p = e.sample_initial(2000, torch.Generator().manual_seed(0))
    assert p[:, 0].abs().mean() < 1.0 and abs(p[:, 2].mean() - 7.0) < 0.1 and p[:, 3].abs().mean() < 10.0
    assert e.describe()["noise"] == 0.03 and e.describe()["class"] == "shapes_engine:ShapesEngine"


def test_readme_walkthrough(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCENEFIT_CACHE", str(tmp_path / "cache"))
    # as for a user: shapes_engine.py is not importable; only the config's folder holds it
    monkeypatch.delitem(sys.modules, "shapes_engine", raising=False)
    assert str(EXAMPLE) not in sys.path
    assert main(["check", str(CONFIG), *SETS]) == 0
    assert "engine 'shapes' (3x32x32, class labels, 5 attributes: x, y, size, hue, shape)" in capsys.readouterr().out
    shapes = sys.modules["shapes_engine"]
    assert Path(shapes.__file__) == EXAMPLE / "shapes_engine.py"
    assert main(["run", str(CONFIG), "--out", str(tmp_path / "run"), *SETS, "--no-progress"]) == 0
    assert ACCURACY.search(capsys.readouterr().out)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (res["n_targets"], res["n_test"], res["metric"], res["engine"]) == (24, 24, "accuracy", "shapes")
    assert len(list((tmp_path / "run" / "dataset" / "train").glob("*.png"))) == 24

    # "photos": 40x40 PNGs of shapes the config never asked for (purple, bottom-left)
    camera = shapes.ShapesEngine()
    attrs = torch.tensor([[-5.0, 5.0, 6.0, -90.0, float(i % 3)] for i in range(5)])
    folder = tmp_path / "my_shapes"
    folder.mkdir()
    for i, img in enumerate(camera.images(attrs)):
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).resize((40, 40)).save(folder / f"p{i}.png")
    out = tmp_path / "dataset"
    with pytest.warns(UserWarning, match=r"resized 5 of 5 images to 32x32 \(5 resized at 40x40\)"):
        assert main(["fit", str(CONFIG), "--targets", str(folder), "--out", str(out), *SETS, "--no-progress"]) == 0
    assert (tmp_path / "cache" / "models").is_dir() and "fitted 5 targets" in capsys.readouterr().out

    from datasets import load_dataset

    ds = load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 5
    assert ds.features["label"].names == ["circle", "square", "triangle"] == ds.features["shape"].names
    assert list(ds.features) == ["image", "label", "x", "y", "size", "hue", "shape", "target", "fit_loss", "seed"]
    cols = ds.remove_columns("image").to_dict()  # plain lists
    assert cols["target"] == [f"p{i}.png" for i in range(5)] and cols["label"] == cols["shape"]
    assert all(-8 <= v <= 8 for v in cols["x"] + cols["y"]) and all(4 <= v <= 10 for v in cols["size"])
    assert all(-180 < v <= 180 for v in cols["hue"]) and all(isinstance(v, int) for v in cols["seed"])
    assert ds[0]["image"].size == (32, 32) and ds[0]["image"].mode == "RGB"


def test_installed_plugin_is_found_by_name(tmp_path, monkeypatch, capsys, shapes):
    monkeypatch.setenv("SCENEFIT_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site"
    (site / "tinyshapes_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "tinyshapes_plugin.py").write_text(
        "from shapes_engine import ShapesEngine\n\n\nclass TinyShapesEngine(ShapesEngine):\n    name = 'tinyshapes'\n")
    (site / "tinyshapes_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyshapes-plugin\nVersion: 0.1\n")
    (site / "tinyshapes_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[scenefit.engines]\ntinyshapes = tinyshapes_plugin:TinyShapesEngine\n")
    assert "tinyshapes" not in registered_engines()
    monkeypatch.syspath_prepend(str(site))
    assert "tinyshapes" in registered_engines() and {"digits", "street"} <= set(registered_engines())

    cfg = tmp_path / "cfg" / "tiny.yaml"  # a folder of its own: the engine can only come from the entry point
    cfg.parent.mkdir()
    cfg.write_text("engine: {name: tinyshapes, args: {noise: 0.0}}\n")
    assert main(["check", str(cfg), *SETS]) == 0
    assert "engine 'tinyshapes' (3x32x32, class labels" in capsys.readouterr().out
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), *SETS, "--no-progress"]) == 0
    assert ACCURACY.search(capsys.readouterr().out)
    manifest = json.loads((tmp_path / "run" / "dataset" / "manifest.json").read_text())
    assert manifest["engine"]["class"] == "tinyshapes_plugin:TinyShapesEngine"
    assert manifest["engine"]["spec"] == {"name": "tinyshapes", "args": {"noise": 0.0}}

    cfg.write_text("engine: {name: tinyshape}\n")
    assert main(["check", str(cfg)]) == 2
    assert "unknown engine 'tinyshape'; known: ['digits', 'street', 'tinyshapes']" in capsys.readouterr().err
