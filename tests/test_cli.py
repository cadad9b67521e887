import json
import shutil

import numpy as np
import pytest
from PIL import Image

from scenefit.cli import main

TINY = ["--set", "setting.n_targets=40", "--set", "setting.n_test=40", "--set", "surrogate.max_steps=20",
        "--set", "surrogate.holdout=64", "--set", "encoder.steps=5", "--set", "task.epochs=1", "--set", "fit.steps=2",
        "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "rot-g2"
    assert main(["run", "rot-g2", "--out", str(out), *TINY]) == 0
    return out


def test_run_writes_results_dataset_and_summary(tiny_run, capsys):
    res = json.loads((tiny_run / "results.json").read_text())
    for k in ("initial", "ours", "oracle"):
        assert 0.0 <= res["accuracy"][k] <= 1.0
    assert 0.0 <= res["attribute_error"]["rotation_median_deg"] <= 180.0
    assert "position_median_px" not in res["attribute_error"]  # rot settings have no tx/ty
    assert (tiny_run / "summary.md").read_text().startswith("# scenefit run: rot-g2")
    assert (tiny_run / "samples.png").stat().st_size > 1000
    assert len(list((tiny_run / "dataset" / "train").glob("*.png"))) == 40
    assert (tiny_run / "surrogate.safetensors").exists() and (tiny_run / "surrogate.json").exists()


def test_rerun_resumes_without_retraining(tiny_run):
    marker = tiny_run / "stages" / "surrogate.json"
    before = marker.stat().st_mtime_ns
    assert main(["run", "rot-g2", "--out", str(tiny_run), *TINY]) == 0
    assert marker.stat().st_mtime_ns == before


def test_rerun_with_other_config_is_refused(tiny_run, capsys):
    assert main(["run", "rot-g2", "--out", str(tiny_run), *TINY, "--seed", "9"]) == 2
    assert f"({tiny_run / 'config.yaml'}: seed differ); use another --out or delete the folder" in capsys.readouterr().err


def test_rerun_with_other_problem_names_the_differing_sections(tiny_run, capsys):
    assert main(["run", "rot-g1", "--out", str(tiny_run), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_run} holds a run with a different config ({tiny_run / 'config.yaml'}: setting differ)" in err


def test_rerun_with_other_fit_settings_reuses_f_g_e(tiny_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    stamps = {s: (run / "stages" / f"{s}.json").stat().st_mtime_ns for s in ("task-initial", "surrogate", "encoder", "fit")}
    assert main(["run", "rot-g2", "--out", str(run), *TINY[:-1], "--set", "fit.top_angles=2", "--no-progress"]) == 0
    assert "reusing finished stages task-initial, surrogate, encoder" in capsys.readouterr().out
    for s in ("task-initial", "surrogate", "encoder"):
        assert (run / "stages" / f"{s}.json").stat().st_mtime_ns == stamps[s]
    assert (run / "stages" / "fit.json").stat().st_mtime_ns != stamps["fit"]
    assert json.loads((run / "stages" / "fit.json").read_text())["candidates_per_target"] == 2


def test_fit_command_on_an_image_folder(tiny_run, tmp_path):
    targets = tmp_path / "scans"
    targets.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((60, 60)) * 255).astype(np.uint8)).save(targets / f"scan{i}.png")
    out = tmp_path / "synthetic"
    with pytest.warns(UserWarning, match="resized 3 of 3 images to 48x48"):
        code = main(["fit", "rot-g2", "--targets", str(targets), "--out", str(out), "--models", str(tiny_run), *TINY])
    assert code == 0
    meta = (out / "train" / "metadata.csv").read_text().splitlines()
    assert meta[0] == "file_name,label,rotation,digit,target,fit_loss"
    assert [line.split(",")[4] for line in meta[1:]] == ["scan0.png", "scan1.png", "scan2.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "rot-g7", "--out", "{tmp}/x"], "unknown preset 'rot-g7'"),
        (["fit", "rot-g1", "--targets", "{tmp}/missing", "--out", "{tmp}/x"], "target folder does not exist"),
        (["run", "rot-g1", "--out", "{tmp}/x", "--set", "fit.lr=nan"], "fit.lr: value nan is not a finite number"),
        (["run", "trans-g1", "--out", "{tmp}/x", "--set", "setting.max_shift=-2"], "low (2.0) must be < high (-2.0)"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
